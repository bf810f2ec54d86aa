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

/// One operation on a circuit, for stores that run it where the state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitStep {
    /// [`Circuit::acquire`].
    Acquire,
    /// [`Circuit::record`].
    Record {
        /// Whether the delivery went well.
        success: bool,
    },
    /// [`Circuit::state`].
    Read,
}

/// What a [`CircuitStep`] answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepAnswer {
    /// From [`CircuitStep::Acquire`].
    Permit(Permit),
    /// From [`CircuitStep::Record`].
    Recorded,
    /// From [`CircuitStep::Read`].
    State(CircuitState),
}

/// Storage of circuits shared between processes: runs a step on an
/// endpoint's stored [`Circuit`] at the store's clock, atomically with respect
/// to every other caller (a row lock, a compare-and-set). Wrap it in a
/// [`SharedCircuitBreaker`] to get a [`CircuitBreaker`].
#[async_trait]
pub trait CircuitStore: Send + Sync + std::fmt::Debug + 'static {
    /// Applies `step` (with `config`) to `endpoint`'s circuit, saving any change.
    async fn apply(
        &self,
        endpoint: &str,
        step: CircuitStep,
        config: &BreakerConfig,
    ) -> Result<StepAnswer>;
}

/// A [`CircuitBreaker`] whose circuits live in a [`CircuitStore`], so every
/// worker of every process agrees on them.
#[derive(Debug, Clone)]
pub struct SharedCircuitBreaker<S> {
    store: S,
    config: BreakerConfig,
}

impl<S> SharedCircuitBreaker<S> {
    /// Breakers with `config` over `store`.
    pub fn new(store: S, config: BreakerConfig) -> Self {
        Self { store, config }
    }
}

fn unexpected(answer: StepAnswer) -> crate::Error {
    crate::Error::Backend(format!("circuit store answered {answer:?} to the wrong step").into())
}

#[async_trait]
impl<S: CircuitStore> CircuitBreaker for SharedCircuitBreaker<S> {
    async fn acquire(&self, endpoint: &str) -> Result<Permit> {
        match self
            .store
            .apply(endpoint, CircuitStep::Acquire, &self.config)
            .await?
        {
            StepAnswer::Permit(permit) => Ok(permit),
            other => Err(unexpected(other)),
        }
    }

    async fn record(&self, endpoint: &str, success: bool) -> Result<()> {
        match self
            .store
            .apply(endpoint, CircuitStep::Record { success }, &self.config)
            .await?
        {
            StepAnswer::Recorded => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn state(&self, endpoint: &str) -> Result<CircuitState> {
        match self
            .store
            .apply(endpoint, CircuitStep::Read, &self.config)
            .await?
        {
            StepAnswer::State(state) => Ok(state),
            other => Err(unexpected(other)),
        }
    }
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

    /// Runs `step` at `now`.
    pub fn apply(&mut self, step: CircuitStep, now: i64, config: &BreakerConfig) -> StepAnswer {
        match step {
            CircuitStep::Acquire => StepAnswer::Permit(self.acquire(now, config)),
            CircuitStep::Record { success } => {
                self.record(now, success, config);
                StepAnswer::Recorded
            }
            CircuitStep::Read => StepAnswer::State(self.state(now)),
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
