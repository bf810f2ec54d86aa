use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::{Backend, LONG_LEASE, SHORT_LEASE, outlive_short_lease};
use crate::Error;
use crate::queue::{Enqueued, Lease, NewJob};

async fn enqueue(backend: &Backend, id: &str) {
    let job = NewJob::new(id, format!("payload of {id}")).with_metadata("source", "conformance");
    assert_eq!(
        backend.queue.enqueue(job).await.unwrap(),
        Enqueued::New,
        "{id}"
    );
}

async fn lease_one(backend: &Backend, lease_for: Duration) -> Lease {
    let mut leases = backend.queue.lease(1, lease_for).await.unwrap();
    assert_eq!(leases.len(), 1, "one job should be ready");
    leases.remove(0)
}

/// A second enqueue of the same id changes nothing.
pub async fn enqueue_refuses_duplicate_ids(backend: Backend) {
    enqueue(&backend, "job-1").await;
    let again = NewJob::new("job-1", "other payload");
    assert_eq!(
        backend.queue.enqueue(again).await.unwrap(),
        Enqueued::Duplicate
    );
    let lease = lease_one(&backend, LONG_LEASE).await;
    assert_eq!(
        &lease.job.payload[..],
        b"payload of job-1",
        "the first payload is kept"
    );
    assert!(
        backend
            .queue
            .lease(10, LONG_LEASE)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Jobs come out oldest first, with their payload, metadata and attempt 1.
pub async fn lease_is_fifo_and_counts_attempts(backend: Backend) {
    for id in ["a", "b", "c"] {
        enqueue(&backend, id).await;
    }
    let leases = backend.queue.lease(3, LONG_LEASE).await.unwrap();
    let ids: Vec<&str> = leases.iter().map(|l| l.job.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    let first = &leases[0].job;
    assert_eq!(first.attempt, 1);
    assert_eq!(&first.payload[..], b"payload of a");
    assert_eq!(
        first.metadata.get("source").map(String::as_str),
        Some("conformance")
    );
    assert!(first.enqueued_at_ms > 0);
    let stats = backend.queue.stats().await.unwrap();
    assert_eq!((stats.ready, stats.leased), (0, 3));
}

/// A batch lease takes at most what was asked, and never the same job twice.
pub async fn batch_lease_respects_the_limit(backend: Backend) {
    for i in 0..10 {
        enqueue(&backend, &format!("job-{i}")).await;
    }
    let first = backend.queue.lease(4, LONG_LEASE).await.unwrap();
    let second = backend.queue.lease(100, LONG_LEASE).await.unwrap();
    assert_eq!((first.len(), second.len()), (4, 6));
    let ids: HashSet<String> = first
        .iter()
        .chain(&second)
        .map(|l| l.job.id.clone())
        .collect();
    assert_eq!(ids.len(), 10);
}

/// An acked job is gone from the counts and never leased again.
pub async fn ack_finishes_the_job(backend: Backend) {
    enqueue(&backend, "job-1").await;
    let lease = lease_one(&backend, SHORT_LEASE * 2).await;
    backend.queue.ack(&lease).await.unwrap();
    assert_eq!(backend.queue.stats().await.unwrap().depth(), 0);
    outlive_short_lease().await;
    outlive_short_lease().await;
    assert!(
        backend
            .queue
            .lease(10, LONG_LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    // A second ack of the same lease changes nothing and says so.
    assert!(matches!(
        backend.queue.ack(&lease).await,
        Err(Error::LeaseLost)
    ));
}

/// Once a job is acked, its lease is spent for every step: a late nack,
/// defer or dead-letter is refused, changes nothing, and the id stays
/// completed.
pub async fn acked_lease_refuses_every_later_step(backend: Backend) {
    enqueue(&backend, "job-1").await;
    let lease = lease_one(&backend, LONG_LEASE).await;
    backend.queue.ack(&lease).await.unwrap();
    assert!(matches!(
        backend.queue.nack(&lease, Duration::ZERO, "late").await,
        Err(Error::LeaseLost)
    ));
    assert!(matches!(
        backend.queue.defer(&lease, Duration::ZERO).await,
        Err(Error::LeaseLost)
    ));
    assert!(matches!(
        backend.queue.dead_letter(&lease, "late").await,
        Err(Error::LeaseLost)
    ));
    let stats = backend.queue.stats().await.unwrap();
    assert_eq!(
        (
            stats.ready,
            stats.scheduled,
            stats.leased,
            stats.dead_lettered
        ),
        (0, 0, 0, 0)
    );
    assert!(backend.queue.lease(1, LONG_LEASE).await.unwrap().is_empty());
    assert_eq!(
        backend
            .queue
            .enqueue(NewJob::new("job-1", "again"))
            .await
            .unwrap(),
        Enqueued::Duplicate
    );
}

/// The id of a completed job is still refused (within the retention).
pub async fn completed_job_still_refuses_its_id(backend: Backend) {
    enqueue(&backend, "job-1").await;
    let lease = lease_one(&backend, LONG_LEASE).await;
    backend.queue.ack(&lease).await.unwrap();
    let again = NewJob::new("job-1", "again");
    assert_eq!(
        backend.queue.enqueue(again).await.unwrap(),
        Enqueued::Duplicate
    );
}

/// A nacked job is not leasable before its retry time, then comes back with
/// the next attempt number and the recorded error.
pub async fn nack_schedules_a_retry(backend: Backend) {
    enqueue(&backend, "job-1").await;
    let lease = lease_one(&backend, LONG_LEASE).await;
    backend
        .queue
        .nack(&lease, SHORT_LEASE, "downstream 503")
        .await
        .unwrap();
    assert!(
        backend
            .queue
            .lease(10, LONG_LEASE)
            .await
            .unwrap()
            .is_empty(),
        "too early"
    );
    assert_eq!(backend.queue.stats().await.unwrap().scheduled, 1);
    outlive_short_lease().await;
    let retry = lease_one(&backend, LONG_LEASE).await;
    assert_eq!(retry.job.attempt, 2);
    assert_eq!(retry.job.last_error.as_deref(), Some("downstream 503"));
    assert!(
        matches!(backend.queue.ack(&lease).await, Err(Error::LeaseLost)),
        "old lease is dead"
    );
    backend.queue.ack(&retry).await.unwrap();
}

/// A job enqueued with a delay waits for it.
pub async fn delayed_job_waits(backend: Backend) {
    let job = NewJob::new("later", "x").with_delay(SHORT_LEASE);
    backend.queue.enqueue(job).await.unwrap();
    assert!(backend.queue.lease(1, LONG_LEASE).await.unwrap().is_empty());
    outlive_short_lease().await;
    assert_eq!(lease_one(&backend, LONG_LEASE).await.job.id, "later");
}

/// A lease that runs out (its worker crashed) makes the job leasable again.
pub async fn expired_lease_returns_the_job(backend: Backend) {
    enqueue(&backend, "job-1").await;
    let first = lease_one(&backend, SHORT_LEASE).await;
    assert!(backend.queue.lease(1, LONG_LEASE).await.unwrap().is_empty());
    outlive_short_lease().await;
    let second = lease_one(&backend, LONG_LEASE).await;
    assert_eq!(second.job.id, "job-1");
    assert_eq!(second.job.attempt, 2, "the lost lease counts as an attempt");
    assert_ne!(first.token, second.token);
}

/// After another worker re-leased the job, the first worker's ack, nack and
/// dead-letter are refused and change nothing.
pub async fn late_ack_after_reclaim_is_refused(backend: Backend) {
    enqueue(&backend, "job-1").await;
    let stale = lease_one(&backend, SHORT_LEASE).await;
    outlive_short_lease().await;
    let current = lease_one(&backend, LONG_LEASE).await;
    assert!(matches!(
        backend.queue.ack(&stale).await,
        Err(Error::LeaseLost)
    ));
    assert!(matches!(
        backend.queue.nack(&stale, Duration::ZERO, "x").await,
        Err(Error::LeaseLost)
    ));
    assert!(matches!(
        backend.queue.dead_letter(&stale, "x").await,
        Err(Error::LeaseLost)
    ));
    let stats = backend.queue.stats().await.unwrap();
    assert_eq!((stats.leased, stats.ready, stats.dead_lettered), (1, 0, 0));
    backend.queue.ack(&current).await.unwrap();
}

/// An ack after the lease deadline is refused even if nobody re-leased yet.
pub async fn ack_after_deadline_is_refused(backend: Backend) {
    enqueue(&backend, "job-1").await;
    let lease = lease_one(&backend, SHORT_LEASE).await;
    outlive_short_lease().await;
    assert!(matches!(
        backend.queue.ack(&lease).await,
        Err(Error::LeaseLost)
    ));
    assert_eq!(
        lease_one(&backend, LONG_LEASE).await.job.id,
        "job-1",
        "the job is still there"
    );
}

/// Eight tasks leasing at once from 200 jobs: every job leased exactly once.
pub async fn concurrent_leases_never_share_a_job(backend: Backend) {
    for i in 0..200 {
        enqueue(&backend, &format!("job-{i}")).await;
    }
    let start = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let queue = backend.queue.clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let mut mine = Vec::new();
                loop {
                    let leases = queue.lease(7, LONG_LEASE).await.unwrap();
                    if leases.is_empty() {
                        return mine;
                    }
                    for lease in leases {
                        queue.ack(&lease).await.unwrap();
                        mine.push(lease.job.id);
                    }
                }
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for task in tasks {
        for id in task.await.unwrap() {
            assert!(seen.insert(id.clone()), "{id} leased twice");
        }
    }
    assert_eq!(seen.len(), 200);
}

/// A deferred job comes back after its delay with the same attempt number;
/// the deferring lease is spent.
pub async fn defer_does_not_count_an_attempt(backend: Backend) {
    enqueue(&backend, "job-1").await;
    let lease = lease_one(&backend, LONG_LEASE).await;
    assert_eq!(lease.job.attempt, 1);
    backend.queue.defer(&lease, SHORT_LEASE).await.unwrap();
    assert!(
        backend.queue.lease(1, LONG_LEASE).await.unwrap().is_empty(),
        "too early"
    );
    assert!(matches!(
        backend.queue.ack(&lease).await,
        Err(Error::LeaseLost)
    ));
    outlive_short_lease().await;
    let again = lease_one(&backend, LONG_LEASE).await;
    assert_eq!(again.job.attempt, 1, "deferral is not an attempt");
    assert!(matches!(
        backend.queue.defer(&lease, Duration::ZERO).await,
        Err(Error::LeaseLost)
    ));
    backend.queue.ack(&again).await.unwrap();
}
