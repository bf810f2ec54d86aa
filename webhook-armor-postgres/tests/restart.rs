//! PostgreSQL restarted mid-run (an immediate shutdown, as a crash would be):
//! clear errors while it is down, recovery after, nothing acknowledged lost.
//!
//! This stops the shared local server, so it is the only test in its binary
//! (cargo runs test binaries one at a time). It drives the cluster with
//! `pg_ctlcluster`, as the machine's own scripts do.

#[path = "common.rs"]
mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use webhook_armor::Error;
use webhook_armor::conformance::load::{self, PersistentProducers};
use webhook_armor::queue::Queue;

fn cluster(action: &str) {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("a Debian PostgreSQL cluster under /etc/postgresql")
        .next()
        .expect("one cluster version")
        .unwrap()
        .file_name();
    let mut command = Command::new("pg_ctlcluster");
    command
        .arg("--skip-systemctl-redirect")
        .arg(&version)
        .args(["main", action]);
    if action == "stop" {
        command.args(["-m", "immediate"]);
    }
    let status = command.status().expect("pg_ctlcluster on PATH");
    assert!(status.success(), "pg_ctlcluster {action} failed");
}

/// Starts the cluster again even if the test fails half way.
struct RestartOnDrop;

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("pg_ctlcluster")
            .arg("--skip-systemctl-redirect")
            .arg(
                std::fs::read_dir("/etc/postgresql")
                    .unwrap()
                    .next()
                    .unwrap()
                    .unwrap()
                    .file_name(),
            )
            .args(["main", "start"])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_restart_mid_run_loses_no_acknowledged_job() {
    let backend = Arc::new(common::backend("restart").await);
    let producers = PersistentProducers::start(backend.clone(), 8, 300, Duration::from_secs(60));
    while producers.acknowledged_count() < 600 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _restart_guard = RestartOnDrop;
    cluster("stop");
    let down = backend.stats().await;
    assert!(
        matches!(down, Err(Error::Backend(_))),
        "a clear error while the database is down: {down:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !producers.errors.lock().unwrap().is_empty(),
        "enqueues during the outage fail rather than hang forever"
    );
    cluster("start");
    let acknowledged = producers.finish().await;
    assert_eq!(acknowledged.len(), 2400);
    let stored = load::drain_ids(backend.as_ref(), Duration::from_secs(30)).await;
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged jobs lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
}
