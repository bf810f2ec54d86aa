//! HTTP load generator: sends N correctly signed webhooks (Standard
//! Webhooks) at concurrency C, waits until the pipeline reports them
//! completed, and prints one JSON line.
//!
//! ```sh
//! # the memory pipeline (a pipeline-server child), next to a bare axum baseline
//! cargo run --release -p webhook-armor-benches --bin loadgen -- --spawn memory --baseline
//! # p99 ack latency at half of the peak just measured (open loop)
//! cargo run --release -p webhook-armor-benches --bin loadgen -- --spawn redis --half-peak
//! # memory stays flat: RSS after 100,000 and after 1,000,000 events
//! cargo run --release -p webhook-armor-benches --bin loadgen -- --spawn memory \
//!     -n 1000000 --rss-after 100000 --retention-secs 2
//! # any running server: completion read from a JSON {"completed": n} URL
//! cargo run --release -p webhook-armor-benches --bin loadgen -- \
//!     --url http://127.0.0.1:9000/webhook --stats-url http://127.0.0.1:9000/stats
//! ```
//!
//! Closed loop (the default): C tasks each send one request after another;
//! the rate is the peak the server sustains. Open loop (`--rate R`):
//! requests leave on a fixed schedule whatever the server does, and latency
//! counts from each request's scheduled time, so a stalled server shows in the
//! percentiles instead of hiding (no coordinated omission). A fixed set of
//! senders (`--open-senders`, 256) sends them, one in flight each, over
//! connections that stay open, as a busy client's would.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use webhook_armor::verify::StandardWebhooks;
use webhook_armor_benches::server::BENCH_SECRET;

#[derive(Debug, Parser)]
#[command(about = "Signed-webhook load generator with a bare-server baseline")]
struct Args {
    /// Start `pipeline-server TARGET` (bare, memory, redis, postgres) and load it.
    #[arg(long, conflicts_with = "url")]
    spawn: Option<String>,
    /// Load an already running server at this URL instead.
    #[arg(long, requires = "stats_url")]
    url: Option<String>,
    /// With --url: a URL answering JSON with a "completed" counter.
    #[arg(long)]
    stats_url: Option<String>,
    /// Also load a bare axum handler (a pipeline-server child) the same way
    /// and report the ratio.
    #[arg(long)]
    baseline: bool,
    /// After the closed-loop run, an open-loop run at half its rate.
    #[arg(long)]
    half_peak: bool,
    /// Webhooks to send per run.
    #[arg(short = 'n', long, default_value_t = 100_000)]
    requests: u64,
    /// Requests in flight (closed loop).
    #[arg(short = 'c', long, default_value_t = 64)]
    concurrency: usize,
    /// Open loop at this many requests per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Open loop: senders, each with at most one request in flight (so at
    /// most this many connections). A request waiting for a free sender
    /// still counts its latency from its scheduled time.
    #[arg(long, default_value_t = 256)]
    open_senders: usize,
    /// Requests sent before measuring, to warm connections and caches.
    #[arg(long, default_value_t = 2_000)]
    warmup: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 1024)]
    body_bytes: usize,
    /// Every K-th request repeats the previous event id (0: never).
    #[arg(long, default_value_t = 0)]
    duplicate_every: u64,
    /// Signing secret.
    #[arg(long, default_value = BENCH_SECRET)]
    secret: String,
    /// Record the server's RSS once this many events have completed, and at the end.
    #[arg(long)]
    rss_after: Option<u64>,
    /// Passed to a spawned pipeline-server: seconds completed ids are kept.
    #[arg(long, default_value_t = 60)]
    retention_secs: u64,
    /// Longest wait for the pipeline to complete what it accepted.
    #[arg(long, default_value_t = 300)]
    completion_timeout_secs: u64,
}

/// The open-loop pacer's longest sleep between releases.
const PACER_TICK: Duration = Duration::from_micros(200);

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Where to send and where to read progress.
#[derive(Debug, Clone)]
struct Endpoint {
    url: String,
    stats_url: String,
}

/// One run's tallies, shared by the sending tasks.
#[derive(Debug)]
struct Tally {
    latency_us: Histogram<u64>,
    accepted: u64,
    duplicates: u64,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    fn new() -> Self {
        Self {
            latency_us: Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid bounds"),
            accepted: 0,
            duplicates: 0,
            errors: 0,
            first_error: None,
        }
    }

    fn record(&mut self, latency: Duration, outcome: Result<u16, String>) {
        self.latency_us
            .saturating_record(latency.as_micros().max(1) as u64);
        match outcome {
            Ok(202) => self.accepted += 1,
            // The pipeline answers 200 for an id it already holds.
            Ok(200) => self.duplicates += 1,
            Ok(status) => self.error(format!("HTTP {status}")),
            Err(error) => self.error(error),
        }
    }

    fn error(&mut self, error: String) {
        self.errors += 1;
        self.first_error.get_or_insert(error);
    }
}

/// Builds signed requests with unique ids (apart from requested duplicates).
#[derive(Debug)]
struct Requests {
    signer: StandardWebhooks,
    run: String,
    body: Bytes,
    duplicate_every: u64,
}

impl Requests {
    fn build(&self, url: &str, index: u64) -> hyper::Request<Full<Bytes>> {
        let event = if self.duplicate_every > 0
            && index > 0
            && index.is_multiple_of(self.duplicate_every)
        {
            index - 1
        } else {
            index
        };
        let id = format!("lg-{}-{event}", self.run);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        hyper::Request::post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", self.signer.sign(&id, now, &self.body))
            .body(Full::new(self.body.clone()))
            .expect("a valid request")
    }
}

async fn send(client: &HttpClient, request: hyper::Request<Full<Bytes>>) -> Result<u16, String> {
    let response = client
        .request(request)
        .await
        .map_err(|error| format!("request failed: {error}"))?;
    let status = response.status().as_u16();
    response
        .into_body()
        .collect()
        .await
        .map_err(|error| format!("response body failed: {error}"))?;
    Ok(status)
}

/// GETs `url` and parses its body as JSON.
async fn get_json(client: &HttpClient, url: &str) -> Result<Value, String> {
    let request = hyper::Request::get(url)
        .body(Full::new(Bytes::new()))
        .map_err(|error| format!("bad stats URL {url}: {error}"))?;
    let response = client
        .request(request)
        .await
        .map_err(|error| format!("GET {url} failed: {error}"))?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|error| format!("GET {url} body failed: {error}"))?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|error| format!("GET {url}: not JSON: {error}"))
}

/// The pipeline's count of completed webhooks.
async fn completed(client: &HttpClient, stats_url: &str) -> Result<u64, String> {
    let stats = get_json(client, stats_url).await?;
    stats["completed"]
        .as_u64()
        .ok_or_else(|| format!("{stats_url} has no numeric \"completed\": {stats}"))
}

/// Sends `count` requests starting at `first_index`: closed loop with
/// `concurrency` in flight, or open loop at `rate` with `concurrency` senders.
async fn load(
    client: &HttpClient,
    requests: &Arc<Requests>,
    url: &str,
    first_index: u64,
    count: u64,
    concurrency: usize,
    rate: Option<f64>,
) -> (Tally, Duration) {
    let tally = Arc::new(Mutex::new(Tally::new()));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    match rate {
        None => {
            let next = Arc::new(AtomicU64::new(0));
            for _ in 0..concurrency {
                let (client, requests, url, tally, next) = (
                    client.clone(),
                    requests.clone(),
                    url.to_owned(),
                    tally.clone(),
                    next.clone(),
                );
                tasks.spawn(async move {
                    loop {
                        let offset = next.fetch_add(1, Ordering::Relaxed);
                        if offset >= count {
                            break;
                        }
                        let request = requests.build(&url, first_index + offset);
                        let sent = Instant::now();
                        let outcome = send(&client, request).await;
                        tally.lock().unwrap().record(sent.elapsed(), outcome);
                    }
                });
            }
        }
        Some(rate) => {
            // A pacer thread releases requests on their schedule: it wakes at
            // most every PACER_TICK and releases every request due by then
            // (tokio's timer only resolves a millisecond, which would show as
            // latency; waking per request would cost a context switch each).
            // Latency counts from the schedule, so a stalled server cannot
            // hide; the pacer adds at most PACER_TICK to it.
            //
            // A fixed set of senders takes the released requests, each with
            // one in flight. A task per request (as before) spawned tens of
            // thousands of tasks a second and, whenever the server paused,
            // opened a new connection per waiting request: the load
            // generator's own work then showed as the server's tail.
            let (due, released) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
            let released = Arc::new(tokio::sync::Mutex::new(released));
            std::thread::spawn(move || {
                let mut offset = 0;
                while offset < count {
                    let scheduled = started + Duration::from_secs_f64(offset as f64 / rate);
                    if let Some(wait) = scheduled.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait.max(PACER_TICK));
                    }
                    let now = Instant::now();
                    while offset < count {
                        let scheduled = started + Duration::from_secs_f64(offset as f64 / rate);
                        if scheduled > now {
                            break;
                        }
                        if due.send((offset, scheduled)).is_err() {
                            return;
                        }
                        offset += 1;
                    }
                }
            });
            for _ in 0..concurrency.max(1) {
                let (client, requests, url, tally, released) = (
                    client.clone(),
                    requests.clone(),
                    url.to_owned(),
                    tally.clone(),
                    released.clone(),
                );
                tasks.spawn(async move {
                    loop {
                        let next = released.lock().await.recv().await;
                        let Some((offset, scheduled)) = next else {
                            break;
                        };
                        let request = requests.build(&url, first_index + offset);
                        let outcome = send(&client, request).await;
                        tally.lock().unwrap().record(scheduled.elapsed(), outcome);
                    }
                });
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    let tally = Arc::try_unwrap(tally)
        .expect("every task finished")
        .into_inner()
        .unwrap();
    (tally, elapsed)
}

/// One measured run against one server: warm-up, load, wait for completion.
#[allow(clippy::too_many_arguments)]
async fn measured_run(
    args: &Args,
    client: &HttpClient,
    endpoint: &Endpoint,
    requests: &Arc<Requests>,
    first_index: u64,
    rate: Option<f64>,
    label: &str,
) -> Result<Value, String> {
    let before_warmup = completed(client, &endpoint.stats_url).await?;
    let (warm, _) = load(
        client,
        requests,
        &endpoint.url,
        first_index,
        args.warmup,
        args.concurrency,
        None,
    )
    .await;
    if warm.errors > 0 {
        return Err(format!(
            "{label}: warm-up failed: {} errors, first: {}",
            warm.errors,
            warm.first_error.unwrap_or_default()
        ));
    }
    // Count from a settled start: the warm-up fully completed.
    let start_completed = wait_until(client, &endpoint.stats_url, None, |done| {
        done >= before_warmup + warm.accepted
    })
    .await
    .ok_or_else(|| format!("{label}: the warm-up did not complete"))?;

    let rss_probe = args.rss_after.map(|after| {
        let client = client.clone();
        let stats_url = endpoint.stats_url.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(stats) = get_json(&client, &stats_url).await
                    && stats["completed"].as_u64().unwrap_or(0) >= start_completed + after
                {
                    return stats["rss_bytes"].as_u64().unwrap_or(0);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    });

    let started = Instant::now();
    let (tally, sending) = load(
        client,
        requests,
        &endpoint.url,
        first_index + args.warmup,
        args.requests,
        if rate.is_some() {
            args.open_senders
        } else {
            args.concurrency
        },
        rate,
    )
    .await;
    let target = start_completed + tally.accepted;
    let timeout = Duration::from_secs(args.completion_timeout_secs);
    wait_until(client, &endpoint.stats_url, Some(timeout), |done| {
        done >= target
    })
    .await
    .ok_or_else(|| {
        format!(
            "{label}: the pipeline did not complete {} accepted webhooks within {timeout:?}",
            tally.accepted
        )
    })?;
    let completing = started.elapsed();
    let secs = sending.as_secs_f64();
    let percentile =
        |q: f64| (tally.latency_us.value_at_quantile(q) as f64 / 1000.0 * 100.0).round() / 100.0;
    let mut report = json!({
        "target": label,
        "mode": if rate.is_some() { "open" } else { "closed" },
        "requests": args.requests,
        "concurrency": if rate.is_some() { Value::Null } else { args.concurrency.into() },
        "open_senders": if rate.is_some() { args.open_senders.into() } else { Value::Null },
        "offered_per_s": rate.map(f64::round),
        "body_bytes": args.body_bytes,
        "accepted": tally.accepted,
        "duplicates": tally.duplicates,
        "errors": tally.errors,
        "first_error": tally.first_error,
        "seconds": (secs * 1000.0).round() / 1000.0,
        "accepted_per_s": (tally.accepted as f64 / secs).round(),
        "requests_per_s": (args.requests as f64 / secs).round(),
        "completed_per_s": (tally.accepted as f64 / completing.as_secs_f64()).round(),
        "ack_latency_ms": {
            "p50": percentile(0.50),
            "p99": percentile(0.99),
            "p999": percentile(0.999),
            "max": (tally.latency_us.max() as f64 / 1000.0 * 100.0).round() / 100.0,
        },
    });
    if let Some(probe) = rss_probe {
        let at_checkpoint = probe.await.map_err(|error| error.to_string())?;
        let at_end = get_json(client, &endpoint.stats_url).await?["rss_bytes"]
            .as_u64()
            .unwrap_or(0);
        report["rss"] = json!({
            "after_events": args.rss_after,
            "at_checkpoint_mib": (at_checkpoint as f64 / 1048576.0 * 10.0).round() / 10.0,
            "at_end_mib": (at_end as f64 / 1048576.0 * 10.0).round() / 10.0,
            "end_vs_checkpoint_percent": if at_checkpoint > 0 {
                (at_end as f64 / at_checkpoint as f64 * 1000.0).round() / 10.0
            } else { 0.0 },
        });
    }
    Ok(report)
}

/// Polls the stats URL until `done(completed)` holds; `None` on timeout.
async fn wait_until(
    client: &HttpClient,
    stats_url: &str,
    timeout: Option<Duration>,
    done: impl Fn(u64) -> bool,
) -> Option<u64> {
    let deadline = Instant::now() + timeout.unwrap_or(Duration::from_secs(60));
    loop {
        if let Ok(count) = completed(client, stats_url).await
            && done(count)
        {
            return Some(count);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A pipeline-server child; it exits when this process drops its stdin.
struct Child {
    process: tokio::process::Child,
    endpoint: Endpoint,
}

async fn spawn_server(target: &str, retention_secs: u64) -> Result<Child, String> {
    let binary = std::env::current_exe()
        .map_err(|error| error.to_string())?
        .with_file_name("pipeline-server");
    let mut process = tokio::process::Command::new(&binary)
        .arg(target)
        .args(["--retention-secs", &retention_secs.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| {
            format!(
                "cannot start {}: {error} (build it: cargo build --release -p webhook-armor-benches)",
                binary.display()
            )
        })?;
    let stdout = process.stdout.take().expect("piped stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .map_err(|_| format!("pipeline-server {target} did not start within 60 s"))?
        .map_err(|error| error.to_string())?
        .ok_or_else(|| format!("pipeline-server {target} exited before listening"))?;
    let base = first
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("pipeline-server {target} said {first:?}"))?
        .to_owned();
    Ok(Child {
        process,
        endpoint: Endpoint {
            url: format!("{base}/webhook"),
            stats_url: format!("{base}/stats"),
        },
    })
}

impl Child {
    async fn stop(mut self) {
        // Closing stdin asks for a clean exit (the PostgreSQL schema dropped).
        drop(self.process.stdin.take());
        if tokio::time::timeout(Duration::from_secs(30), self.process.wait())
            .await
            .is_err()
        {
            let _ = self.process.kill().await;
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(usize::MAX)
        .build_http();
    let mut body = br#"{"type":"invoice.paid","data":{"padding":""#.to_vec();
    body.resize(args.body_bytes.saturating_sub(3).max(body.len()), b'x');
    body.extend_from_slice(b"\"}}");
    let requests = Arc::new(Requests {
        signer: StandardWebhooks::new([args.secret.as_str()])
            .map_err(|error| format!("--secret: {error}"))?,
        run: webhook_armor_benches::run_id(),
        body: Bytes::from(body),
        duplicate_every: args.duplicate_every,
    });

    let (child, endpoint, label) = match (&args.spawn, &args.url) {
        (Some(target), _) => {
            let child = spawn_server(target, args.retention_secs).await?;
            let endpoint = child.endpoint.clone();
            (Some(child), endpoint, target.clone())
        }
        (None, Some(url)) => (
            None,
            Endpoint {
                url: url.clone(),
                stats_url: args.stats_url.clone().expect("clap requires it"),
            },
            url.clone(),
        ),
        (None, None) => return Err("give --spawn TARGET or --url URL --stats-url URL".into()),
    };

    let per_run = args.warmup + args.requests;
    let result = async {
        let mut report =
            measured_run(&args, &client, &endpoint, &requests, 0, args.rate, &label).await?;
        if args.half_peak && args.rate.is_none() {
            let half = report["accepted_per_s"].as_f64().unwrap_or(0.0) / 2.0;
            let open = measured_run(
                &args,
                &client,
                &endpoint,
                &requests,
                per_run,
                Some(half.max(1.0)),
                &label,
            )
            .await?;
            report["at_half_peak"] = open;
        }
        Ok::<_, String>(report)
    }
    .await;
    if let Some(child) = child {
        child.stop().await;
    }
    let mut report = result?;

    if args.baseline {
        let bare = spawn_server("bare", args.retention_secs).await?;
        let baseline = async {
            let mut baseline = measured_run(
                &args,
                &client,
                &bare.endpoint,
                &requests,
                0,
                args.rate,
                "bare",
            )
            .await?;
            // The bare server at the pipeline's half-peak rate: the latency
            // floor this machine (scheduler, loopback) puts under any server.
            if let Some(rate) = report["at_half_peak"]["offered_per_s"].as_f64() {
                baseline["at_same_rate"] = measured_run(
                    &args,
                    &client,
                    &bare.endpoint,
                    &requests,
                    per_run,
                    Some(rate),
                    "bare",
                )
                .await?;
            }
            Ok::<_, String>(baseline)
        }
        .await;
        bare.stop().await;
        let baseline = baseline?;
        let ratio = report["requests_per_s"].as_f64().unwrap_or(0.0)
            / baseline["requests_per_s"].as_f64().unwrap_or(f64::INFINITY);
        report["baseline"] = baseline;
        report["ratio_to_baseline_percent"] = ((ratio * 1000.0).round() / 10.0).into();
    }
    println!("{report}");
    Ok(())
}
