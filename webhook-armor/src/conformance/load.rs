//! Heavier checks a backend crate runs in its own tests (not part of
//! `conformance_tests!`): many tasks and many connections at once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::queue::{Enqueued, NewJob, Queue};
use crate::{HandlerError, Job, Worker};

/// `deliveries` enqueues of one event id from `tasks` tasks started together:
/// exactly one is [`Enqueued::New`] and exactly one job is ready.
pub async fn concurrent_deliveries_enqueue_once(
    queue: Arc<dyn Queue>,
    deliveries: usize,
    tasks: usize,
) {
    let start = Arc::new(tokio::sync::Barrier::new(tasks));
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let (queue, start) = (queue.clone(), start.clone());
            // Spread the deliveries as evenly as they divide.
            let share = deliveries / tasks + usize::from(task < deliveries % tasks);
            tokio::spawn(async move {
                start.wait().await;
                let mut new = 0;
                for _ in 0..share {
                    let job = NewJob::new("evt_contested", r#"{"n":1}"#);
                    if queue.enqueue(job).await.unwrap() == Enqueued::New {
                        new += 1;
                    }
                }
                new
            })
        })
        .collect();
    let mut enqueued = 0;
    for handle in handles {
        enqueued += handle.await.unwrap();
    }
    assert_eq!(
        enqueued, 1,
        "exactly one of {deliveries} deliveries enqueued"
    );
    let stats = queue.stats().await.unwrap();
    assert_eq!(stats.ready, 1, "exactly one job stored");
}

/// Enqueues `jobs` jobs, then runs `workers` [`Worker`]s, each on its own
/// queue handle from `connect` (its own connection, as separate processes
/// would have), until all are done: every job must run exactly once.
pub async fn workers_drain_exactly_once<F, Fut>(connect: F, jobs: usize, workers: usize)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Queue>>,
{
    let producer = connect().await;
    let producers: Vec<_> = (0..16)
        .map(|p| {
            let producer = producer.clone();
            tokio::spawn(async move {
                for i in (p..jobs).step_by(16) {
                    let job = NewJob::new(format!("job-{i}"), "{}");
                    assert_eq!(producer.enqueue(job).await.unwrap(), Enqueued::New);
                }
            })
        })
        .collect();
    for producer in producers {
        producer.await.unwrap();
    }

    let runs: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut running = Vec::new();
    for _ in 0..workers {
        let queue = connect().await;
        let runs = runs.clone();
        let handler = tower::service_fn(move |job: Job| {
            *runs.lock().unwrap().entry(job.id).or_default() += 1;
            async { Ok::<(), HandlerError>(()) }
        });
        let mut stopped = stop.subscribe();
        let worker = Worker::new(queue, handler)
            .concurrency(64)
            .batch_size(64)
            .poll_interval(Duration::from_millis(100));
        running.push(tokio::spawn(worker.run(async move {
            let _ = stopped.recv().await;
        })));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let done = runs.lock().unwrap().len();
        if done == jobs && producer.stats().await.unwrap().depth() == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {done} of {jobs} jobs ran"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(()).unwrap();
    for worker in running {
        worker.await.unwrap();
    }
    let runs = runs.lock().unwrap().clone();
    assert_eq!(runs.len(), jobs);
    let repeated: Vec<_> = runs.iter().filter(|(_, n)| **n != 1).collect();
    assert!(repeated.is_empty(), "jobs run more than once: {repeated:?}");
}

/// Producers that behave like webhook senders through an outage: each job is
/// retried until the queue acknowledges it, and every backend error seen on
/// the way is kept.
#[derive(Debug)]
pub struct PersistentProducers {
    handles: Vec<tokio::task::JoinHandle<()>>,
    /// Ids the queue acknowledged.
    pub acknowledged: Arc<Mutex<std::collections::HashSet<String>>>,
    /// Backend errors returned meanwhile (any other error kind fails the test).
    pub errors: Arc<Mutex<Vec<String>>>,
}

impl PersistentProducers {
    /// Starts `producers` tasks enqueueing `per_producer` jobs each, giving
    /// up (failing) on a job not acknowledged within `patience`.
    pub fn start(
        queue: Arc<dyn Queue>,
        producers: usize,
        per_producer: usize,
        patience: Duration,
    ) -> Self {
        let acknowledged: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let handles = (0..producers)
            .map(|p| {
                let (queue, acknowledged, errors) =
                    (queue.clone(), acknowledged.clone(), errors.clone());
                tokio::spawn(async move {
                    for i in 0..per_producer {
                        let id = format!("job-{p}-{i}");
                        let deadline = tokio::time::Instant::now() + patience;
                        loop {
                            match queue.enqueue(NewJob::new(&id, "{}")).await {
                                Ok(_) => {
                                    acknowledged.lock().unwrap().insert(id);
                                    break;
                                }
                                Err(crate::Error::Backend(error)) => {
                                    errors.lock().unwrap().push(error.to_string());
                                    assert!(
                                        tokio::time::Instant::now() < deadline,
                                        "never recovered: {error}"
                                    );
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                }
                                Err(other) => panic!("unexpected error kind: {other}"),
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                })
            })
            .collect();
        Self {
            handles,
            acknowledged,
            errors,
        }
    }

    /// How many jobs were acknowledged so far.
    pub fn acknowledged_count(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    /// Waits for every producer; returns the acknowledged ids.
    pub async fn finish(self) -> std::collections::HashSet<String> {
        for handle in self.handles {
            handle.await.unwrap();
        }
        self.acknowledged.lock().unwrap().clone()
    }
}

/// Leases every job on the queue and returns their ids. A call failing
/// right after an outage is retried for up to `patience`: the backend
/// reports the broken connection once, then reconnects.
pub async fn drain_ids(queue: &dyn Queue, patience: Duration) -> std::collections::HashSet<String> {
    let mut stored = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match queue.lease(1000, Duration::from_secs(60)).await {
            Ok(leases) if leases.is_empty() => return stored,
            Ok(leases) => stored.extend(leases.into_iter().map(|l| l.job.id)),
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "never recovered: {error}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
