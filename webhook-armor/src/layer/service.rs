use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, header};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use tower::Service;

use super::future::ResponseFuture;
use super::layer::Config;
use super::policy::Refusal;
use crate::events::{LifecycleEvent, LifecycleState};
use crate::idempotency::{Claim, ClaimToken, IdempotencyStore};
use crate::{BoxError, Rejection, Verified};

/// A service armored by [`WebhookArmorLayer`](super::WebhookArmorLayer).
///
/// The inner service receives `Request<Full<Bytes>>` with [`Verified`] in its
/// extensions. Responses the layer makes itself (rejections, duplicates) use
/// the inner service's response body type, built from `Bytes`.
#[derive(Debug, Clone)]
pub struct WebhookArmor<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> WebhookArmor<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        Self { inner, config }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for WebhookArmor<S>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Body + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: From<Bytes> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The instance that was polled ready is the one to call; keep it and
        // leave a fresh clone behind (see tower-service's docs on cloning).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        ResponseFuture {
            inner: Box::pin(armor(config, inner, request)),
        }
    }
}

/// The pipeline for one request.
async fn armor<S, ReqBody, ResBody>(
    config: Arc<Config>,
    mut inner: S,
    request: Request<ReqBody>,
) -> Result<Response<ResBody>, S::Error>
where
    S: Service<Request<Full<Bytes>>, Response = Response<ResBody>>,
    ReqBody: Body,
    ReqBody::Error: Into<BoxError>,
    ResBody: From<Bytes>,
{
    let (mut parts, body) = request.into_parts();
    let refuse = |refusal: Refusal, event_id: &str, scheme: Option<&str>| {
        publish_refusal(&config, &refusal, event_id, scheme);
        Ok(config.policy.response(&refusal))
    };

    let body = match read_body(&parts, body, config.body_limit).await {
        Ok(body) => body,
        Err(rejection) => return refuse(Refusal::Rejected(rejection), "", None),
    };
    let verified = match config.verifier.verify(&parts, &body) {
        Ok(verified) => verified,
        Err(rejection) => return refuse(Refusal::Rejected(rejection), "", None),
    };
    if let (Some(window), Some(timestamp)) = (&config.replay_window, verified.timestamp)
        && let Err(rejection) = window.check(timestamp)
    {
        return refuse(
            Refusal::Rejected(rejection),
            &verified.id,
            Some(verified.scheme),
        );
    }

    let mut claim = None;
    if let Some(store) = &config.idempotency {
        let scope = config.scope.as_deref().unwrap_or(verified.scheme);
        let key = format!("{scope}:{}", verified.id);
        match store.claim(&key, config.claim_ttl).await {
            Ok(Claim::Acquired(token)) => claim = Some(ClaimGuard::new(store.clone(), key, token)),
            Ok(Claim::Completed) => {
                return refuse(Refusal::Duplicate, &verified.id, Some(verified.scheme));
            }
            Ok(Claim::InProgress) => {
                return refuse(Refusal::InProgress, &verified.id, Some(verified.scheme));
            }
            Err(error) => {
                tracing::error!(%error, event_id = %verified.id, "idempotency claim failed");
                return refuse(Refusal::Unavailable, &verified.id, Some(verified.scheme));
            }
        }
    }

    parts.extensions.insert(verified);
    let result = inner
        .call(Request::from_parts(parts, Full::new(body)))
        .await;
    if let Some(claim) = claim {
        let handled = matches!(&result, Ok(response) if response.status().is_success());
        if handled {
            claim.complete(config.completed_ttl).await;
        } else {
            claim.release().await;
        }
    }
    result
}

/// Reads the body, refusing it once it passes `limit`: a declared
/// Content-Length over the limit is refused before reading a byte, and a
/// streamed body is cut off at the frame that crosses the limit.
async fn read_body<B>(
    parts: &http::request::Parts,
    body: B,
    limit: usize,
) -> Result<Bytes, Rejection>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(Rejection::BodyTooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<LengthLimitError>() => Err(Rejection::BodyTooLarge { limit }),
        Err(_) => Err(Rejection::BodyUnreadable),
    }
}

fn publish_refusal(config: &Config, refusal: &Refusal, event_id: &str, scheme: Option<&str>) {
    if let Refusal::Rejected(rejection) = refusal {
        tracing::debug!(%rejection, event_id, "webhook rejected");
    }
    let Some(bus) = &config.events else { return };
    let (state, detail) = match refusal {
        Refusal::Rejected(rejection) => (LifecycleState::Failed, rejection.reason()),
        Refusal::Duplicate => (LifecycleState::Duplicate, "already processed"),
        Refusal::InProgress => (LifecycleState::Duplicate, "in progress"),
        Refusal::Unavailable => return,
    };
    let mut event = LifecycleEvent::new(event_id, state).with_detail(detail);
    if let Some(scheme) = scheme {
        event = event.with_scheme(scheme);
    }
    bus.publish(event);
}

/// An idempotency claim that is released if the request is dropped midway
/// (client gone, server shutting down), so the sender's retry is not turned
/// away as "in progress" until the claim's TTL runs out.
struct ClaimGuard {
    claim: Option<(Arc<dyn IdempotencyStore>, String, ClaimToken)>,
}

impl ClaimGuard {
    fn new(store: Arc<dyn IdempotencyStore>, key: String, token: ClaimToken) -> Self {
        Self {
            claim: Some((store, key, token)),
        }
    }

    async fn complete(mut self, ttl: std::time::Duration) {
        let (store, key, token) = self.claim.take().expect("claim present until used");
        if let Err(error) = store.complete(&key, &token, ttl).await {
            // The event was handled; a retry may be processed again once the
            // in-progress claim lapses. At-least-once, never lost.
            tracing::warn!(%error, key, "could not mark webhook completed");
        }
    }

    async fn release(mut self) {
        let (store, key, token) = self.claim.take().expect("claim present until used");
        if let Err(error) = store.release(&key, &token).await {
            tracing::warn!(%error, key, "could not release idempotency claim");
        }
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        let Some((store, key, token)) = self.claim.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = store.release(&key, &token).await {
                    tracing::warn!(%error, key, "could not release abandoned claim");
                }
            });
        }
    }
}

/// Facts the handler can read: `request.extensions().get::<Verified>()`.
impl Verified {
    /// The facts stored in `request`'s extensions by the layer, if any.
    pub fn from_request<B>(request: &Request<B>) -> Option<&Verified> {
        request.extensions().get::<Verified>()
    }
}
