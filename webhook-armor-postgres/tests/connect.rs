//! How a backend reaches the database, and what it says when it cannot.

#[path = "common.rs"]
mod common;

use std::time::Duration;

use webhook_armor::Error;
use webhook_armor::queue::{NewJob, Queue};
use webhook_armor_postgres::{PostgresBackend, PostgresConfig};

/// The directory of the local server's Unix socket (Debian's default), or
/// `DATABASE_SOCKET_DIR`.
fn socket_dir() -> String {
    std::env::var("DATABASE_SOCKET_DIR").unwrap_or_else(|_| "/var/run/postgresql".to_owned())
}

/// A database on the same machine is reached through its Unix socket with a
/// `host=` parameter naming the directory: no TCP, no TLS negotiation.
#[tokio::test]
async fn a_unix_socket_url_runs_the_pipeline() {
    let url = format!("postgres://postgres@localhost/test?host={}", socket_dir());
    let config = PostgresConfig::new(common::unique_schema("socket")).max_connections(2);
    let backend = PostgresBackend::connect(&url, config)
        .await
        .unwrap_or_else(|error| panic!("PostgreSQL must be reachable at {url}: {error}"));
    let over_socket: bool = sqlx::query_scalar("SELECT inet_server_addr() IS NULL")
        .fetch_one(backend.pool())
        .await
        .unwrap();
    assert!(over_socket, "the connection is not a Unix socket");
    backend
        .enqueue(NewJob::new("evt_socket", &b"{}"[..]))
        .await
        .unwrap();
    let leases = backend.lease(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(leases.len(), 1);
    backend.ack(&leases[0]).await.unwrap();
}

#[tokio::test]
async fn a_malformed_url_or_schema_name_is_invalid_input() {
    let refused = PostgresBackend::connect("postgres://[::1", PostgresConfig::new("fine")).await;
    assert!(
        matches!(&refused, Err(Error::InvalidInput(message)) if message.contains("URL")),
        "{refused:?}"
    );
    for schema in [
        "",
        "Upper",
        "1starts_with_digit",
        "semi;colon",
        &"x".repeat(41),
    ] {
        let refused =
            PostgresBackend::connect(&common::database_url(), PostgresConfig::new(schema)).await;
        assert!(
            matches!(&refused, Err(Error::InvalidInput(message)) if message.contains("schema name")),
            "{schema:?}: {refused:?}"
        );
    }
}
