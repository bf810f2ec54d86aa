//! Many tasks, connections and processes on one real Redis.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use webhook_armor::conformance::load;
use webhook_armor::queue::{NewJob, Queue};
use webhook_armor::{HandlerError, Job, Worker};

/// Counts handler runs per job id.
type Runs = Arc<Mutex<HashMap<String, u32>>>;

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
    let backend: Arc<dyn Queue> = Arc::new(common::backend("dedup").await);
    load::concurrent_deliveries_enqueue_once(backend, 10_000, 64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_workers_on_separate_connections_drain_20000_jobs_exactly_once() {
    let prefix = common::unique_prefix("drain");
    let connect = || async {
        Arc::new(common::backend_with(common::config(&prefix)).await) as Arc<dyn Queue>
    };
    load::workers_drain_exactly_once(connect, 20_000, 4).await;
}

/// Not a test on its own: the child process of the crash test. It leases
/// jobs and then hangs "mid-job" until the parent kills it with SIGKILL.
#[tokio::test]
#[ignore = "run by crash_test_a_killed_worker_loses_no_job as its child process"]
async fn crash_child_leases_and_hangs() {
    let prefix = std::env::var("WA_CRASH_PREFIX").expect("run by the crash test");
    let backend = common::backend_with(common::config(prefix)).await;
    let leases = backend.lease(1000, Duration::from_secs(2)).await.unwrap();
    println!("LEASED {}", leases.len());
    tokio::time::sleep(Duration::from_secs(120)).await;
    unreachable!("the parent kills this process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_test_a_killed_worker_loses_no_job() {
    let prefix = common::unique_prefix("crash");
    let backend = Arc::new(common::backend_with(common::config(&prefix)).await);
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

/// The scripts write a batch's ready ids, lease deadlines and acked ids in
/// chunks of 1,000 values per command; a lease of 1,200 jobs crosses that
/// (2,400 ZADD values). Every job must be leased, tracked and acked once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_larger_than_one_server_command_lose_no_job() {
    let backend = Arc::new(common::backend("chunks").await);
    let enqueues: Vec<_> = (0..1_500)
        .map(|i| {
            let backend = backend.clone();
            tokio::spawn(async move {
                backend
                    .enqueue(NewJob::new(format!("job_{i}"), b"{}".to_vec()))
                    .await
                    .unwrap()
            })
        })
        .collect();
    for enqueue in enqueues {
        enqueue.await.unwrap();
    }
    let stats = backend.stats().await.unwrap();
    assert_eq!(stats.ready, 1_500, "every enqueued id is on the ready list");

    let leases = backend.lease(1_200, Duration::from_secs(60)).await.unwrap();
    assert_eq!(leases.len(), 1_200);
    let mut ids: Vec<_> = leases.iter().map(|lease| lease.job.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1_200, "no job leased twice");
    assert!(leases.iter().all(|lease| lease.job.attempt == 1));
    let stats = backend.stats().await.unwrap();
    assert_eq!((stats.ready, stats.leased), (300, 1_200));

    let acks: Vec<_> = leases
        .into_iter()
        .map(|lease| {
            let backend = backend.clone();
            tokio::spawn(async move { backend.ack(&lease).await })
        })
        .collect();
    for ack in acks {
        ack.await.unwrap().unwrap();
    }
    let stats = backend.stats().await.unwrap();
    assert_eq!(
        (stats.ready, stats.leased),
        (300, 0),
        "every ack cleared its lease"
    );
    let rest = backend.lease(1_000, Duration::from_secs(60)).await.unwrap();
    assert_eq!(rest.len(), 300, "the others are still there, once each");
}
