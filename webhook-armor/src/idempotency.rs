//! Idempotency: making sure one event is handled once, however often it arrives.

use std::time::Duration;

use async_trait::async_trait;

use crate::Result;

/// Proof of holding a claim; only its holder can complete or release it.
///
/// Tokens fence out a holder whose claim expired: if a slow request's claim
/// lapsed and a retry claimed the key anew, the slow request's `release` must
/// not free the retry's claim.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClaimToken(pub String);

impl ClaimToken {
    /// A fresh random token (128 bits; unique, not secret).
    pub fn random() -> Self {
        Self(format!("{:032x}", fastrand::u128(..)))
    }
}

/// The answer to a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller now holds the key until the claim's TTL runs out.
    Acquired(ClaimToken),
    /// Someone else holds the key and has not finished: the event is being
    /// handled right now. The sender should retry later; answering 200 would
    /// lose the event if that other attempt fails.
    InProgress,
    /// The event was handled already; this is a duplicate.
    Completed,
}

/// Atomic claims on idempotency keys.
///
/// A key moves `absent -> in progress (claim) -> completed (complete)`, or back
/// to absent (`release`, or the in-progress TTL running out after a crash).
/// Completed keys are forgotten after their TTL, so storage stays bounded.
/// `claim` must be atomic: of any number of concurrent claims on an absent key
/// exactly one is [`Claim::Acquired`]. Never implement it as check-then-set.
///
/// ```
/// use std::time::Duration;
/// use webhook_armor::idempotency::{Claim, IdempotencyStore};
/// use webhook_armor::memory::MemoryIdempotencyStore;
///
/// # tokio_test_block_on(async {
/// let store = MemoryIdempotencyStore::new();
/// let Claim::Acquired(token) = store.claim("evt_1", Duration::from_secs(60)).await? else {
///     panic!("first claim wins");
/// };
/// assert_eq!(store.claim("evt_1", Duration::from_secs(60)).await?, Claim::InProgress);
/// store.complete("evt_1", &token, Duration::from_secs(86_400)).await?;
/// assert_eq!(store.claim("evt_1", Duration::from_secs(60)).await?, Claim::Completed);
/// # Ok::<_, webhook_armor::Error>(()) }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(f)
/// # }
/// ```
#[async_trait]
pub trait IdempotencyStore: Send + Sync + std::fmt::Debug + 'static {
    /// Claims `key` for `ttl` unless it is held or completed.
    async fn claim(&self, key: &str, ttl: Duration) -> Result<Claim>;

    /// Marks the claimed `key` completed, remembered for `ttl`.
    /// Fails with [`Error::LeaseLost`](crate::Error::LeaseLost) if `token` no
    /// longer holds the key.
    async fn complete(&self, key: &str, token: &ClaimToken, ttl: Duration) -> Result<()>;

    /// Gives the claimed `key` up, so the sender's retry can claim it.
    /// Fails with [`Error::LeaseLost`](crate::Error::LeaseLost) if `token` no
    /// longer holds the key; the key is then left alone.
    async fn release(&self, key: &str, token: &ClaimToken) -> Result<()>;
}
