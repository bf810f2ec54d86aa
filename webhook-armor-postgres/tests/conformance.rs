//! The core's whole conformance suite against the real PostgreSQL, with group
//! commit (the default) and without.

#[path = "common.rs"]
mod common;

use webhook_armor::conformance::Backend;
use webhook_armor_postgres::PostgresConfig;

async fn postgres() -> Backend {
    Backend::from_shared(common::backend("conf").await)
}

webhook_armor::conformance_tests!(postgres);

mod without_group_commit {
    use super::*;

    async fn postgres() -> Backend {
        let config = PostgresConfig::new(common::unique_schema("conf1"))
            .max_connections(4)
            .group_commit(false);
        Backend::from_shared(common::backend_with(config).await)
    }

    webhook_armor::conformance_tests!(postgres);
}

// Outbound delivery's stores exist with the `deliver` feature only.
#[cfg(feature = "deliver")]
mod delivery {
    use std::sync::Arc;

    use webhook_armor::conformance::{CONFORMANCE_BREAKER, DeliveryBackend};

    async fn postgres() -> DeliveryBackend {
        let backend = super::common::backend("delivery").await;
        DeliveryBackend {
            breaker: Arc::new(backend.circuit_breaker(CONFORMANCE_BREAKER)),
            endpoints: Arc::new(backend.clone()),
            attempts: Arc::new(backend),
        }
    }

    webhook_armor::delivery_conformance_tests!(postgres);
}
