//! Queue mode: store the verified webhook and answer at once.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tower::Service;

use crate::events::{EventBus, LifecycleEvent, LifecycleState};
use crate::queue::{Enqueued, NewJob, Queue};
use crate::{BoxError, Verified};

/// Metadata key of the scheme that verified a queued webhook.
pub const METADATA_SCHEME: &str = "scheme";
/// Metadata key of the matched source (API key or Basic user), when any.
pub const METADATA_SOURCE: &str = "source";
/// Prefix of metadata keys holding the request's headers (`header.content-type`).
pub const METADATA_HEADER_PREFIX: &str = "header.";

/// Headers never written to the queue: they carry credentials, not facts.
const CREDENTIAL_HEADERS: [HeaderName; 4] = [
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
    header::COOKIE,
    HeaderName::from_static("x-api-key"),
];

/// Headers about the connection, not the webhook: never written to the
/// queue (storing them costs every job a few allocations and bytes at rest).
const TRANSPORT_HEADERS: [HeaderName; 10] = [
    header::HOST,
    header::CONTENT_LENGTH,
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::TRANSFER_ENCODING,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::EXPECT,
    header::ACCEPT_ENCODING,
];

/// The inner service of queue mode, behind
/// [`WebhookArmorLayer`](crate::layer::WebhookArmorLayer).
///
/// It stores the body, the scheme and the request headers (minus credential
/// headers and connection-level ones such as `host` and `content-length`) as a [`NewJob`] whose id is the verified event id, and answers
/// `202 {"id": ...}` as soon as the queue has it, so the sender is released at
/// once and a [`Worker`](crate::Worker) processes the job later. A duplicate id
/// is answered `200 {"id": ..., "duplicate": true}`; a queue failure `503`, which
/// makes the layer release its claim and the sender retry.
///
/// ```
/// use std::sync::Arc;
/// use axum::Router;
/// use webhook_armor::layer::WebhookArmorLayer;
/// use webhook_armor::memory::MemoryQueue;
/// use webhook_armor::verify::Stripe;
/// use webhook_armor::Enqueue;
///
/// let queue = Arc::new(MemoryQueue::new());
/// let armor = WebhookArmorLayer::new(Stripe::new(["whsec_..."]).unwrap());
/// let app: Router = Router::new().route_service(
///     "/webhooks/stripe",
///     tower::ServiceBuilder::new().layer(armor).service(Enqueue::new(queue)),
/// );
/// ```
#[derive(Debug, Clone)]
pub struct Enqueue {
    queue: Arc<dyn Queue>,
    events: Option<Arc<dyn EventBus>>,
}

impl Enqueue {
    /// Stores webhooks on `queue`.
    pub fn new(queue: Arc<dyn Queue>) -> Self {
        Self {
            queue,
            events: None,
        }
    }

    /// Publishes QUEUED and DUPLICATE lifecycle events to `bus`.
    #[must_use]
    pub fn events(mut self, bus: Arc<dyn EventBus>) -> Self {
        self.events = Some(bus);
        self
    }
}

impl<B> Service<Request<B>> for Enqueue
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.enqueue(request).await) })
    }
}

impl Enqueue {
    async fn enqueue<B>(&self, request: Request<B>) -> Response<Full<Bytes>>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        let Some(verified) = parts.extensions.get::<Verified>().cloned() else {
            tracing::error!(
                "Enqueue reached without Verified facts: put WebhookArmorLayer in front of it"
            );
            return json(
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"error":"misconfigured"}"#.into(),
            );
        };
        let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
            return json(
                StatusCode::BAD_REQUEST,
                r#"{"error":"unreadable body"}"#.into(),
            );
        };
        let job = job_for(&verified, &parts.headers, body);
        let id_json = serde_json::to_string(&verified.id).expect("a string serialises");
        match self.queue.enqueue(job).await {
            Ok(Enqueued::New) => {
                self.publish(&verified, LifecycleState::Queued, None);
                json(StatusCode::ACCEPTED, format!(r#"{{"id":{id_json}}}"#))
            }
            Ok(Enqueued::Duplicate) => {
                self.publish(&verified, LifecycleState::Duplicate, Some("already queued"));
                json(
                    StatusCode::OK,
                    format!(r#"{{"id":{id_json},"duplicate":true}}"#),
                )
            }
            Err(error) => {
                tracing::error!(%error, event_id = %verified.id, "enqueue failed");
                let mut response = json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    r#"{"error":"temporarily unavailable, retry later"}"#.into(),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                response
            }
        }
    }

    fn publish(&self, verified: &Verified, state: LifecycleState, detail: Option<&str>) {
        if let Some(bus) = &self.events {
            let mut event = LifecycleEvent::new(&verified.id, state).with_scheme(verified.scheme);
            if let Some(detail) = detail {
                event = event.with_detail(detail);
            }
            bus.publish(event);
        }
    }
}

/// The job for a verified webhook: its id, body, scheme, source and headers.
pub fn job_for(verified: &Verified, headers: &http::HeaderMap, body: Bytes) -> NewJob {
    let mut job = NewJob::new(&verified.id, body).with_metadata(METADATA_SCHEME, verified.scheme);
    if let Some(source) = &verified.source {
        job = job.with_metadata(METADATA_SOURCE, source);
    }
    for (name, value) in headers {
        if CREDENTIAL_HEADERS.contains(name) || TRANSPORT_HEADERS.contains(name) {
            continue;
        }
        if let Ok(value) = value.to_str() {
            // Built by hand: format! costs a measurable share of a memory-queue enqueue.
            let mut key = String::with_capacity(METADATA_HEADER_PREFIX.len() + name.as_str().len());
            key.push_str(METADATA_HEADER_PREFIX);
            key.push_str(name.as_str());
            job = job.with_metadata(key, value);
        }
    }
    job
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Verified;

    #[test]
    fn jobs_keep_webhook_headers_but_not_credentials_or_transport() {
        let mut headers = http::HeaderMap::new();
        for (name, value) in [
            ("webhook-id", "msg_1"),
            ("x-github-event", "push"),
            ("content-type", "application/json"),
            ("authorization", "Bearer secret"),
            ("x-api-key", "k_live"),
            ("host", "example.com"),
            ("content-length", "7"),
            ("connection", "keep-alive"),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let job = job_for(
            &Verified::new("msg_1", "standard-webhooks"),
            &headers,
            Bytes::from_static(b"{\"n\":1}"),
        );
        let keys: Vec<&str> = job.metadata.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "header.content-type",
                "header.webhook-id",
                "header.x-github-event",
                "scheme"
            ]
        );
        assert_eq!(job.metadata["header.x-github-event"], "push");
    }
}
