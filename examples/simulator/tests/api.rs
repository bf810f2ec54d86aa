//! The simulator's HTTP surface, driven with `oneshot`: no server, no sleeps
//! beyond waiting for the worker.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use webhook_armor::events::LifecycleState;
use webhook_armor::verify::{GitHub, Shopify, Slack, StandardWebhooks, Stripe};
use webhook_armor_simulator::{Secrets, Simulator};

fn simulator() -> Simulator {
    let simulator = Simulator::new(Secrets::generated());
    simulator.spawn_background(8, std::future::pending());
    simulator
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn json(simulator: &Simulator, request: Request<Body>) -> (StatusCode, serde_json::Value) {
    let response = simulator.app().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// Waits until `id`'s latest state is `state`.
async fn settles(simulator: &Simulator, id: &str, state: LifecycleState) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let history = simulator.log().history_of(id);
        if history.last().is_some_and(|e| e.state == state) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} never reached {state:?}: {history:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A request to `/webhooks/{provider}` signed with `secret` the way that provider signs.
fn provider_request(provider: &str, secret: &str, id: &str) -> Request<Body> {
    let body = format!(r#"{{"id":"{id}","event_id":"{id}","type":"test"}}"#);
    let t = now();
    let builder = Request::post(format!("/webhooks/{provider}"));
    let builder = match provider {
        "standard" => builder
            .header("webhook-id", id)
            .header("webhook-timestamp", t.to_string())
            .header(
                "webhook-signature",
                StandardWebhooks::new([secret])
                    .unwrap()
                    .sign(id, t, body.as_bytes()),
            ),
        "stripe" => builder.header(
            "stripe-signature",
            Stripe::new([secret]).unwrap().sign(t, body.as_bytes()),
        ),
        "github" => builder
            .header(
                "x-hub-signature-256",
                GitHub::new([secret]).unwrap().sign(body.as_bytes()),
            )
            .header("x-github-delivery", id),
        "slack" => builder
            .header("x-slack-request-timestamp", t.to_string())
            .header(
                "x-slack-signature",
                Slack::new([secret]).unwrap().sign(t, body.as_bytes()),
            ),
        "shopify" => builder
            .header(
                "x-shopify-hmac-sha256",
                Shopify::new([secret]).unwrap().sign(body.as_bytes()),
            )
            .header("x-shopify-webhook-id", id),
        other => panic!("unknown provider {other}"),
    };
    builder.body(Body::from(body)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_accepts_its_signature_and_rejects_a_wrong_secret() {
    let simulator = simulator();
    let secrets = simulator.secrets().clone();
    let wrong = Secrets::generated();
    for (provider, secret, wrong_secret) in [
        ("standard", &secrets.standard, &wrong.standard),
        ("stripe", &secrets.stripe, &wrong.stripe),
        ("github", &secrets.github, &wrong.github),
        ("slack", &secrets.slack, &wrong.slack),
        ("shopify", &secrets.shopify, &wrong.shopify),
    ] {
        let id = format!("evt_{provider}_ok");
        let (status, _) = json(&simulator, provider_request(provider, secret, &id)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{provider}");
        settles(&simulator, &id, LifecycleState::Completed).await;
        let (status, _) = json(
            &simulator,
            provider_request(provider, wrong_secret, &format!("evt_{provider}_bad")),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{provider} with a wrong secret"
        );
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while simulator.log().counts().0.get("FAILED") != Some(&5) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "each wrong secret shown as FAILED: {:?}",
            simulator.log().counts()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenarios_show_the_expected_states() {
    let simulator = simulator();
    let run = |name: &str| {
        Request::post(format!("/api/scenarios/{name}"))
            .body(Body::empty())
            .unwrap()
    };

    let (status, report) = json(&simulator, run("duplicate")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["statuses"], serde_json::json!([202, 200]));
    let id = report["event_ids"][0].as_str().unwrap().to_owned();
    settles(&simulator, &id, LifecycleState::Completed).await;
    let states: Vec<_> = simulator
        .log()
        .history_of(&id)
        .into_iter()
        .map(|e| e.state)
        .collect();
    assert_eq!(
        states
            .iter()
            .filter(|s| **s == LifecycleState::Completed)
            .count(),
        1
    );
    assert_eq!(
        states
            .iter()
            .filter(|s| **s == LifecycleState::Duplicate)
            .count(),
        1
    );

    let (_, report) = json(&simulator, run("signature-attack")).await;
    assert_eq!(report["statuses"], serde_json::json!([401]));
    let (_, report) = json(&simulator, run("replay-attack")).await;
    assert_eq!(report["statuses"], serde_json::json!([401]));
    // Both shown as FAILED, each with its reason (events arrive through the bus).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let reasons: Vec<String> = simulator
            .log()
            .recent(50)
            .into_iter()
            .filter(|e| e.state == LifecycleState::Failed)
            .filter_map(|e| e.detail)
            .collect();
        if reasons.contains(&"signature".to_owned()) && reasons.contains(&"timestamp".to_owned()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{reasons:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (_, report) = json(&simulator, run("dead-letter")).await;
    let id = report["event_ids"][0].as_str().unwrap().to_owned();
    settles(&simulator, &id, LifecycleState::DeadLettered).await;
    let (_, letters) = json(
        &simulator,
        Request::get("/api/dead-letters")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(
        letters
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["id"] == id.as_str() && l["attempts"] == 3)
    );
    let replay = Request::post(format!("/api/dead-letters/{id}/replay"))
        .body(Body::empty())
        .unwrap();
    let (status, body) = json(&simulator, replay).await;
    assert_eq!(
        (status, body["replayed"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    settles(&simulator, &id, LifecycleState::Completed).await;

    let blast = Request::post("/api/scenarios/campaign-blast?count=50")
        .body(Body::empty())
        .unwrap();
    let (_, report) = json(&simulator, blast).await;
    assert_eq!(report["statuses"].as_array().unwrap().len(), 50);
    assert!(
        report["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s == 202)
    );
    for id in report["event_ids"].as_array().unwrap() {
        settles(&simulator, id.as_str().unwrap(), LifecycleState::Completed).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_json_error() {
    let simulator = simulator();
    let (status, body) = json(
        &simulator,
        Request::post("/api/scenarios/nope")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains("duplicate"));
    let (status, body) = json(
        &simulator,
        Request::get("/api/events?status=bogus")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("COMPLETED"));
    let (status, _) = json(
        &simulator,
        Request::post("/api/dead-letters/missing/replay")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = json(
        &simulator,
        Request::get("/api/health").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let page = simulator
        .app()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_states_rejections_and_latency() {
    let simulator = simulator();
    let run = |name: &str| {
        Request::post(format!("/api/scenarios/{name}"))
            .body(Body::empty())
            .unwrap()
    };
    let (_, report) = json(&simulator, run("duplicate")).await;
    let id = report["event_ids"][0].as_str().unwrap().to_owned();
    settles(&simulator, &id, LifecycleState::Completed).await;
    json(&simulator, run("signature-attack")).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let response = simulator
            .app()
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4"
        );
        let text = String::from_utf8(
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        let expected = [
            "webhook_armor_events_total{state=\"COMPLETED\"} 1",
            "webhook_armor_events_total{state=\"DUPLICATE\"} 1",
            "webhook_armor_rejected_total{reason=\"signature\"} 1",
            "webhook_armor_processing_seconds_count 1",
            "webhook_armor_queue_depth 0",
        ];
        if expected.iter().all(|line| text.lines().any(|l| l == *line)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics never showed {expected:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_messages_reach_a_registered_endpoint_signed() {
    let simulator = simulator();
    // A receiver on 127.0.0.1 that verifies with the secret the API handed out.
    let secret: std::sync::Arc<std::sync::Mutex<Option<String>>> = Default::default();
    let verified = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (s, v) = (secret.clone(), verified.clone());
    let receiver = axum::Router::new().fallback(
        move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let (s, v) = (s.clone(), v.clone());
            async move {
                use webhook_armor::Verifier;
                let mut request = Request::post("/").body(()).unwrap();
                *request.headers_mut() = headers;
                let (parts, ()) = request.into_parts();
                let key = s.lock().unwrap().clone().unwrap();
                if StandardWebhooks::new([key])
                    .unwrap()
                    .verify(&parts, &body)
                    .is_ok()
                {
                    v.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    StatusCode::OK
                } else {
                    StatusCode::UNAUTHORIZED
                }
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });

    let create = Request::post("/api/endpoints")
        .header("content-type", "application/json")
        .body(Body::from(
            serde_json::json!({
                "name": "crm",
                "url": url,
                "retry": { "max_attempts": 6, "initial_delay_ms": 1000, "max_delay_ms": 60000 }
            })
            .to_string(),
        ))
        .unwrap();
    let (status, endpoint) = json(&simulator, create).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(endpoint["retry"]["max_attempts"], 6, "{endpoint}");
    *secret.lock().unwrap() = Some(
        endpoint["secrets"][0]["secret"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let endpoint_id = endpoint["id"].as_str().unwrap().to_owned();

    let send = Request::post("/api/messages")
        .header("content-type", "application/json")
        .body(Body::from(
            r#"{"event_type":"invoice.paid","payload":{"amount":4200}}"#,
        ))
        .unwrap();
    let (status, dispatched) = json(&simulator, send).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        dispatched["deliveries"][0]["endpoint_id"],
        endpoint_id.as_str()
    );
    let message_id = dispatched["message_id"].as_str().unwrap().to_owned();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, message) = json(
            &simulator,
            Request::get(format!("/api/messages/{message_id}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        if message["attempts"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            assert_eq!(message["attempts"][0]["outcome"], "delivered");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "message never delivered: {message}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(verified.load(std::sync::atomic::Ordering::SeqCst), 1);
    let (_, stats) = json(
        &simulator,
        Request::get(format!("/api/endpoints/{endpoint_id}/stats"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(
        (stats["attempts"].as_u64(), stats["circuit"].as_str()),
        (Some(1), Some("CLOSED"))
    );

    let bad = Request::post("/api/endpoints")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"name":"x","url":"ftp://example.com"}"#))
        .unwrap();
    let (status, body) = json(&simulator, bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"].as_str().unwrap().contains("http://"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_outage_opens_the_circuit_then_everything_is_delivered() {
    let simulator = simulator();
    let run = Request::post("/api/scenarios/receiver-outage?count=10")
        .body(Body::empty())
        .unwrap();
    let (status, report) = json(&simulator, run).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let deliveries: Vec<String> = report["event_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(deliveries.len(), 10);
    for id in &deliveries {
        settles(&simulator, id, LifecycleState::Completed).await;
    }
    let endpoint = report["endpoint_id"].as_str().unwrap();
    let (_, stats) = json(
        &simulator,
        Request::get(format!("/api/endpoints/{endpoint}/stats"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(stats["circuit"], "CLOSED");
    assert_eq!(stats["delivered"], 10);
    // Every message hit the outage at most once: the first wave was in
    // flight together, and once the circuit opened the retries waited
    // (deferred, no attempt spent) until the probe found the receiver back.
    let failures = stats["attempts"].as_u64().unwrap() - 10;
    assert!((1..=10).contains(&failures), "{stats}");
    let retried = simulator
        .log()
        .recent(500)
        .iter()
        .filter(|e| e.state == LifecycleState::Retrying)
        .count();
    assert!(
        retried >= failures as usize,
        "retries and deferrals shown in the feed"
    );
}

/// The worker that leases the job dies mid-job: no ack, no nack. After the
/// lease the job is given out again and completes on attempt 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_crash_abandons_the_lease_and_a_later_attempt_completes_it() {
    let simulator = simulator();
    let request = Request::post("/api/scenarios/worker-crash")
        .body(Body::empty())
        .unwrap();
    let (status, report) = json(&simulator, request).await;
    assert_eq!(
        (status, &report["statuses"]),
        (StatusCode::OK, &serde_json::json!([202]))
    );
    let id = report["event_ids"][0].as_str().unwrap().to_owned();
    settles(&simulator, &id, LifecycleState::Completed).await;
    let history = simulator.log().history_of(&id);
    let crashed = history
        .iter()
        .find(|e| e.detail.as_deref().is_some_and(|d| d.contains("crashed")))
        .unwrap_or_else(|| panic!("no crash shown: {history:?}"));
    assert_eq!(crashed.attempt, Some(1));
    let completed = history.last().unwrap();
    assert_eq!(completed.attempt, Some(2), "{history:?}");
    assert!(
        history
            .iter()
            .all(|e| e.state != LifecycleState::Retrying && e.state != LifecycleState::DeadLettered),
        "a crash is no handler failure: nothing nacked it: {history:?}"
    );
}

/// Every operation in the served OpenAPI document is routed: called with its
/// method, it never meets axum's empty 404 or a 405.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_routed() {
    let simulator = simulator();
    let (status, doc) = json(
        &simulator,
        Request::get("/api/openapi.json")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{} paths", paths.len());
    let mut operations = 0;
    for (path, methods) in paths {
        for method in methods.as_object().unwrap().keys() {
            let uri = path
                .replace("{provider}", "standard")
                .replace("{id}", "no-such-id")
                .replace("{name}", "no-such-scenario");
            let request = Request::builder()
                .method(method.to_ascii_uppercase().as_str())
                .uri(&uri)
                .body(Body::empty())
                .unwrap();
            let response = simulator.app().oneshot(request).await.unwrap();
            let status = response.status();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
            assert!(
                status != StatusCode::NOT_FOUND || !body.is_empty(),
                "{method} {uri} is documented but not routed"
            );
            operations += 1;
        }
    }
    assert!(operations >= 25, "{operations} operations");
    let (status, _) = json(
        &simulator,
        Request::get("/api/docs").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}
