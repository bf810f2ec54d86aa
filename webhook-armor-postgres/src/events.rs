//! LISTEN/NOTIFY: lifecycle events between processes, and the wake-up call
//! for idle workers.

use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, mpsc};
use webhook_armor::events::{EventBus, EventStream, LifecycleEvent};

use crate::PostgresBackend;

/// Events waiting to be published before new ones are dropped.
const PUBLISH_BUFFER: usize = 16 * 1024;
/// NOTIFY payloads must stay under 8000 bytes; details are cut to this.
const MAX_DETAIL: usize = 2000;

/// Publishes queued events in batches: one `pg_notify` per event, one
/// statement per batch.
pub(crate) fn spawn_publisher(pool: PgPool, channel: String) -> mpsc::Sender<String> {
    let (sender, mut receiver) = mpsc::channel::<String>(PUBLISH_BUFFER);
    tokio::spawn(async move {
        let mut batch = Vec::new();
        while receiver.recv_many(&mut batch, 500).await > 0 {
            let payloads = std::mem::take(&mut batch);
            let sent = sqlx::query("SELECT pg_notify($1, payload) FROM unnest($2::text[]) WITH ORDINALITY AS t(payload, n) ORDER BY n")
                .bind(&channel)
                .bind(&payloads)
                .execute(&pool)
                .await;
            if let Err(error) = sent {
                tracing::warn!(%error, "could not publish lifecycle events; dropped");
            }
        }
    });
    sender
}

/// Wakes `notify` on every NOTIFY of `channel`, reconnecting as needed,
/// until the backend is dropped.
pub(crate) fn spawn_work_listener(
    pool: PgPool,
    channel: String,
    notify: Arc<Notify>,
    alive: Weak<()>,
) {
    tokio::spawn(async move {
        while alive.upgrade().is_some() {
            let mut listener = match PgListener::connect_with(&pool).await {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::warn!(%error, "LISTEN connection failed; workers poll meanwhile");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Err(error) = listener.listen(&channel).await {
                tracing::warn!(%error, "LISTEN failed; workers poll meanwhile");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            loop {
                // Wake up now and then to notice the backend was dropped.
                match tokio::time::timeout(Duration::from_secs(5), listener.recv()).await {
                    Ok(Ok(_)) => {
                        notify.notify_waiters();
                        notify.notify_one();
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "LISTEN connection lost; reconnecting");
                        break;
                    }
                    Err(_) if alive.upgrade().is_none() => return,
                    Err(_) => {}
                }
            }
        }
    });
}

impl EventBus for PostgresBackend {
    fn publish(&self, mut event: LifecycleEvent) {
        if let Some(detail) = &mut event.detail
            && detail.len() > MAX_DETAIL
        {
            let mut cut = MAX_DETAIL;
            while !detail.is_char_boundary(cut) {
                cut -= 1;
            }
            detail.truncate(cut);
        }
        let payload = serde_json::to_string(&event).expect("events serialise");
        if self.outgoing_events.try_send(payload).is_err() {
            tracing::warn!("lifecycle event buffer full; event dropped");
        }
    }

    fn subscribe(&self) -> EventStream {
        let (sender, receiver) = mpsc::channel::<LifecycleEvent>(4096);
        let pool = self.pool.clone();
        let channel = crate::events_channel(&self.config.schema);
        tokio::spawn(async move {
            while !sender.is_closed() {
                let mut listener = match PgListener::connect_with(&pool).await {
                    Ok(listener) => listener,
                    Err(error) => {
                        tracing::warn!(%error, "event subscription failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        continue;
                    }
                };
                if listener.listen(&channel).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                loop {
                    tokio::select! {
                        () = sender.closed() => return,
                        received = listener.recv() => match received {
                            Ok(notification) => match serde_json::from_str::<LifecycleEvent>(notification.payload()) {
                                Ok(event) => {
                                    let _ = sender.try_send(event);
                                }
                                Err(error) => tracing::warn!(%error, "undecodable lifecycle event"),
                            },
                            Err(error) => {
                                tracing::warn!(%error, "event subscription lost; reconnecting");
                                break;
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
