//! The replay window: how far a signed timestamp may stray from now.

use std::sync::Arc;
use std::time::Duration;

use crate::Rejection;
use crate::clock::{Clock, SystemClock};

/// Accepts a signed timestamp only within a tolerance of the current time,
/// in both directions, so a captured request cannot be replayed later and a
/// sender with a fast clock is not locked out.
///
/// The default tolerance is 5 minutes, as Standard Webhooks, Stripe and Slack
/// recommend. The arithmetic cannot overflow whatever the timestamp.
///
/// ```
/// use std::time::Duration;
/// use webhook_armor::ReplayWindow;
/// use webhook_armor::clock::ManualClock;
///
/// let clock = ManualClock::new(1_700_000_000);
/// let window = ReplayWindow::new(Duration::from_secs(300)).with_clock(clock);
/// assert!(window.check(1_700_000_000 - 300).is_ok());
/// assert!(window.check(1_700_000_000 - 301).is_err());
/// assert!(window.check(1_700_000_000 + 301).is_err());
/// ```
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    tolerance_seconds: u64,
    clock: Arc<dyn Clock>,
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new(Duration::from_secs(300))
    }
}

impl ReplayWindow {
    /// A window of `tolerance` either side of the system clock.
    pub fn new(tolerance: Duration) -> Self {
        Self {
            tolerance_seconds: tolerance.as_secs(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Uses `clock` instead of the system clock.
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The tolerance either side of now.
    pub fn tolerance(&self) -> Duration {
        Duration::from_secs(self.tolerance_seconds)
    }

    /// Accepts `timestamp` (Unix seconds) if it lies within the tolerance of now.
    pub fn check(&self, timestamp: i64) -> Result<(), Rejection> {
        let now = self.clock.unix_now();
        // abs_diff works on the full i64 range without overflow.
        if timestamp.abs_diff(now) <= self.tolerance_seconds {
            Ok(())
        } else {
            Err(Rejection::TimestampOutsideWindow {
                skew_seconds: timestamp.saturating_sub(now),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::clock::ManualClock;

    const NOW: i64 = 1_700_000_000;

    fn window() -> ReplayWindow {
        ReplayWindow::default().with_clock(ManualClock::new(NOW))
    }

    #[test]
    fn edges_of_the_default_window() {
        let window = window();
        assert!(window.check(NOW).is_ok());
        assert!(window.check(NOW - 300).is_ok());
        assert!(window.check(NOW + 300).is_ok());
        assert_eq!(
            window.check(NOW - 301),
            Err(Rejection::TimestampOutsideWindow { skew_seconds: -301 })
        );
        assert_eq!(
            window.check(NOW + 301),
            Err(Rejection::TimestampOutsideWindow { skew_seconds: 301 })
        );
    }

    #[test]
    fn follows_the_injected_clock() {
        let clock = ManualClock::new(NOW);
        let window = ReplayWindow::default().with_clock(clock.clone());
        assert!(window.check(NOW).is_ok());
        clock.advance(301);
        assert!(window.check(NOW).is_err());
    }

    proptest! {
        #[test]
        fn never_overflows_and_agrees_with_wide_arithmetic(timestamp in any::<i64>(), now in any::<i64>()) {
            let window = ReplayWindow::default().with_clock(ManualClock::new(now));
            let within = (i128::from(timestamp) - i128::from(now)).abs() <= 300;
            prop_assert_eq!(window.check(timestamp).is_ok(), within);
        }
    }
}
