//! The server side of the load benchmark: the full inbound pipeline
//! (verify, replay window, dedupe, enqueue, 202; a worker completing every
//! job) on one backend, or the bare axum handler it is measured against.
//!
//! Both answer `GET /stats` with `{"completed": n, "rss_bytes": r}` so the
//! load generator can wait until the pipeline has really processed what it
//! acknowledged, and watch the process's memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use bytes::Bytes;
use webhook_armor::memory::{MemoryIdempotencyStore, MemoryQueue};
use webhook_armor::queue::Queue;
use webhook_armor::verify::StandardWebhooks;
use webhook_armor::{Enqueue, HandlerError, Job, WebhookArmorLayer, Worker};
use webhook_armor_postgres::{PostgresBackend, PostgresConfig};
use webhook_armor_redis::{RedisBackend, RedisConfig};

/// The secret every load run signs with; the server verifies with it.
pub const BENCH_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// What sits behind `POST /webhook`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A bare axum handler that reads the body and answers 202: the baseline.
    Bare,
    /// Guard mode: the layer (verify, replay window, in-memory idempotency
    /// claim) in front of a handler that answers 202 at once; no queue.
    Guard,
    /// The pipeline into the in-memory queue.
    Memory,
    /// The pipeline into Redis at this URL.
    Redis(String),
    /// The pipeline into PostgreSQL at this URL (group commit on).
    Postgres(String),
}

impl Target {
    /// Parses `bare`, `memory`, `redis` or `postgres`; the URLs come from
    /// `REDIS_URL` / `DATABASE_URL` or the local defaults.
    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "bare" => Ok(Self::Bare),
            "guard" => Ok(Self::Guard),
            "memory" => Ok(Self::Memory),
            "redis" => Ok(Self::Redis(crate::redis_url())),
            "postgres" => Ok(Self::Postgres(crate::database_url())),
            other => Err(format!(
                "unknown target {other:?}: use bare, guard, memory, redis or postgres"
            )),
        }
    }
}

/// How the pipeline server is tuned.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// How long completed ids are remembered (the dedupe TTL).
    pub completed_retention: Duration,
    /// Jobs one worker runs at once.
    pub worker_concurrency: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            completed_retention: Duration::from_secs(60),
            worker_concurrency: 256,
        }
    }
}

/// A running pipeline: its router and what must be cleaned up at the end.
#[derive(Debug)]
pub struct Pipeline {
    /// `POST /webhook` and `GET /stats`.
    pub router: Router,
    /// The PostgreSQL schema to drop on shutdown, if any.
    pub schema_to_drop: Option<(String, String)>,
    /// The Redis key prefix to delete on shutdown, if any.
    pub prefix_to_delete: Option<(String, String)>,
    /// The queue the API enqueues into and the worker's own connection to it
    /// (separate connections, as separate processes would have).
    queues: Option<(Arc<dyn Queue>, Arc<dyn Queue>)>,
    completed: Arc<AtomicU64>,
}

impl Pipeline {
    /// Builds the server for `target`; a backend that cannot be reached is an error.
    pub async fn build(target: &Target, options: &ServerOptions) -> Result<Self, String> {
        let completed = Arc::new(AtomicU64::new(0));
        let run = crate::run_id();
        let mut schema_to_drop = None;
        let mut prefix_to_delete = None;
        let queues: Option<(Arc<dyn Queue>, Arc<dyn Queue>)> = match target {
            Target::Bare | Target::Guard => None,
            Target::Memory => {
                let queue =
                    Arc::new(MemoryQueue::new().completed_retention(options.completed_retention));
                Some((queue.clone(), queue))
            }
            Target::Redis(url) => {
                let prefix = format!("bench-load-{run}");
                prefix_to_delete = Some((url.clone(), prefix.clone()));
                let config =
                    RedisConfig::new(prefix).completed_retention(options.completed_retention);
                let connect = || async {
                    RedisBackend::connect(url, config.clone())
                        .await
                        .map_err(|error| format!("Redis at {url} unreachable: {error}"))
                };
                Some((Arc::new(connect().await?), Arc::new(connect().await?)))
            }
            Target::Postgres(url) => {
                let schema = format!("bench_load_{run}");
                let config =
                    PostgresConfig::new(&schema).completed_retention(options.completed_retention);
                let connect = |connections| {
                    let config = config.clone().max_connections(connections);
                    async move {
                        PostgresBackend::connect(url, config)
                            .await
                            .map_err(|error| format!("PostgreSQL at {url} unreachable: {error}"))
                    }
                };
                let api = connect(32).await?;
                schema_to_drop = Some((url.clone(), schema));
                Some((Arc::new(api), Arc::new(connect(8).await?)))
            }
        };
        let stats = get(stats).with_state(completed.clone());
        let counter = completed.clone();
        let bare = post(move |_body: Bytes| async move {
            counter.fetch_add(1, Ordering::Relaxed);
            StatusCode::ACCEPTED
        });
        let router = match &queues {
            None if *target == Target::Guard => {
                let verifier = StandardWebhooks::new([BENCH_SECRET]).expect("a whsec_ secret");
                let idempotency = MemoryIdempotencyStore::default();
                Router::new().route(
                    "/webhook",
                    bare.layer(
                        WebhookArmorLayer::new(verifier)
                            .idempotency(Arc::new(idempotency))
                            .completed_ttl(options.completed_retention),
                    ),
                )
            }
            None => Router::new().route("/webhook", bare),
            Some((queue, _)) => {
                let verifier = StandardWebhooks::new([BENCH_SECRET]).expect("a whsec_ secret");
                Router::new().route_service(
                    "/webhook",
                    tower::ServiceBuilder::new()
                        // The queue refuses duplicate ids itself.
                        .layer(WebhookArmorLayer::new(verifier).without_idempotency())
                        .service(Enqueue::new(queue.clone())),
                )
            }
        }
        .route("/stats", stats);
        Ok(Self {
            router,
            schema_to_drop,
            prefix_to_delete,
            queues,
            completed,
        })
    }

    /// Starts the worker that completes every queued job, counting each, until
    /// `shutdown`; `None` for the bare target, which counts in its handler.
    pub fn spawn_worker(
        &self,
        options: &ServerOptions,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let queue = self.queues.as_ref()?.1.clone();
        let completed = self.completed.clone();
        let worker = Worker::new(
            queue,
            tower::service_fn(move |_job: Job| {
                completed.fetch_add(1, Ordering::Relaxed);
                std::future::ready(Ok::<(), HandlerError>(()))
            }),
        )
        .concurrency(options.worker_concurrency)
        .batch_size(256);
        Some(tokio::spawn(worker.run(shutdown)))
    }

    /// Drops the PostgreSQL schema or Redis keys this run created, leaving
    /// the database as found.
    pub async fn clean_up(&self) {
        if let Some((url, prefix)) = &self.prefix_to_delete {
            crate::delete_redis_prefix(url, prefix).await;
        }
        if let Some((url, schema)) = &self.schema_to_drop
            && let Ok(pool) = sqlx::PgPool::connect(url).await
        {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .execute(&pool)
                .await;
        }
    }
}

async fn stats(State(completed): State<Arc<AtomicU64>>) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "completed": completed.load(Ordering::Relaxed),
        "rss_bytes": resident_set_bytes(),
    }))
}

/// This process's resident set size, from `/proc/self/status` (0 where
/// there is no procfs).
pub fn resident_set_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
