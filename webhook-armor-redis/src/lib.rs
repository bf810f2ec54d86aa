//! Redis backend for [webhook-armor](webhook_armor): idempotency claims, the job
//! queue, dead letters and lifecycle events, shared by every API and worker
//! process that points at the same Redis.
//!
//! ```no_run
//! use std::sync::Arc;
//! use webhook_armor_redis::{RedisBackend, RedisConfig};
//!
//! # async fn run() -> Result<(), webhook_armor::Error> {
//! let backend = Arc::new(RedisBackend::connect("redis://127.0.0.1:6379", RedisConfig::new("shop")).await?);
//! let queue: Arc<dyn webhook_armor::Queue> = backend.clone();
//! let claims: Arc<dyn webhook_armor::IdempotencyStore> = backend.clone();
//! # Ok(()) }
//! ```
//!
//! # How it stays correct
//! - Every multi-step change (claim, enqueue, lease, ack, nack, dead-letter,
//!   replay, discard) is one Lua script, atomic on the server. Times come from
//!   the server's clock, so workers with skewed clocks agree on deadlines.
//! - Leases are a sorted set scored by deadline; each lease carries a random
//!   token. Ack, nack and dead-letter run only if the token is current and the
//!   deadline ahead, so a worker that lost its lease changes nothing. Expired
//!   leases are returned to the front of the queue by the next lease call.
//! - One multiplexed connection (redis's `ConnectionManager`) carries every
//!   command; concurrent calls pipeline on it, and it reconnects by itself.
//!   While Redis is unreachable every call fails with
//!   [`Error::Backend`] and nothing is assumed.
//!
//! # Redis Cluster and failover
//! Every key of one pipeline starts with `{prefix}`, a hash tag, so all of them
//! live in one slot and the scripts are valid on a cluster (one pipeline is
//! then served by one shard; run several prefixes to spread load). The scripts
//! build job keys from that prefix, which cluster mode permits within a slot.
//! Redis replication is asynchronous: after a failover, writes acknowledged by
//! the old primary but not yet replicated are lost, an acknowledged webhook
//! included. If that matters, run with `appendonly yes` + `appendfsync always`
//! and `WAIT`-style replication, or use the PostgreSQL backend.
//!
//! # Memory
//! Idempotency keys expire on their TTL; completed jobs keep only their id and
//! expire after [`RedisConfig::completed_retention`]. Outbound delivery
//! attempts expire after [`RedisConfig::attempt_retention`], and each
//! endpoint keeps its newest 10,000. Dead letters stay until discarded: they
//! are what an operator must see.

mod batch;
mod dead_letter;
#[cfg(feature = "deliver")]
mod delivery;
mod events;
mod idempotency;
mod queue;
mod scripts;

#[cfg(feature = "deliver")]
pub use delivery::RedisCircuitBreaker;

use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::mpsc;
use webhook_armor::{Error, Result};

/// Where a pipeline's keys live and how long finished work is remembered.
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisConfig {
    prefix: String,
    completed_retention: Duration,
    attempt_retention: Duration,
    idle_poll: Duration,
    group_commit: bool,
    batches_in_flight: usize,
}

impl RedisConfig {
    /// A pipeline whose keys all start with `{prefix}`. Processes that share a
    /// prefix share the pipeline; different prefixes are independent.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            completed_retention: Duration::from_secs(24 * 60 * 60),
            attempt_retention: Duration::from_secs(7 * 24 * 60 * 60),
            idle_poll: Duration::from_millis(50),
            group_commit: true,
            batches_in_flight: webhook_armor::batch::DEFAULT_IN_FLIGHT,
        }
    }

    /// Whether concurrent enqueues and acks share one script call (default
    /// on). Each caller still waits for its own answer; off, every enqueue
    /// and ack is a call of its own.
    pub fn group_commit(mut self, enabled: bool) -> Self {
        self.group_commit = enabled;
        self
    }

    /// With group commit, how many batches of one kind (enqueues, acks,
    /// delivery attempts) may be in flight at once (default
    /// [`DEFAULT_IN_FLIGHT`](webhook_armor::batch::DEFAULT_IN_FLIGHT), one).
    /// Redis runs one script at a time, so more batches in flight only make
    /// each one smaller; across a slow network two may hide the round trip.
    pub fn batches_in_flight(mut self, batches: usize) -> Self {
        self.batches_in_flight = batches.max(1);
        self
    }

    /// How long a completed job's id is kept to refuse duplicates (default 24 h).
    pub fn completed_retention(mut self, retention: Duration) -> Self {
        self.completed_retention = retention;
        self
    }

    /// How long outbound delivery attempts are kept (default 7 days): a
    /// message's attempts expire this long after its latest one, an
    /// endpoint's list (its newest 10,000, behind `for_endpoint` and its
    /// stats) this long after the endpoint's latest attempt.
    pub fn attempt_retention(mut self, retention: Duration) -> Self {
        self.attempt_retention = retention;
        self
    }

    /// How often an idle worker asks for work (default 50 ms).
    pub fn idle_poll(mut self, interval: Duration) -> Self {
        self.idle_poll = interval;
        self
    }
}

/// Key names of one pipeline, all under one hash tag.
#[derive(Debug, Clone)]
struct Keys {
    tag: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Self {
            tag: format!("{{{prefix}}}"),
        }
    }
    fn idempotency(&self, key: &str) -> String {
        format!("{}:idem:{key}", self.tag)
    }
    fn job_prefix(&self) -> String {
        format!("{}:job:", self.tag)
    }
    fn job(&self, id: &str) -> String {
        format!("{}:job:{id}", self.tag)
    }
    fn ready(&self) -> String {
        format!("{}:ready", self.tag)
    }
    fn scheduled(&self) -> String {
        format!("{}:scheduled", self.tag)
    }
    fn leased(&self) -> String {
        format!("{}:leased", self.tag)
    }
    fn letters(&self) -> String {
        format!("{}:dead", self.tag)
    }
    fn letter(&self, id: &str) -> String {
        format!("{}:dl:{id}", self.tag)
    }
    fn pending_letters(&self) -> String {
        format!("{}:dead-pending", self.tag)
    }
    fn events(&self) -> String {
        format!("{}:events", self.tag)
    }
}

/// One pipeline in Redis: implements
/// [`IdempotencyStore`](webhook_armor::IdempotencyStore),
/// [`Queue`](webhook_armor::Queue),
/// [`DeadLetterStore`](webhook_armor::DeadLetterStore) and
/// [`EventBus`](webhook_armor::EventBus).
///
/// Cheap to clone: clones share the connection.
#[derive(Clone)]
pub struct RedisBackend {
    client: redis::Client,
    connection: ConnectionManager,
    keys: Keys,
    config: RedisConfig,
    outgoing_events: mpsc::Sender<String>,
    /// Group commit of enqueues and acks, when on.
    enqueues: Option<mpsc::Sender<webhook_armor::batch::EnqueueRequest>>,
    acks: Option<mpsc::Sender<webhook_armor::batch::AckRequest>>,
    /// Group commit of delivery attempts, when on.
    #[cfg(feature = "deliver")]
    attempts: Option<mpsc::Sender<delivery::AttemptRequest>>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.config.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// Connects to `url` (`redis://host:port/db`) and checks the server answers.
    pub async fn connect(url: &str, config: RedisConfig) -> Result<Self> {
        let client = redis::Client::open(url)
            .map_err(|e| Error::InvalidInput(format!("bad Redis URL: {e}")))?;
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2);
        let connection = ConnectionManager::new_with_config(client.clone(), manager_config)
            .await
            .map_err(backend)?;
        let keys = Keys::new(&config.prefix);
        let outgoing_events = events::spawn_publisher(connection.clone(), keys.events());
        let (enqueues, acks) = if config.group_commit {
            (
                Some(batch::spawn_enqueuer(
                    connection.clone(),
                    keys.clone(),
                    config.batches_in_flight,
                )),
                Some(batch::spawn_acker(
                    connection.clone(),
                    keys.clone(),
                    millis(config.completed_retention),
                    config.batches_in_flight,
                )),
            )
        } else {
            (None, None)
        };
        #[cfg(feature = "deliver")]
        let attempts = config.group_commit.then(|| {
            delivery::spawn_attempt_logger(
                connection.clone(),
                keys.clone(),
                config.attempt_retention,
                config.batches_in_flight,
            )
        });
        Ok(Self {
            client,
            connection,
            keys,
            config,
            outgoing_events,
            enqueues,
            acks,
            #[cfg(feature = "deliver")]
            attempts,
        })
    }

    /// The connection, for one command; clones share the multiplexed socket.
    fn connection(&self) -> ConnectionManager {
        self.connection.clone()
    }
}

/// Every Redis failure is a backend failure: unreachable, timed out, refused.
fn backend(error: redis::RedisError) -> Error {
    Error::Backend(Box::new(error))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}
