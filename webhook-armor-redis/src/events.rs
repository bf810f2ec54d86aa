use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;
use webhook_armor::events::{EventBus, EventStream, LifecycleEvent};

use crate::RedisBackend;

/// Events waiting to be published before new ones are dropped (telemetry
/// must never hold up the pipeline).
const PUBLISH_BUFFER: usize = 16 * 1024;

/// A task publishing serialised events in order; `publish` only enqueues.
pub(crate) fn spawn_publisher(
    mut connection: ConnectionManager,
    channel: String,
) -> mpsc::Sender<String> {
    let (sender, mut receiver) = mpsc::channel::<String>(PUBLISH_BUFFER);
    tokio::spawn(async move {
        let mut batch = Vec::new();
        while receiver.recv_many(&mut batch, 256).await > 0 {
            // One pipelined round trip for whatever accumulated meanwhile.
            let mut pipe = redis::pipe();
            for payload in batch.drain(..) {
                pipe.publish(&channel, payload).ignore();
            }
            if let Err(error) = pipe.query_async::<()>(&mut connection).await {
                tracing::warn!(%error, "could not publish lifecycle events; dropped");
            }
        }
    });
    sender
}

impl EventBus for RedisBackend {
    fn publish(&self, event: LifecycleEvent) {
        let payload = serde_json::to_string(&event).expect("events serialise");
        if self.outgoing_events.try_send(payload).is_err() {
            tracing::warn!("lifecycle event buffer full; event dropped");
        }
    }

    /// A stream fed by a background task that holds a pub/sub connection and
    /// re-subscribes after a disconnect; it ends when the stream is dropped.
    fn subscribe(&self) -> EventStream {
        let (sender, receiver) = mpsc::channel::<LifecycleEvent>(4096);
        let client = self.client.clone();
        let channel = self.keys.events();
        tokio::spawn(async move {
            while !sender.is_closed() {
                let mut pubsub = match client.get_async_pubsub().await {
                    Ok(pubsub) => pubsub,
                    Err(error) => {
                        tracing::warn!(%error, "event subscription failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                if let Err(error) = pubsub.subscribe(&channel).await {
                    tracing::warn!(%error, "event subscription failed; retrying");
                    continue;
                }
                let mut messages = pubsub.on_message();
                loop {
                    tokio::select! {
                        () = sender.closed() => return,
                        message = messages.next() => {
                            let Some(message) = message else { break };
                            let Ok(payload) = message.get_payload::<String>() else { continue };
                            match serde_json::from_str::<LifecycleEvent>(&payload) {
                                Ok(event) => {
                                    if sender.try_send(event).is_err() && sender.is_closed() {
                                        return;
                                    }
                                }
                                Err(error) => tracing::warn!(%error, "undecodable lifecycle event"),
                            }
                        }
                    }
                }
            }
        });
        Box::pin(futures_util::stream::unfold(
            receiver,
            |mut receiver| async move { receiver.recv().await.map(|event| (event, receiver)) },
        ))
    }
}
