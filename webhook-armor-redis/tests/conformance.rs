//! The core's whole conformance suite against the real Redis.

mod common;

use webhook_armor::conformance::Backend;

async fn redis() -> Backend {
    Backend::from_shared(common::backend("conformance").await)
}

webhook_armor::conformance_tests!(redis);
