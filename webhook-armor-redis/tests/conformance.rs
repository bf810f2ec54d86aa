//! The core's whole conformance suite against the real Redis.

mod common;

use webhook_armor::conformance::Backend;

async fn redis() -> Backend {
    Backend::from_shared(common::backend("conformance").await)
}

webhook_armor::conformance_tests!(redis);

mod delivery {
    use std::sync::Arc;

    use webhook_armor::conformance::{CONFORMANCE_BREAKER, DeliveryBackend};

    async fn redis() -> DeliveryBackend {
        let backend = super::common::backend("delivery").await;
        DeliveryBackend {
            breaker: Arc::new(backend.circuit_breaker(CONFORMANCE_BREAKER)),
            endpoints: Arc::new(backend.clone()),
            attempts: Arc::new(backend),
        }
    }

    webhook_armor::delivery_conformance_tests!(redis);
}
