//! Registered receivers of outbound webhooks.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::clock::unix_millis_now;
use crate::{Result, RetryPolicy};

/// A signing secret of an endpoint; old ones keep signing until they expire.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSecret {
    /// `whsec_<base64>`.
    pub secret: String,
    /// When this secret stops signing, Unix ms; `None` while current.
    pub expires_at_ms: Option<i64>,
}

impl std::fmt::Debug for EndpointSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointSecret")
            .field("secret", &"whsec_…")
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// An endpoint's own retry schedule, in place of the delivery worker's
/// [`RetryPolicy`]: exponential backoff with jitter from `initial_delay_ms`,
/// capped at `max_delay_ms` (a receiver's `Retry-After` too), for at most
/// `max_attempts` attempts. Attempts deferred by an open circuit do not count.
///
/// ```
/// use webhook_armor::deliver::{EndpointRetryPolicy, NewEndpoint};
///
/// // A fragile receiver: 10 attempts, from 30 s apart up to 6 hours apart.
/// let endpoint = NewEndpoint::new("legacy", "https://legacy.example.com/hooks")
///     .retry_policy(EndpointRetryPolicy::new(10, 30_000, 6 * 60 * 60 * 1000))
///     .into_endpoint();
/// assert_eq!(endpoint.retry.unwrap().max_attempts, 10);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EndpointRetryPolicy {
    /// Attempts in all, at least 1.
    pub max_attempts: u32,
    /// Delay after the first failure, milliseconds; it doubles per attempt.
    /// Each delay is jittered down by up to half, so retries spread out.
    pub initial_delay_ms: u64,
    /// Longest delay, milliseconds.
    pub max_delay_ms: u64,
}

impl EndpointRetryPolicy {
    /// At most `max_attempts`, from `initial_delay_ms` doubling up to `max_delay_ms`.
    pub fn new(max_attempts: u32, initial_delay_ms: u64, max_delay_ms: u64) -> Self {
        Self {
            max_attempts: max_attempts.max(1),
            initial_delay_ms,
            max_delay_ms: max_delay_ms.max(initial_delay_ms),
        }
    }

    /// The schedule as a [`RetryPolicy`] (jittered).
    pub fn schedule(&self) -> RetryPolicy {
        RetryPolicy::default()
            .with_max_attempts(self.max_attempts)
            .with_base(Duration::from_millis(self.initial_delay_ms) / 2)
            .with_max_delay(Duration::from_millis(self.max_delay_ms))
            .with_jitter(true)
    }
}

/// A receiver of outbound webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Endpoint {
    /// Stable id (`ep_...`).
    pub id: String,
    /// A name for people.
    pub name: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// Newest first; every unexpired one signs each delivery.
    pub secrets: Vec<EndpointSecret>,
    /// Event types it receives; empty means all.
    pub event_types: Vec<String>,
    /// Inactive endpoints receive nothing (deactivated by hand or by a 410).
    pub active: bool,
    /// When it was registered, Unix ms.
    pub created_at_ms: i64,
    /// Its own retry schedule; `None` follows the delivery worker's policy.
    /// (Absent from endpoints stored before it existed, which read as `None`.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<EndpointRetryPolicy>,
}

impl Endpoint {
    /// Whether it should receive an event of `event_type`.
    pub fn subscribes_to(&self, event_type: &str) -> bool {
        self.active
            && (self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type))
    }

    /// The secrets that sign at `now_ms`, newest first.
    pub fn signing_secrets(&self, now_ms: i64) -> Vec<&str> {
        self.secrets
            .iter()
            .filter(|s| s.expires_at_ms.is_none_or(|at| at > now_ms))
            .map(|s| s.secret.as_str())
            .collect()
    }
}

/// What registering an endpoint takes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NewEndpoint {
    /// A name for people.
    pub name: String,
    /// Where deliveries are POSTed.
    pub url: String,
    /// A `whsec_` secret; generated when `None`.
    pub secret: Option<String>,
    /// Event types; empty for all.
    pub event_types: Vec<String>,
    /// Its own retry schedule; `None` follows the delivery worker's policy.
    #[serde(default)]
    pub retry: Option<EndpointRetryPolicy>,
}

impl NewEndpoint {
    /// An endpoint named `name` at `url`, all event types, generated secret.
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            url: url.into(),
            ..Self::default()
        }
    }

    /// Only these event types.
    #[must_use]
    pub fn event_types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.event_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// With its own retry schedule.
    #[must_use]
    pub fn retry_policy(mut self, policy: EndpointRetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// With this secret instead of a generated one.
    #[must_use]
    pub fn secret(mut self, secret: impl Into<String>) -> Self {
        self.secret = Some(secret.into());
        self
    }

    /// The endpoint record, with a fresh id and secret unless one was given.
    pub fn into_endpoint(self) -> Endpoint {
        Endpoint {
            id: format!("ep_{}", random_token(12)),
            name: self.name,
            url: self.url,
            secrets: vec![EndpointSecret {
                secret: self.secret.unwrap_or_else(generate_secret),
                expires_at_ms: None,
            }],
            event_types: self.event_types,
            active: true,
            created_at_ms: unix_millis_now(),
            retry: self.retry,
        }
    }
}

/// Changes to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EndpointUpdate {
    /// New name.
    pub name: Option<String>,
    /// New URL.
    pub url: Option<String>,
    /// New event types.
    pub event_types: Option<Vec<String>>,
    /// Activate or deactivate.
    pub active: Option<bool>,
    /// A new retry schedule (`Some(Some(..))`), or back to the worker's
    /// (`Some(None)`, `"retry": null` in JSON).
    #[serde(
        default,
        deserialize_with = "present_even_if_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub retry: Option<Option<EndpointRetryPolicy>>,
}

/// A field that is present reads as `Some`, even when it is `null`, so an
/// update can tell "clear it" from "leave it".
fn present_even_if_null<'de, D, T>(deserializer: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

impl EndpointUpdate {
    /// Applies the changes to `endpoint`.
    pub fn apply(&self, endpoint: &mut Endpoint) {
        if let Some(name) = &self.name {
            endpoint.name.clone_from(name);
        }
        if let Some(url) = &self.url {
            endpoint.url.clone_from(url);
        }
        if let Some(types) = &self.event_types {
            endpoint.event_types.clone_from(types);
        }
        if let Some(active) = self.active {
            endpoint.active = active;
        }
        if let Some(retry) = self.retry {
            endpoint.retry = retry;
        }
    }

    /// Only activating or deactivating.
    pub fn active(active: bool) -> Self {
        Self {
            active: Some(active),
            ..Self::default()
        }
    }
}

/// Rotates `endpoint`'s secret: `new` (or a generated one) signs from now
/// on, the current ones keep signing for `grace`.
pub fn rotate(endpoint: &mut Endpoint, new: Option<String>, grace: Duration) {
    let until =
        unix_millis_now().saturating_add(i64::try_from(grace.as_millis()).unwrap_or(i64::MAX));
    let now = unix_millis_now();
    endpoint
        .secrets
        .retain(|s| s.expires_at_ms.is_none_or(|at| at > now));
    for secret in &mut endpoint.secrets {
        secret.expires_at_ms = Some(secret.expires_at_ms.map_or(until, |at| at.min(until)));
    }
    endpoint.secrets.insert(
        0,
        EndpointSecret {
            secret: new.unwrap_or_else(generate_secret),
            expires_at_ms: None,
        },
    );
}

/// A fresh `whsec_` secret: 24 bytes from the operating system's CSPRNG.
pub fn generate_secret() -> String {
    let mut key = [0u8; 24];
    getrandom::fill(&mut key).expect("the OS random source works");
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer).expect("the OS random source works");
    hex::encode(buffer)
}

/// Where endpoints are kept.
///
/// ```
/// use webhook_armor::deliver::{EndpointStore, NewEndpoint};
/// use webhook_armor::memory::MemoryEndpointStore;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let store = MemoryEndpointStore::default();
/// let endpoint = store.create(NewEndpoint::new("billing", "https://example.com/hooks")).await?;
/// assert!(endpoint.secrets[0].secret.starts_with("whsec_"));
/// assert_eq!(store.get(&endpoint.id).await?.unwrap().name, "billing");
/// # Ok::<_, webhook_armor::Error>(()) }).unwrap();
/// ```
#[async_trait]
pub trait EndpointStore: Send + Sync + std::fmt::Debug + 'static {
    /// Registers an endpoint.
    async fn create(&self, endpoint: NewEndpoint) -> Result<Endpoint>;
    /// One endpoint.
    async fn get(&self, id: &str) -> Result<Option<Endpoint>>;
    /// Every endpoint, oldest first.
    async fn list(&self) -> Result<Vec<Endpoint>>;
    /// Changes an endpoint; [`Error::NotFound`](crate::Error::NotFound) if unknown.
    async fn update(&self, id: &str, update: EndpointUpdate) -> Result<Endpoint>;
    /// Rotates its secret (see [`rotate`]).
    async fn rotate_secret(
        &self,
        id: &str,
        new: Option<String>,
        grace: Duration,
    ) -> Result<Endpoint>;
    /// Deletes it.
    async fn delete(&self, id: &str) -> Result<()>;
}
