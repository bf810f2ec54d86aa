//! The durable queue between receiving a webhook and processing it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::Result;

/// A job to put on the queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NewJob {
    /// Unique id; a second enqueue with the same id is a duplicate.
    pub id: String,
    /// The webhook body, byte for byte.
    pub payload: Bytes,
    /// Small facts kept with the job: verifying scheme, source, request headers.
    pub metadata: BTreeMap<String, String>,
    /// How long to wait before the job may first be leased.
    pub delay: Duration,
}

impl NewJob {
    /// A job with `id` and `payload`, ready at once.
    pub fn new(id: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Self {
            id: id.into(),
            payload: payload.into(),
            metadata: BTreeMap::new(),
            delay: Duration::ZERO,
        }
    }

    /// With one metadata entry.
    #[must_use]
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Not leasable before `delay` has passed.
    #[must_use]
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// A job as stored, with its delivery history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Job {
    /// Unique id.
    pub id: String,
    /// The webhook body.
    pub payload: Bytes,
    /// Facts kept with the job. Shared, not copied, when the job is cloned:
    /// a job is cloned at every lease and handed to the handler, and a
    /// webhook's headers are a dozen strings.
    pub metadata: Arc<BTreeMap<String, String>>,
    /// How many times the job has been leased, this lease included (1 on the
    /// first lease). A lease lost to a crash counts, so a job that kills its
    /// worker every time still reaches the dead letters.
    pub attempt: u32,
    /// When the job was first enqueued, Unix milliseconds.
    pub enqueued_at_ms: i64,
    /// The error of the last failed attempt, if any. A job replayed from the
    /// dead letters starts again at attempt 1 with its dead-letter reason
    /// here, so a handler can tell a replay (attempt 1 with an error) from a
    /// first delivery; the conformance suite holds every backend to it.
    pub last_error: Option<String>,
}

impl Job {
    /// A job freshly built from `new`, not yet leased.
    pub fn from_new(new: NewJob, enqueued_at_ms: i64) -> Self {
        Self {
            id: new.id,
            payload: new.payload,
            metadata: Arc::new(new.metadata),
            attempt: 0,
            enqueued_at_ms,
            last_error: None,
        }
    }
}

/// Proof of holding a leased job; ack, nack and dead-letter require it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseToken(pub String);

impl LeaseToken {
    /// A fresh random token (128 bits; unique, not secret).
    pub fn random() -> Self {
        Self(format!("{:032x}", fastrand::u128(..)))
    }
}

/// A job leased to one worker until a deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The job.
    pub job: Job,
    /// Fencing token: valid until the deadline passes or the job is leased again.
    pub token: LeaseToken,
}

/// What enqueue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// The job is new and now queued.
    New,
    /// A job with this id is already known (queued, running, done within the
    /// retention, or dead-lettered); nothing changed.
    Duplicate,
}

/// How many jobs are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueStats {
    /// Ready to lease now.
    pub ready: u64,
    /// Waiting for their run-at (retries, delayed jobs).
    pub scheduled: u64,
    /// Leased to a worker.
    pub leased: u64,
    /// Pending in the dead letters.
    pub dead_lettered: u64,
}

impl QueueStats {
    /// Jobs that still need a worker: ready, scheduled and leased.
    pub fn depth(&self) -> u64 {
        self.ready + self.scheduled + self.leased
    }
}

/// A work queue with leases: at-least-once delivery that survives crashes.
///
/// A leased job belongs to its worker until the lease deadline. If the worker
/// dies, the deadline passes and the job becomes leasable again. Acks, nacks and
/// dead-lettering present the lease's token and are refused with
/// [`Error::LeaseLost`](crate::Error::LeaseLost) once the deadline has passed or
/// the job was leased again, so a late ack never changes anything.
///
/// ```
/// use std::time::Duration;
/// use webhook_armor::memory::MemoryQueue;
/// use webhook_armor::queue::{Enqueued, NewJob, Queue};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let queue = MemoryQueue::new();
/// assert_eq!(queue.enqueue(NewJob::new("evt_1", "{}")).await?, Enqueued::New);
/// assert_eq!(queue.enqueue(NewJob::new("evt_1", "{}")).await?, Enqueued::Duplicate);
/// let leases = queue.lease(10, Duration::from_secs(30)).await?;
/// assert_eq!(leases[0].job.attempt, 1);
/// queue.ack(&leases[0]).await?;
/// # Ok::<_, webhook_armor::Error>(()) }).unwrap();
/// ```
#[async_trait]
pub trait Queue: Send + Sync + std::fmt::Debug + 'static {
    /// Adds `job` unless a job with its id is known already.
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued>;

    /// Leases up to `max` ready jobs (oldest first) for `lease_for`. Returns
    /// an empty list when none is ready; never waits.
    async fn lease(&self, max: usize, lease_for: Duration) -> Result<Vec<Lease>>;

    /// Marks the leased job done.
    async fn ack(&self, lease: &Lease) -> Result<()>;

    /// Gives the leased job back to run again after `retry_in`, recording `error`.
    async fn nack(&self, lease: &Lease, retry_in: Duration, error: &str) -> Result<()>;

    /// Gives the leased job back to run after `delay` without counting this
    /// lease as an attempt: for work the handler could not even try (the
    /// endpoint's circuit is open), so waiting does not burn retries.
    async fn defer(&self, lease: &Lease, delay: Duration) -> Result<()>;

    /// Moves the leased job to the dead letters with `reason`, in one step.
    async fn dead_letter(&self, lease: &Lease, reason: &str) -> Result<()>;

    /// Counts of jobs per state.
    async fn stats(&self) -> Result<QueueStats>;

    /// Waits until work may be available or `timeout` passes, whichever is
    /// first. Backends that can be notified (a channel, LISTEN/NOTIFY) return
    /// early; the default just sleeps, which makes it a poll interval.
    async fn wait_for_work(&self, timeout: Duration) {
        tokio::time::sleep(timeout).await;
    }
}
