//! Group commit: concurrent enqueues (and acks) share one statement and one
//! WAL flush. Each caller waits for the commit of the batch it joined, so an
//! answer still means "durably stored".

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::{PgPool, Row};
use tokio::sync::{Notify, mpsc};
use webhook_armor::Error;
use webhook_armor::batch::{AckRequest, EnqueueRequest, spawn_batcher};
use webhook_armor::queue::Enqueued;

use crate::queue::encode_metadata;

/// One error per caller: the batch failed, so did each request in it.
fn batch_error(error: &sqlx::Error) -> Error {
    Error::Backend(format!("batched statement failed: {error}").into())
}

pub(crate) fn spawn_enqueuer(
    pool: PgPool,
    new_work: Arc<Notify>,
    in_flight: usize,
) -> mpsc::Sender<EnqueueRequest> {
    spawn_batcher(in_flight, move |batch: Vec<EnqueueRequest>| {
        let (pool, new_work) = (pool.clone(), new_work.clone());
        async move {
            let ids: Vec<&str> = batch.iter().map(|r| r.job.id.as_str()).collect();
            let payloads: Vec<&[u8]> = batch.iter().map(|r| r.job.payload.as_ref()).collect();
            let metadata: Vec<String> = batch
                .iter()
                .map(|r| encode_metadata(&r.job.metadata))
                .collect();
            let delays: Vec<i64> = batch.iter().map(|r| crate::millis(r.job.delay)).collect();
            let inserted = sqlx::query(INSERT_BATCH)
                .bind(&ids)
                .bind(&payloads)
                .bind(&metadata)
                .bind(&delays)
                .fetch_all(&pool)
                .await;
            match inserted {
                Ok(rows) => {
                    let mut new: HashMap<String, ()> = rows
                        .iter()
                        .map(|row| (row.get::<String, _>(0), ()))
                        .collect();
                    if !new.is_empty() {
                        new_work.notify_one();
                    }
                    for request in batch {
                        // With one id twice in a batch, the first caller is the new one.
                        let outcome = if new.remove(&request.job.id).is_some() {
                            Enqueued::New
                        } else {
                            Enqueued::Duplicate
                        };
                        let _ = request.reply.send(Ok(outcome));
                    }
                }
                Err(error) => {
                    for request in batch {
                        let _ = request.reply.send(Err(batch_error(&error)));
                    }
                }
            }
        }
    })
}

pub(crate) fn spawn_acker(pool: PgPool, in_flight: usize) -> mpsc::Sender<AckRequest> {
    spawn_batcher(in_flight, move |batch: Vec<AckRequest>| {
        let pool = pool.clone();
        async move {
            let ids: Vec<&str> = batch.iter().map(|r| r.id.as_str()).collect();
            let tokens: Vec<&str> = batch.iter().map(|r| r.token.as_str()).collect();
            match sqlx::query(ACK_BATCH)
                .bind(&ids)
                .bind(&tokens)
                .fetch_all(&pool)
                .await
            {
                Ok(rows) => {
                    let mut acked: HashMap<String, ()> = rows
                        .iter()
                        .map(|row| (row.get::<String, _>(0), ()))
                        .collect();
                    for request in batch {
                        let outcome = if acked.remove(&request.id).is_some() {
                            Ok(())
                        } else {
                            Err(Error::LeaseLost)
                        };
                        let _ = request.reply.send(outcome);
                    }
                }
                Err(error) => {
                    for request in batch {
                        let _ = request.reply.send(Err(batch_error(&error)));
                    }
                }
            }
        }
    })
}

/// How often at most the waker sends NOTIFY. A NOTIFY is a commit that
/// takes a global lock; one per enqueue would cost more than the enqueue.
const WAKE_INTERVAL: Duration = Duration::from_millis(5);

/// A task that wakes idle workers (their LISTEN) after new work arrived,
/// coalescing any number of signals into one NOTIFY per [`WAKE_INTERVAL`].
/// Returns the signal to raise. A lost NOTIFY only costs a poll interval.
pub(crate) fn spawn_waker(pool: PgPool, channel: String, alive: Weak<()>) -> Arc<Notify> {
    let signal = Arc::new(Notify::new());
    let raised = signal.clone();
    tokio::spawn(async move {
        loop {
            if tokio::time::timeout(Duration::from_secs(5), raised.notified())
                .await
                .is_err()
            {
                if alive.upgrade().is_none() {
                    return;
                }
                continue;
            }
            if let Err(error) = sqlx::query("SELECT pg_notify($1, '')")
                .bind(&channel)
                .execute(&pool)
                .await
            {
                tracing::debug!(%error, "could not notify workers; they will poll");
            }
            tokio::time::sleep(WAKE_INTERVAL).await;
        }
    });
    signal
}

/// Dedup + enqueue of a whole batch, in input order.
pub(crate) const INSERT_BATCH: &str = "
INSERT INTO jobs (id, payload, metadata, status, run_at)
SELECT id, payload, metadata::jsonb, 'ready', now() + delay_ms * interval '1 millisecond'
FROM unnest($1::text[], $2::bytea[], $3::text[], $4::bigint[]) WITH ORDINALITY AS t(id, payload, metadata, delay_ms, ord)
ORDER BY ord
ON CONFLICT (id) DO NOTHING
RETURNING id";

/// Fenced ack of a whole batch (the `ack_jobs` function of migration 0003),
/// logging each attempt; returns the acked ids.
const ACK_BATCH: &str = "SELECT ack_jobs FROM ack_jobs($1::text[], $2::text[])";
