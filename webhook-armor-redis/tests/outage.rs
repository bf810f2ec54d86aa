//! Redis going away mid-run: clear errors while it is down, recovery after,
//! no acknowledged job lost.
//!
//! The restart test runs its own `redis-server` (from PATH) on a free port,
//! with an fsync-on-every-write append-only file: a server that keeps nothing
//! on disk cannot keep acknowledged jobs across a restart, whatever the client does.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use webhook_armor::conformance::load::{self, PersistentProducers};
use webhook_armor::queue::Queue;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_restart_mid_run_loses_no_acknowledged_job() {
    let mut redis = PrivateRedis::start();
    let backend = Arc::new(
        RedisBackend::connect(&redis.url(), RedisConfig::new("outage"))
            .await
            .unwrap(),
    );
    let producers = PersistentProducers::start(backend.clone(), 8, 400, Duration::from_secs(30));
    while producers.acknowledged_count() < 800 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    redis.kill();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let errors_while_down = producers.errors.lock().unwrap().len();
    assert!(
        errors_while_down > 0,
        "calls during the outage must fail, not hang or pretend"
    );
    assert!(
        backend.stats().await.is_err(),
        "a clear error while Redis is down"
    );
    redis.spawn();
    let acknowledged = producers.finish().await;
    assert_eq!(acknowledged.len(), 3200);
    let stored = load::drain_ids(backend.as_ref(), Duration::from_secs(10)).await;
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
    let producers = PersistentProducers::start(backend.clone(), 8, 300, Duration::from_secs(30));
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
    let acknowledged = producers.finish().await;
    assert_eq!(acknowledged.len(), 2400);
    let stored = load::drain_ids(backend.as_ref(), Duration::from_secs(10)).await;
    assert_eq!(
        stored, acknowledged,
        "every acknowledged job is there, once"
    );
}
