//! Lifecycle events: every state change of a webhook, for dashboards and metrics.

use std::pin::Pin;

use futures_util::Stream;
use serde::{Deserialize, Serialize};

use crate::clock::unix_millis_now;

/// The states a webhook passes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LifecycleState {
    /// Verified and stored on the queue.
    Queued,
    /// Leased by a worker; the handler runs.
    Processing,
    /// The handler succeeded.
    Completed,
    /// The handler failed; another attempt is scheduled.
    Retrying,
    /// Out of attempts, or failed permanently; kept in the dead letters.
    DeadLettered,
    /// Rejected at the door: bad signature, stale timestamp, malformed, too large.
    Failed,
    /// A repeat of an event already received.
    Duplicate,
}

impl LifecycleState {
    /// The state's name as it appears on the wire (`DEAD_LETTERED`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Processing => "PROCESSING",
            Self::Completed => "COMPLETED",
            Self::Retrying => "RETRYING",
            Self::DeadLettered => "DEAD_LETTERED",
            Self::Failed => "FAILED",
            Self::Duplicate => "DUPLICATE",
        }
    }
}

/// One state change of one webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LifecycleEvent {
    /// The webhook's event id (empty when a rejected request had none).
    pub event_id: String,
    /// The new state.
    pub state: LifecycleState,
    /// When, Unix milliseconds.
    pub at_ms: i64,
    /// The attempt number, for worker states.
    pub attempt: Option<u32>,
    /// Why: the rejection reason, the handler's error, the retry delay.
    pub detail: Option<String>,
    /// The verifying scheme, when known.
    pub scheme: Option<String>,
}

impl LifecycleEvent {
    /// `event_id` entered `state` now.
    pub fn new(event_id: impl Into<String>, state: LifecycleState) -> Self {
        Self {
            event_id: event_id.into(),
            state,
            at_ms: unix_millis_now(),
            attempt: None,
            detail: None,
            scheme: None,
        }
    }

    /// With the attempt number.
    #[must_use]
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = Some(attempt);
        self
    }

    /// With a detail.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// With the verifying scheme.
    #[must_use]
    pub fn with_scheme(mut self, scheme: impl Into<String>) -> Self {
        self.scheme = Some(scheme.into());
        self
    }
}

/// A live stream of lifecycle events.
pub type EventStream = Pin<Box<dyn Stream<Item = LifecycleEvent> + Send>>;

/// Publishes lifecycle events and lets observers subscribe.
///
/// Events are telemetry: `publish` never blocks and never fails the pipeline.
/// A bus may drop events for a subscriber that falls behind (and should log
/// that), but a webhook's processing never depends on its events.
///
/// ```
/// use futures_util::StreamExt;
/// use webhook_armor::events::{EventBus, LifecycleEvent, LifecycleState};
/// use webhook_armor::memory::MemoryEventBus;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let bus = MemoryEventBus::new(1024);
/// let mut events = bus.subscribe();
/// bus.publish(LifecycleEvent::new("evt_1", LifecycleState::Queued));
/// assert_eq!(events.next().await.unwrap().state, LifecycleState::Queued);
/// # });
/// ```
pub trait EventBus: Send + Sync + std::fmt::Debug + 'static {
    /// Sends `event` to every current subscriber, without waiting.
    fn publish(&self, event: LifecycleEvent);

    /// Events published from now on.
    fn subscribe(&self) -> EventStream;
}
