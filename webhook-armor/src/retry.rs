//! When to try a failed job again, and when to give up.

use std::time::Duration;

/// Attempts and backoff for failed jobs.
///
/// Default: 3 attempts in all; after attempt `n` fails the job waits `2^n`
/// seconds (2 s, 4 s, ...), capped at one hour; no jitter. A `Retry-After`
/// from the handler replaces the backoff (still capped), so a rate-limited
/// downstream is given the pause it asked for.
///
/// ```
/// use std::time::Duration;
/// use webhook_armor::RetryPolicy;
///
/// let policy = RetryPolicy::default();
/// assert_eq!(policy.max_attempts(), 3);
/// assert_eq!(policy.delay_after(1, None), Duration::from_secs(2));
/// assert_eq!(policy.delay_after(2, None), Duration::from_secs(4));
/// assert_eq!(policy.delay_after(2, Some(Duration::from_secs(30))), Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct RetryPolicy {
    max_attempts: u32,
    base: Duration,
    max_delay: Duration,
    jitter: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(60 * 60),
            jitter: false,
        }
    }
}

impl RetryPolicy {
    /// Gives up after `attempts` attempts in all (at least 1).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The delay after the first failure is `2 * base`, doubling after each.
    pub fn with_base(mut self, base: Duration) -> Self {
        self.base = base;
        self
    }

    /// No delay exceeds `max` (Retry-After included).
    pub fn with_max_delay(mut self, max: Duration) -> Self {
        self.max_delay = max;
        self
    }

    /// Spreads retries: each delay is drawn uniformly from its upper half, so
    /// jobs that failed together do not all come back together.
    pub fn with_jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// Attempts in all before a job is dead-lettered.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Whether a job that failed its attempt `attempt` may be tried again.
    pub fn should_retry(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }

    /// How long to wait after attempt `attempt` failed.
    pub fn delay_after(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(asked) = retry_after {
            return asked.min(self.max_delay);
        }
        // 2^attempt, computed without overflow for any attempt count.
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        let delay = self.base.saturating_mul(factor).min(self.max_delay);
        if self.jitter {
            let half = delay / 2;
            half + half.mul_f64(fastrand::f64())
        } else {
            delay
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = RetryPolicy::default().with_max_delay(Duration::from_secs(10));
        assert_eq!(policy.delay_after(3, None), Duration::from_secs(8));
        assert_eq!(policy.delay_after(4, None), Duration::from_secs(10));
        assert_eq!(policy.delay_after(u32::MAX, None), Duration::from_secs(10));
        assert_eq!(
            policy.delay_after(1, Some(Duration::from_secs(99))),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn jitter_stays_in_the_upper_half() {
        let policy = RetryPolicy::default().with_jitter(true);
        for _ in 0..1000 {
            let delay = policy.delay_after(3, None);
            assert!(
                delay >= Duration::from_secs(4) && delay <= Duration::from_secs(8),
                "{delay:?}"
            );
        }
    }

    #[test]
    fn retries_until_the_last_attempt() {
        let policy = RetryPolicy::default();
        assert!(policy.should_retry(1));
        assert!(policy.should_retry(2));
        assert!(!policy.should_retry(3));
    }
}
