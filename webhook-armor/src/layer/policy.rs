//! What the sender is told when the layer does not pass a request on.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::Rejection;

/// Why the layer answered instead of the inner service.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The request failed verification, the window or the body limit.
    Rejected(Rejection),
    /// The event was handled already.
    Duplicate,
    /// Another request with this event id is being handled right now.
    InProgress,
    /// The idempotency store failed; the sender should retry.
    Unavailable,
}

/// Chooses the status code for each [`Refusal`].
///
/// - [`RejectionPolicy::Standard`] (default): 401 for anything unauthentic or
///   malformed or stale, 413 for an oversized body, 400 for an unreadable one,
///   200 for a duplicate, 409 for an event still in progress, 503 when storage
///   is down.
/// - [`RejectionPolicy::AlwaysOk`]: 200 for every rejection, so a prober
///   learns nothing; duplicates and in-progress events are answered as in
///   `Standard`, and 503 stays 503 because those requests are authentic and
///   the sender must retry them.
/// - [`RejectionPolicy::custom`]: your function for rejections.
///
/// Response bodies are short fixed texts that reveal nothing about why.
///
/// ```
/// use http::StatusCode;
/// use webhook_armor::Rejection;
/// use webhook_armor::layer::{Refusal, RejectionPolicy};
///
/// let policy = RejectionPolicy::custom(|rejection| match rejection {
///     Rejection::TimestampOutsideWindow { .. } => StatusCode::BAD_REQUEST,
///     _ => StatusCode::FORBIDDEN,
/// });
/// assert_eq!(policy.status(&Refusal::Rejected(Rejection::InvalidSignature)), StatusCode::FORBIDDEN);
/// assert_eq!(policy.status(&Refusal::Duplicate), StatusCode::OK);
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum RejectionPolicy {
    /// Honest status codes.
    #[default]
    Standard,
    /// 200 for every rejection.
    AlwaysOk,
    /// A function of the rejection.
    Custom(Arc<dyn Fn(&Rejection) -> StatusCode + Send + Sync>),
}

impl std::fmt::Debug for RejectionPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Standard => f.write_str("Standard"),
            Self::AlwaysOk => f.write_str("AlwaysOk"),
            Self::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

impl RejectionPolicy {
    /// A policy choosing rejection statuses with `status`.
    pub fn custom(status: impl Fn(&Rejection) -> StatusCode + Send + Sync + 'static) -> Self {
        Self::Custom(Arc::new(status))
    }

    /// The status for `refusal`.
    pub fn status(&self, refusal: &Refusal) -> StatusCode {
        match refusal {
            Refusal::Duplicate => StatusCode::OK,
            Refusal::InProgress => StatusCode::CONFLICT,
            Refusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::Rejected(rejection) => match self {
                Self::Standard => standard_status(rejection),
                Self::AlwaysOk => StatusCode::OK,
                Self::Custom(status) => status(rejection),
            },
        }
    }

    /// The response for `refusal`.
    pub(crate) fn response<B: From<Bytes>>(&self, refusal: &Refusal) -> Response<B> {
        let status = self.status(refusal);
        let text: &'static str = match status {
            StatusCode::OK => "ok",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::PAYLOAD_TOO_LARGE => "payload too large",
            StatusCode::CONFLICT => "event in progress, retry later",
            StatusCode::SERVICE_UNAVAILABLE => "temporarily unavailable, retry later",
            _ => status.canonical_reason().unwrap_or("refused"),
        };
        let mut response = Response::new(B::from(Bytes::from_static(text.as_bytes())));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if matches!(refusal, Refusal::InProgress | Refusal::Unavailable) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

fn standard_status(rejection: &Rejection) -> StatusCode {
    match rejection {
        Rejection::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Rejection::BodyUnreadable => StatusCode::BAD_REQUEST,
        _ => StatusCode::UNAUTHORIZED,
    }
}
