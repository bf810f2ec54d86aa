//! Shared parts of the webhook-armor benchmarks.

pub mod server;

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
