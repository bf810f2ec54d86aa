//! The storage the simulator runs on: in memory (one process), or Redis or
//! PostgreSQL shared by an `api` process and any number of `worker` processes.

use std::sync::Arc;
use std::time::Duration;

use webhook_armor::dead_letter::DeadLetterStore;
use webhook_armor::deliver::{
    AttemptLog, BreakerConfig, CircuitBreaker, EndpointStore, SharedCircuitBreaker,
};
use webhook_armor::events::EventBus;
use webhook_armor::memory::{
    MemoryAttemptLog, MemoryCircuitBreaker, MemoryEndpointStore, MemoryEventBus, MemoryQueue,
};
use webhook_armor::queue::Queue;
use webhook_armor_postgres::{PostgresBackend, PostgresConfig};
use webhook_armor_redis::{RedisBackend, RedisConfig};

/// Every store the pipeline needs, behind the core's traits.
#[derive(Debug, Clone)]
pub struct Backends {
    /// Where received webhooks and outbound deliveries wait for a worker.
    pub queue: Arc<dyn Queue>,
    /// Jobs that ran out of attempts.
    pub dead_letters: Arc<dyn DeadLetterStore>,
    /// Lifecycle events; shared backends carry them between processes, so
    /// the dashboard of the `api` process sees every worker's events.
    pub bus: Arc<dyn EventBus>,
    /// Outbound endpoints.
    pub endpoints: Arc<dyn EndpointStore>,
    /// One circuit breaker per endpoint, shared by every worker.
    pub breaker: Arc<dyn CircuitBreaker>,
    /// Every outbound delivery attempt.
    pub delivery_attempts: Arc<dyn AttemptLog>,
    /// Which backend this is: `memory`, `redis` or `postgres`.
    pub kind: &'static str,
}

/// The simulator's breaker: short cool-down, so the receiver-outage scenario
/// recovers while you watch.
fn breaker_config() -> BreakerConfig {
    BreakerConfig {
        cool_down: Duration::from_secs(3),
        ..BreakerConfig::default()
    }
}

/// How long completed ids are remembered (duplicates refused meanwhile).
const COMPLETED_RETENTION: Duration = Duration::from_secs(3600);

impl Backends {
    /// Everything in this process: nothing to set up, gone on exit.
    pub fn memory() -> Self {
        let queue = Arc::new(MemoryQueue::new().completed_retention(COMPLETED_RETENTION));
        Self {
            queue: queue.clone(),
            dead_letters: queue,
            bus: Arc::new(MemoryEventBus::new(16 * 1024)),
            endpoints: Arc::new(MemoryEndpointStore::default()),
            breaker: Arc::new(MemoryCircuitBreaker::new(breaker_config())),
            delivery_attempts: Arc::new(MemoryAttemptLog::new(100_000)),
            kind: "memory",
        }
    }

    /// Redis at `url`, every key under `namespace`.
    pub async fn redis(url: &str, namespace: &str) -> Result<Self, String> {
        let config = RedisConfig::new(namespace).completed_retention(COMPLETED_RETENTION);
        let backend = Arc::new(
            RedisBackend::connect(url, config)
                .await
                .map_err(|error| format!("cannot use Redis at {url}: {error}"))?,
        );
        Ok(Self::shared(backend, "redis"))
    }

    /// PostgreSQL at `url`, every table in schema `namespace` (created and
    /// migrated on first use).
    pub async fn postgres(url: &str, namespace: &str) -> Result<Self, String> {
        let config = PostgresConfig::new(namespace).completed_retention(COMPLETED_RETENTION);
        let backend = Arc::new(
            PostgresBackend::connect(url, config)
                .await
                .map_err(|error| format!("cannot use PostgreSQL at {url}: {error}"))?,
        );
        Ok(Self::shared(backend, "postgres"))
    }

    fn shared<B>(backend: Arc<B>, kind: &'static str) -> Self
    where
        B: Queue
            + DeadLetterStore
            + EventBus
            + EndpointStore
            + AttemptLog
            + webhook_armor::deliver::CircuitStore
            + Clone,
    {
        Self {
            queue: backend.clone(),
            dead_letters: backend.clone(),
            bus: backend.clone(),
            endpoints: backend.clone(),
            breaker: Arc::new(SharedCircuitBreaker::new(
                backend.as_ref().clone(),
                breaker_config(),
            )),
            delivery_attempts: backend,
            kind,
        }
    }
}
