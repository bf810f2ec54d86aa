//! The delivery attempt log expires after `RedisConfig::attempt_retention`,
//! for a message's attempts and for an endpoint's, with and without group
//! commit: checked on the real server.

#![cfg(feature = "deliver")]

mod common;

use std::time::Duration;

use redis::AsyncCommands;
use webhook_armor::clock::unix_millis_now;
use webhook_armor::deliver::{AttemptLog, DeliveryAttempt};
use webhook_armor_redis::RedisConfig;

/// Both lists carry the configured expiry, not the 7-day default.
async fn both_lists_expire_within(group_commit: bool) {
    let prefix = common::unique_prefix("attempt-ttl");
    let retention = Duration::from_secs(120);
    let backend = common::backend_with(
        common::config(&prefix)
            .group_commit(group_commit)
            .attempt_retention(retention),
    )
    .await;
    let attempt = DeliveryAttempt::new("msg-1", "ep-1", 1, unix_millis_now(), "delivered");
    backend.record(attempt).await.unwrap();

    let mut redis = common::connection().await;
    for key in [
        format!("{{{prefix}}}:attempts:msg:msg-1"),
        format!("{{{prefix}}}:attempts:ep:ep-1"),
    ] {
        let ttl_ms: i64 = redis.pttl(&key).await.unwrap();
        assert!(
            ttl_ms > 100_000 && ttl_ms <= 120_000,
            "{key} expires in {ttl_ms} ms, not within the 120 s retention (group commit {group_commit})"
        );
    }
}

#[tokio::test]
async fn attempt_lists_get_the_configured_expiry_with_group_commit() {
    both_lists_expire_within(true).await;
}

#[tokio::test]
async fn attempt_lists_get_the_configured_expiry_without_group_commit() {
    both_lists_expire_within(false).await;
}

/// After the retention both queries come back empty, and a later attempt
/// starts a fresh log with its own expiry.
#[tokio::test]
async fn expired_attempts_are_gone_from_both_queries() {
    let retention = Duration::from_millis(300);
    let backend = common::backend_with(
        RedisConfig::new(common::unique_prefix("attempt-expiry")).attempt_retention(retention),
    )
    .await;
    for number in 1..=3 {
        let attempt = DeliveryAttempt::new("msg-1", "ep-1", number, unix_millis_now(), "retrying");
        backend.record(attempt).await.unwrap();
    }
    assert_eq!(backend.for_message("msg-1").await.unwrap().len(), 3);
    assert_eq!(backend.for_endpoint("ep-1", 10).await.unwrap().len(), 3);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !backend.for_message("msg-1").await.unwrap().is_empty()
        || !backend.for_endpoint("ep-1", 10).await.unwrap().is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "attempts outlived their 300 ms retention by 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let fresh = DeliveryAttempt::new("msg-1", "ep-1", 4, unix_millis_now(), "delivered");
    backend.record(fresh.clone()).await.unwrap();
    assert_eq!(backend.for_message("msg-1").await.unwrap(), vec![fresh]);
}
