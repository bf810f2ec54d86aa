//! The shared conformance suite: the contracts of the storage traits, as tests.
//!
//! Every backend (memory, Redis, PostgreSQL, yours) runs the same functions.
//! Each takes a fresh [`Backend`]: isolate tests from one another (a key
//! prefix, a schema) so they can run in parallel. Timing-dependent checks use
//! real time with short leases, since a remote server's clock cannot be paused.
//!
//! ```ignore
//! // tests/conformance.rs of your backend crate, with
//! // webhook-armor = { version = "...", features = ["conformance"] } in dev-dependencies
//! async fn backend() -> webhook_armor::conformance::Backend {
//!     let store = my_backend::connect_isolated().await;
//!     webhook_armor::conformance::Backend::from_shared(store)
//! }
//! webhook_armor::conformance_tests!(backend);
//! ```

mod dead_letter;
#[cfg(feature = "deliver")]
mod delivery;
mod events;
mod idempotency;
pub mod load;
mod queue;

use std::sync::Arc;
use std::time::Duration;

pub use dead_letter::*;
#[cfg(feature = "deliver")]
pub use delivery::*;
pub use events::*;
pub use idempotency::*;
pub use queue::*;

use crate::dead_letter::DeadLetterStore;
use crate::events::EventBus;
use crate::idempotency::IdempotencyStore;
use crate::queue::Queue;

/// The backend under test, one trait object per capability.
#[derive(Debug, Clone)]
pub struct Backend {
    /// Idempotency claims.
    pub idempotency: Arc<dyn IdempotencyStore>,
    /// The job queue.
    pub queue: Arc<dyn Queue>,
    /// The dead letters of that same queue.
    pub dead_letters: Arc<dyn DeadLetterStore>,
    /// Lifecycle events.
    pub events: Arc<dyn EventBus>,
}

impl Backend {
    /// One value implementing every trait, shared.
    pub fn from_shared<T>(backend: T) -> Self
    where
        T: IdempotencyStore + Queue + DeadLetterStore + EventBus,
    {
        let backend = Arc::new(backend);
        Self {
            idempotency: backend.clone(),
            queue: backend.clone(),
            dead_letters: backend.clone(),
            events: backend,
        }
    }
}

/// A lease short enough to watch expire in a test, long enough that a loaded
/// CI machine does not let it expire between two adjacent calls.
pub(crate) const SHORT_LEASE: Duration = Duration::from_secs(1);
/// A lease no test outlives.
pub(crate) const LONG_LEASE: Duration = Duration::from_secs(60);

/// Sleeps past a [`SHORT_LEASE`] (or short TTL) with margin for slow machines.
pub(crate) async fn outlive_short_lease() {
    tokio::time::sleep(SHORT_LEASE * 2).await;
}

/// Expands to one `#[tokio::test]` per conformance function, each calling
/// `$setup().await` for a fresh [`Backend`].
#[macro_export]
macro_rules! conformance_tests {
    ($setup:path) => {
        $crate::conformance_tests!(@tests $setup;
            claim_is_exclusive,
            completed_key_reports_duplicates,
            release_frees_the_key,
            stale_claim_token_is_refused,
            in_progress_claim_expires,
            completed_key_expires,
            concurrent_claims_have_one_winner,
            enqueue_refuses_duplicate_ids,
            lease_is_fifo_and_counts_attempts,
            batch_lease_respects_the_limit,
            ack_finishes_the_job,
            acked_lease_refuses_every_later_step,
            completed_job_still_refuses_its_id,
            nack_schedules_a_retry,
            delayed_job_waits,
            expired_lease_returns_the_job,
            late_ack_after_reclaim_is_refused,
            ack_after_deadline_is_refused,
            concurrent_leases_never_share_a_job,
            defer_does_not_count_an_attempt,
            dead_letter_is_listed_and_fetched,
            replay_requeues_once,
            replay_matching_filters,
            discard_removes_the_letter,
            dead_letter_paging_visits_each_once,
            unknown_dead_letter_is_not_found,
            events_reach_every_subscriber,
        );
    };
    (@delivery $setup:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let backend = $setup().await;
                $crate::conformance::$name(backend).await;
            }
        )*
    };
    (@tests $setup:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let backend = $setup().await;
                $crate::conformance::$name(backend).await;
            }
        )*
    };
}
