use std::collections::HashSet;

use super::{Backend, LONG_LEASE};
use crate::Error;
use crate::dead_letter::{DeadLetterFilter, DeadLetterState, Replayed};
use crate::queue::{Enqueued, NewJob};

/// Enqueues `id` with `metadata`, leases it and dead-letters it with `reason`.
async fn dead_letter(backend: &Backend, id: &str, metadata: (&str, &str), reason: &str) {
    let job = NewJob::new(id, format!("body {id}")).with_metadata(metadata.0, metadata.1);
    assert_eq!(backend.queue.enqueue(job).await.unwrap(), Enqueued::New);
    let lease = backend.queue.lease(1, LONG_LEASE).await.unwrap().remove(0);
    assert_eq!(lease.job.id, id);
    backend.queue.dead_letter(&lease, reason).await.unwrap();
}

/// A dead-lettered job is listed and fetched with its reason and attempts,
/// and is no longer leasable.
pub async fn dead_letter_is_listed_and_fetched(backend: Backend) {
    dead_letter(
        &backend,
        "job-1",
        ("endpoint", "ep-1"),
        "HTTP 400 from receiver",
    )
    .await;
    assert!(
        backend
            .queue
            .lease(10, LONG_LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(backend.queue.stats().await.unwrap().dead_lettered, 1);
    let page = backend
        .dead_letters
        .list(&DeadLetterFilter::all(), None, 10)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.next, None);
    let letter = backend
        .dead_letters
        .get("job-1")
        .await
        .unwrap()
        .expect("present");
    assert_eq!(letter, page.items[0]);
    assert_eq!(letter.reason, "HTTP 400 from receiver");
    assert_eq!(letter.attempts, 1);
    assert_eq!(letter.state, DeadLetterState::Pending);
    assert_eq!(&letter.job.payload[..], b"body job-1");
    assert!(letter.dead_lettered_at_ms > 0);
    // Its id stays taken: a sender's retry is a duplicate, not a new job.
    let again = NewJob::new("job-1", "again");
    assert_eq!(
        backend.queue.enqueue(again).await.unwrap(),
        Enqueued::Duplicate
    );
}

/// Replay puts the job back once with fresh attempts; replaying again does nothing.
pub async fn replay_requeues_once(backend: Backend) {
    dead_letter(&backend, "job-1", ("k", "v"), "boom").await;
    assert_eq!(
        backend.dead_letters.replay("job-1").await.unwrap(),
        Replayed::Requeued
    );
    assert_eq!(
        backend.dead_letters.replay("job-1").await.unwrap(),
        Replayed::AlreadyReplayed
    );
    let leases = backend.queue.lease(10, LONG_LEASE).await.unwrap();
    assert_eq!(leases.len(), 1, "queued exactly once");
    assert_eq!(leases[0].job.attempt, 1, "fresh attempts");
    assert_eq!(
        leases[0].job.last_error.as_deref(),
        Some("boom"),
        "a replayed job carries why it was dead-lettered, so a handler can tell a replay"
    );
    assert_eq!(&leases[0].job.payload[..], b"body job-1");
    let letter = backend
        .dead_letters
        .get("job-1")
        .await
        .unwrap()
        .expect("kept as a record");
    assert_eq!(letter.state, DeadLetterState::Replayed);
    assert_eq!(backend.queue.stats().await.unwrap().dead_lettered, 0);
    // Failing again makes it pending again, replayable again.
    backend
        .queue
        .dead_letter(&leases[0], "boom again")
        .await
        .unwrap();
    let letter = backend.dead_letters.get("job-1").await.unwrap().unwrap();
    assert_eq!(
        (letter.state, letter.reason.as_str()),
        (DeadLetterState::Pending, "boom again")
    );
    assert_eq!(
        backend.dead_letters.replay("job-1").await.unwrap(),
        Replayed::Requeued
    );
}

/// Bulk replay takes only pending letters matching the filter, each once.
pub async fn replay_matching_filters(backend: Backend) {
    dead_letter(&backend, "a1", ("endpoint", "a"), "x").await;
    dead_letter(&backend, "b1", ("endpoint", "b"), "x").await;
    dead_letter(&backend, "a2", ("endpoint", "a"), "x").await;
    let only_a = DeadLetterFilter::pending().with_metadata("endpoint", "a");
    assert_eq!(
        backend.dead_letters.replay_matching(&only_a).await.unwrap(),
        2
    );
    assert_eq!(
        backend.dead_letters.replay_matching(&only_a).await.unwrap(),
        0
    );
    let leased: HashSet<String> = backend
        .queue
        .lease(10, LONG_LEASE)
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.job.id)
        .collect();
    assert_eq!(leased, HashSet::from(["a1".to_owned(), "a2".to_owned()]));
    let pending = backend
        .dead_letters
        .list(&DeadLetterFilter::pending(), None, 10)
        .await
        .unwrap();
    let ids: Vec<&str> = pending.items.iter().map(|l| l.job.id.as_str()).collect();
    assert_eq!(ids, ["b1"]);
    let future = DeadLetterFilter::all().between(Some(i64::MAX - 1), None);
    assert!(
        backend
            .dead_letters
            .list(&future, None, 10)
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

/// Discard deletes the letter; it cannot be replayed afterwards.
pub async fn discard_removes_the_letter(backend: Backend) {
    dead_letter(&backend, "job-1", ("k", "v"), "x").await;
    backend.dead_letters.discard("job-1").await.unwrap();
    assert_eq!(backend.dead_letters.get("job-1").await.unwrap(), None);
    assert!(matches!(
        backend.dead_letters.replay("job-1").await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        backend.dead_letters.discard("job-1").await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(backend.queue.stats().await.unwrap().dead_lettered, 0);
}

/// Paging through 25 letters 10 at a time visits each exactly once, in order.
pub async fn dead_letter_paging_visits_each_once(backend: Backend) {
    for i in 0..25 {
        dead_letter(&backend, &format!("job-{i:02}"), ("k", "v"), "x").await;
    }
    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = backend
            .dead_letters
            .list(&DeadLetterFilter::all(), after.as_deref(), 10)
            .await
            .unwrap();
        pages += 1;
        seen.extend(page.items.iter().map(|l| l.job.id.clone()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|i| format!("job-{i:02}")).collect();
    assert_eq!(seen, expected);
}

/// Unknown ids are reported as not found, not as success.
pub async fn unknown_dead_letter_is_not_found(backend: Backend) {
    assert_eq!(backend.dead_letters.get("nope").await.unwrap(), None);
    assert!(matches!(
        backend.dead_letters.replay("nope").await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        backend.dead_letters.discard("nope").await,
        Err(Error::NotFound(_))
    ));
    // A live (not dead-lettered) job is not a dead letter either.
    backend
        .queue
        .enqueue(NewJob::new("alive", "x"))
        .await
        .unwrap();
    assert!(matches!(
        backend.dead_letters.replay("alive").await,
        Err(Error::NotFound(_))
    ));
}
