//! The worker handler that performs one delivery attempt.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::StatusCode;

use super::attempts::{AttemptLog, DeliveryAttempt};
use super::breaker::{CircuitBreaker, Permit};
use super::client::{DeliveryClient, HttpOutcome};
use super::dispatch::{METADATA_ENDPOINT, METADATA_EVENT_TYPE, METADATA_MESSAGE};
use super::endpoint::{EndpointStore, EndpointUpdate};
use super::sign::{SigningStyle, signature_headers};
use crate::clock::unix_millis_now;
use crate::{HandlerError, Job};

/// How a receiver's answer is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx.
    Delivered,
    /// 408, 429, 5xx, timeouts and connection errors: try again later.
    Retry,
    /// Other 4xx, and 3xx (redirects are not followed): dead-letter now.
    Permanent,
    /// 410: the receiver is gone for good; deactivate the endpoint.
    Gone,
}

/// The verdict on an HTTP outcome.
pub fn classify(outcome: &HttpOutcome) -> Verdict {
    match outcome.status {
        None if outcome.blocked => Verdict::Permanent,
        None => Verdict::Retry,
        Some(status) if status.is_success() => Verdict::Delivered,
        Some(StatusCode::GONE) => Verdict::Gone,
        Some(StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS) => Verdict::Retry,
        Some(status) if status.is_server_error() => Verdict::Retry,
        Some(_) => Verdict::Permanent,
    }
}

/// A `tower::Service<Job>` delivering outbound messages queued by a
/// [`Dispatcher`](super::Dispatcher); run it in a [`Worker`](crate::Worker).
///
/// Per attempt: the endpoint must exist and be active; its circuit breaker
/// must let the attempt through (otherwise the job is deferred without
/// spending an attempt); the payload is signed with every valid secret and
/// POSTed; the answer is classified ([`Verdict`]) and every attempt logged.
#[derive(Debug, Clone)]
pub struct DeliveryHandler {
    endpoints: Arc<dyn EndpointStore>,
    breaker: Arc<dyn CircuitBreaker>,
    attempts: Arc<dyn AttemptLog>,
    client: DeliveryClient,
    style: SigningStyle,
}

impl DeliveryHandler {
    /// A handler with Standard Webhooks signing.
    pub fn new(
        endpoints: Arc<dyn EndpointStore>,
        breaker: Arc<dyn CircuitBreaker>,
        attempts: Arc<dyn AttemptLog>,
        client: DeliveryClient,
    ) -> Self {
        Self {
            endpoints,
            breaker,
            attempts,
            client,
            style: SigningStyle::default(),
        }
    }

    /// Signs with `style`.
    #[must_use]
    pub fn signing(mut self, style: SigningStyle) -> Self {
        self.style = style;
        self
    }

    async fn deliver(self, job: Job) -> Result<(), HandlerError> {
        let metadata = |key: &str| job.metadata.get(key).cloned().unwrap_or_default();
        let (endpoint_id, message_id, event_type) = (
            metadata(METADATA_ENDPOINT),
            metadata(METADATA_MESSAGE),
            metadata(METADATA_EVENT_TYPE),
        );
        let endpoint = match self.endpoints.get(&endpoint_id).await {
            Ok(Some(endpoint)) if endpoint.active => endpoint,
            Ok(_) => {
                return Err(HandlerError::permanent(format!(
                    "endpoint {endpoint_id} is gone or inactive"
                )));
            }
            Err(error) => return Err(HandlerError::retry(format!("endpoint store: {error}"))),
        };
        let permit = self
            .breaker
            .acquire(&endpoint.id)
            .await
            .map_err(|error| HandlerError::retry(format!("circuit breaker: {error}")))?;
        if let Permit::Wait(delay) = permit {
            return Err(HandlerError::defer("circuit open", delay));
        }

        let now_ms = unix_millis_now();
        let secrets = endpoint.signing_secrets(now_ms);
        let headers = signature_headers(
            self.style,
            &secrets,
            &message_id,
            &event_type,
            now_ms / 1000,
            &job.payload,
        )
        .map_err(|error| HandlerError::permanent(format!("cannot sign: {error}")))?;
        let outcome = self
            .client
            .post(&endpoint.url, headers, job.payload.clone())
            .await;
        let verdict = classify(&outcome);
        // Only failures that say "the receiver is unwell" trip the breaker; a
        // 400 is about this message, not about the endpoint's health.
        let healthy = !matches!(verdict, Verdict::Retry);
        // A healthy answer to an ordinary delivery changes no circuit: a
        // closed one stays closed, and an open or half-open one is for its
        // probe to close (a straggler's success says little about now). So
        // only probes and failures are recorded: one store round trip less
        // per healthy delivery.
        let worth_recording = !healthy || permit == Permit::Probe;
        if worth_recording && let Err(error) = self.breaker.record(&endpoint.id, healthy).await {
            tracing::warn!(%error, endpoint = %endpoint.id, "could not record circuit outcome");
        }
        let status_text = outcome
            .status
            .map(|s| s.as_u16().to_string())
            .unwrap_or_default();
        let error_text = outcome
            .error
            .clone()
            .unwrap_or_else(|| format!("HTTP {status_text}"));
        let (label, result) = match verdict {
            Verdict::Delivered => ("delivered", Ok(())),
            Verdict::Retry => match endpoint.retry.map(|policy| policy.schedule()) {
                // The endpoint's own schedule replaces the worker's.
                Some(schedule) if !schedule.should_retry(job.attempt) => (
                    "dead_lettered",
                    Err(HandlerError::permanent(format!(
                        "{error_text} (attempt {} of {}: the endpoint's retry policy is spent)",
                        job.attempt,
                        schedule.max_attempts()
                    ))),
                ),
                Some(schedule) => (
                    "retrying",
                    Err(HandlerError::retry(error_text.clone())
                        .retry_after(schedule.delay_after(job.attempt, outcome.retry_after))
                        .attempts_allowed(schedule.max_attempts())),
                ),
                None => {
                    let mut error = HandlerError::retry(error_text.clone());
                    if let Some(delay) = outcome.retry_after {
                        error = error.retry_after(delay);
                    }
                    ("retrying", Err(error))
                }
            },
            Verdict::Permanent => (
                "dead_lettered",
                Err(HandlerError::permanent(error_text.clone())),
            ),
            Verdict::Gone => {
                if let Err(error) = self
                    .endpoints
                    .update(&endpoint.id, EndpointUpdate::active(false))
                    .await
                {
                    tracing::warn!(%error, endpoint = %endpoint.id, "could not deactivate a gone endpoint");
                }
                (
                    "gone",
                    Err(HandlerError::permanent("410 Gone: endpoint deactivated")),
                )
            }
        };
        let attempt = DeliveryAttempt {
            message_id,
            endpoint_id: endpoint.id,
            attempt: job.attempt,
            at_ms: unix_millis_now(),
            status: outcome.status.map(|s| s.as_u16()),
            latency_ms: u64::try_from(outcome.latency.as_millis()).unwrap_or(u64::MAX),
            outcome: label.to_owned(),
            error: (verdict != Verdict::Delivered).then_some(error_text),
            response_snippet: outcome.snippet,
        };
        if let Err(error) = self.attempts.record(attempt).await {
            tracing::warn!(%error, "could not log a delivery attempt");
        }
        result
    }
}

impl tower::Service<Job> for DeliveryHandler {
    type Response = ();
    type Error = HandlerError;
    type Future = BoxFuture<'static, Result<(), HandlerError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), HandlerError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, job: Job) -> Self::Future {
        Box::pin(self.clone().deliver(job))
    }
}
