//! Shared parts of the webhook-armor benchmarks.

pub mod server;

/// The bench binaries (all link this library) allocate with mimalloc, as we
/// recommend for a service built on webhook-armor: with glibc's malloc, its
/// arena locks and cross-thread frees took a large share of a busy pipeline's
/// time (memory delivery 32,000/s with it, 58,000/s with mimalloc, in
/// back-to-back runs here). Every baseline runs in the same binary, on the
/// same allocator. `--features system-allocator` measures with glibc's.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The JSON body the queue and delivery benches send.
pub const PAYLOAD: &[u8] = br#"{"type":"invoice.paid","data":{"amount":4200,"currency":"eur"}}"#;

/// `REDIS_URL`, or the local server.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// `DATABASE_URL`, or the local PostgreSQL.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A name unique to this run (nanoseconds since the epoch, in hex), for
/// Redis prefixes, PostgreSQL schemas and event ids that must not collide
/// with an earlier run's leftovers.
pub fn run_id() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_nanos()
    )
}

/// Deletes every key of the Redis pipeline `prefix` (keys are `{prefix}...`),
/// so a bench run leaves the database as it found it. Best effort.
pub async fn delete_redis_prefix(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let pattern = format!("{{{prefix}}}*");
    let mut cursor = 0u64;
    loop {
        let Ok((next, keys)): redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut connection)
            .await
        else {
            return;
        };
        if !keys.is_empty() {
            let _: redis::RedisResult<i64> = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut connection)
                .await;
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}
