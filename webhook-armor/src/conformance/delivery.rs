//! Contracts of the outbound delivery stores (feature `deliver`).

use std::sync::Arc;
use std::time::Duration;

use crate::Error;
use crate::clock::unix_millis_now;
use crate::deliver::{
    AttemptLog, BreakerConfig, CircuitBreaker, CircuitState, DeliveryAttempt, EndpointRetryPolicy,
    EndpointStore, EndpointUpdate, NewEndpoint, Permit,
};

/// The breaker settings a [`DeliveryBackend`]'s breaker must be built with.
pub const CONFORMANCE_BREAKER: BreakerConfig = BreakerConfig {
    failure_threshold: 3,
    window: Duration::from_secs(30),
    cool_down: Duration::from_secs(1),
    probe_timeout: Duration::from_secs(5),
};

/// The delivery stores under test.
#[derive(Debug, Clone)]
pub struct DeliveryBackend {
    /// Endpoints.
    pub endpoints: Arc<dyn EndpointStore>,
    /// Circuit breakers, configured with [`CONFORMANCE_BREAKER`].
    pub breaker: Arc<dyn CircuitBreaker>,
    /// The attempt log.
    pub attempts: Arc<dyn AttemptLog>,
}

/// Create, read, list, update, rotate and delete endpoints.
pub async fn endpoint_store_round_trip(backend: DeliveryBackend) {
    let store = backend.endpoints;
    let first = store
        .create(
            NewEndpoint::new("billing", "https://billing.example/hooks")
                .event_types(["invoice.paid"]),
        )
        .await
        .unwrap();
    let second = store
        .create(
            NewEndpoint::new("crm", "https://crm.example/hooks")
                .secret("whsec_dGVzdA==")
                .retry_policy(EndpointRetryPolicy::new(8, 1_000, 60_000)),
        )
        .await
        .unwrap();
    assert!(first.secrets[0].secret.starts_with("whsec_"));
    assert_eq!(second.secrets[0].secret, "whsec_dGVzdA==");
    assert_ne!(first.id, second.id);
    assert_eq!(first.retry, None);
    assert_eq!(
        second.retry,
        Some(EndpointRetryPolicy::new(8, 1_000, 60_000))
    );
    assert_eq!(store.get(&first.id).await.unwrap(), Some(first.clone()));
    assert_eq!(store.get(&second.id).await.unwrap(), Some(second.clone()));
    let ids: Vec<String> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, [first.id.clone(), second.id.clone()]);
    assert!(first.subscribes_to("invoice.paid") && !first.subscribes_to("invoice.voided"));

    let update = EndpointUpdate {
        name: Some("billing-v2".into()),
        active: Some(false),
        retry: Some(Some(EndpointRetryPolicy::new(2, 500, 500))),
        ..EndpointUpdate::default()
    };
    let updated = store.update(&first.id, update).await.unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.active, updated.retry),
        (
            "billing-v2",
            false,
            Some(EndpointRetryPolicy::new(2, 500, 500))
        )
    );
    assert_eq!(store.get(&first.id).await.unwrap().unwrap(), updated);

    let rotated = store
        .rotate_secret(&second.id, None, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(rotated.secrets.len(), 2);
    assert_eq!(rotated.secrets[1].secret, "whsec_dGVzdA==");
    assert!(
        rotated.secrets[1]
            .expires_at_ms
            .is_some_and(|at| at > unix_millis_now())
    );
    assert_eq!(
        rotated.signing_secrets(unix_millis_now()).len(),
        2,
        "both sign during the grace period"
    );
    assert_eq!(store.get(&second.id).await.unwrap().unwrap(), rotated);

    store.delete(&first.id).await.unwrap();
    assert_eq!(store.get(&first.id).await.unwrap(), None);
    assert!(matches!(
        store.delete(&first.id).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.update("ep_nope", EndpointUpdate::active(true)).await,
        Err(Error::NotFound(_))
    ));
}

/// CLOSED -> OPEN after the threshold, OPEN waits, HALF_OPEN lets exactly
/// one of many concurrent callers probe, a failed probe re-opens, a
/// successful one closes.
pub async fn breaker_opens_probes_and_closes(backend: DeliveryBackend) {
    let breaker = backend.breaker;
    assert_eq!(breaker.state("ep_1").await.unwrap(), CircuitState::Closed);
    for _ in 0..CONFORMANCE_BREAKER.failure_threshold {
        assert_eq!(breaker.acquire("ep_1").await.unwrap(), Permit::Allowed);
        breaker.record("ep_1", false).await.unwrap();
    }
    assert_eq!(breaker.state("ep_1").await.unwrap(), CircuitState::Open);
    assert!(
        matches!(breaker.acquire("ep_1").await.unwrap(), Permit::Wait(d) if d <= CONFORMANCE_BREAKER.cool_down)
    );
    assert_eq!(
        breaker.acquire("ep_2").await.unwrap(),
        Permit::Allowed,
        "circuits are per endpoint"
    );

    tokio::time::sleep(CONFORMANCE_BREAKER.cool_down * 2).await;
    let racers: Vec<_> = (0..20)
        .map(|_| {
            let breaker = breaker.clone();
            tokio::spawn(async move { breaker.acquire("ep_1").await.unwrap() })
        })
        .collect();
    let mut probes = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Permit::Probe => probes += 1,
            Permit::Wait(_) => {}
            Permit::Allowed => panic!("a half-open circuit let a normal delivery through"),
        }
    }
    assert_eq!(probes, 1, "exactly one probe");
    assert_eq!(breaker.state("ep_1").await.unwrap(), CircuitState::HalfOpen);
    breaker.record("ep_1", false).await.unwrap();
    assert_eq!(
        breaker.state("ep_1").await.unwrap(),
        CircuitState::Open,
        "failed probe re-opens"
    );

    tokio::time::sleep(CONFORMANCE_BREAKER.cool_down * 2).await;
    assert_eq!(breaker.acquire("ep_1").await.unwrap(), Permit::Probe);
    breaker.record("ep_1", true).await.unwrap();
    assert_eq!(breaker.state("ep_1").await.unwrap(), CircuitState::Closed);
    assert_eq!(breaker.acquire("ep_1").await.unwrap(), Permit::Allowed);
}

fn attempt(message: &str, endpoint: &str, number: u32, latency_ms: u64) -> DeliveryAttempt {
    DeliveryAttempt {
        message_id: message.into(),
        endpoint_id: endpoint.into(),
        attempt: number,
        at_ms: unix_millis_now(),
        status: Some(if number < 2 { 503 } else { 200 }),
        latency_ms,
        outcome: if number < 2 {
            "retrying".into()
        } else {
            "delivered".into()
        },
        error: (number < 2).then(|| "HTTP 503".to_owned()),
        response_snippet: "body".into(),
    }
}

/// Attempts come back per message (in order) and per endpoint (newest N, in order).
pub async fn attempt_log_records_and_queries(backend: DeliveryBackend) {
    let log = backend.attempts;
    let recorded = [
        attempt("msg_1", "ep_a", 1, 10),
        attempt("msg_2", "ep_b", 1, 20),
        attempt("msg_1", "ep_a", 2, 30),
        attempt("msg_3", "ep_a", 1, 40),
    ];
    for a in &recorded {
        log.record(a.clone()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let for_message = log.for_message("msg_1").await.unwrap();
    assert_eq!(for_message.len(), 2);
    assert_eq!(for_message[0].attempt, 1);
    assert_eq!(for_message[1].attempt, 2);
    assert_eq!(for_message[1].status, Some(200));
    assert_eq!(for_message[0].error.as_deref(), Some("HTTP 503"));
    let newest_two = log.for_endpoint("ep_a", 2).await.unwrap();
    let latencies: Vec<u64> = newest_two.iter().map(|a| a.latency_ms).collect();
    assert_eq!(latencies, [30, 40]);
    assert!(log.for_message("msg_none").await.unwrap().is_empty());
}

/// Attempts recorded at once (as concurrent deliveries record them, several
/// of one message and many of one endpoint together) are all kept, each
/// under its message and its endpoint, byte for byte: a response snippet may
/// hold newlines, quotes and any text.
pub async fn attempt_log_keeps_concurrent_attempts(backend: DeliveryBackend) {
    let log = backend.attempts;
    let snippet = "line one\nline \"two\"\r\n\u{1F980} {\"ok\":false}\n";
    let recordings: Vec<_> = (0..3)
        .flat_map(|message| (1..=4).map(move |number| (message, number)))
        .map(|(message, number)| {
            let log = log.clone();
            let mut attempt = attempt(
                &format!("msg_{message}"),
                &format!("ep_{}", message % 2),
                number,
                u64::from(number),
            );
            attempt.response_snippet = format!("{snippet}{message}/{number}");
            tokio::spawn(async move { log.record(attempt).await })
        })
        .collect();
    for recording in recordings {
        recording.await.unwrap().unwrap();
    }
    for message in 0..3 {
        let mut kept = log.for_message(&format!("msg_{message}")).await.unwrap();
        kept.sort_by_key(|a| a.attempt);
        let numbers: Vec<u32> = kept.iter().map(|a| a.attempt).collect();
        assert_eq!(numbers, [1, 2, 3, 4], "msg_{message}");
        for a in &kept {
            assert_eq!(
                a.response_snippet,
                format!("{snippet}{message}/{}", a.attempt)
            );
            assert_eq!(a.endpoint_id, format!("ep_{}", message % 2));
        }
    }
    assert_eq!(log.for_endpoint("ep_0", 100).await.unwrap().len(), 8);
    assert_eq!(log.for_endpoint("ep_1", 100).await.unwrap().len(), 4);
}

/// Expands to one `#[tokio::test]` per delivery conformance function, each
/// calling `$setup().await` for a fresh [`DeliveryBackend`].
#[macro_export]
macro_rules! delivery_conformance_tests {
    ($setup:path) => {
        $crate::conformance_tests!(@delivery $setup;
            endpoint_store_round_trip,
            breaker_opens_probes_and_closes,
            attempt_log_records_and_queries,
            attempt_log_keeps_concurrent_attempts,
        );
    };
}
