use futures_util::stream;
use tokio::sync::broadcast;

use crate::events::{EventBus, EventStream, LifecycleEvent};

/// An [`EventBus`] on a tokio broadcast channel.
///
/// A subscriber that falls more than `capacity` events behind skips the
/// oldest ones (logged as a warning) rather than slowing publishers down.
#[derive(Debug, Clone)]
pub struct MemoryEventBus {
    sender: broadcast::Sender<LifecycleEvent>,
}

impl Default for MemoryEventBus {
    fn default() -> Self {
        Self::new(4096)
    }
}

impl MemoryEventBus {
    /// A bus buffering up to `capacity` events per subscriber.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity.max(1));
        Self { sender }
    }
}

impl EventBus for MemoryEventBus {
    fn publish(&self, event: LifecycleEvent) {
        // No subscriber is not an error: nobody is watching.
        let _ = self.sender.send(event);
    }

    fn subscribe(&self) -> EventStream {
        let receiver = self.sender.subscribe();
        Box::pin(stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(event) => return Some((event, receiver)),
                    Err(broadcast::error::RecvError::Lagged(skipped)) => {
                        tracing::warn!(skipped, "event subscriber fell behind; events skipped");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }))
    }
}
