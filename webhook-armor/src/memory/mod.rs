//! In-memory backends: the zero-set-up default.
//!
//! Everything lives in this process and is lost when it exits, so use them for
//! tests, development and single-process services that accept that; use the
//! Redis or PostgreSQL backends to share a pipeline between processes and to
//! survive restarts. All of them bound their memory: idempotency keys and
//! finished jobs are forgotten after their TTL.
//!
//! Time is read from `tokio::time`, so tests can pause and advance it.

mod chunked;
#[cfg(feature = "deliver")]
mod delivery;
mod events;
mod idempotency;
mod queue;
mod sharded;

#[cfg(feature = "deliver")]
pub use delivery::{MemoryAttemptLog, MemoryCircuitBreaker, MemoryEndpointStore};
pub use events::MemoryEventBus;
pub use idempotency::MemoryIdempotencyStore;
pub use queue::MemoryQueue;
