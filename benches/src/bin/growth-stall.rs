//! The longest single call into the in-memory stores while they grow to
//! millions of remembered ids; prints one JSON line.
//!
//! ```sh
//! cargo run --release -p webhook-armor-benches --bin growth-stall -- 4000000
//! ```
//!
//! With the default retention (24 h) the memory queue remembers every
//! completed id and the idempotency store every key, so a long-running
//! service grows them to millions. A store that grows by doubling one buffer
//! moves all of it inside one call, under the lock every other caller waits
//! on: that call's time is this bench's figure. The baseline, in the same
//! run, is the same number of calls into a store that never grows past one
//! id (retention zero), so what is left over is the price of growing. A
//! slowest call also catches the machine's own pauses (a descheduled
//! thread): the baseline shows how large those are.

use std::time::{Duration, Instant};

use webhook_armor::idempotency::{Claim, IdempotencyStore};
use webhook_armor::memory::{MemoryIdempotencyStore, MemoryQueue};
use webhook_armor::queue::{NewJob, Queue};
use webhook_armor_benches::PAYLOAD;

/// The slowest call and the total time over all calls.
#[derive(Debug, Default)]
struct Calls {
    slowest: Duration,
    slowest_at: usize,
    total: Duration,
}

impl Calls {
    fn time<T>(&mut self, index: usize, call: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let value = call();
        let took = started.elapsed();
        self.total += took;
        if took > self.slowest {
            self.slowest = took;
            self.slowest_at = index;
        }
        value
    }

    fn json(&self, calls: usize) -> serde_json::Value {
        serde_json::json!({
            "slowest_call_ms": (self.slowest.as_secs_f64() * 1e6).round() / 1e3,
            "slowest_at": self.slowest_at,
            "mean_call_us": (self.total.as_secs_f64() * 1e9 / calls as f64).round() / 1e3,
        })
    }
}

/// Enqueue, lease and ack `jobs` jobs one by one; only the ack grows the
/// queue's memory of completed ids.
async fn queue_acks(queue: &MemoryQueue, jobs: usize) -> Calls {
    let mut acks = Calls::default();
    for i in 0..jobs {
        queue
            .enqueue(NewJob::new(format!("evt_{i:012}"), PAYLOAD))
            .await
            .unwrap();
        let lease = queue
            .lease(1, Duration::from_secs(60))
            .await
            .unwrap()
            .pop()
            .unwrap();
        // The ack future does all its work in its first poll (a mutex, no
        // I/O), so timing the blocking poll times the call.
        acks.time(i, || {
            futures_util::FutureExt::now_or_never(queue.ack(&lease))
        })
        .expect("the memory queue answers at once")
        .unwrap();
    }
    acks
}

/// Claim and complete `keys` keys one by one.
async fn claims(store: &MemoryIdempotencyStore, keys: usize, keep: Duration) -> Calls {
    let mut calls = Calls::default();
    for i in 0..keys {
        let key = format!("evt_{i:012}");
        let claim = calls
            .time(i, || {
                futures_util::FutureExt::now_or_never(store.claim(&key, Duration::from_secs(300)))
            })
            .expect("the memory store answers at once")
            .unwrap();
        let Claim::Acquired(token) = claim else {
            panic!("{key} claimed twice");
        };
        calls
            .time(i, || {
                futures_util::FutureExt::now_or_never(store.complete(&key, &token, keep))
            })
            .expect("the memory store answers at once")
            .unwrap();
    }
    calls
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let ids: usize = std::env::args()
        .nth(1)
        .map_or(4_000_000, |n| n.parse().expect("id count"));

    let growing = MemoryQueue::new(); // 24 h retention: remembers every id
    let grown = queue_acks(&growing, ids).await;
    let flat = queue_acks(&MemoryQueue::new().completed_retention(Duration::ZERO), ids).await;
    drop(growing);

    let store = MemoryIdempotencyStore::new();
    let grown_claims = claims(&store, ids, Duration::from_secs(24 * 60 * 60)).await;
    drop(store);
    let flat_claims = claims(&MemoryIdempotencyStore::new(), ids, Duration::ZERO).await;

    println!(
        "{}",
        serde_json::json!({
            "bench": "growth-stall",
            "ids": ids,
            "queue_ack": {"growing": grown.json(ids), "baseline_retention_zero": flat.json(ids)},
            "idempotency_claim_and_complete": {
                "growing": grown_claims.json(2 * ids),
                "baseline_retention_zero": flat_claims.json(2 * ids),
            },
        })
    );
}
