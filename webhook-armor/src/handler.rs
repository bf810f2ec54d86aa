//! How a job handler says what went wrong.

use std::time::Duration;

use crate::BoxError;

/// A handler failure with instructions for the worker.
///
/// Return it (boxed, or through `Into<BoxError>`) from a handler to choose
/// what happens next: [`HandlerError::retry`] schedules another attempt (after
/// `Retry-After` if given), [`HandlerError::permanent`] dead-letters the job at
/// once. Any other error is treated as retryable.
///
/// ```
/// use std::time::Duration;
/// use webhook_armor::HandlerError;
///
/// let rate_limited = HandlerError::retry("downstream answered 429")
///     .retry_after(Duration::from_secs(30));
/// assert!(!rate_limited.is_permanent());
/// let bad = HandlerError::permanent("payload lacks a customer id");
/// assert!(bad.is_permanent());
/// ```
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    message: String,
    permanent: bool,
    deferred: bool,
    retry_after: Option<Duration>,
    attempts_allowed: Option<u32>,
    #[source]
    source: Option<BoxError>,
}

impl HandlerError {
    /// A failure worth another attempt.
    pub fn retry(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
            deferred: false,
            retry_after: None,
            attempts_allowed: None,
            source: None,
        }
    }

    /// A failure no retry can fix: dead-letter now.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            permanent: true,
            ..Self::retry(message)
        }
    }

    /// The job could not be tried at all (its downstream's circuit is open):
    /// run it again after `delay` without counting this as an attempt.
    pub fn defer(message: impl Into<String>, delay: Duration) -> Self {
        Self {
            deferred: true,
            retry_after: Some(delay),
            ..Self::retry(message)
        }
    }

    /// Whether the job should wait without spending an attempt.
    pub fn is_deferred(&self) -> bool {
        self.deferred
    }

    /// Try again no sooner than `delay` (a downstream's Retry-After).
    #[must_use]
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// This job may use `attempts` attempts in all, in place of the limit of
    /// the worker's [`RetryPolicy`](crate::RetryPolicy): for jobs that carry
    /// their own schedule (an outbound endpoint's retry policy). The handler
    /// then also chooses the delay, with [`retry_after`](Self::retry_after),
    /// and the worker's maximum delay does not cap it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use webhook_armor::HandlerError;
    ///
    /// let failure = HandlerError::retry("receiver answered 503")
    ///     .retry_after(Duration::from_secs(5))
    ///     .attempts_allowed(8);
    /// assert_eq!(failure.allowed_attempts(), Some(8));
    /// ```
    #[must_use]
    pub fn attempts_allowed(mut self, attempts: u32) -> Self {
        self.attempts_allowed = Some(attempts.max(1));
        self
    }

    /// The job's own attempt limit, if the handler gave one.
    pub fn allowed_attempts(&self) -> Option<u32> {
        self.attempts_allowed
    }

    /// With the underlying error.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Whether the job should go straight to the dead letters.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// The delay the handler asked for.
    pub fn requested_delay(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Reads any handler error as a `HandlerError`: itself if it is one
    /// (also when wrapped by tower middleware that boxes errors), otherwise a
    /// retryable failure carrying its message.
    pub fn classify(error: BoxError) -> Self {
        match error.downcast::<HandlerError>() {
            Ok(handler_error) => *handler_error,
            Err(other) => Self::retry(error_chain(&*other)).with_source(other),
        }
    }
}

/// `error: cause: cause`, so a dead letter's reason says everything.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
