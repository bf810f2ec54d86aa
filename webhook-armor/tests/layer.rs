//! The Tower layer in front of real axum and hyper services.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body as AxumBody;
use axum::routing::post;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt};
use webhook_armor::clock::{Clock, ManualClock, unix_seconds};
use webhook_armor::events::{EventBus, LifecycleState};
use webhook_armor::layer::{RejectionPolicy, WebhookArmorLayer};
use webhook_armor::memory::{MemoryEventBus, MemoryQueue};
use webhook_armor::queue::Queue;
use webhook_armor::verify::{HmacScheme, SignedContent, Slack, StandardWebhooks, Stripe};
use webhook_armor::{Enqueue, ReplayWindow, Verified};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn now() -> i64 {
    unix_seconds(std::time::SystemTime::now())
}

fn signed(id: &str, timestamp: i64, body: &'static str) -> Request<AxumBody> {
    let signer = StandardWebhooks::new([SECRET]).unwrap();
    Request::post("/webhook")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "webhook-signature",
            signer.sign(id, timestamp, body.as_bytes()),
        )
        .body(AxumBody::from(body))
        .unwrap()
}

/// A guarded axum app counting handler calls; the handler answers
/// `status` and echoes the verified id.
fn app(layer: WebhookArmorLayer, calls: Arc<AtomicUsize>, status: StatusCode) -> Router {
    Router::new()
        .route(
            "/webhook",
            post(move |request: Request<AxumBody>| async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let id = Verified::from_request(&request)
                    .expect("verified facts")
                    .id
                    .clone();
                (status, id)
            }),
        )
        .layer(layer)
}

async fn text(response: Response<AxumBody>) -> String {
    String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

fn layer() -> WebhookArmorLayer {
    WebhookArmorLayer::new(StandardWebhooks::new([SECRET]).unwrap())
}

#[tokio::test]
async fn authentic_request_reaches_the_handler_with_its_facts() {
    let calls = Arc::new(AtomicUsize::new(0));
    let response = app(layer(), calls.clone(), StatusCode::OK)
        .oneshot(signed("msg_1", now(), r#"{"a":1}"#))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, "msg_1");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn forged_and_stale_requests_are_refused_without_detail() {
    let bus = Arc::new(MemoryEventBus::default());
    let mut events = bus.subscribe();
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(layer().events(bus.clone()), calls.clone(), StatusCode::OK);

    let mut forged = signed("msg_1", now(), r#"{"a":1}"#);
    *forged.body_mut() = AxumBody::from(r#"{"a":2}"#);
    let response = app.clone().oneshot(forged).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(text(response).await, "unauthorized");

    let stale = app
        .clone()
        .oneshot(signed("msg_2", now() - 301, "{}"))
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::UNAUTHORIZED);
    let future = app
        .clone()
        .oneshot(signed("msg_3", now() + 301, "{}"))
        .await
        .unwrap();
    assert_eq!(future.status(), StatusCode::UNAUTHORIZED);
    let unsigned = Request::post("/webhook")
        .body(AxumBody::from("{}"))
        .unwrap();
    assert_eq!(
        app.oneshot(unsigned).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let mut reasons = Vec::new();
    for _ in 0..4 {
        let event = events.next().await.unwrap();
        assert_eq!(event.state, LifecycleState::Failed);
        reasons.push(event.detail.unwrap());
    }
    assert_eq!(
        reasons,
        ["signature", "timestamp", "timestamp", "malformed"]
    );
}

#[tokio::test]
async fn always_ok_policy_hides_rejections_from_probers() {
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(
        layer().rejection_policy(RejectionPolicy::AlwaysOk),
        calls.clone(),
        StatusCode::OK,
    );
    let mut forged = signed("msg_1", now(), "{}");
    forged
        .headers_mut()
        .insert("webhook-signature", "v1,AAAA".parse().unwrap());
    let response = app.oneshot(forged).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_duplicate_is_answered_without_calling_the_handler_again() {
    let bus = Arc::new(MemoryEventBus::default());
    let mut events = bus.subscribe();
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(layer().events(bus.clone()), calls.clone(), StatusCode::OK);
    let timestamp = now();
    let first = app
        .clone()
        .oneshot(signed("msg_1", timestamp, "{}"))
        .await
        .unwrap();
    let second = app.oneshot(signed("msg_1", timestamp, "{}")).await.unwrap();
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let event = events.next().await.unwrap();
    assert_eq!(
        (event.state, event.event_id.as_str()),
        (LifecycleState::Duplicate, "msg_1")
    );
}

#[tokio::test]
async fn a_failed_handler_releases_the_claim_so_the_retry_is_processed() {
    let calls = Arc::new(AtomicUsize::new(0));
    let failing = app(layer(), calls.clone(), StatusCode::INTERNAL_SERVER_ERROR);
    let timestamp = now();
    let response = failing
        .clone()
        .oneshot(signed("msg_1", timestamp, "{}"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let retry = failing
        .oneshot(signed("msg_1", timestamp, "{}"))
        .await
        .unwrap();
    assert_eq!(retry.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the retry was not mistaken for a duplicate"
    );
}

#[tokio::test]
async fn a_duplicate_of_an_event_in_progress_is_told_to_retry() {
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel::<()>();
    let (finish_tx, finish_rx) = tokio::sync::oneshot::channel::<()>();
    let entered = Arc::new(std::sync::Mutex::new(Some(entered_tx)));
    let finish = Arc::new(tokio::sync::Mutex::new(Some(finish_rx)));
    let app = Router::new()
        .route(
            "/webhook",
            post(move || async move {
                if let Some(tx) = entered.lock().unwrap().take() {
                    tx.send(()).unwrap();
                }
                if let Some(rx) = finish.lock().await.take() {
                    rx.await.unwrap();
                }
                "done"
            }),
        )
        .layer(layer());
    let timestamp = now();
    let slow = tokio::spawn(app.clone().oneshot(signed("msg_1", timestamp, "{}")));
    entered_rx.await.unwrap();
    let duplicate = app.oneshot(signed("msg_1", timestamp, "{}")).await.unwrap();
    assert_eq!(duplicate.status(), StatusCode::CONFLICT);
    assert!(duplicate.headers().contains_key("retry-after"));
    finish_tx.send(()).unwrap();
    assert_eq!(slow.await.unwrap().unwrap().status(), StatusCode::OK);
}

/// A body that yields `chunks` chunks of `chunk` bytes, counting what was pulled.
struct CountingBody {
    remaining: usize,
    chunk: usize,
    pulled: Arc<AtomicUsize>,
}

impl http_body::Body for CountingBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let size = self.chunk.min(self.remaining);
        self.remaining -= size;
        self.pulled.fetch_add(size, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; size])))))
    }
}

#[tokio::test]
async fn an_oversized_body_gets_413_and_is_read_no_further_than_the_limit() {
    const LIMIT: usize = 1024 * 1024;
    const CHUNK: usize = 16 * 1024;
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(layer().body_limit(LIMIT), calls.clone(), StatusCode::OK);

    // Streamed without a length: cut off at the chunk that crosses the limit.
    let pulled = Arc::new(AtomicUsize::new(0));
    let body = CountingBody {
        remaining: 10 * LIMIT,
        chunk: CHUNK,
        pulled: pulled.clone(),
    };
    let request = Request::post("/webhook").body(AxumBody::new(body)).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let read = pulled.load(Ordering::SeqCst);
    assert!(read <= LIMIT + CHUNK, "read {read} bytes of a 10 MiB body");

    // Declared too long: refused before reading a byte.
    let pulled = Arc::new(AtomicUsize::new(0));
    let body = CountingBody {
        remaining: 10 * LIMIT,
        chunk: CHUNK,
        pulled: pulled.clone(),
    };
    let request = Request::post("/webhook")
        .header("content-length", (10 * LIMIT).to_string())
        .body(AxumBody::new(body))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(pulled.load(Ordering::SeqCst), 0);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn queue_mode_answers_202_and_stores_the_webhook() {
    let queue = Arc::new(MemoryQueue::new());
    let bus = Arc::new(MemoryEventBus::default());
    let mut events = bus.subscribe();
    let service = tower::ServiceBuilder::new()
        .layer(layer().without_idempotency())
        .service(Enqueue::new(queue.clone()).events(bus.clone()));
    let app = Router::new().route_service("/webhook", service);
    let timestamp = now();

    let response = app
        .clone()
        .oneshot(signed("msg_1", timestamp, r#"{"n":1}"#))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(text(response).await, r#"{"id":"msg_1"}"#);
    let again = app
        .oneshot(signed("msg_1", timestamp, r#"{"n":1}"#))
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(text(again).await, r#"{"id":"msg_1","duplicate":true}"#);

    let lease = queue
        .lease(10, Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0);
    assert_eq!(&lease.job.payload[..], br#"{"n":1}"#);
    assert_eq!(lease.job.metadata["scheme"], "standard-webhooks");
    assert_eq!(lease.job.metadata["header.webhook-id"], "msg_1");
    let states: Vec<_> = [events.next().await.unwrap(), events.next().await.unwrap()]
        .into_iter()
        .map(|e| e.state)
        .collect();
    assert_eq!(states, [LifecycleState::Queued, LifecycleState::Duplicate]);
}

/// Every timestamped scheme, signed correctly but 301 s off, is refused
/// through the layer; 299 s off is accepted.
#[tokio::test]
async fn timestamped_schemes_refuse_301_seconds_of_skew() {
    let clock = ManualClock::new(1_700_000_000);
    let window = ReplayWindow::default().with_clock(clock.clone());
    let body: &[u8] = br#"{"id":"evt_1","event_id":"Ev1"}"#;

    type Sign = Box<dyn Fn(i64) -> Request<Full<Bytes>>>;
    let standard = StandardWebhooks::new([SECRET]).unwrap();
    let stripe = Stripe::new(["whsec_stripe"]).unwrap();
    let slack = Slack::new(["slack-secret"]).unwrap();
    let generic = HmacScheme::new("acme", "x-acme-signature", ["acme"])
        .unwrap()
        .signed_content(SignedContent::TimestampAndBody {
            timestamp_header: http::HeaderName::from_static("x-acme-timestamp"),
            prefix: String::new(),
            separator: ".".into(),
        });
    let cases: Vec<(WebhookArmorLayer, Sign)> = vec![
        (WebhookArmorLayer::new(standard.clone()), {
            Box::new(move |t| {
                Request::post("/")
                    .header("webhook-id", "msg_1")
                    .header("webhook-timestamp", t.to_string())
                    .header("webhook-signature", standard.sign("msg_1", t, body))
                    .body(Full::new(Bytes::from_static(body)))
                    .unwrap()
            })
        }),
        (WebhookArmorLayer::new(stripe.clone()), {
            Box::new(move |t| {
                Request::post("/")
                    .header("stripe-signature", stripe.sign(t, body))
                    .body(Full::new(Bytes::from_static(body)))
                    .unwrap()
            })
        }),
        (WebhookArmorLayer::new(slack.clone()), {
            Box::new(move |t| {
                Request::post("/")
                    .header("x-slack-request-timestamp", t.to_string())
                    .header("x-slack-signature", slack.sign(t, body))
                    .body(Full::new(Bytes::from_static(body)))
                    .unwrap()
            })
        }),
        (WebhookArmorLayer::new(generic.clone()), {
            Box::new(move |t| {
                Request::post("/")
                    .header("x-acme-timestamp", t.to_string())
                    .header("x-acme-signature", generic.sign(Some(t), body))
                    .body(Full::new(Bytes::from_static(body)))
                    .unwrap()
            })
        }),
    ];
    for (index, (layer, sign)) in cases.into_iter().enumerate() {
        let service = layer
            .replay_window(window.clone())
            .without_idempotency()
            .layer(tower::service_fn(|_: Request<Full<Bytes>>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            }));
        let now = clock.unix_now();
        for (skew, expected) in [
            (-301, StatusCode::UNAUTHORIZED),
            (301, StatusCode::UNAUTHORIZED),
            (-299, StatusCode::OK),
            (299, StatusCode::OK),
        ] {
            let response = service.clone().oneshot(sign(now + skew)).await.unwrap();
            assert_eq!(response.status(), expected, "case {index}, skew {skew}");
        }
    }
}

/// The layer serves a real hyper server, no axum involved.
#[tokio::test]
async fn works_in_front_of_a_plain_hyper_server() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let service = tower::ServiceBuilder::new()
        .layer(layer())
        .service(tower::service_fn(
            |request: Request<Full<Bytes>>| async move {
                let id = Verified::from_request(&request).unwrap().id.clone();
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(id))))
            },
        ));
    let server = tokio::spawn(async move {
        // The client may reuse one keep-alive connection or open more.
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let signer = StandardWebhooks::new([SECRET]).unwrap();
    let timestamp = now();
    let request = |signature: String| {
        Request::post(format!("http://{address}/"))
            .header("webhook-id", "msg_hyper")
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap()
    };
    let ok = client
        .request(request(signer.sign("msg_hyper", timestamp, b"{}")))
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(
        &ok.into_body().collect().await.unwrap().to_bytes()[..],
        b"msg_hyper"
    );
    let bad = client.request(request("v1,AAAA".into())).await.unwrap();
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
    server.abort();
}
