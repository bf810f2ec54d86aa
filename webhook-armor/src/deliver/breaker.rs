//! A circuit breaker per endpoint, so a receiver that is down is left alone.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

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
///
/// Concurrent acquires for one endpoint share one store call (single
/// flight): when a batch of deliveries to the same endpoint start together,
/// the first asks the store and the others take its answer, if that answer
/// changed nothing (`Allowed` on a closed circuit, `Wait` on an open one).
/// If it was the one `Probe` of a half-open circuit, the others ask the store
/// themselves and are told to wait. A shared answer is at most one round trip
/// old, as if those deliveries had started a moment earlier.
#[derive(Debug, Clone)]
pub struct SharedCircuitBreaker<S> {
    store: S,
    config: BreakerConfig,
    in_flight: Arc<Mutex<HashMap<String, Vec<oneshot::Sender<Shared>>>>>,
}

/// What an acquire in flight hands the acquires that joined it.
#[derive(Debug)]
enum Shared {
    /// The same permit: the circuit did not change.
    Permit(Permit),
    /// Ask the store yourself (the answer was a probe, or an error).
    AskYourself,
}

impl<S> SharedCircuitBreaker<S> {
    /// Breakers with `config` over `store`.
    pub fn new(store: S, config: BreakerConfig) -> Self {
        Self {
            store,
            config,
            in_flight: Arc::default(),
        }
    }
}

/// The leader's hold on an endpoint's flight: on drop (also if the leader's
/// future is cancelled) the flight ends, and followers not yet answered ask
/// the store themselves, so nobody waits on an acquire that will not finish.
struct Flight<'a> {
    in_flight: &'a Mutex<HashMap<String, Vec<oneshot::Sender<Shared>>>>,
    endpoint: &'a str,
    landed: bool,
}

impl Flight<'_> {
    fn land(mut self, answer: &Result<Permit>) {
        self.landed = true;
        let followers = self
            .in_flight
            .lock()
            .expect("poisoned")
            .remove(self.endpoint)
            .unwrap_or_default();
        for follower in followers {
            let shared = match answer {
                Ok(permit @ (Permit::Allowed | Permit::Wait(_))) => Shared::Permit(*permit),
                Ok(Permit::Probe) | Err(_) => Shared::AskYourself,
            };
            let _ = follower.send(shared);
        }
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        // Only on cancellation: after `land`, the entry may be a new flight's.
        if !self.landed
            && let Ok(mut in_flight) = self.in_flight.lock()
        {
            in_flight.remove(self.endpoint);
        }
    }
}

impl<S: CircuitStore> SharedCircuitBreaker<S> {
    async fn acquire_from_store(&self, endpoint: &str) -> Result<Permit> {
        match self
            .store
            .apply(endpoint, CircuitStep::Acquire, &self.config)
            .await?
        {
            StepAnswer::Permit(permit) => Ok(permit),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(answer: StepAnswer) -> crate::Error {
    crate::Error::Backend(format!("circuit store answered {answer:?} to the wrong step").into())
}

#[async_trait]
impl<S: CircuitStore> CircuitBreaker for SharedCircuitBreaker<S> {
    async fn acquire(&self, endpoint: &str) -> Result<Permit> {
        let joined = {
            let mut in_flight = self.in_flight.lock().expect("poisoned");
            match in_flight.get_mut(endpoint) {
                Some(followers) => {
                    let (answer, shared) = oneshot::channel();
                    followers.push(answer);
                    Some(shared)
                }
                None => {
                    in_flight.insert(endpoint.to_owned(), Vec::new());
                    None
                }
            }
        };
        if let Some(shared) = joined {
            return match shared.await {
                Ok(Shared::Permit(permit)) => Ok(permit),
                // A probe went to the leader, its call failed, or it was cancelled.
                Ok(Shared::AskYourself) | Err(_) => self.acquire_from_store(endpoint).await,
            };
        }
        let flight = Flight {
            in_flight: &self.in_flight,
            endpoint,
            landed: false,
        };
        let answer = self.acquire_from_store(endpoint).await;
        flight.land(&answer);
        answer
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Circuits in a map, each call slow like a round trip, and counted.
    #[derive(Debug, Default)]
    struct SlowStore {
        circuits: Mutex<HashMap<String, Circuit>>,
        calls: AtomicUsize,
    }

    #[async_trait]
    impl CircuitStore for Arc<SlowStore> {
        async fn apply(
            &self,
            endpoint: &str,
            step: CircuitStep,
            config: &BreakerConfig,
        ) -> Result<StepAnswer> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = 1_000; // a fixed clock: these tests are about sharing, not time
            let mut circuits = self.circuits.lock().unwrap();
            let circuit = circuits.entry(endpoint.to_owned()).or_default();
            Ok(circuit.apply(step, now, config))
        }
    }

    async fn race(breaker: &SharedCircuitBreaker<Arc<SlowStore>>, endpoint: &str) -> Vec<Permit> {
        let racers: Vec<_> = (0..50)
            .map(|_| {
                let (breaker, endpoint) = (breaker.clone(), endpoint.to_owned());
                tokio::spawn(async move { breaker.acquire(&endpoint).await.unwrap() })
            })
            .collect();
        let mut permits = Vec::new();
        for racer in racers {
            permits.push(racer.await.unwrap());
        }
        permits
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_acquires_share_one_store_call_but_never_a_probe() {
        let store = Arc::new(SlowStore::default());
        let config = BreakerConfig {
            cool_down: Duration::ZERO,
            ..BreakerConfig::default()
        };
        let breaker = SharedCircuitBreaker::new(store.clone(), config);

        // Closed: 50 deliveries starting together ask the store once.
        let permits = race(&breaker, "ep_1").await;
        assert!(permits.iter().all(|p| *p == Permit::Allowed));
        assert_eq!(store.calls.swap(0, Ordering::SeqCst), 1);

        // Half open (opened, no cool-down): exactly one probe; the others
        // asked the store themselves and were told to wait.
        store.circuits.lock().unwrap().insert(
            "ep_1".into(),
            Circuit {
                open_until: Some(0),
                ..Circuit::default()
            },
        );
        let permits = race(&breaker, "ep_1").await;
        let probes = permits.iter().filter(|p| **p == Permit::Probe).count();
        assert_eq!(probes, 1, "{permits:?}");
        assert!(
            permits
                .iter()
                .all(|p| matches!(p, Permit::Probe | Permit::Wait(_)))
        );
        assert_eq!(store.calls.load(Ordering::SeqCst), 50);
        assert!(breaker.in_flight.lock().unwrap().is_empty());
    }

    /// A leader whose future is dropped mid-call does not strand the others.
    #[tokio::test(start_paused = true)]
    async fn a_cancelled_acquire_does_not_strand_the_ones_that_joined_it() {
        let store = Arc::new(SlowStore::default());
        let breaker = SharedCircuitBreaker::new(store.clone(), BreakerConfig::default());
        let leader = {
            let breaker = breaker.clone();
            tokio::spawn(async move { breaker.acquire("ep_1").await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let follower = {
            let breaker = breaker.clone();
            tokio::spawn(async move { breaker.acquire("ep_1").await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        leader.abort();
        assert_eq!(follower.await.unwrap().unwrap(), Permit::Allowed);
        assert_eq!(
            store.calls.load(Ordering::SeqCst),
            2,
            "the follower asked itself"
        );
        assert!(breaker.in_flight.lock().unwrap().is_empty());
    }
}
