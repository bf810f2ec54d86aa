use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::chunked::ChunkedQueue;
use super::sharded::ShardedMap;
use crate::clock::unix_millis_now;
use crate::dead_letter::{
    DeadLetter, DeadLetterFilter, DeadLetterState, DeadLetterStore, Page, Replayed, decode_cursor,
    encode_cursor,
};
use crate::queue::{Enqueued, Job, Lease, LeaseToken, NewJob, Queue, QueueStats};
use crate::{Error, Result};

/// How long a completed job's id is remembered to refuse duplicates, unless
/// configured otherwise.
const DEFAULT_COMPLETED_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// A [`Queue`] and [`DeadLetterStore`] in process memory.
///
/// Cheap to clone; clones share the queue. Workers waiting in
/// [`Queue::wait_for_work`] are woken as soon as a job is enqueued or becomes due.
#[derive(Debug, Clone)]
pub struct MemoryQueue {
    state: Arc<Mutex<State>>,
    work: Arc<Notify>,
    completed_retention: Duration,
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new()
    }
}

/// Ordering key for time-indexed sets: the instant, then a sequence number
/// that makes keys unique and keeps insertion order among equal instants.
type TimeKey = (Instant, u64);

#[derive(Debug, Default)]
struct State {
    /// Boxed: a hash table reserves room for more entries than it holds,
    /// and a record is ~200 bytes; a box keeps each free slot at 8.
    jobs: ShardedMap<Box<Record>>,
    ready: VecDeque<String>,
    scheduled: BTreeMap<TimeKey, String>,
    leased: BTreeMap<TimeKey, String>,
    /// Completed ids in completion order; with one retention for all, that is
    /// also expiry order. Chunked: it holds every id of the retention, and
    /// a doubling `VecDeque` of millions stalled every caller of the lock.
    completed: ChunkedQueue<(Instant, String)>,
    /// Dead letters by job id, kept apart from the jobs so a replayed job's
    /// letter stays as a record while the job runs again.
    letters: HashMap<String, DeadLetter>,
    /// Dead letters in listing order.
    letter_order: BTreeSet<(i64, String)>,
    pending_letters: u64,
    sequence: u64,
}

#[derive(Debug)]
struct Record {
    job: Job,
    status: Status,
}

#[derive(Debug)]
enum Status {
    Ready,
    Scheduled,
    Leased { token: LeaseToken, key: TimeKey },
    Completed,
    Dead,
}

/// One shared empty metadata map, so forgetting a completed job's metadata
/// allocates nothing.
fn no_metadata() -> Arc<BTreeMap<String, String>> {
    static EMPTY: std::sync::LazyLock<Arc<BTreeMap<String, String>>> =
        std::sync::LazyLock::new(Arc::default);
    EMPTY.clone()
}

impl State {
    fn next_key(&mut self, at: Instant) -> TimeKey {
        self.sequence += 1;
        (at, self.sequence)
    }

    /// Moves due retries to ready, expired leases back to ready, and forgets
    /// completed jobs past their retention.
    fn advance(&mut self, now: Instant) {
        while let Some(entry) = self.scheduled.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let id = entry.remove();
            if let Some(record) = self.jobs.get_mut(&id) {
                record.status = Status::Ready;
                self.ready.push_back(id);
            }
        }
        while let Some(entry) = self.leased.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let id = entry.remove();
            if let Some(record) = self.jobs.get_mut(&id) {
                // The worker holding it is gone or too slow: crash recovery.
                record.status = Status::Ready;
                self.ready.push_back(id);
            }
        }
        while let Some((until, _)) = self.completed.front() {
            if *until > now {
                break;
            }
            let (_, id) = self.completed.pop_front().expect("peeked");
            if self
                .jobs
                .get(&id)
                .is_some_and(|record| matches!(record.status, Status::Completed))
            {
                self.jobs.remove(&id);
            }
        }
    }

    /// The record of a lease still held: token current and deadline ahead.
    fn held(&mut self, lease: &Lease, now: Instant) -> Result<&mut Record> {
        match self.jobs.get_mut(&lease.job.id) {
            Some(record) => match &record.status {
                Status::Leased { token, key } if *token == lease.token && key.0 > now => Ok(record),
                _ => Err(Error::LeaseLost),
            },
            None => Err(Error::LeaseLost),
        }
    }

    fn remove_letter_index(&mut self, letter: &DeadLetter) {
        self.letter_order
            .remove(&(letter.dead_lettered_at_ms, letter.job.id.clone()));
    }

    /// The earliest instant at which a scheduled job or expired lease needs a worker.
    fn next_due(&self) -> Option<Instant> {
        let scheduled = self.scheduled.first_key_value().map(|(k, _)| k.0);
        let leased = self.leased.first_key_value().map(|(k, _)| k.0);
        scheduled.into_iter().chain(leased).min()
    }
}

impl MemoryQueue {
    /// An empty queue remembering completed ids for 24 hours.
    pub fn new() -> Self {
        Self {
            state: Arc::default(),
            work: Arc::default(),
            completed_retention: DEFAULT_COMPLETED_RETENTION,
        }
    }

    /// How long a completed job's id is kept to refuse duplicate enqueues;
    /// after that the id is forgotten and memory freed.
    #[must_use]
    pub fn completed_retention(mut self, retention: Duration) -> Self {
        self.completed_retention = retention;
        self
    }

    /// Jobs remembered in any state; for tests and memory checks.
    pub fn len(&self) -> usize {
        self.state.lock().expect("poisoned").jobs.len()
    }

    /// Whether no job is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("memory queue mutex poisoned")
    }

    fn wake_workers(&self) {
        // Wake every waiting worker, and leave a permit for one that is about
        // to wait, so a job enqueued between its empty lease and its wait is
        // not left until the poll interval.
        self.work.notify_waiters();
        self.work.notify_one();
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        let now = Instant::now();
        {
            let mut state = self.lock();
            state.advance(now);
            if state.jobs.contains_key(&job.id) {
                return Ok(Enqueued::Duplicate);
            }
            let id = job.id.clone();
            let delay = job.delay;
            let status = if delay.is_zero() {
                state.ready.push_back(id.clone());
                Status::Ready
            } else {
                let key = state.next_key(now + delay);
                state.scheduled.insert(key, id.clone());
                Status::Scheduled
            };
            let job = Job::from_new(job, unix_millis_now());
            state.jobs.insert(id, Box::new(Record { job, status }));
        }
        self.wake_workers();
        Ok(Enqueued::New)
    }

    async fn lease(&self, max: usize, lease_for: Duration) -> Result<Vec<Lease>> {
        let now = Instant::now();
        let mut state = self.lock();
        state.advance(now);
        let mut leases = Vec::with_capacity(max.min(state.ready.len()));
        while leases.len() < max {
            let Some(id) = state.ready.pop_front() else {
                break;
            };
            let key = state.next_key(now + lease_for);
            let Some(record) = state.jobs.get_mut(&id) else {
                continue;
            };
            if !matches!(record.status, Status::Ready) {
                continue; // stale queue entry (replayed or discarded meanwhile)
            }
            let token = LeaseToken::random();
            record.job.attempt += 1;
            record.status = Status::Leased {
                token: token.clone(),
                key,
            };
            leases.push(Lease {
                job: record.job.clone(),
                token,
            });
            state.leased.insert(key, id);
        }
        Ok(leases)
    }

    async fn ack(&self, lease: &Lease) -> Result<()> {
        let now = Instant::now();
        let mut state = self.lock();
        let record = state.held(lease, now)?;
        let Status::Leased { key, .. } = std::mem::replace(&mut record.status, Status::Completed)
        else {
            unreachable!("held() checked the status");
        };
        // Only the id is needed to refuse duplicates; free the body and the
        // headers now rather than at the end of the retention.
        record.job.payload = Bytes::new();
        record.job.metadata = no_metadata();
        state.leased.remove(&key);
        let until = now + self.completed_retention;
        state.completed.push_back((until, lease.job.id.clone()));
        Ok(())
    }

    async fn nack(&self, lease: &Lease, retry_in: Duration, error: &str) -> Result<()> {
        let now = Instant::now();
        {
            let mut state = self.lock();
            let scheduled_key = state.next_key(now + retry_in);
            let record = state.held(lease, now)?;
            record.job.last_error = Some(error.to_owned());
            let Status::Leased { key, .. } =
                std::mem::replace(&mut record.status, Status::Scheduled)
            else {
                unreachable!("held() checked the status");
            };
            state.leased.remove(&key);
            state.scheduled.insert(scheduled_key, lease.job.id.clone());
        }
        self.wake_workers();
        Ok(())
    }

    async fn defer(&self, lease: &Lease, delay: Duration) -> Result<()> {
        let now = Instant::now();
        {
            let mut state = self.lock();
            let scheduled_key = state.next_key(now + delay);
            let record = state.held(lease, now)?;
            record.job.attempt = record.job.attempt.saturating_sub(1);
            let Status::Leased { key, .. } =
                std::mem::replace(&mut record.status, Status::Scheduled)
            else {
                unreachable!("held() checked the status");
            };
            state.leased.remove(&key);
            state.scheduled.insert(scheduled_key, lease.job.id.clone());
        }
        self.wake_workers();
        Ok(())
    }

    async fn dead_letter(&self, lease: &Lease, reason: &str) -> Result<()> {
        let now = Instant::now();
        let at_ms = unix_millis_now();
        let mut state = self.lock();
        let record = state.held(lease, now)?;
        record.job.last_error = Some(reason.to_owned());
        let Status::Leased { key, .. } = std::mem::replace(&mut record.status, Status::Dead) else {
            unreachable!("held() checked the status");
        };
        let letter = DeadLetter {
            job: record.job.clone(),
            reason: reason.to_owned(),
            attempts: record.job.attempt,
            dead_lettered_at_ms: at_ms,
            state: DeadLetterState::Pending,
        };
        state.leased.remove(&key);
        // A job replayed before and failed again replaces its old letter.
        if let Some(old) = state.letters.remove(&lease.job.id) {
            state.remove_letter_index(&old);
        }
        state.letter_order.insert((at_ms, lease.job.id.clone()));
        state.letters.insert(lease.job.id.clone(), letter);
        state.pending_letters += 1;
        Ok(())
    }

    async fn stats(&self) -> Result<QueueStats> {
        let mut state = self.lock();
        state.advance(Instant::now());
        Ok(QueueStats {
            ready: state.ready.len() as u64,
            scheduled: state.scheduled.len() as u64,
            leased: state.leased.len() as u64,
            dead_lettered: state.pending_letters,
        })
    }

    async fn wait_for_work(&self, timeout: Duration) {
        let notified = self.work.notified();
        let mut deadline = Instant::now() + timeout;
        if let Some(due) = self.lock().next_due() {
            deadline = deadline.min(due);
        }
        let _ = tokio::time::timeout_at(deadline, notified).await;
    }
}

#[async_trait]
impl DeadLetterStore for MemoryQueue {
    async fn list(
        &self,
        filter: &DeadLetterFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<DeadLetter>> {
        let start = after.map(decode_cursor).transpose()?;
        let state = self.lock();
        let mut items: Vec<DeadLetter> = Vec::new();
        let mut next = None;
        let positions = state
            .letter_order
            .iter()
            .filter(|position| start.as_ref().is_none_or(|s| *position > s));
        for (_, id) in positions {
            let Some(letter) = state.letters.get(id) else {
                continue;
            };
            if !filter.matches(letter) {
                continue;
            }
            if items.len() == limit {
                next = items
                    .last()
                    .map(|l| encode_cursor(l.dead_lettered_at_ms, &l.job.id));
                break;
            }
            items.push(letter.clone());
        }
        Ok(Page { items, next })
    }

    async fn get(&self, id: &str) -> Result<Option<DeadLetter>> {
        Ok(self.lock().letters.get(id).cloned())
    }

    async fn replay(&self, id: &str) -> Result<Replayed> {
        {
            let mut state = self.lock();
            let letter = state
                .letters
                .get_mut(id)
                .ok_or_else(|| Error::NotFound(format!("dead letter {id}")))?;
            if letter.state == DeadLetterState::Replayed {
                return Ok(Replayed::AlreadyReplayed);
            }
            letter.state = DeadLetterState::Replayed;
            state.pending_letters -= 1;
            let record = state
                .jobs
                .get_mut(id)
                .expect("a pending letter's job is kept");
            // Fresh attempts: the operator decided the job deserves a new run.
            record.job.attempt = 0;
            record.status = Status::Ready;
            state.ready.push_back(id.to_owned());
        }
        self.wake_workers();
        Ok(Replayed::Requeued)
    }

    async fn discard(&self, id: &str) -> Result<()> {
        let mut state = self.lock();
        let letter = state
            .letters
            .remove(id)
            .ok_or_else(|| Error::NotFound(format!("dead letter {id}")))?;
        state.remove_letter_index(&letter);
        if letter.state == DeadLetterState::Pending {
            state.pending_letters -= 1;
            // The job itself goes too; a replayed one keeps running.
            state.jobs.remove(id);
        }
        Ok(())
    }
}
