//! The worker: leases jobs, runs the handler, retries, dead-letters.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tower::{Service, ServiceExt};

use crate::events::{EventBus, LifecycleEvent, LifecycleState};
use crate::handler::HandlerError;
use crate::queue::{Job, Lease, LeaseToken, Queue};
use crate::retry::RetryPolicy;
use crate::{BoxError, Error};

/// The longest a worker with few free slots waits for more before leasing.
const LEASE_COALESCING: Duration = Duration::from_millis(2);

/// Runs a handler over a [`Queue`]'s jobs.
///
/// The handler is any `tower::Service<Job, Response = ()>`, so timeouts, rate
/// limits and concurrency limits from tower stack on it. For each leased job:
/// PROCESSING, then the handler; success acks (COMPLETED); failure nacks with the
/// [`RetryPolicy`]'s delay (RETRYING) or, when attempts are used up or the
/// error is [permanent](HandlerError::permanent), moves the job to the dead
/// letters (DEAD_LETTERED).
///
/// A handler still running when its lease is about to end is stopped and the
/// attempt counted as failed, so a job is never run twice at once. On shutdown
/// the worker stops leasing, lets running jobs finish for the grace period, and
/// hands the rest back to the queue.
///
/// ```no_run
/// use std::sync::Arc;
/// use webhook_armor::memory::MemoryQueue;
/// use webhook_armor::{HandlerError, Job, Worker};
///
/// # async fn run() {
/// let queue = Arc::new(MemoryQueue::new());
/// let handler = tower::service_fn(|job: Job| async move {
///     println!("processing {} ({} bytes)", job.id, job.payload.len());
///     Ok::<(), HandlerError>(())
/// });
/// Worker::new(queue, handler)
///     .concurrency(8)
///     .run(async { tokio::signal::ctrl_c().await.ok(); })
///     .await;
/// # }
/// ```
#[derive(Debug)]
#[must_use]
pub struct Worker<S> {
    queue: Arc<dyn Queue>,
    handler: S,
    events: Option<Arc<dyn EventBus>>,
    retry: RetryPolicy,
    concurrency: usize,
    batch_size: usize,
    lease_for: Duration,
    poll_interval: Duration,
    shutdown_grace: Duration,
}

impl<S> Worker<S>
where
    S: Service<Job, Response = ()> + Clone + Send + 'static,
    S::Error: Into<BoxError> + Send + 'static,
    S::Future: Send + 'static,
{
    /// A worker running `handler` over `queue`: 16 jobs at once, leases of
    /// 30 s, polling every second when idle (notifying queues wake it sooner).
    pub fn new(queue: Arc<dyn Queue>, handler: S) -> Self {
        Self {
            queue,
            handler,
            events: None,
            retry: RetryPolicy::default(),
            concurrency: 16,
            batch_size: 64,
            lease_for: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(30),
        }
    }

    /// Publishes lifecycle events to `bus`.
    pub fn events(mut self, bus: Arc<dyn EventBus>) -> Self {
        self.events = Some(bus);
        self
    }

    /// Retry policy for failed jobs.
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// At most `jobs` handlers run at once (at least 1).
    ///
    /// A job's slot is freed as soon as its handler returns; recording the
    /// result (ack, nack, dead letter) happens outside it, with at most
    /// `jobs` results being recorded at once. So a store whose writes wait
    /// for a batch (Redis, PostgreSQL) does not hold handler slots idle, and
    /// at most twice `jobs` leases are out at a time.
    pub fn concurrency(mut self, jobs: usize) -> Self {
        self.concurrency = jobs.max(1);
        self
    }

    /// At most `jobs` are leased in one call (at least 1).
    pub fn batch_size(mut self, jobs: usize) -> Self {
        self.batch_size = jobs.max(1);
        self
    }

    /// How long a leased job is ours. The handler gets this long minus a
    /// tenth for the ack; past that it is stopped and the attempt fails.
    pub fn lease_duration(mut self, lease_for: Duration) -> Self {
        self.lease_for = lease_for;
        self
    }

    /// How long to wait for work when the queue is empty.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long running jobs may finish after shutdown is asked for.
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = grace;
        self
    }

    /// Processes jobs until `shutdown` completes, then shuts down gracefully.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let permits = Arc::new(Semaphore::new(self.concurrency));
        let settling = Arc::new(Semaphore::new(self.concurrency));
        let running: Arc<Mutex<HashMap<LeaseToken, Lease>>> = Arc::default();
        let mut tasks = JoinSet::new();
        let context = Arc::new(JobContext {
            queue: self.queue.clone(),
            events: self.events.clone(),
            retry: self.retry.clone(),
            // Leave a tenth of the lease for the ack to reach the queue.
            handler_deadline: self.lease_for.mul_f64(0.9),
        });
        let mut backend_backoff = Duration::from_millis(100);
        tokio::pin!(shutdown);

        // Below this many free slots, wait a moment for more to free up.
        let refill_at = (self.batch_size.min(self.concurrency) / 4).max(1);
        'run: loop {
            while tasks.try_join_next().is_some() {}
            if permits.available_permits() == 0 {
                // A slot frees when a handler returns, before its result is
                // recorded, so wait on the slots rather than on the tasks.
                tokio::select! {
                    () = &mut shutdown => break,
                    _ = permits.acquire() => continue,
                }
            }
            if permits.available_permits() < refill_at {
                // Jobs finish one by one; leasing after each would cost a
                // lease call (a database function, a script) per job. Let a
                // few more finish, within a bound that a slow handler never
                // notices, and take them in one call.
                let refill = u32::try_from(refill_at).unwrap_or(u32::MAX);
                tokio::select! {
                    biased;
                    () = &mut shutdown => break 'run,
                    () = tokio::time::sleep(LEASE_COALESCING) => {}
                    _ = permits.acquire_many(refill) => {}
                }
            }
            let free = permits.available_permits();
            let leased = tokio::select! {
                biased;
                () = &mut shutdown => break,
                leased = self.queue.lease(free.min(self.batch_size), self.lease_for) => leased,
            };
            match leased {
                Ok(leases) if leases.is_empty() => {
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = self.queue.wait_for_work(self.poll_interval) => {}
                    }
                }
                Ok(leases) => {
                    backend_backoff = Duration::from_millis(100);
                    for lease in leases {
                        let permit = permits
                            .clone()
                            .try_acquire_owned()
                            .expect("leased no more than free permits");
                        running
                            .lock()
                            .expect("poisoned")
                            .insert(lease.token.clone(), lease.clone());
                        let slot = HandlerSlot {
                            permit,
                            settling: settling.clone(),
                        };
                        let handler = self.handler.clone();
                        let context = context.clone();
                        let running = running.clone();
                        tasks.spawn(async move {
                            let entry = RunningEntry {
                                running,
                                token: lease.token.clone(),
                            };
                            context.process(handler, lease, slot).await;
                            entry.finished();
                        });
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, retry_in = ?backend_backoff, "lease failed; backing off");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(backend_backoff) => {}
                    }
                    backend_backoff = (backend_backoff * 2).min(Duration::from_secs(5));
                }
            }
        }

        // Graceful shutdown: no new leases; running jobs get the grace period.
        let drained = tokio::time::timeout(self.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
            let unfinished: Vec<Lease> = running
                .lock()
                .expect("poisoned")
                .drain()
                .map(|(_, l)| l)
                .collect();
            for lease in unfinished {
                // Hand it back now rather than making it wait out the lease.
                if let Err(error) = self
                    .queue
                    .nack(&lease, Duration::ZERO, "worker shut down")
                    .await
                {
                    tracing::warn!(%error, job = %lease.job.id, "could not return lease on shutdown; it returns when the lease expires");
                }
            }
        }
    }
}

/// A job task's place in the list of running leases.
///
/// Removed when the job finishes, and when its handler panics: a panic
/// abandons the lease like a crashed process would (no ack, no nack; the
/// queue gives the job out again after the deadline), and the entry must not
/// linger. A task aborted at shutdown keeps its entry: that list is what
/// shutdown hands back to the queue.
struct RunningEntry {
    running: Arc<Mutex<HashMap<LeaseToken, Lease>>>,
    token: LeaseToken,
}

impl RunningEntry {
    fn finished(self) {
        self.running.lock().expect("poisoned").remove(&self.token);
    }
}

impl Drop for RunningEntry {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Ok(mut running) = self.running.lock()
        {
            running.remove(&self.token);
        }
    }
}

/// A job's place among the running handlers.
struct HandlerSlot {
    permit: OwnedSemaphorePermit,
    settling: Arc<Semaphore>,
}

impl HandlerSlot {
    /// Trades the handler's slot for a place among the results being
    /// recorded, once one is free. Recording waits for the store (a batch,
    /// a round trip); the next job's handler need not.
    async fn into_settling(self) -> OwnedSemaphorePermit {
        let settling = self
            .settling
            .acquire_owned()
            .await
            .expect("the settling semaphore is never closed");
        drop(self.permit);
        settling
    }
}

/// What every job task needs, shared.
struct JobContext {
    queue: Arc<dyn Queue>,
    events: Option<Arc<dyn EventBus>>,
    retry: RetryPolicy,
    handler_deadline: Duration,
}

impl JobContext {
    fn publish(&self, job: &Job, state: LifecycleState, detail: Option<String>) {
        let Some(bus) = &self.events else { return };
        let mut event = LifecycleEvent::new(&job.id, state).with_attempt(job.attempt);
        if let Some(scheme) = job.metadata.get(crate::METADATA_SCHEME) {
            event = event.with_scheme(scheme);
        }
        if let Some(detail) = detail {
            event = event.with_detail(detail);
        }
        bus.publish(event);
    }

    async fn process<S>(&self, handler: S, lease: Lease, slot: HandlerSlot)
    where
        S: Service<Job, Response = ()>,
        S::Error: Into<BoxError> + Send + 'static,
    {
        let job = &lease.job;
        self.publish(job, LifecycleState::Processing, None);
        let outcome =
            tokio::time::timeout(self.handler_deadline, handler.oneshot(job.clone())).await;
        let _settling = slot.into_settling().await;
        let failure = match outcome {
            Ok(Ok(())) => {
                match self.queue.ack(&lease).await {
                    Ok(()) => self.publish(job, LifecycleState::Completed, None),
                    Err(error) => report_lost(&error, job),
                }
                return;
            }
            Ok(Err(error)) => HandlerError::classify(error.into()),
            Err(_) => HandlerError::retry(format!(
                "handler ran past its {:?} deadline (the lease would have ended)",
                self.handler_deadline
            )),
        };
        let reason = failure.to_string();
        if failure.is_deferred() {
            let delay = failure.requested_delay().unwrap_or_default();
            match self.queue.defer(&lease, delay).await {
                Ok(()) => self.publish(
                    job,
                    LifecycleState::Retrying,
                    Some(format!("deferred {delay:?}, no attempt spent: {reason}")),
                ),
                Err(error) => report_lost(&error, job),
            }
            return;
        }
        let attempts_allowed = failure
            .allowed_attempts()
            .unwrap_or_else(|| self.retry.max_attempts());
        if failure.is_permanent() || job.attempt >= attempts_allowed {
            match self.queue.dead_letter(&lease, &reason).await {
                Ok(()) => self.publish(job, LifecycleState::DeadLettered, Some(reason)),
                Err(error) => report_lost(&error, job),
            }
        } else {
            // A handler that set the job's own attempt limit owns its
            // schedule too; otherwise the worker's policy bounds the delay.
            let delay = match (failure.allowed_attempts(), failure.requested_delay()) {
                (Some(_), Some(own_schedule)) => own_schedule,
                _ => self
                    .retry
                    .delay_after(job.attempt, failure.requested_delay()),
            };
            match self.queue.nack(&lease, delay, &reason).await {
                Ok(()) => self.publish(
                    job,
                    LifecycleState::Retrying,
                    Some(format!("retry in {delay:?}: {reason}")),
                ),
                Err(error) => report_lost(&error, job),
            }
        }
    }
}

/// An ack/nack that did not land: the job stays with the queue, which gives it
/// out again after the lease; nothing is lost, it may run again.
fn report_lost(error: &Error, job: &Job) {
    match error {
        Error::LeaseLost => {
            tracing::warn!(job = %job.id, "lease lost before the result was recorded; the job will run again")
        }
        other => {
            tracing::error!(error = %other, job = %job.id, "could not record the job's result; it will run again after its lease")
        }
    }
}
