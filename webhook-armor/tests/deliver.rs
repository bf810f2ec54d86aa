//! Outbound delivery against real HTTP receivers on 127.0.0.1.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use webhook_armor::dead_letter::DeadLetterStore;
use webhook_armor::deliver::{
    AttemptLog, BreakerConfig, CircuitBreaker, CircuitState, DeliveryClient, DeliveryHandler,
    Dispatcher, EndpointRetryPolicy, EndpointStore, EndpointUpdate, NewEndpoint, SsrfPolicy,
};
use webhook_armor::events::{EventBus, EventStream, LifecycleState};
use webhook_armor::memory::{
    MemoryAttemptLog, MemoryCircuitBreaker, MemoryEndpointStore, MemoryEventBus, MemoryQueue,
};
use webhook_armor::verify::StandardWebhooks;
use webhook_armor::{RetryPolicy, Verifier, Worker};

type Behaviour = Arc<dyn Fn(usize, &HeaderMap, &Bytes) -> Response + Send + Sync>;

/// A receiver on 127.0.0.1 answering with `behaviour(call number, headers, body)`.
struct Receiver {
    url: String,
    port: u16,
    hits: Arc<AtomicUsize>,
}

async fn receiver(
    behaviour: impl Fn(usize, &HeaderMap, &Bytes) -> Response + Send + Sync + 'static,
) -> Receiver {
    let behaviour: Behaviour = Arc::new(behaviour);
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let call = counter.fetch_add(1, Ordering::SeqCst) + 1;
        let behaviour = behaviour.clone();
        async move { behaviour(call, &headers, &body) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver {
        url: format!("http://127.0.0.1:{port}/hooks"),
        port,
        hits,
    }
}

struct Pipeline {
    queue: Arc<MemoryQueue>,
    endpoints: Arc<MemoryEndpointStore>,
    breaker: Arc<MemoryCircuitBreaker>,
    attempts: Arc<MemoryAttemptLog>,
    dispatcher: Dispatcher,
    events: EventStream,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn pipeline(
    policy: SsrfPolicy,
    breaker: BreakerConfig,
    client: Option<DeliveryClient>,
) -> Pipeline {
    let queue = Arc::new(MemoryQueue::new());
    let endpoints = Arc::new(MemoryEndpointStore::default());
    let circuit = Arc::new(MemoryCircuitBreaker::new(breaker));
    let attempts = Arc::new(MemoryAttemptLog::new(10_000));
    let bus = Arc::new(MemoryEventBus::default());
    let handler = DeliveryHandler::new(
        endpoints.clone(),
        circuit.clone(),
        attempts.clone(),
        client.unwrap_or_else(|| DeliveryClient::new(policy)),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::new(queue.clone(), handler)
        .events(bus.clone())
        .retry_policy(
            RetryPolicy::default()
                .with_base(Duration::from_millis(50))
                .with_max_attempts(3),
        )
        .poll_interval(Duration::from_millis(50));
    tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    Pipeline {
        dispatcher: Dispatcher::new(endpoints.clone(), queue.clone()),
        queue,
        endpoints,
        breaker: circuit,
        attempts,
        events: bus.subscribe(),
        _stop: stop,
    }
}

fn local() -> SsrfPolicy {
    SsrfPolicy::default().allow("127.0.0.1/32").unwrap()
}

impl Pipeline {
    /// Waits for `count` events in a final state (COMPLETED or DEAD_LETTERED).
    async fn finished(&mut self, count: usize) -> Vec<(String, LifecycleState)> {
        let mut done = Vec::new();
        while done.len() < count {
            let event = tokio::time::timeout(Duration::from_secs(20), self.events.next())
                .await
                .expect("deliveries finish within 20 s")
                .unwrap();
            if matches!(
                event.state,
                LifecycleState::Completed | LifecycleState::DeadLettered
            ) {
                done.push((event.event_id, event.state));
            }
        }
        done
    }
}

fn ok() -> Response {
    StatusCode::OK.into_response()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receivers_verify_every_delivery_also_during_rotation() {
    let mut pipeline = pipeline(local(), BreakerConfig::default(), None);
    let verifiers: Arc<Mutex<Vec<StandardWebhooks>>> = Arc::default();
    let results: Arc<Mutex<Vec<Vec<bool>>>> = Arc::default();
    let (v, r) = (verifiers.clone(), results.clone());
    let target = receiver(move |_, headers, body| {
        let mut request = http::Request::post("/").body(()).unwrap();
        *request.headers_mut() = headers.clone();
        let (parts, ()) = request.into_parts();
        let checks: Vec<bool> = v
            .lock()
            .unwrap()
            .iter()
            .map(|verifier| verifier.verify(&parts, body).is_ok())
            .collect();
        let all = checks.iter().all(|ok| *ok);
        r.lock().unwrap().push(checks);
        if all {
            ok()
        } else {
            StatusCode::UNAUTHORIZED.into_response()
        }
    })
    .await;
    let endpoint = pipeline
        .endpoints
        .create(NewEndpoint::new("crm", &target.url))
        .await
        .unwrap();
    let old_secret = endpoint.secrets[0].secret.clone();
    verifiers
        .lock()
        .unwrap()
        .push(StandardWebhooks::new([&old_secret]).unwrap());
    for i in 0..5 {
        pipeline
            .dispatcher
            .send(
                &format!("msg_a{i}"),
                "invoice.paid",
                format!(r#"{{"n":{i}}}"#).into(),
                None,
            )
            .await
            .unwrap();
    }
    assert!(
        pipeline
            .finished(5)
            .await
            .iter()
            .all(|(_, s)| *s == LifecycleState::Completed)
    );

    // Rotate: the receiver that knows only the old secret and the one that
    // knows only the new secret must both accept every delivery.
    let rotated = pipeline
        .endpoints
        .rotate_secret(&endpoint.id, None, Duration::from_secs(86_400))
        .await
        .unwrap();
    let new_secret = rotated.secrets[0].secret.clone();
    assert_ne!(new_secret, old_secret);
    verifiers
        .lock()
        .unwrap()
        .push(StandardWebhooks::new([&new_secret]).unwrap());
    for i in 0..5 {
        pipeline
            .dispatcher
            .send(&format!("msg_b{i}"), "invoice.paid", "{}".into(), None)
            .await
            .unwrap();
    }
    assert!(
        pipeline
            .finished(5)
            .await
            .iter()
            .all(|(_, s)| *s == LifecycleState::Completed)
    );
    let results = results.lock().unwrap();
    assert_eq!(results.len(), 10);
    assert!(results[..5].iter().all(|checks| checks == &[true]));
    assert!(
        results[5..].iter().all(|checks| checks == &[true, true]),
        "{results:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_503s_then_200_is_delivered_on_attempt_3_with_3_attempts_logged() {
    let mut pipeline = pipeline(local(), BreakerConfig::default(), None);
    let target = receiver(|call, _, _| {
        if call <= 2 {
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        } else {
            ok()
        }
    })
    .await;
    pipeline
        .endpoints
        .create(NewEndpoint::new("crm", &target.url))
        .await
        .unwrap();
    let sent = pipeline
        .dispatcher
        .send("msg_1", "invoice.paid", "{}".into(), None)
        .await
        .unwrap();
    assert_eq!(pipeline.finished(1).await[0].1, LifecycleState::Completed);
    let attempts = pipeline.attempts.for_message("msg_1").await.unwrap();
    let summary: Vec<(u32, Option<u16>, &str)> = attempts
        .iter()
        .map(|a| (a.attempt, a.status, a.outcome.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (1, Some(503), "retrying"),
            (2, Some(503), "retrying"),
            (3, Some(200), "delivered")
        ]
    );
    assert_eq!(sent.deliveries.len(), 1);
}

/// The worker allows 3 attempts; an endpoint's own policy overrides that
/// both ways: 5 attempts for a patient one, 1 for one that wants no retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoints_retry_policy_replaces_the_workers() {
    let mut pipeline = pipeline(local(), BreakerConfig::default(), None);
    // Enough failures that the breaker (5 in 60 s) stays out of the way:
    // it counts per endpoint, and each endpoint fails at most 4 times.
    let patient = receiver(|call, _, _| {
        if call <= 4 {
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        } else {
            ok()
        }
    })
    .await;
    let impatient = receiver(|_, _, _| StatusCode::SERVICE_UNAVAILABLE.into_response()).await;
    let patient_endpoint = pipeline
        .endpoints
        .create(
            NewEndpoint::new("patient", &patient.url)
                .event_types(["patient.ping"])
                .retry_policy(EndpointRetryPolicy::new(5, 20, 100)),
        )
        .await
        .unwrap();
    pipeline
        .endpoints
        .create(
            NewEndpoint::new("impatient", &impatient.url)
                .event_types(["impatient.ping"])
                .retry_policy(EndpointRetryPolicy::new(1, 20, 100)),
        )
        .await
        .unwrap();
    pipeline
        .dispatcher
        .send("msg_patient", "patient.ping", "{}".into(), None)
        .await
        .unwrap();
    pipeline
        .dispatcher
        .send("msg_impatient", "impatient.ping", "{}".into(), None)
        .await
        .unwrap();
    let mut finished = pipeline.finished(2).await;
    finished.sort_by(|a, b| a.0.cmp(&b.0));
    let states: Vec<LifecycleState> = finished.iter().map(|(_, state)| *state).collect();
    assert_eq!(
        states,
        [LifecycleState::DeadLettered, LifecycleState::Completed],
        "{finished:?}"
    );
    let outcomes = |attempts: Vec<webhook_armor::deliver::DeliveryAttempt>| {
        attempts
            .into_iter()
            .map(|a| (a.attempt, a.outcome))
            .collect::<Vec<_>>()
    };
    let patient_attempts = pipeline.attempts.for_message("msg_patient").await.unwrap();
    assert_eq!(
        outcomes(patient_attempts),
        [
            (1, "retrying".to_owned()),
            (2, "retrying".to_owned()),
            (3, "retrying".to_owned()),
            (4, "retrying".to_owned()),
            (5, "delivered".to_owned()),
        ]
    );
    let impatient_attempts = pipeline
        .attempts
        .for_message("msg_impatient")
        .await
        .unwrap();
    assert_eq!(
        outcomes(impatient_attempts),
        [(1, "dead_lettered".to_owned())]
    );
    assert_eq!(impatient.hits.load(Ordering::SeqCst), 1);

    // Cleared by an update, the endpoint follows the worker's policy again.
    let update: EndpointUpdate = serde_json::from_str(r#"{"retry": null}"#).unwrap();
    let cleared = pipeline
        .endpoints
        .update(&patient_endpoint.id, update)
        .await
        .unwrap();
    assert_eq!(cleared.retry, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_on_429_is_honoured() {
    let mut pipeline = pipeline(local(), BreakerConfig::default(), None);
    let target = receiver(|call, _, _| {
        if call == 1 {
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "2")]).into_response()
        } else {
            ok()
        }
    })
    .await;
    pipeline
        .endpoints
        .create(NewEndpoint::new("crm", &target.url))
        .await
        .unwrap();
    pipeline
        .dispatcher
        .send("msg_1", "invoice.paid", "{}".into(), None)
        .await
        .unwrap();
    assert_eq!(pipeline.finished(1).await[0].1, LifecycleState::Completed);
    let attempts = pipeline.attempts.for_message("msg_1").await.unwrap();
    assert_eq!(attempts.len(), 2);
    let gap = attempts[1].at_ms - attempts[0].at_ms;
    assert!(gap >= 2000, "second attempt only {gap} ms after the 429");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_is_dead_lettered_at_once_and_a_410_deactivates_the_endpoint() {
    let mut pipeline = pipeline(local(), BreakerConfig::default(), None);
    let bad = receiver(|_, _, _| StatusCode::BAD_REQUEST.into_response()).await;
    let gone = receiver(|_, _, _| StatusCode::GONE.into_response()).await;
    let bad_endpoint = pipeline
        .endpoints
        .create(NewEndpoint::new("bad", &bad.url))
        .await
        .unwrap();
    let gone_endpoint = pipeline
        .endpoints
        .create(NewEndpoint::new("gone", &gone.url))
        .await
        .unwrap();
    pipeline
        .dispatcher
        .send("msg_1", "invoice.paid", "{}".into(), None)
        .await
        .unwrap();
    let finished = pipeline.finished(2).await;
    assert!(
        finished
            .iter()
            .all(|(_, s)| *s == LifecycleState::DeadLettered)
    );
    assert_eq!(bad.hits.load(Ordering::SeqCst), 1, "400: one attempt");
    assert_eq!(gone.hits.load(Ordering::SeqCst), 1, "410: one attempt");
    let letter = pipeline
        .queue
        .get(&format!("msg_1:{}", bad_endpoint.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(letter.attempts, 1);
    assert!(
        !pipeline
            .endpoints
            .get(&gone_endpoint.id)
            .await
            .unwrap()
            .unwrap()
            .active
    );
    let later = pipeline
        .dispatcher
        .send("msg_2", "invoice.paid", "{}".into(), None)
        .await
        .unwrap();
    let targets: Vec<&str> = later
        .deliveries
        .iter()
        .map(|d| d.endpoint_id.as_str())
        .collect();
    assert_eq!(
        targets,
        [bad_endpoint.id.as_str()],
        "no further deliveries to a gone endpoint"
    );
    pipeline.finished(1).await;
    assert_eq!(gone.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() {
    let mut pipeline = pipeline(local(), BreakerConfig::default(), None);
    let elsewhere = receiver(|_, _, _| ok()).await;
    for status in [StatusCode::MOVED_PERMANENTLY, StatusCode::FOUND] {
        let location = elsewhere.url.clone();
        let redirecting =
            receiver(move |_, _, _| (status, [("location", location.clone())]).into_response())
                .await;
        let endpoint = pipeline
            .endpoints
            .create(NewEndpoint::new("redirect", &redirecting.url))
            .await
            .unwrap();
        let id = format!("msg_{}", status.as_u16());
        pipeline
            .dispatcher
            .send(&id, "invoice.paid", "{}".into(), Some(&endpoint.id))
            .await
            .unwrap();
        assert_eq!(
            pipeline.finished(1).await[0].1,
            LifecycleState::DeadLettered
        );
        assert_eq!(redirecting.hits.load(Ordering::SeqCst), 1);
    }
    assert_eq!(
        elsewhere.hits.load(Ordering::SeqCst),
        0,
        "the redirect target received nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_receiver_opens_the_circuit_then_one_probe_closes_it() {
    let config = BreakerConfig {
        failure_threshold: 5,
        window: Duration::from_secs(60),
        cool_down: Duration::from_secs(3),
        probe_timeout: Duration::from_secs(10),
    };
    let mut pipeline = pipeline(local(), config, None);
    let down = Arc::new(AtomicBool::new(true));
    let state = down.clone();
    let target = receiver(move |_, _, _| {
        if state.load(Ordering::SeqCst) {
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        } else {
            ok()
        }
    })
    .await;
    let endpoint = pipeline
        .endpoints
        .create(NewEndpoint::new("flaky", &target.url))
        .await
        .unwrap();
    for i in 0..5 {
        pipeline
            .dispatcher
            .send(&format!("msg_{i}"), "t", "{}".into(), None)
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while pipeline.breaker.state(&endpoint.id).await.unwrap() != CircuitState::Open {
        assert!(
            tokio::time::Instant::now() < deadline,
            "circuit never opened"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let hits_when_opened = target.hits.load(Ordering::SeqCst);
    assert_eq!(hits_when_opened, 5, "opened after exactly 5 failures");
    // While open: retries and new messages wait, and no connection is made.
    for i in 5..8 {
        pipeline
            .dispatcher
            .send(&format!("msg_{i}"), "t", "{}".into(), None)
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        target.hits.load(Ordering::SeqCst),
        hits_when_opened,
        "no connection while open"
    );
    // The receiver recovers; after the cool-down one probe goes out, succeeds,
    // closes the circuit, and everything queued flows.
    down.store(false, Ordering::SeqCst);
    let finished = pipeline.finished(8).await;
    assert!(
        finished
            .iter()
            .all(|(_, s)| *s == LifecycleState::Completed),
        "{finished:?}"
    );
    assert_eq!(
        target.hits.load(Ordering::SeqCst),
        hits_when_opened + 8,
        "one probe, then the 7 others, no extras"
    );
    assert_eq!(
        pipeline.breaker.state(&endpoint.id).await.unwrap(),
        CircuitState::Closed
    );
    // Waiting on the open circuit spent no attempts: every message needed
    // its first failure plus one more at most.
    for i in 0..8 {
        let attempts = pipeline
            .attempts
            .for_message(&format!("msg_{i}"))
            .await
            .unwrap();
        assert!(attempts.len() <= 2, "msg_{i}: {attempts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_addresses_are_refused_before_connecting() {
    let listener = receiver(|_, _, _| ok()).await;
    let ipv6 = tokio::net::TcpListener::bind(("::1", listener.port))
        .await
        .ok();
    let ipv6_hits = Arc::new(AtomicUsize::new(0));
    if let Some(ipv6) = ipv6 {
        let hits = ipv6_hits.clone();
        tokio::spawn(async move {
            while ipv6.accept().await.is_ok() {
                hits.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    // No allow-list: the default policy a production sender runs with.
    let mut pipeline = pipeline(SsrfPolicy::default(), BreakerConfig::default(), None);
    let port = listener.port;
    for (i, url) in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://localhost:{port}/"),
    ]
    .iter()
    .enumerate()
    {
        let endpoint = pipeline
            .endpoints
            .create(NewEndpoint::new("internal", url))
            .await
            .unwrap();
        pipeline
            .dispatcher
            .send(&format!("msg_{i}"), "t", "{}".into(), Some(&endpoint.id))
            .await
            .unwrap();
        assert_eq!(
            pipeline.finished(1).await[0].1,
            LifecycleState::DeadLettered,
            "{url}"
        );
        let attempt = &pipeline
            .attempts
            .for_message(&format!("msg_{i}"))
            .await
            .unwrap()[0];
        assert!(
            attempt
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("refused to connect"),
            "{url}: {attempt:?}"
        );
    }
    assert_eq!(listener.hits.load(Ordering::SeqCst), 0);
    assert_eq!(ipv6_hits.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_and_silent_receivers_are_bounded() {
    let client = DeliveryClient::with_limits(
        local(),
        Duration::from_secs(1),
        Duration::from_secs(1),
        64 * 1024,
    );
    let mut pipeline = pipeline(local(), BreakerConfig::default(), Some(client));
    let endless = receiver(|_, _, _| {
        let chunks = futures_util::stream::repeat_with(|| {
            Ok::<_, std::convert::Infallible>(Bytes::from(vec![b'x'; 16 * 1024]))
        });
        Response::new(Body::from_stream(chunks))
    })
    .await;
    let endpoint = pipeline
        .endpoints
        .create(NewEndpoint::new("endless", &endless.url))
        .await
        .unwrap();
    pipeline
        .dispatcher
        .send("msg_1", "t", "{}".into(), Some(&endpoint.id))
        .await
        .unwrap();
    assert_eq!(pipeline.finished(1).await[0].1, LifecycleState::Completed);
    let attempt = &pipeline.attempts.for_message("msg_1").await.unwrap()[0];
    assert_eq!(
        attempt.response_snippet.len(),
        64 * 1024,
        "kept exactly the cap"
    );

    let hanging = hanging_receiver().await;
    let endpoint = pipeline
        .endpoints
        .create(NewEndpoint::new("hanging", &hanging))
        .await
        .unwrap();
    pipeline
        .dispatcher
        .send("msg_2", "t", "{}".into(), Some(&endpoint.id))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let attempts = pipeline.attempts.for_message("msg_2").await.unwrap();
        if let Some(first) = attempts.first() {
            assert_eq!(first.status, None);
            assert!(
                first.error.as_deref().unwrap().contains("timed out"),
                "{first:?}"
            );
            assert!(
                first.latency_ms >= 1000 && first.latency_ms < 3000,
                "{first:?}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Accepts connections and never answers.
async fn hanging_receiver() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    format!("http://127.0.0.1:{port}/")
}
