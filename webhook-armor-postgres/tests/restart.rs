//! PostgreSQL restarted mid-run (an immediate shutdown, as a crash would be):
//! clear errors while it is down, recovery after, nothing acknowledged lost.
//!
//! This stops the shared local server, so it is the only test in its binary
//! (cargo runs test binaries one at a time). It drives the cluster with
//! `pg_ctlcluster`, as the machine's own scripts do.

#[path = "common.rs"]
mod common;

use std::collections::HashSet;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use webhook_armor::Error;
use webhook_armor::queue::{NewJob, Queue};
use webhook_armor_postgres::PostgresBackend;

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

async fn drain(backend: &PostgresBackend) -> HashSet<String> {
    let mut stored = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match backend.lease(1000, Duration::from_secs(60)).await {
            Ok(leases) if leases.is_empty() => return stored,
            Ok(leases) => stored.extend(leases.into_iter().map(|l| l.job.id)),
            Err(error) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "never recovered: {error}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_restart_mid_run_loses_no_acknowledged_job() {
    let backend = Arc::new(common::backend("restart").await);
    let acknowledged: Arc<Mutex<HashSet<String>>> = Arc::default();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let producers: Vec<_> = (0..8)
        .map(|p| {
            let (backend, acknowledged, errors) =
                (backend.clone(), acknowledged.clone(), errors.clone());
            tokio::spawn(async move {
                for i in 0..300 {
                    let id = format!("job-{p}-{i}");
                    // A sender retries until acknowledged, as webhook senders do.
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
                    loop {
                        match backend.enqueue(NewJob::new(&id, "{}")).await {
                            Ok(_) => {
                                acknowledged.lock().unwrap().insert(id);
                                break;
                            }
                            Err(Error::Backend(error)) => {
                                errors.lock().unwrap().push(error.to_string());
                                assert!(
                                    tokio::time::Instant::now() < deadline,
                                    "never recovered: {error}"
                                );
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            Err(other) => panic!("unexpected error kind: {other}"),
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();

    while acknowledged.lock().unwrap().len() < 600 {
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
        !errors.lock().unwrap().is_empty(),
        "enqueues during the outage fail rather than hang forever"
    );
    cluster("start");
    for producer in producers {
        producer.await.unwrap();
    }

    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len(), 2400);
    let stored = drain(&backend).await;
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged jobs lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
}
