use std::sync::Arc;
use std::time::Duration;

use tower::Layer;

use super::policy::RejectionPolicy;
use super::service::WebhookArmor;
use crate::events::EventBus;
use crate::idempotency::IdempotencyStore;
use crate::memory::MemoryIdempotencyStore;
use crate::replay::ReplayWindow;
use crate::verify::Verifier;

/// The default body limit: 1 MiB, above what any major provider sends.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// Settings shared by every clone of the layer and its services.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) verifier: Arc<dyn Verifier>,
    pub(crate) body_limit: usize,
    pub(crate) replay_window: Option<ReplayWindow>,
    pub(crate) idempotency: Option<Arc<dyn IdempotencyStore>>,
    pub(crate) scope: Option<String>,
    pub(crate) claim_ttl: Duration,
    pub(crate) completed_ttl: Duration,
    pub(crate) policy: RejectionPolicy,
    pub(crate) events: Option<Arc<dyn EventBus>>,
}

/// Applies [`WebhookArmor`] to a service: body limit, verification, replay
/// window, idempotency.
///
/// Defaults: 1 MiB body limit, a 5-minute replay window, an in-memory
/// idempotency store (claims held 5 minutes, completed keys remembered
/// 24 hours), [`RejectionPolicy::Standard`], no event bus.
///
/// ```
/// use axum::{Router, routing::post, Extension};
/// use webhook_armor::layer::WebhookArmorLayer;
/// use webhook_armor::verify::StandardWebhooks;
/// use webhook_armor::Verified;
///
/// async fn handle(Extension(event): Extension<Verified>, body: String) -> &'static str {
///     println!("event {} ({} bytes)", event.id, body.len());
///     "thanks"
/// }
///
/// let verifier = StandardWebhooks::new(["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]).unwrap();
/// let app: Router = Router::new()
///     .route("/webhook", post(handle))
///     .layer(WebhookArmorLayer::new(verifier));
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct WebhookArmorLayer {
    config: Config,
}

impl Clone for Config {
    fn clone(&self) -> Self {
        Self {
            verifier: self.verifier.clone(),
            body_limit: self.body_limit,
            replay_window: self.replay_window.clone(),
            idempotency: self.idempotency.clone(),
            scope: self.scope.clone(),
            claim_ttl: self.claim_ttl,
            completed_ttl: self.completed_ttl,
            policy: self.policy.clone(),
            events: self.events.clone(),
        }
    }
}

impl WebhookArmorLayer {
    /// A layer verifying requests with `verifier`, with the defaults above.
    pub fn new(verifier: impl Verifier) -> Self {
        Self {
            config: Config {
                verifier: Arc::new(verifier),
                body_limit: DEFAULT_BODY_LIMIT,
                replay_window: Some(ReplayWindow::default()),
                idempotency: Some(Arc::new(MemoryIdempotencyStore::new())),
                scope: None,
                claim_ttl: Duration::from_secs(5 * 60),
                completed_ttl: Duration::from_secs(24 * 60 * 60),
                policy: RejectionPolicy::default(),
                events: None,
            },
        }
    }

    /// Refuses bodies longer than `bytes` with 413, reading no more than that.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.config.body_limit = bytes;
        self
    }

    /// Uses `window` for signed timestamps.
    pub fn replay_window(mut self, window: ReplayWindow) -> Self {
        self.config.replay_window = Some(window);
        self
    }

    /// Accepts any signed timestamp. Only for tests and schemes whose sender
    /// re-sends old timestamps; the idempotency store still stops replays of
    /// events it remembers.
    pub fn without_replay_window(mut self) -> Self {
        self.config.replay_window = None;
        self
    }

    /// Uses `store` for idempotency claims (share one store between
    /// processes, e.g. Redis, so a retry landing on another instance is caught).
    pub fn idempotency(mut self, store: Arc<dyn IdempotencyStore>) -> Self {
        self.config.idempotency = Some(store);
        self
    }

    /// Skips the idempotency claim: for queue mode on a queue that already
    /// refuses duplicate ids, where the claim would be a second round trip.
    pub fn without_idempotency(mut self) -> Self {
        self.config.idempotency = None;
        self
    }

    /// Prefixes idempotency keys with `scope` instead of the scheme name, to
    /// keep two senders with overlapping ids apart.
    pub fn idempotency_scope(mut self, scope: impl Into<String>) -> Self {
        self.config.scope = Some(scope.into());
        self
    }

    /// How long an in-progress claim holds before a crash is assumed and it
    /// lapses. Longer than your handler may take.
    pub fn claim_ttl(mut self, ttl: Duration) -> Self {
        self.config.claim_ttl = ttl;
        self
    }

    /// How long a handled event id is remembered to answer duplicates.
    /// At least as long as your senders retry (Stripe: 3 days).
    pub fn completed_ttl(mut self, ttl: Duration) -> Self {
        self.config.completed_ttl = ttl;
        self
    }

    /// Chooses the statuses of refusals.
    pub fn rejection_policy(mut self, policy: RejectionPolicy) -> Self {
        self.config.policy = policy;
        self
    }

    /// Publishes FAILED and DUPLICATE lifecycle events to `bus`.
    pub fn events(mut self, bus: Arc<dyn EventBus>) -> Self {
        self.config.events = Some(bus);
        self
    }
}

impl<S> Layer<S> for WebhookArmorLayer {
    type Service = WebhookArmor<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WebhookArmor::new(inner, Arc::new(self.config.clone()))
    }
}
