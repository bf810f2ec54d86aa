//! Redis going away mid-run: clear errors while it is down, recovery after,
//! no acknowledged job lost.
//!
//! The restart test runs its own `redis-server` (from PATH) on a free port,
//! with an fsync-on-every-write append-only file: a server that keeps nothing
//! on disk cannot keep acknowledged jobs across a restart, whatever the client does.

mod common;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use webhook_armor::Error;
use webhook_armor::queue::{NewJob, Queue};
use webhook_armor_redis::{RedisBackend, RedisConfig};

struct PrivateRedis {
    port: u16,
    dir: std::path::PathBuf,
    process: Option<Child>,
}

impl PrivateRedis {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("wa-redis-outage-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Self {
            port,
            dir,
            process: None,
        };
        redis.spawn();
        redis
    }

    fn spawn(&mut self) {
        let process = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server must be on PATH for the outage test");
        self.process = Some(process);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("private redis-server did not start on port {}", self.port);
    }

    /// SIGKILL: the server gets no chance to flush anything more.
    fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill().unwrap();
            process.wait().unwrap();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every job id on the queue. The first call after a dropped connection may
/// fail (that is the clear error); the connection manager reconnects for the next.
async fn drain(backend: &RedisBackend) -> HashSet<String> {
    let mut stored = HashSet::new();
    let mut failures = 0;
    loop {
        match backend.lease(500, Duration::from_secs(60)).await {
            Ok(leases) if leases.is_empty() => return stored,
            Ok(leases) => stored.extend(leases.into_iter().map(|l| l.job.id)),
            Err(Error::Backend(error)) if failures < 3 => {
                failures += 1;
                eprintln!("lease failed once the server was back ({error}); retrying");
            }
            Err(other) => panic!("backend did not recover: {other}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restart_mid_run_loses_no_acknowledged_job() {
    let mut redis = PrivateRedis::start();
    let backend = Arc::new(
        RedisBackend::connect(&redis.url(), RedisConfig::new("outage"))
            .await
            .unwrap(),
    );
    let acknowledged: Arc<Mutex<HashSet<String>>> = Arc::default();
    let backend_errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let producers: Vec<_> = (0..8)
        .map(|p| {
            let (backend, acknowledged, backend_errors) = (
                backend.clone(),
                acknowledged.clone(),
                backend_errors.clone(),
            );
            tokio::spawn(async move {
                for i in 0..400 {
                    let id = format!("job-{p}-{i}");
                    // A sender retries until it is acknowledged, as webhook senders do.
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                    loop {
                        match backend.enqueue(NewJob::new(&id, "{}")).await {
                            Ok(_) => {
                                acknowledged.lock().unwrap().insert(id);
                                break;
                            }
                            Err(Error::Backend(error)) => {
                                backend_errors.lock().unwrap().push(error.to_string());
                                assert!(
                                    tokio::time::Instant::now() < deadline,
                                    "never recovered: {error}"
                                );
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            Err(other) => panic!("unexpected error kind: {other}"),
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        })
        .collect();

    while acknowledged.lock().unwrap().len() < 800 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    redis.kill();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let errors_while_down = backend_errors.lock().unwrap().len();
    assert!(
        errors_while_down > 0,
        "calls during the outage must fail, not hang or pretend"
    );
    assert!(
        backend.stats().await.is_err(),
        "a clear error while Redis is down"
    );
    redis.spawn();
    for producer in producers {
        producer.await.unwrap();
    }

    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len(), 3200);
    let stored = drain(&backend).await;
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged jobs lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_connections_fail_clearly_then_reconnect() {
    // A private server, so killing "every client but me" touches no other test.
    let redis = PrivateRedis::start();
    let backend = Arc::new(
        RedisBackend::connect(&redis.url(), RedisConfig::new("kill"))
            .await
            .unwrap(),
    );
    let admin = redis::Client::open(redis.url()).unwrap();
    let mut admin = admin.get_multiplexed_async_connection().await.unwrap();
    let acknowledged: Arc<Mutex<HashSet<String>>> = Arc::default();
    let producers: Vec<_> = (0..8)
        .map(|p| {
            let (backend, acknowledged) = (backend.clone(), acknowledged.clone());
            tokio::spawn(async move {
                let mut errors = 0;
                for i in 0..300 {
                    let id = format!("job-{p}-{i}");
                    loop {
                        match backend.enqueue(NewJob::new(&id, "{}")).await {
                            Ok(_) => {
                                acknowledged.lock().unwrap().insert(id);
                                break;
                            }
                            Err(Error::Backend(_)) => {
                                errors += 1;
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            Err(other) => panic!("unexpected error kind: {other}"),
                        }
                    }
                }
                errors
            })
        })
        .collect();
    let mut killed = 0;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        // Kills every normal client but this admin connection, the backend's included.
        let n: i64 = redis::cmd("CLIENT")
            .arg(&["KILL", "TYPE", "normal", "SKIPME", "yes"][..])
            .query_async(&mut admin)
            .await
            .unwrap();
        killed += n;
    }
    assert!(killed > 0, "the backend's connection was killed");
    for producer in producers {
        producer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len(), 2400);
    let stored = drain(&backend).await;
    assert_eq!(
        stored, acknowledged,
        "every acknowledged job is there, once"
    );
}
