//! The dashboard in a real headless Chromium, driven over WebDriver
//! (chromedriver): it loads without console errors, and clicking each
//! scenario button shows the expected states in the feed, the metrics and the
//! dead-letter panel. Screenshots land in `target/screenshots/`.
//!
//! Needs `chromium` and `chromedriver` on PATH (Debian: `apt-get install
//! chromium chromium-driver`; `.ci/run` installs them). Without them the test
//! fails: it never skips silently.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use webhook_armor_simulator::{Secrets, Simulator};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver, killed when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The few WebDriver commands the test needs, over plain HTTP.
struct Browser {
    base: String,
    session: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl Browser {
    async fn call(
        http: &Client<HttpConnector, Full<Bytes>>,
        method: &str,
        url: &str,
        body: Option<Value>,
    ) -> Value {
        let request = hyper::Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .unwrap();
        let response = http.request(request).await.expect("chromedriver answers");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value: Value = serde_json::from_slice(&bytes).expect("WebDriver answers JSON");
        assert!(
            value["value"].get("error").is_none(),
            "WebDriver {method} {url}: {value}"
        );
        value["value"].clone()
    }

    async fn start(port: u16, profile: &std::path::Path) -> Self {
        let http = Client::builder(TokioExecutor::new()).build_http();
        let base = format!("http://127.0.0.1:{port}");
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                         "--disable-dev-shm-usage", "--disable-quic", "--no-first-run", "--disable-component-update",
                         "--disable-sync", "--window-size=1400,1000", format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let session = Self::call(
            &http,
            "POST",
            &format!("{base}/session"),
            Some(capabilities),
        )
        .await;
        let session = session["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        Self {
            base,
            session,
            http,
        }
    }

    async fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        Self::call(&self.http, method, &url, body).await
    }

    async fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn script(&self, script: &str) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Polls `condition` (a JS expression) until it is true; fails after 20 s.
    async fn wait_for(&self, what: &str, condition: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if self.script(&format!("return Boolean({condition});")).await == json!(true) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "dashboard never showed {what} ({condition})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn click(&self, css: &str) {
        let element = self
            .command(
                "POST",
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        let id = element[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {element}"))
            .to_owned();
        self.command("POST", &format!("/element/{id}/click"), Some(json!({})))
            .await;
    }

    async fn screenshot(&self, name: &str) {
        let png = self.command("GET", "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }

    async fn console_errors(&self) -> Vec<Value> {
        let url = format!("{}/session/{}/se/log", self.base, self.session);
        let logs = Self::call(&self.http, "POST", &url, Some(json!({ "type": "browser" }))).await;
        logs.as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|entry| entry["level"] == "SEVERE")
            .collect()
    }

    async fn quit(self) {
        let url = format!("{}/session/{}", self.base, self.session);
        Self::call(&self.http, "DELETE", &url, None).await;
    }
}

/// A feed row in `state` whose event id starts with `prefix`.
fn row(state: &str, prefix: &str) -> String {
    format!(
        "document.querySelector('#feed tr[data-state=\"{state}\"][data-event-id^=\"{prefix}\"]')"
    )
}

fn metric(name: &str) -> String {
    format!("Number(document.querySelector('[data-metric=\"{name}\"] b').textContent)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_button_shows_its_states_in_the_dashboard() {
    let simulator = Simulator::new(Secrets::generated());
    simulator.spawn_background(16, std::future::pending());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dashboard = format!("http://{}/", listener.local_addr().unwrap());
    let app = simulator.app();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let port = free_port();
    let driver = Driver(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver on PATH (apt-get install chromium chromium-driver)"),
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let profile = std::env::temp_dir().join(format!("wa-chromium-{port}"));
    let browser = Browser::start(port, &profile).await;
    browser.goto(&dashboard).await;
    browser
        .wait_for(
            "the live WebSocket",
            "document.getElementById('connection').textContent === 'live'",
        )
        .await;
    browser.screenshot("01-loaded").await;
    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors on load: {errors:?}");

    browser.click("button[data-scenario=\"duplicate\"]").await;
    browser
        .wait_for(
            "COMPLETED and DUPLICATE rows",
            &format!(
                "{} && {}",
                row("COMPLETED", "msg_dup"),
                row("DUPLICATE", "msg_dup")
            ),
        )
        .await;
    browser
        .wait_for(
            "the DUPLICATE metric",
            &format!("{} >= 1", metric("DUPLICATE")),
        )
        .await;

    browser
        .click("button[data-scenario=\"signature-attack\"]")
        .await;
    browser
        .click("button[data-scenario=\"replay-attack\"]")
        .await;
    browser
        .wait_for(
            "two FAILED rejections",
            &format!("{} >= 2", metric("FAILED")),
        )
        .await;

    browser.click("button[data-scenario=\"dead-letter\"]").await;
    browser.wait_for("a dead letter in the panel", "document.querySelector('#dead tr[data-dead-letter^=\"msg_dead\"] button[data-action=\"replay\"]')").await;
    browser.screenshot("02-dead-letter").await;
    browser
        .click("#dead tr[data-dead-letter^=\"msg_dead\"] button[data-action=\"replay\"]")
        .await;
    browser
        .wait_for(
            "the replayed letter COMPLETED",
            &row("COMPLETED", "msg_dead"),
        )
        .await;

    browser
        .click("button[data-scenario=\"campaign-blast\"]")
        .await;
    browser
        .wait_for(
            "50 more COMPLETED",
            &format!("{} >= 52", metric("COMPLETED")),
        )
        .await;

    browser
        .click("button[data-scenario=\"receiver-outage\"]")
        .await;
    browser
        .wait_for("outage deliveries retried", &row("RETRYING", "msg_outage"))
        .await;
    browser
        .wait_for(
            "outage deliveries completed",
            &row("COMPLETED", "msg_outage"),
        )
        .await;
    browser
        .wait_for(
            "the outage receiver in the endpoint panel with its circuit",
            "document.querySelector('#endpoints tr[data-endpoint][data-circuit]')",
        )
        .await;

    browser
        .click("button[data-scenario=\"worker-crash\"]")
        .await;
    browser
        .wait_for("the crashed attempt", &row("PROCESSING", "msg_crash"))
        .await;
    browser
        .wait_for(
            "the job taken over after its lease and COMPLETED",
            &row("COMPLETED", "msg_crash"),
        )
        .await;
    browser
        .wait_for(
            "the throughput chart drawn from live samples",
            "Number(document.getElementById('throughput').dataset.samples) >= 5",
        )
        .await;
    browser.screenshot("03-all-scenarios").await;

    let errors = browser.console_errors().await;
    assert!(errors.is_empty(), "console errors: {errors:?}");
    browser.quit().await;
    drop(driver);
    let _ = std::fs::remove_dir_all(profile);
}
