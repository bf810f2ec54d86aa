//! One-click scenarios: the simulator sends itself webhooks that show one
//! failure mode each, through the same router a real sender would hit.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::Request;
use serde::Serialize;
use tower::ServiceExt;
use webhook_armor::deliver::{Dispatcher, NewEndpoint};
use webhook_armor::verify::StandardWebhooks;

use crate::Simulator;

/// Every scenario the API accepts.
pub const SCENARIOS: [&str; 7] = [
    "duplicate",
    "dead-letter",
    "signature-attack",
    "replay-attack",
    "campaign-blast",
    "receiver-outage",
    "worker-crash",
];

/// How long the receiver of the outage scenario answers 503.
const OUTAGE: Duration = Duration::from_secs(2);

/// What a scenario sent and what came back.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario.
    pub scenario: String,
    /// The event ids sent.
    pub event_ids: Vec<String>,
    /// The status of each response, in sending order.
    pub statuses: Vec<u16>,
    /// The endpoint the scenario registered, if it registered one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<String>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

/// A fresh id with `prefix`.
pub(crate) fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}_{nanos:x}_{:04x}", fastrand_u16())
}

fn fastrand_u16() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    (RandomState::new().hash_one(SystemTime::now()) & 0xffff) as u16
}

impl Simulator {
    /// A Standard Webhooks request to `/webhook`, signed with `secret` at `timestamp`.
    fn signed(&self, id: &str, timestamp: i64, body: String, secret: &str) -> Request<Body> {
        let signature = StandardWebhooks::new([secret]).expect("valid secret").sign(
            id,
            timestamp,
            body.as_bytes(),
        );
        Request::post("/webhook")
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(Body::from(body))
            .expect("valid request")
    }

    async fn send(&self, request: Request<Body>) -> u16 {
        match self.app().oneshot(request).await {
            Ok(response) => response.status().as_u16(),
            Err(never) => match never {},
        }
    }

    /// Sends one signed webhook with a fresh id, noting it in `report`.
    async fn send_one(
        &self,
        report: &mut Report,
        prefix: &str,
        timestamp: i64,
        body: &str,
        secret: &str,
    ) {
        let id = unique(prefix);
        let request = self.signed(&id, timestamp, body.into(), secret);
        report.statuses.push(self.send(request).await);
        report.event_ids.push(id);
    }

    /// Runs scenario `name` (one of `SCENARIOS`); `count` sizes the campaign blast.
    pub async fn run_scenario(&self, name: &str, count: usize) -> Option<Report> {
        let secret = self.secrets().standard.clone();
        let mut report = Report {
            scenario: name.to_owned(),
            event_ids: Vec::new(),
            statuses: Vec::new(),
            endpoint_id: None,
        };
        match name {
            "duplicate" => {
                let id = unique("msg_dup");
                let timestamp = now();
                for _ in 0..2 {
                    let request = self.signed(
                        &id,
                        timestamp,
                        r#"{"type":"order.created"}"#.into(),
                        &secret,
                    );
                    report.statuses.push(self.send(request).await);
                }
                report.event_ids.push(id);
            }
            "dead-letter" => {
                self.send_one(
                    &mut report,
                    "msg_dead",
                    now(),
                    r#"{"type":"order.created","simulate":{"fail_times":3}}"#,
                    &secret,
                )
                .await;
            }
            "signature-attack" => {
                let forged = webhook_armor::deliver::generate_secret();
                self.send_one(
                    &mut report,
                    "msg_forged",
                    now(),
                    r#"{"type":"refund.created","amount":99999}"#,
                    &forged,
                )
                .await;
            }
            "worker-crash" => {
                // The worker that leases it dies mid-job (see
                // `Simulator::process`): no ack, no nack. The lease runs out
                // and a worker takes the job over on attempt 2.
                self.send_one(
                    &mut report,
                    "msg_crash",
                    now(),
                    r#"{"type":"invoice.paid","simulate":"crash"}"#,
                    &secret,
                )
                .await;
            }
            "replay-attack" => {
                let id = unique("msg_replayed");
                // Captured ten minutes ago and sent again: signed, but stale.
                let request = self.signed(
                    &id,
                    now() - 600,
                    r#"{"type":"payout.paid"}"#.into(),
                    &secret,
                );
                report.statuses.push(self.send(request).await);
                report.event_ids.push(id);
            }
            "campaign-blast" => {
                let count = count.clamp(1, 10_000);
                let batch = unique("msg_blast");
                let sends: Vec<_> = (0..count)
                    .map(|i| {
                        let simulator = self.clone();
                        let id = format!("{batch}_{i}");
                        let request = self.signed(
                            &id,
                            now(),
                            format!(r#"{{"type":"campaign.sent","n":{i}}}"#),
                            &secret,
                        );
                        tokio::spawn(async move { (id, simulator.send(request).await) })
                    })
                    .collect();
                for send in sends {
                    if let Ok((id, status)) = send.await {
                        report.event_ids.push(id);
                        report.statuses.push(status);
                    }
                }
            }
            "receiver-outage" => {
                let url = outage_receiver().await?;
                let endpoint = self
                    .inner
                    .backends
                    .endpoints
                    .create(NewEndpoint::new("outage receiver", url))
                    .await
                    .ok()?;
                let dispatcher = Dispatcher::new(
                    self.inner.backends.endpoints.clone(),
                    self.inner.backends.queue.clone(),
                );
                for _ in 0..count.clamp(1, 100) {
                    let message = unique("msg_outage");
                    let sent = dispatcher
                        .send(
                            &message,
                            "order.shipped",
                            r#"{"type":"order.shipped"}"#.into(),
                            Some(&endpoint.id),
                        )
                        .await
                        .ok()?;
                    report
                        .event_ids
                        .extend(sent.deliveries.into_iter().map(|d| d.delivery_id));
                    report.statuses.push(202);
                }
                report.endpoint_id = Some(endpoint.id);
            }
            _ => return None,
        }
        Some(report)
    }
}

/// A receiver on 127.0.0.1 that answers 503 for [`OUTAGE`], then 200, and
/// stops after a minute.
async fn outage_receiver() -> Option<String> {
    let back_at = Instant::now() + OUTAGE;
    let app = axum::Router::new().fallback(move || async move {
        if Instant::now() < back_at {
            axum::http::StatusCode::SERVICE_UNAVAILABLE
        } else {
            axum::http::StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.ok()?;
    let url = format!("http://{}/hooks", listener.local_addr().ok()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(tokio::time::sleep(Duration::from_secs(60)))
            .await;
    });
    Some(url)
}
