//! The core's whole conformance suite against the real Redis.

mod common;

use webhook_armor::conformance::Backend;

async fn redis() -> Backend {
    Backend::from_shared(common::backend("conformance").await)
}

webhook_armor::conformance_tests!(redis);

/// The same suite with every enqueue and ack a script call of its own.
mod without_group_commit {
    use webhook_armor::conformance::Backend;

    async fn redis() -> Backend {
        let config =
            super::common::config(super::common::unique_prefix("conf1")).group_commit(false);
        Backend::from_shared(super::common::backend_with(config).await)
    }

    webhook_armor::conformance_tests!(redis);
}

// Outbound delivery's stores exist with the `deliver` feature only.
#[cfg(feature = "deliver")]
mod delivery {
    use std::sync::Arc;

    use webhook_armor::conformance::{CONFORMANCE_BREAKER, DeliveryBackend};

    fn stores(backend: webhook_armor_redis::RedisBackend) -> DeliveryBackend {
        DeliveryBackend {
            breaker: Arc::new(backend.circuit_breaker(CONFORMANCE_BREAKER)),
            endpoints: Arc::new(backend.clone()),
            attempts: Arc::new(backend),
        }
    }

    async fn redis() -> DeliveryBackend {
        stores(super::common::backend("delivery").await)
    }

    webhook_armor::delivery_conformance_tests!(redis);

    /// Each attempt appended on its own rather than in batches.
    mod without_group_commit {
        use webhook_armor::conformance::DeliveryBackend;

        async fn redis() -> DeliveryBackend {
            let config =
                super::super::common::config(super::super::common::unique_prefix("delivery1"))
                    .group_commit(false);
            super::stores(super::super::common::backend_with(config).await)
        }

        webhook_armor::delivery_conformance_tests!(redis);
    }
}
