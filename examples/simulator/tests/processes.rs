//! Separate processes sharing one pipeline: an `api` process (no workers of
//! its own) and two `worker` processes on the real Redis and PostgreSQL.
//! A campaign blast sent to the api is processed by the workers, and the api's
//! dashboard data shows every webhook completed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const BLAST: u64 = 200;

/// A simulator process, killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn simulator(backend_flag: &str, url: &str, namespace: &str, role: &str) -> Process {
    let child = Command::new(env!("CARGO_BIN_EXE_webhook-armor-simulator"))
        .args([backend_flag, url, "--namespace", namespace, "--role", role])
        .args(["--port", "0", "--workers", "16"])
        .env_remove("REDIS_URL")
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the simulator binary runs");
    Process(child)
}

/// The first stdout line of `process`, which says it is ready. The rest of
/// its output is drained on a thread, so the process never writes into a
/// closed pipe.
fn first_line(process: &mut Process) -> String {
    let stdout = process.0.stdout.take().expect("piped");
    let (first, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let _ = first.send(lines.next().and_then(Result::ok).unwrap_or_default());
        for _ in lines {}
    });
    let line = received
        .recv_timeout(Duration::from_secs(60))
        .expect("the simulator says it is ready within 60 s");
    assert!(!line.is_empty(), "the simulator exited before it was ready");
    line
}

async fn request(method: &str, url: &str) -> serde_json::Value {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let request = hyper::Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = client.request(request).await.expect("api reachable");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)
}

async fn api_and_two_workers_process_a_campaign_blast(
    backend_flag: &str,
    url: &str,
    namespace: &str,
) {
    let mut api = simulator(backend_flag, url, namespace, "api");
    let ready = first_line(&mut api);
    let base = ready
        .split("dashboard at ")
        .nth(1)
        .and_then(|rest| rest.split('/').nth(2))
        .map(|address| format!("http://{address}"))
        .unwrap_or_else(|| panic!("unexpected first line {ready:?}"));
    // Workers start after the api has created the schema or keys.
    let mut workers = [
        simulator(backend_flag, url, namespace, "worker"),
        simulator(backend_flag, url, namespace, "worker"),
    ];
    for worker in &mut workers {
        assert!(first_line(worker).contains("worker"));
    }

    let report = request(
        "POST",
        &format!("{base}/api/scenarios/campaign-blast?count={BLAST}"),
    )
    .await;
    let statuses = report["statuses"].as_array().expect("a scenario report");
    assert_eq!(statuses.len() as u64, BLAST);
    assert!(statuses.iter().all(|s| s == 202), "{report}");

    // The api runs no worker: every COMPLETED it shows came from the
    // workers' processes over the shared event bus.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let stats = request("GET", &format!("{base}/api/stats")).await;
        let completed = stats["states"]["COMPLETED"].as_u64().unwrap_or(0);
        if completed >= BLAST {
            assert_eq!(completed, BLAST, "{stats}");
            assert_eq!(stats["queue_depth"].as_u64(), Some(0), "{stats}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {completed} of {BLAST} completed: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let listed = request(
        "GET",
        &format!("{base}/api/events?status=completed&limit=1000"),
    )
    .await;
    assert_eq!(listed.as_array().map(Vec::len), Some(BLAST as usize));
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}{nanos:x}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_api_and_two_workers() {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    // The {wa-test-*} prefix is what CI clears between runs.
    api_and_two_workers_process_a_campaign_blast("--redis", &url, &unique("wa-test-sim-")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_api_and_two_workers() {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = unique("wa_test_sim_");
    api_and_two_workers_process_a_campaign_blast("--postgres", &url, &schema).await;
    let pool = sqlx::PgPool::connect(&url)
        .await
        .expect("PostgreSQL reachable");
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE"))
        .execute(&pool)
        .await
        .unwrap();
}
