use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::{Backend, LONG_LEASE, SHORT_LEASE, outlive_short_lease};
use crate::Error;
use crate::idempotency::{Claim, ClaimToken};

async fn acquire(backend: &Backend, key: &str, ttl: Duration) -> ClaimToken {
    match backend.idempotency.claim(key, ttl).await.expect("claim") {
        Claim::Acquired(token) => token,
        other => panic!("expected to acquire {key}, got {other:?}"),
    }
}

/// A second claim of a held key is told the event is in progress.
pub async fn claim_is_exclusive(backend: Backend) {
    acquire(&backend, "evt-1", LONG_LEASE).await;
    let second = backend
        .idempotency
        .claim("evt-1", LONG_LEASE)
        .await
        .unwrap();
    assert_eq!(second, Claim::InProgress);
    // Other keys are unaffected.
    acquire(&backend, "evt-2", LONG_LEASE).await;
}

/// After completion, claims report a duplicate.
pub async fn completed_key_reports_duplicates(backend: Backend) {
    let token = acquire(&backend, "evt-1", LONG_LEASE).await;
    backend
        .idempotency
        .complete("evt-1", &token, LONG_LEASE)
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(
            backend
                .idempotency
                .claim("evt-1", LONG_LEASE)
                .await
                .unwrap(),
            Claim::Completed
        );
    }
}

/// A released key can be claimed again, with a new token.
pub async fn release_frees_the_key(backend: Backend) {
    let first = acquire(&backend, "evt-1", LONG_LEASE).await;
    backend.idempotency.release("evt-1", &first).await.unwrap();
    let second = acquire(&backend, "evt-1", LONG_LEASE).await;
    assert_ne!(first, second);
}

/// A token that no longer holds the key can neither release nor complete it.
pub async fn stale_claim_token_is_refused(backend: Backend) {
    let stale = acquire(&backend, "evt-1", SHORT_LEASE).await;
    outlive_short_lease().await;
    let current = acquire(&backend, "evt-1", LONG_LEASE).await;
    assert!(matches!(
        backend.idempotency.release("evt-1", &stale).await,
        Err(Error::LeaseLost)
    ));
    assert!(matches!(
        backend
            .idempotency
            .complete("evt-1", &stale, LONG_LEASE)
            .await,
        Err(Error::LeaseLost)
    ));
    // The current holder still holds it.
    assert_eq!(
        backend
            .idempotency
            .claim("evt-1", LONG_LEASE)
            .await
            .unwrap(),
        Claim::InProgress
    );
    backend
        .idempotency
        .complete("evt-1", &current, LONG_LEASE)
        .await
        .unwrap();
    let forged = ClaimToken("not-a-real-token".into());
    assert!(matches!(
        backend.idempotency.release("evt-1", &forged).await,
        Err(Error::LeaseLost)
    ));
}

/// A claim left by a crash lapses after its TTL.
pub async fn in_progress_claim_expires(backend: Backend) {
    acquire(&backend, "evt-1", SHORT_LEASE).await;
    outlive_short_lease().await;
    acquire(&backend, "evt-1", LONG_LEASE).await;
}

/// A completed key is forgotten after its TTL (storage stays bounded).
pub async fn completed_key_expires(backend: Backend) {
    let token = acquire(&backend, "evt-1", LONG_LEASE).await;
    backend
        .idempotency
        .complete("evt-1", &token, SHORT_LEASE)
        .await
        .unwrap();
    assert_eq!(
        backend
            .idempotency
            .claim("evt-1", LONG_LEASE)
            .await
            .unwrap(),
        Claim::Completed
    );
    outlive_short_lease().await;
    acquire(&backend, "evt-1", LONG_LEASE).await;
}

/// 1,000 concurrent claims of one key on a multi-threaded runtime: exactly
/// one wins, every other is told it is in progress.
pub async fn concurrent_claims_have_one_winner(backend: Backend) {
    let store = backend.idempotency.clone();
    let start = Arc::new(tokio::sync::Barrier::new(1000));
    let claims: Vec<_> = (0..1000)
        .map(|_| {
            let store = store.clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                store.claim("contested", LONG_LEASE).await.unwrap()
            })
        })
        .collect();
    let mut winners = HashSet::new();
    let mut in_progress = 0;
    for claim in claims {
        match claim.await.unwrap() {
            Claim::Acquired(token) => {
                winners.insert(token);
            }
            Claim::InProgress => in_progress += 1,
            Claim::Completed => panic!("nobody completed"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one claim wins");
    assert_eq!(in_progress, 999);
}
