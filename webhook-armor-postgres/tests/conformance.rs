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
