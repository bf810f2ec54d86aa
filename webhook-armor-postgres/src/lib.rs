//! PostgreSQL backend for [webhook-armor](webhook_armor): the durable choice.
//! Jobs, dead letters, every processing attempt and idempotency keys live in
//! ordinary tables an operator can query, audit and back up.
//!
//! ```no_run
//! use std::sync::Arc;
//! use webhook_armor_postgres::{PostgresBackend, PostgresConfig};
//!
//! # async fn run() -> Result<(), webhook_armor::Error> {
//! let backend = Arc::new(
//!     PostgresBackend::connect("postgres://postgres@127.0.0.1/app", PostgresConfig::new("webhooks")).await?,
//! );
//! let queue: Arc<dyn webhook_armor::Queue> = backend.clone();
//! # Ok(()) }
//! ```
//!
//! # How it stays correct
//! - `connect` creates the pipeline's schema and applies the embedded
//!   migrations (sqlx's migrator, one advisory-locked run per database);
//!   queries are checked at run time, so building needs no database.
//! - Enqueue is `INSERT .. ON CONFLICT (id) DO NOTHING`: deduplication and
//!   storage in one statement. Concurrent enqueues (and acks) are batched
//!   into one multi-row statement (group commit), so throughput does not pay
//!   one WAL flush per webhook; a caller is answered only after its batch commits.
//! - Leases take rows with `FOR UPDATE SKIP LOCKED`, stamp a deadline and a
//!   random token; ack, nack and dead-letter apply only while the token matches
//!   and the deadline is ahead. Expired leases are rescued by a compare-and-set
//!   on (status, deadline), so a job completed meanwhile is never reverted.
//! - Idle workers wait on `LISTEN`; each committed batch of enqueues sends one
//!   `NOTIFY`. The worker's poll interval remains as a safety net.
//! - A maintenance task prunes completed jobs, expired idempotency keys and old
//!   attempt rows on [`PostgresConfig::completed_retention`], outbound delivery
//!   attempts on [`PostgresConfig::attempt_retention`], and the queue
//!   table is tuned for aggressive autovacuum, so tables do not grow without bound.

mod batch;
mod dead_letter;
#[cfg(feature = "deliver")]
mod delivery;
mod events;
mod idempotency;
mod maintenance;
mod queue;

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor, PgPool};
use tokio::sync::{Notify, mpsc};
use webhook_armor::{Error, Result};

#[cfg(feature = "deliver")]
pub use delivery::PostgresCircuitBreaker;
pub use queue::AttemptRecord;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Which schema holds the pipeline and how it behaves.
#[derive(Debug, Clone)]
#[must_use]
pub struct PostgresConfig {
    schema: String,
    max_connections: u32,
    completed_retention: Duration,
    attempt_retention: Duration,
    maintenance_interval: Duration,
    group_commit: bool,
    batches_in_flight: usize,
}

impl PostgresConfig {
    /// A pipeline in `schema` (lower-case letters, digits and `_`); processes
    /// sharing a schema share the pipeline.
    pub fn new(schema: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            max_connections: 10,
            completed_retention: Duration::from_secs(24 * 60 * 60),
            attempt_retention: Duration::from_secs(7 * 24 * 60 * 60),
            maintenance_interval: Duration::from_secs(30),
            group_commit: true,
            batches_in_flight: webhook_armor::batch::DEFAULT_IN_FLIGHT,
        }
    }

    /// Connections in the pool (default 10), plus one for LISTEN.
    pub fn max_connections(mut self, connections: u32) -> Self {
        self.max_connections = connections.max(2);
        self
    }

    /// How long completed jobs (their ids, to refuse duplicates), expired
    /// idempotency keys and attempt rows are kept (default 24 h).
    pub fn completed_retention(mut self, retention: Duration) -> Self {
        self.completed_retention = retention;
        self
    }

    /// How long outbound delivery attempts (the log behind
    /// `AttemptLog::for_message`, `for_endpoint` and endpoint stats) are
    /// kept, counted from each attempt's end (default 7 days). The
    /// maintenance task deletes older rows, so the log does not grow
    /// without bound.
    pub fn attempt_retention(mut self, retention: Duration) -> Self {
        self.attempt_retention = retention;
        self
    }

    /// How often the maintenance task prunes (default 30 s).
    pub fn maintenance_interval(mut self, interval: Duration) -> Self {
        self.maintenance_interval = interval;
        self
    }

    /// Batch concurrent enqueues and acks into one statement (default on).
    /// Off: one statement, one commit per call.
    pub fn group_commit(mut self, enabled: bool) -> Self {
        self.group_commit = enabled;
        self
    }

    /// With group commit, how many batches of one kind (enqueues, acks,
    /// delivery attempts) may be in flight at once (default
    /// [`DEFAULT_IN_FLIGHT`](webhook_armor::batch::DEFAULT_IN_FLIGHT), one).
    /// PostgreSQL flushes its WAL one commit after another, so on the
    /// machines we measured more batches only made each one smaller; a
    /// many-core server behind a network may do better with two or more.
    pub fn batches_in_flight(mut self, batches: usize) -> Self {
        self.batches_in_flight = batches.max(1);
        self
    }

    fn validate(&self) -> Result<()> {
        let valid = !self.schema.is_empty()
            && self.schema.len() <= 40
            && self
                .schema
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && !self.schema.as_bytes()[0].is_ascii_digit();
        if valid {
            Ok(())
        } else {
            Err(Error::InvalidInput(format!(
                "schema name {:?}: use 1-40 lower-case letters, digits and _, not starting with a digit",
                self.schema
            )))
        }
    }
}

/// One pipeline in PostgreSQL: implements
/// [`IdempotencyStore`](webhook_armor::IdempotencyStore),
/// [`Queue`](webhook_armor::Queue),
/// [`DeadLetterStore`](webhook_armor::DeadLetterStore) and
/// [`EventBus`](webhook_armor::EventBus). Cheap to clone.
#[derive(Clone)]
pub struct PostgresBackend {
    pool: PgPool,
    config: PostgresConfig,
    work_available: Arc<Notify>,
    /// Raised after new work is stored; the waker turns it into a NOTIFY.
    new_work: Arc<Notify>,
    enqueues: Option<mpsc::Sender<webhook_armor::batch::EnqueueRequest>>,
    acks: Option<mpsc::Sender<webhook_armor::batch::AckRequest>>,
    /// Group commit of delivery attempts, started on first use.
    #[cfg(feature = "deliver")]
    attempt_logger: Arc<std::sync::OnceLock<mpsc::Sender<delivery::AttemptRequest>>>,
    outgoing_events: mpsc::Sender<String>,
    /// Background tasks stop once every clone of the backend is gone.
    _alive: Arc<()>,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("schema", &self.config.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresBackend {
    /// Connects to `url`, creates the schema if needed, applies migrations and
    /// starts the background tasks (group commit, LISTEN, maintenance).
    pub async fn connect(url: &str, config: PostgresConfig) -> Result<Self> {
        config.validate()?;
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| Error::InvalidInput(format!("bad PostgreSQL URL: {e}")))?;
        let search_path = format!("SET search_path TO {}", config.schema);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |connection, _| {
                let search_path = search_path.clone();
                Box::pin(async move {
                    connection.execute(search_path.as_str()).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(backend)?;
        create_schema(&pool, &config.schema).await?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| Error::Backend(Box::new(e)))?;

        let alive = Arc::new(());
        let work_available = Arc::new(Notify::new());
        events::spawn_work_listener(
            pool.clone(),
            work_channel(&config.schema),
            work_available.clone(),
            Arc::downgrade(&alive),
        );
        maintenance::spawn(pool.clone(), config.clone(), Arc::downgrade(&alive));
        let new_work = batch::spawn_waker(
            pool.clone(),
            work_channel(&config.schema),
            Arc::downgrade(&alive),
        );
        let (enqueues, acks) = if config.group_commit {
            (
                Some(batch::spawn_enqueuer(
                    pool.clone(),
                    new_work.clone(),
                    config.batches_in_flight,
                )),
                Some(batch::spawn_acker(pool.clone(), config.batches_in_flight)),
            )
        } else {
            (None, None)
        };
        let outgoing_events = events::spawn_publisher(pool.clone(), events_channel(&config.schema));
        Ok(Self {
            pool,
            config,
            work_available,
            new_work,
            enqueues,
            acks,
            #[cfg(feature = "deliver")]
            attempt_logger: Arc::default(),
            outgoing_events,
            _alive: alive,
        })
    }

    /// The pool, for queries of your own on the pipeline's tables.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema holding this pipeline.
    pub fn schema(&self) -> &str {
        &self.config.schema
    }
}

async fn create_schema(pool: &PgPool, schema: &str) -> Result<()> {
    let statement = format!("CREATE SCHEMA IF NOT EXISTS {schema}");
    // Two processes creating the same schema at once can race inside
    // PostgreSQL's catalog (a unique violation); the second attempt sees it.
    for attempt in 0..3 {
        match pool.execute(statement.as_str()).await {
            Ok(_) => return Ok(()),
            Err(error) if attempt < 2 && is_unique_violation(&error) => continue,
            Err(error) => return Err(backend(error)),
        }
    }
    Ok(())
}

fn work_channel(schema: &str) -> String {
    format!("{schema}_work")
}

fn events_channel(schema: &str) -> String {
    format!("{schema}_events")
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Normalises sqlx errors to the core's kinds.
fn backend(error: sqlx::Error) -> Error {
    match error {
        sqlx::Error::Database(ref db) if db.is_unique_violation() => {
            Error::AlreadyExists(db.constraint().unwrap_or("row").to_owned())
        }
        sqlx::Error::RowNotFound => Error::NotFound("row".to_owned()),
        other => Error::Backend(Box::new(other)),
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
