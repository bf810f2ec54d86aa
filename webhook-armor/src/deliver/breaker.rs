//! A circuit breaker per endpoint, so a receiver that is down is left alone.

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::Result;

/// How soon a delivery waiting on a probe asks again.
const PROBE_RECHECK: Duration = Duration::from_secs(1);

/// Thresholds of the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Failures within `window` that open the circuit (default 5).
    pub failure_threshold: usize,
    /// How far back failures count (default 60 s).
    pub window: Duration,
    /// How long the circuit stays open before one probe (default 300 s).
    pub cool_down: Duration,
    /// A probe that never reports back is assumed lost after this long (default 60 s).
    pub probe_timeout: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            window: Duration::from_secs(60),
            cool_down: Duration::from_secs(300),
            probe_timeout: Duration::from_secs(60),
        }
    }
}

/// Where a circuit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CircuitState {
    /// Deliveries flow.
    Closed,
    /// Deliveries wait.
    Open,
    /// One probe delivery is out; the rest wait for its result.
    HalfOpen,
}

/// The breaker's answer to "may I deliver now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Yes.
    Allowed,
    /// Yes, as the one probe of a half-open circuit.
    Probe,
    /// No; ask again after this long.
    Wait(Duration),
}

/// Per-endpoint circuit breakers, shared by every worker so all agree.
///
/// CLOSED opens after `failure_threshold` failures within `window`; OPEN
/// turns HALF_OPEN after `cool_down`, letting exactly one probe through;
/// the probe's success closes the circuit, its failure opens it again.
///
/// ```
/// use webhook_armor::deliver::{BreakerConfig, CircuitBreaker, CircuitState, Permit};
/// use webhook_armor::memory::MemoryCircuitBreaker;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let breaker = MemoryCircuitBreaker::new(BreakerConfig::default());
/// for _ in 0..5 {
///     assert_eq!(breaker.acquire("ep_1").await?, Permit::Allowed);
///     breaker.record("ep_1", false).await?;
/// }
/// assert_eq!(breaker.state("ep_1").await?, CircuitState::Open);
/// assert!(matches!(breaker.acquire("ep_1").await?, Permit::Wait(_)));
/// # Ok::<_, webhook_armor::Error>(()) }).unwrap();
/// ```
#[async_trait]
pub trait CircuitBreaker: Send + Sync + std::fmt::Debug + 'static {
    /// Asks to deliver to `endpoint` now.
    async fn acquire(&self, endpoint: &str) -> Result<Permit>;
    /// Reports how a delivery that was let through went.
    async fn record(&self, endpoint: &str, success: bool) -> Result<()>;
    /// The circuit's state now.
    async fn state(&self, endpoint: &str) -> Result<CircuitState>;
}

/// The state machine of one circuit, on millisecond timestamps from any
/// clock that only moves forward (a monotonic clock in memory, the database's
/// or Redis's clock for shared circuits). Serialisable, so shared backends
/// can store it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Circuit {
    /// Recent failures, oldest first, while closed.
    pub failures: VecDeque<i64>,
    /// While open: when the cool-down ends.
    pub open_until: Option<i64>,
    /// While half open: when the probe went out.
    pub probe_since: Option<i64>,
}

fn ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn duration(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl Circuit {
    /// The state at `now`.
    pub fn state(&self, now: i64) -> CircuitState {
        match (self.open_until, self.probe_since) {
            (_, Some(_)) => CircuitState::HalfOpen,
            (Some(until), None) if now < until => CircuitState::Open,
            (Some(_), None) => CircuitState::HalfOpen,
            (None, None) => CircuitState::Closed,
        }
    }

    /// Asks to deliver at `now`.
    pub fn acquire(&mut self, now: i64, config: &BreakerConfig) -> Permit {
        if let Some(since) = self.probe_since {
            let waited = now.saturating_sub(since);
            if waited < ms(config.probe_timeout) {
                // Ask again soon: the probe may close the circuit any moment,
                // and the waiting deliveries should flow right after.
                return Permit::Wait(
                    duration(ms(config.probe_timeout) - waited).min(PROBE_RECHECK),
                );
            }
            // The probe never reported (its worker died): send another.
            self.probe_since = Some(now);
            return Permit::Probe;
        }
        match self.open_until {
            Some(until) if now < until => Permit::Wait(duration(until - now)),
            Some(_) => {
                self.probe_since = Some(now);
                Permit::Probe
            }
            None => Permit::Allowed,
        }
    }

    /// Records an outcome at `now`.
    pub fn record(&mut self, now: i64, success: bool, config: &BreakerConfig) {
        let probing = self.probe_since.take().is_some();
        if success {
            if probing || self.open_until.is_some() {
                *self = Self::default();
            }
            return;
        }
        if probing {
            self.open_until = Some(now.saturating_add(ms(config.cool_down)));
            return;
        }
        if self.open_until.is_some() {
            return; // a straggler from before the circuit opened
        }
        self.failures.push_back(now);
        while self
            .failures
            .front()
            .is_some_and(|at| now.saturating_sub(*at) > ms(config.window))
        {
            self.failures.pop_front();
        }
        if self.failures.len() >= config.failure_threshold {
            self.failures.clear();
            self.open_until = Some(now.saturating_add(ms(config.cool_down)));
        }
    }
}
