//! Why a request was turned away before it reached the handler.

use http::HeaderName;

/// A typed reason for refusing a webhook request.
///
/// Rejections carry enough detail for logs and lifecycle events; what the
/// sender sees is decided separately by the layer's
/// [`RejectionPolicy`](crate::layer::RejectionPolicy), so a prober learns nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// A header the scheme needs is absent.
    #[error("missing header {0}")]
    MissingHeader(HeaderName),
    /// A header is present but cannot be parsed (not ASCII, empty, wrong shape).
    #[error("malformed header {0}")]
    MalformedHeader(HeaderName),
    /// No presented signature matches any configured secret.
    #[error("signature does not match")]
    InvalidSignature,
    /// An API key or Basic credential does not match any configured one.
    #[error("credentials do not match")]
    InvalidCredentials,
    /// The signed timestamp lies outside the replay window.
    #[error("timestamp {skew_seconds} s away from now, outside the replay window")]
    TimestampOutsideWindow {
        /// Signed timestamp minus now, in seconds (negative: in the past).
        skew_seconds: i64,
    },
    /// The body is longer than the configured limit.
    #[error("body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Reading the body failed (the client went away, a transport error).
    #[error("body could not be read")]
    BodyUnreadable,
}

impl Rejection {
    /// A short, stable label for metrics and lifecycle events:
    /// `signature`, `credentials`, `timestamp`, `malformed`, `body_too_large`
    /// or `body_unreadable`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) | Self::MalformedHeader(_) => "malformed",
            Self::InvalidSignature => "signature",
            Self::InvalidCredentials => "credentials",
            Self::TimestampOutsideWindow { .. } => "timestamp",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::BodyUnreadable => "body_unreadable",
        }
    }
}
