//! End-to-end queue throughput: producers enqueue N jobs while workers lease
//! them in batches and ack each one; prints one JSON line per run.
//!
//! ```sh
//! cargo run --release -p webhook-armor-benches --bin queue-throughput -- redis 100000
//! cargo run --release -p webhook-armor-benches --bin queue-throughput -- memory 100000
//! cargo run --release -p webhook-armor-benches --bin queue-throughput -- postgres 100000
//! cargo run --release -p webhook-armor-benches --bin queue-throughput -- postgres-unbatched 20000
//! ```
//!
//! `postgres` batches concurrent enqueues and acks (group commit, the
//! default); `postgres-unbatched` commits each enqueue and ack on its own.
//!
//! The `redis` run also measures a baseline in the same process: the same
//! number of jobs through a bare Redis list (RPUSH, LPOP, DEL, no atomicity,
//! no leases, no fencing), so the price of crash safety is a ratio, not a guess.
//! The PostgreSQL runs do the same against a bare table: one INSERT (one
//! commit) per job, batches taken with `DELETE .. FOR UPDATE SKIP LOCKED`,
//! no leases, no fencing, no attempt log, no ids kept for deduplication.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use webhook_armor::memory::MemoryQueue;
use webhook_armor::queue::{NewJob, Queue};
use webhook_armor_postgres::{PostgresBackend, PostgresConfig};
use webhook_armor_redis::{RedisBackend, RedisConfig};

/// Concurrent producers (like concurrent HTTP requests); env `PRODUCERS` overrides.
fn producers() -> usize {
    std::env::var("PRODUCERS")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(32)
}
const WORKERS: usize = 4;
const BATCH: usize = 256;
use webhook_armor_benches::PAYLOAD;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let backend = args.next().unwrap_or_else(|| "memory".into());
    let jobs: usize = args
        .next()
        .map_or(100_000, |n| n.parse().expect("job count"));
    let url = webhook_armor_benches::redis_url();
    let run = webhook_armor_benches::run_id();

    let (queue, connections): (Arc<dyn Queue>, Vec<Arc<dyn Queue>>) = match backend.as_str() {
        "memory" => {
            let queue = Arc::new(MemoryQueue::new().completed_retention(Duration::from_secs(5)));
            (
                queue.clone(),
                (0..WORKERS)
                    .map(|_| queue.clone() as Arc<dyn Queue>)
                    .collect(),
            )
        }
        "redis" => {
            let config = RedisConfig::new(format!("bench-{run}"))
                .completed_retention(Duration::from_secs(60));
            let producer = Arc::new(
                RedisBackend::connect(&url, config.clone())
                    .await
                    .expect("Redis reachable"),
            );
            let mut workers: Vec<Arc<dyn Queue>> = Vec::new();
            for _ in 0..WORKERS {
                // One connection per worker, as separate processes would have.
                workers.push(Arc::new(
                    RedisBackend::connect(&url, config.clone())
                        .await
                        .expect("Redis reachable"),
                ));
            }
            (producer, workers)
        }
        "postgres" | "postgres-unbatched" => {
            let url = webhook_armor_benches::database_url();
            let config = PostgresConfig::new(format!("bench_{run}"))
                .max_connections(32)
                .group_commit(backend == "postgres");
            let producer = Arc::new(
                PostgresBackend::connect(&url, config.clone())
                    .await
                    .expect("PostgreSQL reachable"),
            );
            let mut workers: Vec<Arc<dyn Queue>> = Vec::new();
            for _ in 0..WORKERS {
                workers.push(Arc::new(
                    PostgresBackend::connect(&url, config.clone().max_connections(4))
                        .await
                        .expect("PostgreSQL reachable"),
                ));
            }
            (producer, workers)
        }
        other => {
            panic!("unknown backend {other}; use memory, redis, postgres or postgres-unbatched")
        }
    };

    if std::env::var_os("PHASES").is_some() {
        // Diagnostic (env PHASES=1): enqueue everything first, then drain,
        // timing each phase on its own.
        let started = Instant::now();
        for task in spawn_producers(&queue, jobs) {
            task.await.unwrap();
        }
        let enqueue = started.elapsed();
        let drain = pipeline(queue.clone(), connections, jobs, false).await;
        println!(
            "{}",
            serde_json::json!({
                "backend": backend,
                "enqueue_jobs_per_second": (jobs as f64 / enqueue.as_secs_f64()).round(),
                "lease_ack_jobs_per_second": (jobs as f64 / drain.as_secs_f64()).round(),
            })
        );
        return;
    }
    let (elapsed, windows) = pipeline_with_windows(queue, connections, jobs, true).await;
    let rate = jobs as f64 / elapsed.as_secs_f64();
    let mut report = serde_json::json!({
        "bench": "queue-throughput",
        "backend": backend,
        "jobs": jobs,
        "producers": producers(),
        "workers": WORKERS,
        "lease_batch": BATCH,
        "seconds": elapsed.as_secs_f64(),
        "jobs_per_second": rate.round(),
        "acks_per_second_by_tenth": windows,
        "last_tenth_vs_first_percent": match (windows.first(), windows.last()) {
            (Some(first), Some(last)) if *first > 0.0 => (last / first * 100.0).round(),
            _ => 0.0,
        },
    });
    if backend == "redis" {
        let baseline = bare_redis_list(&url, &format!("bench-bare-{run}"), jobs).await;
        let baseline_rate = jobs as f64 / baseline.as_secs_f64();
        report["baseline"] = "bare Redis list: RPUSH + LPOP + DEL per job, same concurrency".into();
        report["baseline_jobs_per_second"] = baseline_rate.round().into();
        report["ratio_to_baseline"] = ((rate / baseline_rate) * 100.0).round().into();
    }
    if backend.starts_with("postgres") {
        let url = webhook_armor_benches::database_url();
        let baseline = bare_postgres_table(&url, &format!("bench_bare_{run}"), jobs).await;
        let baseline_rate = jobs as f64 / baseline.as_secs_f64();
        report["baseline"] =
            "bare PostgreSQL table: INSERT per job (one commit each), DELETE .. SKIP LOCKED per batch, same concurrency"
                .into();
        report["baseline_jobs_per_second"] = baseline_rate.round().into();
        report["ratio_to_baseline"] = ((rate / baseline_rate) * 100.0).round().into();
    }
    println!("{report}");
    if backend == "redis" {
        webhook_armor_benches::delete_redis_prefix(&url, &format!("bench-{run}")).await;
    }
    if backend.starts_with("postgres") {
        // Leave the database as we found it.
        let url = webhook_armor_benches::database_url();
        if let Ok(pool) = sqlx::PgPool::connect(&url).await {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS bench_{run} CASCADE"))
                .execute(&pool)
                .await;
        }
    }
}

/// Tasks enqueueing `jobs` jobs between them.
fn spawn_producers(queue: &Arc<dyn Queue>, jobs: usize) -> Vec<tokio::task::JoinHandle<()>> {
    let count = producers();
    (0..count)
        .map(|p| {
            let queue = queue.clone();
            tokio::spawn(async move {
                for i in (p..jobs).step_by(count) {
                    queue
                        .enqueue(NewJob::new(format!("job-{i}"), PAYLOAD))
                        .await
                        .expect("enqueue");
                }
            })
        })
        .collect()
}

/// Enqueue `jobs` from the producer tasks while WORKERS lease and ack; the time
/// until the last ack.
async fn pipeline(
    producer: Arc<dyn Queue>,
    workers: Vec<Arc<dyn Queue>>,
    jobs: usize,
    produce: bool,
) -> Duration {
    pipeline_with_windows(producer, workers, jobs, produce)
        .await
        .0
}

/// The pipeline, also timing each tenth of the acks: a queue whose dead rows
/// pile up slows down as the run goes on, which the tenths show.
async fn pipeline_with_windows(
    producer: Arc<dyn Queue>,
    workers: Vec<Arc<dyn Queue>>,
    jobs: usize,
    produce: bool,
) -> (Duration, Vec<f64>) {
    let acked = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let sampler = {
        let acked = acked.clone();
        tokio::spawn(async move {
            let tenth = (jobs / 10).max(1);
            let mut rates: Vec<f64> = Vec::new();
            let mut window_start = Instant::now();
            while rates.len() < 10 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let done = (acked.load(Ordering::Relaxed) / tenth).min(10);
                if done > rates.len() {
                    // Tenths finished since the last sample share its rate.
                    let crossed = done - rates.len();
                    let rate = (crossed * tenth) as f64 / window_start.elapsed().as_secs_f64();
                    rates.extend(std::iter::repeat_n(rate.round(), crossed));
                    window_start = Instant::now();
                }
            }
            rates
        })
    };
    let producers = if produce {
        spawn_producers(&producer, jobs)
    } else {
        Vec::new()
    };
    let consumers: Vec<_> = workers
        .into_iter()
        .map(|queue| {
            let acked = acked.clone();
            tokio::spawn(async move {
                while acked.load(Ordering::Relaxed) < jobs {
                    let leases = queue
                        .lease(BATCH, Duration::from_secs(60))
                        .await
                        .expect("lease");
                    if leases.is_empty() {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                    // Acks of one batch go out together and pipeline on the connection.
                    let acks = leases.iter().map(|lease| queue.ack(lease));
                    for result in futures_util::future::join_all(acks).await {
                        result.expect("ack");
                    }
                    acked.fetch_add(leases.len(), Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in producers.into_iter().chain(consumers) {
        task.await.unwrap();
    }
    let elapsed = start.elapsed();
    (elapsed, sampler.await.unwrap_or_default())
}

/// The same flow through a bare PostgreSQL table: what the database does for
/// a durable FIFO with one commit per job and nothing else (no leases, so a
/// crashed consumer loses its batch; no fencing; no attempt log; no ids kept
/// to refuse duplicates). Same producers, workers and batch size as the run.
async fn bare_postgres_table(url: &str, schema: &str, jobs: usize) -> Duration {
    use sqlx::postgres::PgPoolOptions;
    let table = format!("{schema}.jobs");
    let connect = |connections: u32| {
        PgPoolOptions::new()
            .max_connections(connections)
            .connect(url)
    };
    let setup = connect(1).await.expect("PostgreSQL reachable");
    for statement in [
        format!("CREATE SCHEMA {schema}"),
        format!(
            "CREATE TABLE {table} (id text COLLATE \"C\" PRIMARY KEY, seq bigserial NOT NULL, payload bytea NOT NULL)"
        ),
        format!("CREATE INDEX ON {table} (seq)"),
    ] {
        sqlx::query(&statement).execute(&setup).await.unwrap();
    }
    let insert =
        format!("INSERT INTO {table} (id, payload) VALUES ($1, $2) ON CONFLICT DO NOTHING");
    let take = format!(
        "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING id"
    );
    // As in the run: the producers share one pool of 32, each worker has its own.
    let producer = connect(32).await.expect("PostgreSQL reachable");
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let count = producers();
    let producers: Vec<_> = (0..count)
        .map(|p| {
            let (pool, insert) = (producer.clone(), insert.clone());
            tokio::spawn(async move {
                for i in (p..jobs).step_by(count) {
                    sqlx::query(&insert)
                        .bind(format!("job-{i}"))
                        .bind(PAYLOAD)
                        .execute(&pool)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let mut consumers = Vec::new();
    for _ in 0..WORKERS {
        let pool = connect(1).await.expect("PostgreSQL reachable");
        let (take, done) = (take.clone(), done.clone());
        consumers.push(tokio::spawn(async move {
            while done.load(Ordering::Relaxed) < jobs {
                let taken = sqlx::query(&take)
                    .bind(i64::try_from(BATCH).unwrap())
                    .fetch_all(&pool)
                    .await
                    .unwrap();
                if taken.is_empty() {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                }
                done.fetch_add(taken.len(), Ordering::Relaxed);
            }
        }));
    }
    for task in producers.into_iter().chain(consumers) {
        task.await.unwrap();
    }
    let elapsed = start.elapsed();
    let _ = sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&setup)
        .await;
    elapsed
}

/// The same flow through a plain Redis list: what Redis does with no
/// guarantees beyond the list itself.
async fn bare_redis_list(url: &str, key: &str, jobs: usize) -> Duration {
    let client = redis::Client::open(url).unwrap();
    let producer = client.get_multiplexed_async_connection().await.unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let producers: Vec<_> = (0..producers())
        .map(|p| {
            let mut connection = producer.clone();
            let key = key.to_owned();
            tokio::spawn(async move {
                for i in (p..jobs).step_by(producers()) {
                    let _: () = redis::cmd("RPUSH")
                        .arg(&key)
                        .arg(format!("job-{i}"))
                        .query_async(&mut connection)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let mut consumers = Vec::new();
    for _ in 0..WORKERS {
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let (key, done) = (key.to_owned(), done.clone());
        consumers.push(tokio::spawn(async move {
            while done.load(Ordering::Relaxed) < jobs {
                let ids: Option<Vec<String>> = redis::cmd("LPOP")
                    .arg(&key)
                    .arg(BATCH)
                    .query_async(&mut connection)
                    .await
                    .unwrap();
                let Some(ids) = ids else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    continue;
                };
                let deletes = ids.iter().map(|id| {
                    let mut connection = connection.clone();
                    let item = format!("{key}:{id}");
                    async move {
                        redis::cmd("DEL")
                            .arg(item)
                            .query_async::<()>(&mut connection)
                            .await
                    }
                });
                for result in futures_util::future::join_all(deletes).await {
                    result.unwrap();
                }
                done.fetch_add(ids.len(), Ordering::Relaxed);
            }
        }));
    }
    for task in producers.into_iter().chain(consumers) {
        task.await.unwrap();
    }
    start.elapsed()
}
