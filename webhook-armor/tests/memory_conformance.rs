//! The memory backends pass the whole conformance suite.

use std::sync::Arc;

use webhook_armor::conformance::Backend;
use webhook_armor::memory::{MemoryEventBus, MemoryIdempotencyStore, MemoryQueue};

async fn memory() -> Backend {
    let queue = Arc::new(MemoryQueue::new());
    Backend {
        idempotency: Arc::new(MemoryIdempotencyStore::new()),
        queue: queue.clone(),
        dead_letters: queue,
        events: Arc::new(MemoryEventBus::default()),
    }
}

webhook_armor::conformance_tests!(memory);

mod delivery {
    use std::sync::Arc;

    use webhook_armor::conformance::{CONFORMANCE_BREAKER, DeliveryBackend};
    use webhook_armor::memory::{MemoryAttemptLog, MemoryCircuitBreaker, MemoryEndpointStore};

    async fn memory() -> DeliveryBackend {
        DeliveryBackend {
            endpoints: Arc::new(MemoryEndpointStore::default()),
            breaker: Arc::new(MemoryCircuitBreaker::new(CONFORMANCE_BREAKER)),
            attempts: Arc::new(MemoryAttemptLog::new(1000)),
        }
    }

    webhook_armor::delivery_conformance_tests!(memory);
}

/// The endpoint cache is an endpoint store too: the same suite through it.
mod cached_endpoints {
    use std::sync::Arc;
    use std::time::Duration;

    use webhook_armor::conformance::{CONFORMANCE_BREAKER, DeliveryBackend};
    use webhook_armor::deliver::CachedEndpointStore;
    use webhook_armor::memory::{MemoryAttemptLog, MemoryCircuitBreaker, MemoryEndpointStore};

    async fn cached() -> DeliveryBackend {
        DeliveryBackend {
            endpoints: Arc::new(CachedEndpointStore::new(
                MemoryEndpointStore::default(),
                Duration::from_secs(60),
            )),
            breaker: Arc::new(MemoryCircuitBreaker::new(CONFORMANCE_BREAKER)),
            attempts: Arc::new(MemoryAttemptLog::new(1000)),
        }
    }

    webhook_armor::delivery_conformance_tests!(cached);
}
