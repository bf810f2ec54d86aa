//! The webhook-armor simulator: the whole pipeline in one process, with a
//! REST + WebSocket API, a live dashboard and one-click failure scenarios.
//!
//! Inbound webhooks for five providers go through the armor layer into the
//! in-memory queue; a worker processes them (a payload can ask to fail, to
//! show retries and dead letters); every lifecycle event is logged, counted
//! and streamed to the dashboard.

mod api;
mod backends;
mod log;
mod metrics;
mod outbound;
mod scenarios;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use futures_util::StreamExt;
use tower::Layer;
use tower::ServiceExt;
use webhook_armor::deliver::{
    DeliveryClient, DeliveryHandler, KIND_DELIVERY, METADATA_KIND, SsrfPolicy,
};
use webhook_armor::events::{LifecycleEvent, LifecycleState};
use webhook_armor::layer::WebhookArmor;
use webhook_armor::verify::{GitHub, Shopify, Slack, StandardWebhooks, Stripe, Verifier};
use webhook_armor::{Enqueue, HandlerError, Job, RetryPolicy, WebhookArmorLayer, Worker};

pub use backends::Backends;
pub use log::EventLog;

/// The signing secret of each provider endpoint.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// `/webhook` and `/webhooks/standard` (a `whsec_` secret).
    pub standard: String,
    /// `/webhooks/stripe`.
    pub stripe: String,
    /// `/webhooks/github`.
    pub github: String,
    /// `/webhooks/slack`.
    pub slack: String,
    /// `/webhooks/shopify`.
    pub shopify: String,
}

impl Secrets {
    /// Freshly generated secrets for every provider.
    pub fn generated() -> Self {
        let generated = webhook_armor::deliver::generate_secret;
        Self {
            standard: generated(),
            stripe: generated(),
            github: generated(),
            slack: generated(),
            shopify: generated(),
        }
    }
}

/// How long a worker holds a job before the queue may give it to another:
/// short, so the worker-crash scenario recovers while you watch; handlers
/// (at most a 5 s delivery) finish well inside 90% of it.
pub const LEASE: Duration = Duration::from_secs(8);

/// The providers with an inbound endpoint, as they appear in `/webhooks/{provider}`.
pub const PROVIDERS: [&str; 5] = ["standard", "stripe", "github", "slack", "shopify"];

/// The simulator: its pipeline and what it has seen. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    secrets: Secrets,
    backends: Backends,
    log: EventLog,
    delivery: DeliveryHandler,
}

impl Simulator {
    /// A simulator on the in-memory backends.
    pub fn new(secrets: Secrets) -> Self {
        Self::with_backends(secrets, Backends::memory())
    }

    /// A simulator on `backends`; with Redis or PostgreSQL, several
    /// simulator processes (an `api` and `worker`s) share one pipeline.
    pub fn with_backends(secrets: Secrets, backends: Backends) -> Self {
        // The simulator's receivers run on this machine, so loopback is allowed.
        let policy = SsrfPolicy::default()
            .allow("127.0.0.1/32")
            .expect("valid network");
        let delivery = DeliveryHandler::new(
            backends.endpoints.clone(),
            backends.breaker.clone(),
            backends.delivery_attempts.clone(),
            DeliveryClient::with_limits(
                policy,
                Duration::from_secs(2),
                Duration::from_secs(5),
                64 * 1024,
            ),
        );
        Self {
            inner: Arc::new(Inner {
                secrets,
                backends,
                delivery,
                log: EventLog::default(),
            }),
        }
    }

    /// The secrets in use.
    pub fn secrets(&self) -> &Secrets {
        &self.inner.secrets
    }

    /// The storage in use.
    pub fn backends(&self) -> &Backends {
        &self.inner.backends
    }

    /// The queue's counts; zeros while the backend cannot answer.
    pub async fn queue_stats(&self) -> webhook_armor::queue::QueueStats {
        self.inner.backends.queue.stats().await.unwrap_or_default()
    }

    /// The event log.
    pub fn log(&self) -> &EventLog {
        &self.inner.log
    }

    /// Starts the event collector and `workers` concurrent job handlers on the
    /// current runtime; they stop when `shutdown` completes.
    pub fn spawn_background(
        &self,
        workers: usize,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        self.spawn_collector();
        self.spawn_worker(workers, shutdown);
    }

    /// Starts the task that records every lifecycle event on the bus (with a
    /// shared backend: every process's events) for the API and dashboard.
    pub fn spawn_collector(&self) {
        let mut events = self.inner.backends.bus.subscribe();
        let collector = self.clone();
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                collector.inner.log.record(event);
            }
        });
    }

    /// Starts `workers` concurrent job handlers; they stop when `shutdown` completes.
    pub fn spawn_worker(
        &self,
        workers: usize,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let handler = {
            let simulator = self.clone();
            tower::service_fn(move |job: Job| {
                let simulator = simulator.clone();
                async move { simulator.process(job).await }
            })
        };
        let worker = Worker::new(self.inner.backends.queue.clone(), handler)
            .events(self.inner.backends.bus.clone())
            .concurrency(workers)
            .poll_interval(Duration::from_millis(200))
            .lease_duration(LEASE)
            .retry_policy(RetryPolicy::default().with_base(Duration::from_millis(200)));
        tokio::spawn(worker.run(shutdown))
    }

    /// The simulated business logic: a short piece of work, or the failure
    /// the payload asks for (`{"simulate":"fail"}` always fails,
    /// `{"simulate":{"fail_times":2}}` fails on its first two attempts).
    ///
    /// The attempt comes from the job itself, so every worker process agrees
    /// on it. A job replayed from the dead letters (attempts start again, the
    /// dead-letter reason kept as its last error) runs as if the bug had been
    /// fixed meanwhile, which is why an operator replays it.
    async fn process(&self, job: Job) -> Result<(), HandlerError> {
        if job.metadata.get(METADATA_KIND).map(String::as_str) == Some(KIND_DELIVERY) {
            return self.inner.delivery.clone().oneshot(job).await;
        }
        let attempt = job.attempt;
        let replayed = attempt == 1 && job.last_error.is_some();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let payload: serde_json::Value = serde_json::from_slice(&job.payload).unwrap_or_default();
        if payload.get("simulate").and_then(serde_json::Value::as_str) == Some("crash")
            && attempt == 1
        {
            self.crash(&job);
        }
        let fail_times = match payload.get("simulate") {
            Some(serde_json::Value::String(mode)) if mode == "fail" => u32::MAX,
            Some(spec) => spec
                .get("fail_times")
                .and_then(serde_json::Value::as_u64)
                .map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
            None => 0,
        };
        if !replayed && attempt <= fail_times {
            return Err(HandlerError::retry(format!(
                "simulated failure on attempt {attempt}"
            )));
        }
        Ok(())
    }

    /// A worker dying mid-job, as far as one task can: it unwinds without a
    /// panic message, so the job is neither acked nor nacked and its lease
    /// is simply abandoned, as if the process had been killed. The queue
    /// gives the job out again when the lease ends ([`LEASE`]).
    fn crash(&self, job: &Job) -> ! {
        self.inner.backends.bus.publish(
            LifecycleEvent::new(&job.id, LifecycleState::Processing)
                .with_attempt(job.attempt)
                .with_detail(format!(
                    "worker crashed mid-job (simulated); lease abandoned, back in the queue within {} s",
                    LEASE.as_secs()
                )),
        );
        std::panic::resume_unwind(Box::new("simulated worker crash"))
    }

    /// The verifier of `provider`, or `None` for an unknown provider.
    fn verifier(&self, provider: &str) -> Option<Box<dyn Verifier>> {
        let secrets = &self.inner.secrets;
        let verifier: Box<dyn Verifier> = match provider {
            "standard" => Box::new(StandardWebhooks::new([&secrets.standard]).ok()?),
            "stripe" => Box::new(Stripe::new([&secrets.stripe]).ok()?),
            "github" => Box::new(GitHub::new([&secrets.github]).ok()?),
            "slack" => Box::new(Slack::new([&secrets.slack]).ok()?),
            "shopify" => Box::new(Shopify::new([&secrets.shopify]).ok()?),
            _ => return None,
        };
        Some(verifier)
    }

    /// The inbound endpoint of `provider`: the armor layer in queue mode.
    fn inbound(&self, provider: &str) -> Option<WebhookArmor<Enqueue>> {
        let verifier = self.verifier(provider)?;
        let armor = WebhookArmorLayer::new(verifier)
            .without_idempotency() // the queue refuses duplicate ids itself
            .events(self.inner.backends.bus.clone());
        let enqueue =
            Enqueue::new(self.inner.backends.queue.clone()).events(self.inner.backends.bus.clone());
        Some(armor.layer(enqueue))
    }

    /// The whole HTTP surface: inbound webhooks, the API, `/ws` and the dashboard.
    pub fn app(&self) -> Router {
        let mut router = Router::new();
        for provider in PROVIDERS {
            let inbound = self.inbound(provider).expect("known provider");
            router = router.route_service(&format!("/webhooks/{provider}"), inbound);
        }
        router
            .route_service(
                "/webhook",
                self.inbound("standard").expect("known provider"),
            )
            .merge(api::routes(self.clone()))
    }
}
