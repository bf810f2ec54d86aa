//! Shared set-up: a real Redis, one fresh key prefix per test.

#![allow(dead_code)]

use webhook_armor_redis::{RedisBackend, RedisConfig};

/// `REDIS_URL`, or the local server.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A plain connection to the tests' Redis, for looking at the keys a
/// backend leaves.
pub async fn connection() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|error| {
            panic!(
                "Redis must be reachable at {} (set REDIS_URL): {error}",
                redis_url()
            )
        })
}

/// A prefix no other test uses, so tests run in parallel on one server.
pub fn unique_prefix(test: &str) -> String {
    format!("wa-test-{test}-{:016x}", fastrand_u64())
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// How long the tests' completed jobs and delivery attempts are remembered:
/// long enough for any test to see a completed id refused, short enough that
/// what a run leaves in Redis expires by itself (the defaults are 24 h and
/// 7 days).
pub const TEST_RETENTION: std::time::Duration = std::time::Duration::from_secs(600);

/// The tests' configuration for `prefix`: [`TEST_RETENTION`] for completed
/// jobs and delivery attempts.
pub fn config(prefix: impl Into<String>) -> RedisConfig {
    RedisConfig::new(prefix)
        .completed_retention(TEST_RETENTION)
        .attempt_retention(TEST_RETENTION)
}

/// A backend on a fresh prefix. Panics (fails the test) if Redis is not
/// reachable: a backend test never skips silently.
pub async fn backend_with(config: RedisConfig) -> RedisBackend {
    let url = redis_url();
    RedisBackend::connect(&url, config)
        .await
        .unwrap_or_else(|error| panic!("Redis must be reachable at {url} (set REDIS_URL): {error}"))
}

pub async fn backend(test: &str) -> RedisBackend {
    backend_with(config(unique_prefix(test))).await
}
