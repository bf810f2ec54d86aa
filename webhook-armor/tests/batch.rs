//! The group-commit batcher: never more batches at once than allowed, and
//! what arrives while they run is grouped into the next one.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use webhook_armor::batch::spawn_batcher;

struct Request {
    n: usize,
    reply: oneshot::Sender<usize>,
}

#[derive(Default)]
struct Observed {
    running: AtomicUsize,
    most_running: AtomicUsize,
    batches: AtomicUsize,
}

/// Sends 200 requests at once through a batcher whose flush takes 5 ms;
/// every request is answered by its own batch.
async fn run(in_flight: usize) -> Arc<Observed> {
    let observed = Arc::new(Observed::default());
    let seen = observed.clone();
    let batcher = spawn_batcher(in_flight, move |batch: Vec<Request>| {
        let seen = seen.clone();
        async move {
            let now = seen.running.fetch_add(1, Ordering::SeqCst) + 1;
            seen.most_running.fetch_max(now, Ordering::SeqCst);
            seen.batches.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            seen.running.fetch_sub(1, Ordering::SeqCst);
            for request in batch {
                let _ = request.reply.send(request.n);
            }
        }
    });
    let senders = (0..200).map(|n| {
        let batcher = batcher.clone();
        tokio::spawn(async move {
            let (reply, answer) = oneshot::channel();
            batcher.send(Request { n, reply }).await.unwrap();
            (n, answer.await.unwrap())
        })
    });
    for sent in futures_util::future::join_all(senders).await {
        let (n, answered) = sent.unwrap();
        assert_eq!(n, answered, "each request gets its own answer");
    }
    observed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_batch_in_flight_groups_what_waits_behind_it() {
    let observed = run(1).await;
    assert_eq!(observed.most_running.load(Ordering::SeqCst), 1);
    // 200 concurrent requests, one 5 ms flush at a time: they pile up into a
    // few batches, not 200 (how few depends on how the senders are scheduled).
    let batches = observed.batches.load(Ordering::SeqCst);
    assert!(
        batches < 50,
        "{batches} batches for 200 concurrent requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_more_batches_run_at_once_than_allowed() {
    for in_flight in [2, 3] {
        let observed = run(in_flight).await;
        let most = observed.most_running.load(Ordering::SeqCst);
        assert!(
            most <= in_flight,
            "{most} batches at once, {in_flight} allowed"
        );
    }
}

#[tokio::test]
async fn zero_in_flight_still_flushes() {
    // A configuration of 0 means "one", never "stall forever".
    let observed = run(0).await;
    assert_eq!(observed.most_running.load(Ordering::SeqCst), 1);
}
