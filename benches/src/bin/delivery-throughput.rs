//! Outbound delivery throughput to a local receiver; prints one JSON line.
//!
//! ```sh
//! cargo run --release -p webhook-armor-benches --bin delivery-throughput -- memory 50000
//! cargo run --release -p webhook-armor-benches --bin delivery-throughput -- redis 50000
//! cargo run --release -p webhook-armor-benches --bin delivery-throughput -- postgres 20000
//! ```
//!
//! N signed messages are fanned out to one endpoint and delivered by a worker
//! (queue, breaker, attempt log, Standard Webhooks signing, SSRF-guarded
//! client). Redis and PostgreSQL read endpoints through a
//! `CachedEndpointStore` (1 s). The baseline, in the same run, POSTs the same number of unsigned
//! bodies straight through a hyper client at the same concurrency: the
//! receiver's and the loopback's own cost.
//!
//! Beside the rates: the whole machine's busy CPU time per delivery and per
//! bare POST (bench, receiver, Redis or PostgreSQL, kernel; steal excluded)
//! and the share the hypervisor took, which make runs on a slow and a fast
//! machine comparable.
//!
//! With `BENCH_KEEP_KEYS` set, a Redis run leaves its keys behind (for a
//! throw-away server, as `benches/redis-instructions.sh` uses).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use webhook_armor::deliver::{
    AttemptLog, BreakerConfig, CachedEndpointStore, CircuitBreaker, DeliveryClient,
    DeliveryHandler, Dispatcher, EndpointStore, NewEndpoint, SsrfPolicy,
};
use webhook_armor::memory::{
    MemoryAttemptLog, MemoryCircuitBreaker, MemoryEndpointStore, MemoryQueue,
};
use webhook_armor::queue::Queue;
use webhook_armor::{RetryPolicy, Worker};

/// Deliveries the worker runs at once (and bare POSTs the baseline keeps in
/// flight), per store: as a deployment would size it. A delivery holds its
/// slot until its attempt is logged (its ack is recorded outside the slot);
/// against a shared store that waits for a group commit, so the slower the
/// store's commits, the more deliveries it takes to keep the cores busy. Swept back
/// to back on 2026-12-02 (deliveries/s, two rounds each): PostgreSQL 256:
/// 7,600-8,200, 512: 9,100-9,900, 768: 10,500-10,600, 1,024:
/// 10,200-11,500; Redis 256: 12,500-14,400, 512: 14,000-15,100, 768:
/// 14,500-15,500; memory 256: 37,600-39,800, 768: 27,500-29,600 (more tasks
/// than it needs only cost it).
///
/// `DELIVERY_CONCURRENCY` overrides it, for sweeps.
fn concurrency(backend: &str) -> usize {
    if let Some(sweep) = std::env::var("DELIVERY_CONCURRENCY")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        return sweep;
    }
    match backend {
        "postgres" => 1024,
        "redis" => 768,
        _ => 256,
    }
}
/// Tasks sending messages, each waiting for its send before the next: with
/// 32, PostgreSQL's enqueues (one group commit each) could not keep its
/// worker busy, and the bench measured the senders (5,600 against 6,800
/// deliveries/s back to back).
const SENDERS: usize = 256;
/// Shared backends read endpoints through a cache, as a deployment would:
/// other processes' endpoint changes show within this long.
const ENDPOINT_TTL: Duration = Duration::from_secs(1);
use webhook_armor_benches::{MachineCpu, PAYLOAD};

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let backend = args.next().unwrap_or_else(|| "memory".into());
    let messages: usize = args
        .next()
        .map_or(50_000, |n| n.parse().expect("message count"));
    let concurrency = concurrency(&backend);
    let received = Arc::new(AtomicUsize::new(0));
    let url = start_receiver(received.clone()).await;
    let run = webhook_armor_benches::run_id();

    type Stores = (
        Arc<dyn Queue>,
        Arc<dyn EndpointStore>,
        Arc<dyn CircuitBreaker>,
        Arc<dyn AttemptLog>,
    );
    let (queue, endpoints, breaker, attempts): Stores = match backend.as_str() {
        "memory" => (
            Arc::new(MemoryQueue::new().completed_retention(Duration::from_secs(5))),
            Arc::new(MemoryEndpointStore::default()),
            Arc::new(MemoryCircuitBreaker::new(BreakerConfig::default())),
            Arc::new(MemoryAttemptLog::new(100_000)),
        ),
        "redis" => {
            let url = webhook_armor_benches::redis_url();
            let config = webhook_armor_redis::RedisConfig::new(format!("bench-delivery-{run}"))
                .completed_retention(Duration::from_secs(60));
            let redis = webhook_armor_redis::RedisBackend::connect(&url, config)
                .await
                .expect("Redis reachable");
            let breaker = Arc::new(redis.circuit_breaker(BreakerConfig::default()));
            let endpoints = Arc::new(CachedEndpointStore::new(redis.clone(), ENDPOINT_TTL));
            let redis = Arc::new(redis);
            (redis.clone(), endpoints, breaker, redis)
        }
        "postgres" => {
            let url = webhook_armor_benches::database_url();
            let config = webhook_armor_postgres::PostgresConfig::new(format!("bench_{run}"))
                .max_connections(16);
            let postgres = webhook_armor_postgres::PostgresBackend::connect(&url, config)
                .await
                .expect("PostgreSQL reachable");
            let breaker = Arc::new(postgres.circuit_breaker(BreakerConfig::default()));
            let endpoints = Arc::new(CachedEndpointStore::new(postgres.clone(), ENDPOINT_TTL));
            let postgres = Arc::new(postgres);
            (postgres.clone(), endpoints, breaker, postgres)
        }
        other => panic!("unknown backend {other}; use memory, redis or postgres"),
    };
    let endpoint = endpoints
        .create(NewEndpoint::new("bench", &url))
        .await
        .unwrap();
    let dispatcher = Dispatcher::new(endpoints.clone(), queue.clone());
    let policy = SsrfPolicy::default().allow("127.0.0.1/32").unwrap();
    let handler = DeliveryHandler::new(endpoints, breaker, attempts, DeliveryClient::new(policy));

    let started = Instant::now();
    let cpu = MachineCpu::now();
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (dispatcher, endpoint_id) = (dispatcher.clone(), endpoint.id.clone());
            tokio::spawn(async move {
                for i in (s..messages).step_by(SENDERS) {
                    dispatcher
                        .send(
                            &format!("msg_{i}"),
                            "invoice.paid",
                            Bytes::from_static(PAYLOAD),
                            Some(&endpoint_id),
                        )
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(
        Worker::new(queue.clone(), handler)
            .concurrency(concurrency)
            .batch_size(256)
            .poll_interval(Duration::from_millis(5))
            .retry_policy(RetryPolicy::default())
            .run(async {
                let _ = stopped.await;
            }),
    );
    for sender in senders {
        sender.await.unwrap();
    }
    let sent = started.elapsed();
    while received.load(Ordering::Relaxed) < messages || queue.stats().await.unwrap().depth() > 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let delivery_cpu = MachineCpu::since(cpu);
    let _ = stop.send(());
    worker.await.unwrap();
    let rate = messages as f64 / elapsed.as_secs_f64();

    let cpu = MachineCpu::now();
    let baseline = bare_posts(&url, messages, concurrency).await;
    let baseline_cpu = MachineCpu::since(cpu);
    let baseline_rate = messages as f64 / baseline.as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "bench": "delivery-throughput",
            "backend": backend,
            "messages": messages,
            "concurrency": concurrency,
            "deliveries_per_second": rate.round(),
            "senders": SENDERS,
            "sent_per_second": (messages as f64 / sent.as_secs_f64()).round(),
            "machine_cpu_us_per_delivery": delivery_cpu.us_per(messages),
            "bench_process_cpu_us_per_delivery": delivery_cpu.this_process_us_per(messages),
            "steal_percent": delivery_cpu.steal_percent.round(),
            "baseline": "unsigned POSTs through a bare hyper client, same concurrency",
            "baseline_posts_per_second": baseline_rate.round(),
            "baseline_machine_cpu_us_per_post": baseline_cpu.us_per(messages),
            "baseline_steal_percent": baseline_cpu.steal_percent.round(),
            "ratio_to_baseline_percent": (rate / baseline_rate * 100.0).round(),
        })
    );
    if backend == "redis" && std::env::var_os("BENCH_KEEP_KEYS").is_none() {
        // The attempt log and endpoints keep no TTL short enough to rely on.
        // (benches/redis-instructions.sh keeps them: its server is thrown
        // away, and deleting would be counted as delivery work.)
        let url = webhook_armor_benches::redis_url();
        webhook_armor_benches::delete_redis_prefix(&url, &format!("bench-delivery-{run}")).await;
    }
    if backend == "postgres" {
        let url = webhook_armor_benches::database_url();
        if let Ok(pool) = sqlx::PgPool::connect(&url).await {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS bench_{run} CASCADE"))
                .execute(&pool)
                .await;
        }
    }
}

/// A minimal receiver on 127.0.0.1 that counts POSTs and answers 204.
async fn start_receiver(received: Arc<AtomicUsize>) -> String {
    let app = axum::Router::new().fallback(move || {
        received.fetch_add(1, Ordering::Relaxed);
        async { axum::http::StatusCode::NO_CONTENT }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// The baseline: the same POSTs without queue, signing, breaker or log.
async fn bare_posts(url: &str, count: usize, concurrency: usize) -> Duration {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, next, url) = (client.clone(), next.clone(), url.to_owned());
            tokio::spawn(async move {
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let request = hyper::Request::post(&url)
                        .body(Full::new(Bytes::from_static(PAYLOAD)))
                        .unwrap();
                    let response = client.request(request).await.unwrap();
                    assert!(response.status().is_success());
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}
