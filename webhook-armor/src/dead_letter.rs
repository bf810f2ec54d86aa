//! Dead letters: jobs that could not be processed, kept for an operator.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::queue::Job;
use crate::{Error, Result};

/// Where a dead letter stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterState {
    /// Waiting for an operator.
    Pending,
    /// Put back on the queue; kept as a record until discarded.
    Replayed,
}

/// A job that failed for good, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeadLetter {
    /// The job as it was when it failed (its id is the dead letter's id).
    pub job: Job,
    /// The last error, or why it was not retried.
    pub reason: String,
    /// Attempts made before it was dead-lettered.
    pub attempts: u32,
    /// When it was dead-lettered, Unix milliseconds.
    pub dead_lettered_at_ms: i64,
    /// Pending or replayed.
    pub state: DeadLetterState,
}

impl DeadLetter {
    /// A pending dead letter for `job`, dead-lettered at `dead_lettered_at_ms`
    /// after `job.attempt` attempts; for backends building letters from storage.
    pub fn from_job(job: Job, reason: impl Into<String>, dead_lettered_at_ms: i64) -> Self {
        Self {
            attempts: job.attempt,
            job,
            reason: reason.into(),
            dead_lettered_at_ms,
            state: DeadLetterState::Pending,
        }
    }
}

/// Which dead letters to list or replay. All set conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeadLetterFilter {
    /// Only this state.
    pub state: Option<DeadLetterState>,
    /// Dead-lettered at or after this Unix millisecond.
    pub since_ms: Option<i64>,
    /// Dead-lettered before this Unix millisecond.
    pub until_ms: Option<i64>,
    /// Only jobs whose metadata has this key with this value
    /// (e.g. `("scheme", "stripe")` or `("endpoint", "ep_1")`).
    pub metadata: Option<(String, String)>,
}

impl DeadLetterFilter {
    /// Everything.
    pub fn all() -> Self {
        Self::default()
    }

    /// Only pending dead letters.
    pub fn pending() -> Self {
        Self {
            state: Some(DeadLetterState::Pending),
            ..Self::default()
        }
    }

    /// Also requiring `state`.
    #[must_use]
    pub fn with_state(mut self, state: DeadLetterState) -> Self {
        self.state = Some(state);
        self
    }

    /// Also requiring metadata `key` = `value`.
    #[must_use]
    pub fn with_metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata = Some((key.into(), value.into()));
        self
    }

    /// Also requiring a dead-letter time in `[since_ms, until_ms)`.
    #[must_use]
    pub fn between(mut self, since_ms: Option<i64>, until_ms: Option<i64>) -> Self {
        self.since_ms = since_ms;
        self.until_ms = until_ms;
        self
    }

    /// Whether `letter` passes the filter; backends without a query language use it.
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        self.state.is_none_or(|state| letter.state == state)
            && self
                .since_ms
                .is_none_or(|t| letter.dead_lettered_at_ms >= t)
            && self.until_ms.is_none_or(|t| letter.dead_lettered_at_ms < t)
            && self
                .metadata
                .as_ref()
                .is_none_or(|(key, value)| letter.job.metadata.get(key).is_some_and(|v| v == value))
    }
}

/// A page of results and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page<T> {
    /// This page's items.
    pub items: Vec<T>,
    /// Pass as `after` for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// The opaque cursor for a position in listing order: a time (in whatever
/// unit the backend orders by) and the id that breaks ties.
pub fn encode_cursor(position: i64, id: &str) -> String {
    format!("{position}:{id}")
}

/// Reads a cursor made by [`encode_cursor`].
pub fn decode_cursor(cursor: &str) -> Result<(i64, String)> {
    cursor
        .split_once(':')
        .and_then(|(position, id)| Some((position.parse().ok()?, id.to_owned())))
        .ok_or_else(|| Error::InvalidInput(format!("bad cursor {cursor:?}")))
}

/// What a replay did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replayed {
    /// The job is back on the queue.
    Requeued,
    /// It had been replayed before; nothing changed.
    AlreadyReplayed,
}

/// Browsing and replaying dead letters.
///
/// Jobs get here through [`Queue::dead_letter`](crate::Queue::dead_letter); a
/// backend implements both traits over the same storage so a replay moves
/// the job back atomically. Listing is in dead-letter order (oldest first)
/// with an opaque cursor. Replay is idempotent: replaying the same dead letter
/// twice queues the job once.
///
/// ```
/// use std::time::Duration;
/// use webhook_armor::dead_letter::{DeadLetterFilter, DeadLetterStore, Replayed};
/// use webhook_armor::memory::MemoryQueue;
/// use webhook_armor::queue::{NewJob, Queue};
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let queue = MemoryQueue::new();
/// queue.enqueue(NewJob::new("evt_1", "{}")).await?;
/// let lease = queue.lease(1, Duration::from_secs(30)).await?.remove(0);
/// queue.dead_letter(&lease, "handler said no").await?;
///
/// let page = queue.list(&DeadLetterFilter::pending(), None, 50).await?;
/// assert_eq!(page.items[0].reason, "handler said no");
/// assert_eq!(queue.replay("evt_1").await?, Replayed::Requeued);
/// assert_eq!(queue.replay("evt_1").await?, Replayed::AlreadyReplayed);
/// # Ok::<_, webhook_armor::Error>(()) }).unwrap();
/// ```
#[async_trait]
pub trait DeadLetterStore: Send + Sync + std::fmt::Debug + 'static {
    /// Up to `limit` dead letters matching `filter`, after the cursor `after`.
    async fn list(
        &self,
        filter: &DeadLetterFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<DeadLetter>>;

    /// One dead letter by its job id.
    async fn get(&self, id: &str) -> Result<Option<DeadLetter>>;

    /// Puts a pending dead letter's job back on the queue with fresh attempts.
    /// Fails with [`Error::NotFound`] for an unknown id.
    async fn replay(&self, id: &str) -> Result<Replayed>;

    /// Replays every pending dead letter matching `filter`; returns how many.
    ///
    /// The default pages through [`list`](Self::list) and replays each; a
    /// letter replayed or discarded by someone else meanwhile is skipped.
    async fn replay_matching(&self, filter: &DeadLetterFilter) -> Result<u64> {
        let pending = filter.clone().with_state(DeadLetterState::Pending);
        let mut replayed = 0;
        let mut after = None;
        loop {
            let page = self.list(&pending, after.as_deref(), 500).await?;
            for letter in &page.items {
                match self.replay(&letter.job.id).await {
                    Ok(Replayed::Requeued) => replayed += 1,
                    Ok(Replayed::AlreadyReplayed) | Err(Error::NotFound(_)) => {}
                    Err(error) => return Err(error),
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(replayed),
            }
        }
    }

    /// Deletes a dead letter for good.
    /// Fails with [`Error::NotFound`] for an unknown id.
    async fn discard(&self, id: &str) -> Result<()>;
}
