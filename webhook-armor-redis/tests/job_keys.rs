//! What the queue leaves in Redis per job, and how the scripts treat job keys
//! they did not expect: checked on the real server, key by key.

mod common;

use std::time::Duration;

use redis::AsyncCommands;
use webhook_armor::Queue;
use webhook_armor::queue::NewJob;
use webhook_armor_redis::RedisConfig;

const RETENTION: Duration = Duration::from_secs(90);
const LEASE: Duration = Duration::from_secs(30);

async fn key_type(redis: &mut redis::aio::MultiplexedConnection, key: &str) -> String {
    redis::cmd("TYPE")
        .arg(key)
        .query_async(redis)
        .await
        .unwrap()
}

/// An acked job keeps neither its payload nor its metadata: its key becomes a
/// small marker that expires after the retention, and still refuses the id.
#[tokio::test]
async fn an_acked_job_leaves_only_an_expiring_marker() {
    let prefix = common::unique_prefix("job-keys-ack");
    let backend =
        common::backend_with(RedisConfig::new(&prefix).completed_retention(RETENTION)).await;
    let mut redis = common::connection().await;
    let job_key = format!("{{{prefix}}}:job:job-1");
    backend
        .enqueue(NewJob::new("job-1", vec![7u8; 4096]).with_metadata("k", "v"))
        .await
        .unwrap();
    let lease = backend.lease(1, LEASE).await.unwrap().remove(0);
    assert_eq!(
        key_type(&mut redis, &job_key).await,
        "hash",
        "a pending job is a hash"
    );
    backend.ack(&lease).await.unwrap();

    assert_eq!(
        key_type(&mut redis, &job_key).await,
        "string",
        "the payload went with the hash"
    );
    let bytes: usize = redis.strlen(&job_key).await.unwrap();
    assert!(bytes < 8, "the marker is {bytes} bytes");
    let ttl_ms: i64 = redis.pttl(&job_key).await.unwrap();
    let retention_ms = i64::try_from(RETENTION.as_millis()).unwrap();
    assert!(
        ttl_ms > retention_ms - 10_000 && ttl_ms <= retention_ms,
        "expires after the retention, {ttl_ms} ms left"
    );
    assert_eq!(
        backend
            .enqueue(NewJob::new("job-1", "again"))
            .await
            .unwrap(),
        webhook_armor::queue::Enqueued::Duplicate
    );
}

/// A completed job's id found in the ready list (state an operator or an
/// older version could leave) is dropped by the lease, which still hands out
/// the jobs around it instead of failing.
#[tokio::test]
async fn a_completed_id_in_the_ready_list_is_skipped() {
    let prefix = common::unique_prefix("job-keys-skip");
    let backend = common::backend_with(common::config(&prefix)).await;
    let mut redis = common::connection().await;
    for id in ["before", "done", "after"] {
        backend.enqueue(NewJob::new(id, id)).await.unwrap();
    }
    let leases = backend.lease(3, LEASE).await.unwrap();
    let done = leases.iter().find(|l| l.job.id == "done").unwrap();
    backend.ack(done).await.unwrap();
    for lease in leases.iter().filter(|l| l.job.id != "done") {
        backend.nack(lease, Duration::ZERO, "again").await.unwrap();
    }
    // Put the completed id back in the middle, as if it were ready again.
    let ready = format!("{{{prefix}}}:ready");
    let _: () = redis.rpush(&ready, "done").await.unwrap();

    let mut leased = Vec::new();
    for _ in 0..20 {
        leased.extend(backend.lease(10, LEASE).await.unwrap());
        if leased.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut ids: Vec<_> = leased.iter().map(|l| l.job.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["after", "before"]);
    assert_eq!(
        backend.stats().await.unwrap().ready,
        0,
        "the stray id is gone"
    );
    for lease in &leased {
        backend.ack(lease).await.unwrap();
    }
}

/// A lease taken before the deadline was kept in the job's hash (a job
/// leased by an older version, during a rolling upgrade) is still fenced by
/// its deadline in the leased index: it can be acked while current.
#[tokio::test]
async fn a_lease_without_its_deadline_in_the_hash_is_fenced_by_the_index() {
    let prefix = common::unique_prefix("job-keys-upgrade");
    let backend = common::backend_with(common::config(&prefix)).await;
    let mut redis = common::connection().await;
    backend.enqueue(NewJob::new("a", "a")).await.unwrap();
    backend.enqueue(NewJob::new("b", "b")).await.unwrap();
    let leases = backend.lease(2, LEASE).await.unwrap();
    for lease in &leases {
        let key = format!("{{{prefix}}}:job:{}", lease.job.id);
        let removed: usize = redis.hdel(&key, "dl").await.unwrap();
        assert_eq!(removed, 1, "the lease wrote the deadline into the hash");
    }
    backend.ack(&leases[0]).await.unwrap();
    backend
        .nack(&leases[1], Duration::from_secs(60), "later")
        .await
        .unwrap();
    // Remove the index entry too: with no deadline anywhere, the lease is
    // not provably current and must be refused.
    backend.enqueue(NewJob::new("c", "c")).await.unwrap();
    let lease = backend.lease(1, LEASE).await.unwrap().remove(0);
    let key = format!("{{{prefix}}}:job:c");
    let _: usize = redis.hdel(&key, "dl").await.unwrap();
    let _: usize = redis
        .zrem(format!("{{{prefix}}}:leased"), "c")
        .await
        .unwrap();
    assert!(matches!(
        backend.ack(&lease).await,
        Err(webhook_armor::Error::LeaseLost)
    ));
}
