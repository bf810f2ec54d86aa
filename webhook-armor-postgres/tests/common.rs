//! Shared set-up: the real PostgreSQL, one fresh schema per test.

#![allow(dead_code)]

use webhook_armor_postgres::{PostgresBackend, PostgresConfig};

/// `DATABASE_URL`, or the local server's `test` database.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// A schema name no other test uses, so tests run in parallel on one database.
pub fn unique_schema(test: &str) -> String {
    use std::hash::{BuildHasher, RandomState};
    let salt = RandomState::new().hash_one(std::time::SystemTime::now());
    format!("wa_test_{test}_{salt:016x}")
}

/// A backend in a fresh schema. Panics (fails the test) if PostgreSQL is not
/// reachable: a backend test never skips silently.
pub async fn backend_with(config: PostgresConfig) -> PostgresBackend {
    let url = database_url();
    PostgresBackend::connect(&url, config)
        .await
        .unwrap_or_else(|error| {
            panic!("PostgreSQL must be reachable at {url} (set DATABASE_URL): {error}")
        })
}

pub async fn backend(test: &str) -> PostgresBackend {
    backend_with(PostgresConfig::new(unique_schema(test)).max_connections(4)).await
}
