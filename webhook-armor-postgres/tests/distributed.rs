//! Many tasks, connections and processes on one real PostgreSQL.

#[path = "common.rs"]
mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use webhook_armor::conformance::load;
use webhook_armor::queue::{Job as QueuedJob, Lease, LeaseToken, NewJob, Queue};
use webhook_armor::{Error, HandlerError, Job, Worker};
use webhook_armor_postgres::PostgresConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_concurrent_deliveries_of_one_id_store_one_row() {
    let backend = Arc::new(common::backend("dedup").await);
    load::concurrent_deliveries_enqueue_once(backend.clone(), 10_000, 64).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE id = 'evt_contested'")
        .fetch_one(backend.pool())
        .await
        .unwrap();
    assert_eq!(rows, 1, "exactly one row");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_workers_on_separate_connections_drain_20000_jobs_exactly_once() {
    let schema = common::unique_schema("drain");
    let connect = || async {
        // Each worker its own pool, as separate processes would have.
        Arc::new(common::backend_with(PostgresConfig::new(&schema).max_connections(4)).await)
            as Arc<dyn Queue>
    };
    load::workers_drain_exactly_once(connect, 20_000, 4).await;
}

/// Not a test on its own: the child process of the crash test. It leases
/// jobs, reports their tokens, then hangs "mid-job" until killed with SIGKILL.
#[tokio::test]
#[ignore = "run by crash_test_a_killed_worker_loses_no_job as its child process"]
async fn crash_child_leases_and_hangs() {
    let schema = std::env::var("WA_CRASH_SCHEMA").expect("run by the crash test");
    let backend = common::backend_with(PostgresConfig::new(schema).max_connections(2)).await;
    let leases = backend.lease(1000, Duration::from_secs(2)).await.unwrap();
    for lease in &leases {
        println!("TOKEN {} {}", lease.job.id, lease.token.0);
    }
    println!("LEASED {}", leases.len());
    tokio::time::sleep(Duration::from_secs(120)).await;
    unreachable!("the parent kills this process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_test_a_killed_worker_loses_no_job() {
    let schema = common::unique_schema("crash");
    let backend =
        Arc::new(common::backend_with(PostgresConfig::new(&schema).max_connections(4)).await);
    for i in 0..50 {
        backend
            .enqueue(NewJob::new(format!("job-{i}"), "{}"))
            .await
            .unwrap();
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "crash_child_leases_and_hangs",
            "--nocapture",
        ])
        .env("WA_CRASH_SCHEMA", &schema)
        .env("DATABASE_URL", common::database_url())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut killed_leases = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("TOKEN ") {
            let (id, token) = rest.split_once(' ').unwrap();
            killed_leases.push((id.to_owned(), token.to_owned()));
        }
        if line.starts_with("LEASED") {
            assert_eq!(line, "LEASED 50");
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(
        backend.stats().await.unwrap().leased,
        50,
        "the dead process still holds the leases"
    );

    let runs: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let handler = {
        let runs = runs.clone();
        tower::service_fn(move |job: Job| {
            assert_eq!(job.attempt, 2, "each job's second lease");
            *runs.lock().unwrap().entry(job.id).or_default() += 1;
            async { Ok::<(), HandlerError>(()) }
        })
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(
        Worker::new(backend.clone(), handler)
            .poll_interval(Duration::from_millis(200))
            .run(async {
                let _ = stopped.await;
            }),
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while runs.lock().unwrap().len() < 50 || backend.stats().await.unwrap().depth() > 0 {
        assert!(tokio::time::Instant::now() < deadline, "jobs not recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(()).unwrap();
    worker.await.unwrap();
    assert!(
        runs.lock().unwrap().values().all(|n| *n == 1),
        "each completed once"
    );
    assert_eq!(backend.stats().await.unwrap().depth(), 0, "0 lost");

    // The killed worker's acks, replayed by hand: refused, and 0 rows change.
    let before: Vec<(String, String, i32)> =
        sqlx::query_as("SELECT id, status, attempt FROM jobs ORDER BY id")
            .fetch_all(backend.pool())
            .await
            .unwrap();
    for (id, token) in &killed_leases {
        let stale = Lease {
            job: QueuedJob::from_new(NewJob::new(id, ""), 0),
            token: LeaseToken(token.clone()),
        };
        assert!(matches!(backend.ack(&stale).await, Err(Error::LeaseLost)));
        let changed = sqlx::query("UPDATE jobs SET status = 'completed' WHERE id = $1 AND lease_token = $2 AND status = 'leased'")
            .bind(id)
            .bind(token)
            .execute(backend.pool())
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(changed, 0, "the stale token matches no row");
    }
    let after: Vec<(String, String, i32)> =
        sqlx::query_as("SELECT id, status, attempt FROM jobs ORDER BY id")
            .fetch_all(backend.pool())
            .await
            .unwrap();
    assert_eq!(before, after);
    let attempts = backend.attempts("job-7").await.unwrap();
    assert_eq!(
        attempts.len(),
        1,
        "one recorded attempt: the one that completed"
    );
    assert_eq!(
        (attempts[0].attempt, attempts[0].outcome.as_str()),
        (2, "completed")
    );
}

/// The fenced statements match id and token only (not the status), which is
/// sound because the table refuses a token on a job that is not leased, and
/// a leased job without one.
#[tokio::test]
async fn the_table_refuses_a_lease_token_outside_the_leased_state() {
    let backend = common::backend("fence").await;
    backend
        .enqueue(NewJob::new("evt_fence", &b"{}"[..]))
        .await
        .unwrap();
    let token_while_ready =
        sqlx::query("UPDATE jobs SET lease_token = 'forged' WHERE id = 'evt_fence'")
            .execute(backend.pool())
            .await;
    let leased_without_token = sqlx::query(
        "UPDATE jobs SET status = 'leased', lease_until = now() + interval '1 minute'
         WHERE id = 'evt_fence'",
    )
    .execute(backend.pool())
    .await;
    for refused in [token_while_ready, leased_without_token] {
        let error = refused.expect_err("the check constraint refuses the row");
        assert!(
            error.to_string().contains("lease_token_only_while_leased"),
            "{error}"
        );
    }
    // The real lease and ack pass the rule.
    let lease = backend.lease(1, Duration::from_secs(60)).await.unwrap();
    assert_eq!(lease.len(), 1);
    backend.ack(&lease[0]).await.unwrap();
}

/// Every key the pipeline looks rows up by is compared as bytes (migration
/// 0004): under a language collation each index comparison on the hot path
/// went through strcoll. A table or column added later without `COLLATE "C"`
/// fails here.
#[tokio::test]
async fn every_text_key_column_compares_as_bytes() {
    let backend = common::backend("collation").await;
    let keyed: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT c.relname::text, a.attname::text, co.collname::text
         FROM pg_index i
         JOIN pg_class c ON c.oid = i.indrelid
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = ANY(i.indkey)
         LEFT JOIN pg_collation co ON co.oid = a.attcollation
         WHERE c.relnamespace = $1::regnamespace AND a.atttypid = 'text'::regtype
           AND c.relname <> '_sqlx_migrations'",
    )
    .bind(backend.schema())
    .fetch_all(backend.pool())
    .await
    .unwrap();
    // jobs, attempts, dead_letters, idempotency_keys, endpoints, circuits,
    // delivery_attempts (twice): at least these are indexed by text.
    assert!(keyed.len() >= 8, "{keyed:?}");
    for (table, column, collation) in keyed {
        assert_eq!(
            collation.as_deref(),
            Some("C"),
            "{table}.{column} is indexed under {collation:?}"
        );
    }
}
