//! The worker against the memory queue, on a paused tokio clock: no real sleeps.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::oneshot;
use tokio::time::Instant;
use webhook_armor::dead_letter::{DeadLetterState, DeadLetterStore, Replayed};
use webhook_armor::events::{EventBus, EventStream, LifecycleState};
use webhook_armor::memory::{MemoryEventBus, MemoryQueue};
use webhook_armor::queue::{NewJob, Queue};
use webhook_armor::{Error, HandlerError, Job, RetryPolicy, Worker};

struct Harness {
    queue: Arc<MemoryQueue>,
    events: EventStream,
    bus: Arc<MemoryEventBus>,
    stop: Option<oneshot::Sender<()>>,
    worker: Option<tokio::task::JoinHandle<()>>,
}

impl Harness {
    fn new() -> Self {
        let bus = Arc::new(MemoryEventBus::default());
        Self {
            queue: Arc::new(MemoryQueue::new()),
            events: bus.subscribe(),
            bus,
            stop: None,
            worker: None,
        }
    }

    /// Starts a worker with `handler`, configured by `configure`.
    fn start<S>(&mut self, handler: S, configure: impl FnOnce(Worker<S>) -> Worker<S>)
    where
        S: tower::Service<Job, Response = ()> + Clone + Send + 'static,
        S::Error: Into<webhook_armor::BoxError> + Send + 'static,
        S::Future: Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        let worker = configure(Worker::new(self.queue.clone(), handler).events(self.bus.clone()));
        self.worker = Some(tokio::spawn(worker.run(async {
            let _ = stopped.await;
        })));
        self.stop = Some(stop);
    }

    async fn shutdown(&mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.worker.take().unwrap().await.unwrap();
    }

    /// The next events' (state, attempt) until one in `until` arrives.
    async fn states_until(&mut self, until: LifecycleState) -> Vec<(LifecycleState, u32)> {
        let mut seen = Vec::new();
        loop {
            let event = self.events.next().await.expect("bus open");
            seen.push((event.state, event.attempt.unwrap_or(0)));
            if event.state == until {
                return seen;
            }
        }
    }
}

/// A handler failing its first `failures` calls with "boom {call}".
fn failing_first(
    failures: u32,
    calls: Arc<AtomicU32>,
) -> impl tower::Service<Job, Response = (), Error = HandlerError, Future: Send> + Clone + Send {
    tower::service_fn(move |_job: Job| {
        let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if call <= failures {
                Err(HandlerError::retry(format!("boom {call}")))
            } else {
                Ok(())
            }
        }
    })
}

use LifecycleState::{Completed, DeadLettered, Processing, Retrying};

#[tokio::test(start_paused = true)]
async fn a_job_failing_twice_completes_on_attempt_three_after_backoff() {
    let mut harness = Harness::new();
    let calls = Arc::new(AtomicU32::new(0));
    harness.start(failing_first(2, calls.clone()), |w| w);
    let started = Instant::now();
    harness
        .queue
        .enqueue(NewJob::new("evt_1", "{}"))
        .await
        .unwrap();

    let states = harness.states_until(Completed).await;
    assert_eq!(
        states,
        [
            (Processing, 1),
            (Retrying, 1),
            (Processing, 2),
            (Retrying, 2),
            (Processing, 3),
            (Completed, 3)
        ]
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2 + 4),
        "2^n s backoff was waited"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(harness.queue.stats().await.unwrap().depth(), 0);
    harness.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_job_that_always_fails_is_dead_lettered_then_replayed_exactly_once() {
    let mut harness = Harness::new();
    let calls = Arc::new(AtomicU32::new(0));
    let healed = Arc::new(AtomicBool::new(false));
    let handler = {
        let (calls, healed) = (calls.clone(), healed.clone());
        tower::service_fn(move |_job: Job| {
            let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
            let healed = healed.load(Ordering::SeqCst);
            async move {
                if healed {
                    Ok(())
                } else {
                    Err(HandlerError::retry(format!("boom {call}")))
                }
            }
        })
    };
    harness.start(handler, |w| w);
    harness
        .queue
        .enqueue(NewJob::new("evt_1", "{}"))
        .await
        .unwrap();

    let states = harness.states_until(DeadLettered).await;
    assert_eq!(states.last(), Some(&(DeadLettered, 3)));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    let letter = harness
        .queue
        .get("evt_1")
        .await
        .unwrap()
        .expect("dead-lettered");
    assert_eq!((letter.attempts, letter.reason.as_str()), (3, "boom 3"));

    // The downstream is fixed; the operator replays the dead letter twice.
    healed.store(true, Ordering::SeqCst);
    assert_eq!(
        harness.queue.replay("evt_1").await.unwrap(),
        Replayed::Requeued
    );
    assert_eq!(
        harness.queue.replay("evt_1").await.unwrap(),
        Replayed::AlreadyReplayed
    );
    assert_eq!(
        harness.states_until(Completed).await,
        [(Processing, 1), (Completed, 1)]
    );
    // Nothing else arrives: the job ran once more, not twice.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    let letter = harness.queue.get("evt_1").await.unwrap().unwrap();
    assert_eq!(letter.state, DeadLetterState::Replayed);
    harness.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_permanent_error_goes_straight_to_the_dead_letters() {
    let mut harness = Harness::new();
    let handler = tower::service_fn(|_job: Job| async {
        Err::<(), _>(HandlerError::permanent("no customer id"))
    });
    harness.start(handler, |w| w);
    harness
        .queue
        .enqueue(NewJob::new("evt_1", "{}"))
        .await
        .unwrap();
    assert_eq!(
        harness.states_until(DeadLettered).await,
        [(Processing, 1), (DeadLettered, 1)]
    );
    assert_eq!(
        harness.queue.get("evt_1").await.unwrap().unwrap().reason,
        "no customer id"
    );
    harness.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn retry_after_from_the_handler_is_honoured() {
    let mut harness = Harness::new();
    let calls = Arc::new(AtomicU32::new(0));
    let handler = {
        let calls = calls.clone();
        tower::service_fn(move |_job: Job| {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if call == 0 {
                    Err(HandlerError::retry("429").retry_after(Duration::from_secs(30)))
                } else {
                    Ok(())
                }
            }
        })
    };
    harness.start(handler, |w| w);
    harness
        .queue
        .enqueue(NewJob::new("evt_1", "{}"))
        .await
        .unwrap();
    harness.states_until(Retrying).await;
    let retried_at = Instant::now();
    harness.states_until(Completed).await;
    assert!(
        retried_at.elapsed() >= Duration::from_secs(30),
        "waited {:?}",
        retried_at.elapsed()
    );
    harness.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_lease_abandoned_mid_job_is_leased_again_and_the_late_ack_refused() {
    let mut harness = Harness::new();
    harness
        .queue
        .enqueue(NewJob::new("evt_1", "{}"))
        .await
        .unwrap();

    // A worker that hangs in its handler is dropped mid-job (its process died).
    let hanging = tower::service_fn(|_job: Job| std::future::pending::<Result<(), HandlerError>>());
    harness.start(hanging, |w| w.lease_duration(Duration::from_secs(10)));
    assert_eq!(harness.states_until(Processing).await, [(Processing, 1)]);
    harness.worker.take().unwrap().abort();

    // Meanwhile a stale lease taken by hand stands for the dead worker's late ack.
    harness
        .queue
        .enqueue(NewJob::new("evt_2", "{}"))
        .await
        .unwrap();
    let stale = harness
        .queue
        .lease(1, Duration::from_secs(10))
        .await
        .unwrap()
        .remove(0);

    let calls = Arc::new(AtomicU32::new(0));
    harness.start(failing_first(0, calls.clone()), |w| {
        w.lease_duration(Duration::from_secs(10))
    });
    let mut completed = Vec::new();
    while completed.len() < 2 {
        let event = harness.events.next().await.unwrap();
        if event.state == Completed {
            assert_eq!(
                event.attempt,
                Some(2),
                "{} ran again after its lease ran out",
                event.event_id
            );
            completed.push(event.event_id);
        }
    }
    completed.sort();
    assert_eq!(completed, ["evt_1", "evt_2"]);
    assert!(matches!(
        harness.queue.ack(&stale).await,
        Err(Error::LeaseLost)
    ));
    harness.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn a_handler_outliving_its_lease_is_stopped_and_retried() {
    let mut harness = Harness::new();
    let calls = Arc::new(AtomicU32::new(0));
    let handler = {
        let calls = calls.clone();
        tower::service_fn(move |_job: Job| {
            let first = calls.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                if first {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                Ok::<(), HandlerError>(())
            }
        })
    };
    harness.start(handler, |w| w.lease_duration(Duration::from_secs(10)));
    harness
        .queue
        .enqueue(NewJob::new("evt_1", "{}"))
        .await
        .unwrap();
    let states = harness.states_until(Completed).await;
    assert_eq!(
        states,
        [
            (Processing, 1),
            (Retrying, 1),
            (Processing, 2),
            (Completed, 2)
        ]
    );
    harness.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_limited() {
    let mut harness = Harness::new();
    let running = Arc::new(AtomicU32::new(0));
    let peak = Arc::new(AtomicU32::new(0));
    let handler = {
        let (running, peak) = (running.clone(), peak.clone());
        tower::service_fn(move |_job: Job| {
            let (running, peak) = (running.clone(), peak.clone());
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(1)).await;
                running.fetch_sub(1, Ordering::SeqCst);
                Ok::<(), HandlerError>(())
            }
        })
    };
    for i in 0..20 {
        harness
            .queue
            .enqueue(NewJob::new(format!("evt_{i}"), "{}"))
            .await
            .unwrap();
    }
    harness.start(handler, |w| w.concurrency(3));
    let mut completed = 0;
    while completed < 20 {
        if harness.events.next().await.unwrap().state == Completed {
            completed += 1;
        }
    }
    assert_eq!(peak.load(Ordering::SeqCst), 3);
    harness.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_returns_unfinished_leases_to_the_queue() {
    let mut harness = Harness::new();
    let hanging = tower::service_fn(|_job: Job| std::future::pending::<Result<(), HandlerError>>());
    harness.start(hanging, |w| w.shutdown_grace(Duration::from_secs(1)));
    harness
        .queue
        .enqueue(NewJob::new("evt_1", "{}"))
        .await
        .unwrap();
    harness.states_until(Processing).await;
    harness.shutdown().await;
    let stats = harness.queue.stats().await.unwrap();
    assert_eq!(
        (stats.leased, stats.ready),
        (0, 1),
        "handed back, not left to expire"
    );
}

#[tokio::test(start_paused = true)]
async fn custom_retry_policy_sets_the_attempts() {
    let mut harness = Harness::new();
    let calls = Arc::new(AtomicU32::new(0));
    harness.start(failing_first(u32::MAX, calls.clone()), |w| {
        w.retry_policy(RetryPolicy::default().with_max_attempts(5))
    });
    harness
        .queue
        .enqueue(NewJob::new("evt_1", "{}"))
        .await
        .unwrap();
    assert_eq!(
        harness.states_until(DeadLettered).await.last(),
        Some(&(DeadLettered, 5))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    harness.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn deferred_jobs_wait_without_spending_attempts() {
    let mut harness = Harness::new();
    let calls = Arc::new(AtomicU32::new(0));
    let handler = {
        let calls = calls.clone();
        tower::service_fn(move |_job: Job| {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                // Five deferrals (more than max attempts), then success.
                if call < 5 {
                    Err(HandlerError::defer("circuit open", Duration::from_secs(10)))
                } else {
                    Ok(())
                }
            }
        })
    };
    harness.start(handler, |w| w);
    let started = Instant::now();
    harness
        .queue
        .enqueue(NewJob::new("evt_1", "{}"))
        .await
        .unwrap();
    let states = harness.states_until(Completed).await;
    assert_eq!(
        states.last(),
        Some(&(Completed, 1)),
        "still the first attempt"
    );
    assert_eq!(states.iter().filter(|(s, _)| *s == Retrying).count(), 5);
    assert!(started.elapsed() >= Duration::from_secs(50));
    harness.shutdown().await;
}

/// A handler that panics abandons its lease as a crashed worker would: no
/// ack, no nack. The worker keeps serving other jobs, and after the lease
/// deadline the job runs again (attempt 2) and completes.
#[tokio::test(start_paused = true)]
async fn a_panicking_handler_abandons_its_lease_and_the_job_runs_again() {
    let mut harness = Harness::new();
    let calls = Arc::new(AtomicU32::new(0));
    let handler = {
        let calls = calls.clone();
        tower::service_fn(move |job: Job| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if job.id == "evt_poison" && job.attempt == 1 {
                    // Unwinds without the panic message in the test output.
                    std::panic::resume_unwind(Box::new("handler bug"));
                }
                Ok::<(), HandlerError>(())
            }
        })
    };
    harness.start(handler, |w| w.lease_duration(Duration::from_secs(10)));
    harness
        .queue
        .enqueue(NewJob::new("evt_poison", "{}"))
        .await
        .unwrap();
    harness
        .queue
        .enqueue(NewJob::new("evt_fine", "{}"))
        .await
        .unwrap();
    let started = Instant::now();
    let mut completed = Vec::new();
    while completed.len() < 2 {
        let event = harness.events.next().await.expect("bus open");
        assert_ne!(event.state, Retrying, "a panic is not a handled failure");
        if event.state == Completed {
            completed.push((event.event_id, event.attempt));
        }
    }
    assert_eq!(completed[0], ("evt_fine".to_owned(), Some(1)));
    assert_eq!(completed[1], ("evt_poison".to_owned(), Some(2)));
    assert!(
        started.elapsed() >= Duration::from_secs(10),
        "not before the abandoned lease ran out"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    harness.shutdown().await;
    let stats = harness.queue.stats().await.unwrap();
    assert_eq!((stats.leased, stats.ready), (0, 0));
}

/// A memory queue that counts the lease calls that returned jobs and, with
/// `ack_gate`, holds each ack until the test adds a permit: a store whose
/// writes wait for a batch, slowed down at will.
#[derive(Debug, Default)]
struct InstrumentedQueue {
    inner: MemoryQueue,
    calls: std::sync::atomic::AtomicUsize,
    ack_gate: Option<Arc<tokio::sync::Semaphore>>,
}

#[async_trait::async_trait]
impl Queue for InstrumentedQueue {
    async fn enqueue(&self, job: NewJob) -> webhook_armor::Result<webhook_armor::queue::Enqueued> {
        self.inner.enqueue(job).await
    }
    async fn lease(
        &self,
        max: usize,
        lease_for: Duration,
    ) -> webhook_armor::Result<Vec<webhook_armor::queue::Lease>> {
        let leased = self.inner.lease(max, lease_for).await?;
        if !leased.is_empty() {
            self.calls.fetch_add(1, Ordering::SeqCst);
        }
        Ok(leased)
    }
    async fn ack(&self, lease: &webhook_armor::queue::Lease) -> webhook_armor::Result<()> {
        if let Some(gate) = &self.ack_gate {
            gate.acquire().await.expect("gate open").forget();
        }
        self.inner.ack(lease).await
    }
    async fn nack(
        &self,
        lease: &webhook_armor::queue::Lease,
        retry_in: Duration,
        error: &str,
    ) -> webhook_armor::Result<()> {
        self.inner.nack(lease, retry_in, error).await
    }
    async fn defer(
        &self,
        lease: &webhook_armor::queue::Lease,
        delay: Duration,
    ) -> webhook_armor::Result<()> {
        self.inner.defer(lease, delay).await
    }
    async fn dead_letter(
        &self,
        lease: &webhook_armor::queue::Lease,
        reason: &str,
    ) -> webhook_armor::Result<()> {
        self.inner.dead_letter(lease, reason).await
    }
    async fn stats(&self) -> webhook_armor::Result<webhook_armor::queue::QueueStats> {
        self.inner.stats().await
    }
    async fn wait_for_work(&self, timeout: Duration) {
        self.inner.wait_for_work(timeout).await;
    }
}

impl InstrumentedQueue {
    /// A queue holding `jobs` jobs (`evt_0` ..) whose acks wait at the
    /// returned gate until the test adds permits.
    async fn with_held_acks(jobs: usize) -> (Arc<Self>, Arc<tokio::sync::Semaphore>) {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let queue = Arc::new(Self {
            ack_gate: Some(gate.clone()),
            ..Self::default()
        });
        for i in 0..jobs {
            queue
                .enqueue(NewJob::new(format!("evt_{i}"), &b"{}"[..]))
                .await
                .unwrap();
        }
        (queue, gate)
    }
}

/// Jobs that finish one at a time are not leased one at a time: the worker
/// lets a few more slots free up, so a lease call (a database round trip in
/// a real backend) takes many jobs. On the real clock: the paused clock's
/// millisecond ticks would finish jobs in crowds, not one by one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_finishing_one_by_one_are_leased_in_batches() {
    const JOBS: usize = 2_000;
    let queue = Arc::new(InstrumentedQueue::default());
    for i in 0..JOBS {
        queue
            .enqueue(NewJob::new(format!("evt_{i}"), &b"{}"[..]))
            .await
            .unwrap();
    }
    let done = Arc::new(AtomicU32::new(0));
    let counter = done.clone();
    // Handlers of different lengths, so jobs finish one by one.
    let handler = tower::service_fn(move |job: Job| {
        let counter = counter.clone();
        async move {
            let n: u64 = job.id.trim_start_matches("evt_").parse().unwrap();
            // Busy for 0-2 ms, so they finish at scattered instants.
            let busy = Duration::from_micros(50 * (n % 41));
            let started = std::time::Instant::now();
            while started.elapsed() < busy {
                tokio::task::yield_now().await;
            }
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<(), HandlerError>(())
        }
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(
        Worker::new(queue.clone(), handler)
            .concurrency(64)
            .batch_size(64)
            .run(async {
                let _ = stopped.await;
            }),
    );
    while done.load(Ordering::SeqCst) < JOBS as u32 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let _ = stop.send(());
    worker.await.unwrap();

    let calls = queue.calls.load(Ordering::SeqCst);
    // 2,000 jobs at 64 per call would be 32 calls; leasing per finished job
    // would be close to 2,000. At least 16 jobs per call on average.
    assert!(calls <= JOBS / 16, "{calls} lease calls for {JOBS} jobs");
}

/// A handler's slot is free as soon as it returns: while acks wait on the
/// store, the next jobs' handlers run. Results being recorded are bounded
/// too (by the concurrency), so leases out stay at most twice it.
#[tokio::test(start_paused = true)]
async fn handlers_do_not_wait_for_their_acks_and_pending_acks_are_bounded() {
    let (queue, gate) = InstrumentedQueue::with_held_acks(5).await;
    let calls = Arc::new(AtomicU32::new(0));
    let handler = {
        let calls = calls.clone();
        tower::service_fn(move |_job: Job| {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok::<(), HandlerError>(()) }
        })
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(
        Worker::new(queue.clone(), handler)
            .concurrency(2)
            .poll_interval(Duration::from_millis(10))
            .run(async {
                let _ = stopped.await;
            }),
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    // Two acks wait (the settling bound), two more handlers have run and
    // wait for a place to record their result, holding both slots.
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "handlers ran past acks that had not landed, up to the bound"
    );
    let stats = queue.stats().await.unwrap();
    assert_eq!((stats.leased, stats.ready), (4, 1));

    gate.add_permits(5);
    let deadline = Instant::now() + Duration::from_secs(30);
    while queue.stats().await.unwrap().depth() > 0 {
        assert!(Instant::now() < deadline, "the queue did not drain");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5, "each job handled once");
    let _ = stop.send(());
    worker.await.unwrap();
}

/// A job whose ack is stuck at the store when shutdown's grace runs out is
/// handed back like a job whose handler is stuck: nothing is left leased.
#[tokio::test(start_paused = true)]
async fn shutdown_hands_back_jobs_whose_acks_never_landed() {
    // The gate never opens.
    let (queue, _gate) = InstrumentedQueue::with_held_acks(3).await;
    let handler = tower::service_fn(|_job: Job| async { Ok::<(), HandlerError>(()) });
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(
        Worker::new(queue.clone(), handler)
            .concurrency(4)
            .shutdown_grace(Duration::from_secs(1))
            .run(async {
                let _ = stopped.await;
            }),
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        queue.stats().await.unwrap().leased,
        3,
        "all three acks stuck"
    );
    let _ = stop.send(());
    worker.await.unwrap();
    let stats = queue.stats().await.unwrap();
    assert_eq!(
        (stats.leased, stats.ready),
        (0, 3),
        "handed back, not left to expire"
    );
}
