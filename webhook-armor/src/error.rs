//! The crate's one error type, shared by every storage trait.
//!
//! Kinds are backend-agnostic so callers can match on them whatever store sits
//! underneath: a unique violation in PostgreSQL and an existing key in Redis both
//! become [`Error::AlreadyExists`].

/// A boxed error from a backend or a user's handler.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for results whose error is this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a storage operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The thing being created exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The thing asked for does not exist (or no longer does).
    #[error("{0} not found")]
    NotFound(String),
    /// The lease or claim presented is no longer held: its deadline passed, or
    /// someone else took the job or key since. The operation changed nothing.
    #[error("lease or claim no longer held: it expired or was taken over")]
    LeaseLost,
    /// The caller passed something the operation cannot accept.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The storage backend failed (unreachable, timed out, refused the command).
    /// Whether the operation took effect is unknown; callers retry or answer 503.
    #[error("storage backend failed: {0}")]
    Backend(#[source] BoxError),
}

impl Error {
    /// Wraps any error from a storage backend.
    pub fn backend(error: impl Into<BoxError>) -> Self {
        Self::Backend(error.into())
    }
}
