//! Retention: finished work leaves the tables on its own.

#[path = "common.rs"]
mod common;

use std::time::Duration;

use webhook_armor::idempotency::{Claim, IdempotencyStore};
use webhook_armor::queue::{NewJob, Queue};
use webhook_armor_postgres::PostgresConfig;

async fn count(backend: &webhook_armor_postgres::PostgresBackend, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(backend.pool())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_jobs_their_attempts_and_expired_keys_are_pruned() {
    let config = PostgresConfig::new(common::unique_schema("retention"))
        .max_connections(4)
        // Long enough that every attempt row is still there when counted
        // right after the acks (a loaded machine made 200 ms flaky).
        .completed_retention(Duration::from_secs(3))
        .maintenance_interval(Duration::from_millis(100));
    let backend = common::backend_with(config).await;
    for i in 0..300 {
        backend
            .enqueue(NewJob::new(format!("job-{i}"), "{}"))
            .await
            .unwrap();
        let Claim::Acquired(token) = backend
            .claim(&format!("key-{i}"), Duration::from_secs(60))
            .await
            .unwrap()
        else {
            panic!("fresh key");
        };
        backend
            .complete(&format!("key-{i}"), &token, Duration::from_millis(100))
            .await
            .unwrap();
    }
    // One job stays leased and one is dead-lettered: neither may be pruned.
    let mut leases = backend.lease(300, Duration::from_secs(60)).await.unwrap();
    let kept = leases.pop().unwrap();
    let dead = leases.pop().unwrap();
    backend
        .dead_letter(&dead, "kept for the operator")
        .await
        .unwrap();
    for lease in &leases {
        backend.ack(lease).await.unwrap();
    }
    assert_eq!(count(&backend, "attempts").await, 299);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while count(&backend, "jobs").await > 2 || count(&backend, "idempotency_keys").await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "finished work was not pruned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        count(&backend, "attempts").await,
        1,
        "only the dead letter's attempt remains"
    );
    assert_eq!(count(&backend, "dead_letters").await, 1);
    backend.ack(&kept).await.unwrap();
}

/// Delivery attempts older than `attempt_retention` are deleted, in more
/// than one batch, and younger ones stay where both queries find them.
#[cfg(feature = "deliver")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_attempts_older_than_their_retention_are_pruned() {
    use webhook_armor::clock::unix_millis_now;
    use webhook_armor::deliver::{AttemptLog, DeliveryAttempt};

    let config = PostgresConfig::new(common::unique_schema("attempt_ttl"))
        .max_connections(4)
        .attempt_retention(Duration::from_secs(3600))
        .maintenance_interval(Duration::from_millis(100));
    let backend = common::backend_with(config).await;
    // Two hours old: past the retention. More than one prune batch (5,000).
    let old_ms = unix_millis_now() - 2 * 3600 * 1000;
    let old: Vec<_> = (0..6_000u32)
        .map(|i| {
            let backend = backend.clone();
            tokio::spawn(async move {
                let attempt = DeliveryAttempt::new(
                    format!("old-{i}"),
                    "ep-shared",
                    1,
                    old_ms + i64::from(i),
                    "delivered",
                );
                backend.record(attempt).await
            })
        })
        .collect();
    for recorded in old {
        recorded.await.unwrap().unwrap();
    }
    let recent = DeliveryAttempt::new("recent", "ep-shared", 1, unix_millis_now(), "delivered");
    backend.record(recent.clone()).await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while count(&backend, "delivery_attempts").await > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "old delivery attempts were not pruned"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        backend.for_message("recent").await.unwrap(),
        vec![recent.clone()]
    );
    assert!(backend.for_message("old-0").await.unwrap().is_empty());
    assert_eq!(
        backend.for_endpoint("ep-shared", 100).await.unwrap(),
        vec![recent],
        "the endpoint's log keeps only the attempt inside the retention"
    );
}
