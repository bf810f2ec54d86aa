//! Many tasks, connections and processes on one real Redis.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use webhook_armor::queue::{Enqueued, NewJob, Queue};
use webhook_armor::{HandlerError, Job, Worker};
use webhook_armor_redis::RedisConfig;

/// Counts handler runs per job id.
type Runs = Arc<Mutex<HashMap<String, u32>>>;

fn recording_handler(
    runs: Runs,
) -> impl tower::Service<Job, Response = (), Error = HandlerError, Future: Send> + Clone + Send + 'static
{
    tower::service_fn(move |job: Job| {
        *runs.lock().unwrap().entry(job.id).or_default() += 1;
        async { Ok::<(), HandlerError>(()) }
    })
}

async fn wait_for_runs(runs: &Runs, expected: usize, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while runs.lock().unwrap().len() < expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {expected} jobs ran",
            runs.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_concurrent_deliveries_of_one_id_enqueue_once() {
    let backend = Arc::new(common::backend("dedup").await);
    let start = Arc::new(tokio::sync::Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|task| {
            let backend = backend.clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let mut new = 0;
                // 10,000 deliveries over 64 tasks: 157 or 156 each.
                for _ in 0..(10_000 / 64 + usize::from(task < 10_000 % 64)) {
                    let job = NewJob::new("evt_contested", r#"{"n":1}"#);
                    if backend.enqueue(job).await.unwrap() == Enqueued::New {
                        new += 1;
                    }
                }
                new
            })
        })
        .collect();
    let mut enqueued = 0;
    for task in tasks {
        enqueued += task.await.unwrap();
    }
    assert_eq!(enqueued, 1, "exactly one of 10,000 deliveries enqueued");
    let stats = backend.stats().await.unwrap();
    assert_eq!(stats.ready, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_workers_on_separate_connections_drain_20000_jobs_exactly_once() {
    let prefix = common::unique_prefix("drain");
    let producer = Arc::new(common::backend_with(RedisConfig::new(&prefix)).await);
    let producers: Vec<_> = (0..16)
        .map(|p| {
            let producer = producer.clone();
            tokio::spawn(async move {
                for i in (p..20_000).step_by(16) {
                    let job = NewJob::new(format!("job-{i}"), "{}");
                    assert_eq!(producer.enqueue(job).await.unwrap(), Enqueued::New);
                }
            })
        })
        .collect();
    for task in producers {
        task.await.unwrap();
    }

    let runs: Runs = Arc::default();
    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut workers = Vec::new();
    for _ in 0..4 {
        // Each worker has its own connection, as separate processes would.
        let backend = Arc::new(common::backend_with(RedisConfig::new(&prefix)).await);
        let mut stopped = stop.subscribe();
        let worker = Worker::new(backend, recording_handler(runs.clone()))
            .concurrency(64)
            .batch_size(64);
        workers.push(tokio::spawn(worker.run(async move {
            let _ = stopped.recv().await;
        })));
    }
    wait_for_runs(&runs, 20_000, Duration::from_secs(180)).await;
    stop.send(()).unwrap();
    for worker in workers {
        worker.await.unwrap();
    }
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), 20_000);
    let repeated: Vec<_> = runs.iter().filter(|(_, n)| **n != 1).collect();
    assert!(repeated.is_empty(), "jobs run more than once: {repeated:?}");
    assert_eq!(producer.stats().await.unwrap().depth(), 0);
}

/// Not a test on its own: the child process of the crash test. It leases
/// jobs and then hangs "mid-job" until the parent kills it with SIGKILL.
#[tokio::test]
#[ignore = "run by crash_test_a_killed_worker_loses_no_job as its child process"]
async fn crash_child_leases_and_hangs() {
    let prefix = std::env::var("WA_CRASH_PREFIX").expect("run by the crash test");
    let backend = common::backend_with(RedisConfig::new(prefix)).await;
    let leases = backend.lease(1000, Duration::from_secs(2)).await.unwrap();
    println!("LEASED {}", leases.len());
    tokio::time::sleep(Duration::from_secs(120)).await;
    unreachable!("the parent kills this process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_test_a_killed_worker_loses_no_job() {
    let prefix = common::unique_prefix("crash");
    let backend = Arc::new(common::backend_with(RedisConfig::new(&prefix)).await);
    for i in 0..50 {
        backend
            .enqueue(NewJob::new(format!("job-{i}"), "{}"))
            .await
            .unwrap();
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "crash_child_leases_and_hangs",
            "--nocapture",
        ])
        .env("WA_CRASH_PREFIX", &prefix)
        .env("REDIS_URL", common::redis_url())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let leased_line = stdout
        .lines()
        .map(Result::unwrap)
        .find(|line| line.starts_with("LEASED"))
        .expect("child reports its leases");
    assert_eq!(leased_line, "LEASED 50");
    // SIGKILL: no destructor, no graceful anything.
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        backend.stats().await.unwrap().leased,
        50,
        "the dead process still holds the leases"
    );

    let runs: Runs = Arc::default();
    let attempts: Arc<Mutex<Vec<u32>>> = Arc::default();
    let handler = {
        let (runs, attempts) = (runs.clone(), attempts.clone());
        tower::service_fn(move |job: Job| {
            attempts.lock().unwrap().push(job.attempt);
            *runs.lock().unwrap().entry(job.id).or_default() += 1;
            async { Ok::<(), HandlerError>(()) }
        })
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(Worker::new(backend.clone(), handler).run(async {
        let _ = stopped.await;
    }));
    wait_for_runs(&runs, 50, Duration::from_secs(30)).await;
    stop.send(()).unwrap();
    worker.await.unwrap();
    assert!(runs.lock().unwrap().values().all(|n| *n == 1));
    assert!(
        attempts.lock().unwrap().iter().all(|a| *a == 2),
        "each job's second lease"
    );
    assert_eq!(backend.stats().await.unwrap().depth(), 0, "0 lost");
}
