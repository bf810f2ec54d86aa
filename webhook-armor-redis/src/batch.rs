//! Group commit for Redis: concurrent enqueues (and acks) share one script
//! call. Each call costs Redis a fixed ~20 µs here before any work (measured
//! with `INFO commandstats`: 31 µs per single-job EVALSHA, 4-8 µs of it the
//! commands inside), so under load one call per batch frees most of the
//! server's time. Each caller still gets its own answer once its batch ran.

use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};
use webhook_armor::batch::{AckRequest, EnqueueRequest, spawn_batcher};
use webhook_armor::queue::{Enqueued, NewJob};
use webhook_armor::{Error, Result};

use crate::queue::encode_metadata;
use crate::{Keys, scripts};

/// One error per caller: the batch failed, so did each request in it.
fn batch_error(error: &redis::RedisError) -> Error {
    Error::Backend(format!("batched Redis call failed: {error}").into())
}

/// Runs the enqueue script for `jobs`: 1 (new) or 0 (duplicate) per job.
/// Used for a whole batch, and for one job when group commit is off.
pub(crate) async fn enqueue_jobs<'a>(
    connection: &mut ConnectionManager,
    keys: &Keys,
    jobs: impl IntoIterator<Item = &'a NewJob>,
) -> redis::RedisResult<Vec<i64>> {
    let mut invocation = scripts::ENQUEUE_BATCH.prepare_invoke();
    invocation.key(keys.ready()).key(keys.scheduled());
    for job in jobs {
        invocation
            .key(keys.job(&job.id))
            .arg(&job.id)
            .arg(job.payload.as_ref())
            .arg(encode_metadata(&job.metadata))
            .arg(u64::try_from(job.delay.as_millis()).unwrap_or(u64::MAX));
    }
    invocation.invoke_async(connection).await
}

/// Runs the fenced ack script for `(id, token)` pairs: 1 (acked) or 0 (lease
/// lost) per lease. Used for a whole batch, and for one lease when group
/// commit is off.
pub(crate) async fn ack_leases<'a>(
    connection: &mut ConnectionManager,
    keys: &Keys,
    retention_ms: u64,
    leases: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> redis::RedisResult<Vec<i64>> {
    let mut invocation = scripts::ACK_BATCH.prepare_invoke();
    invocation.key(keys.leased()).arg(retention_ms);
    for (id, token) in leases {
        invocation.key(keys.job(id)).arg(id).arg(token);
    }
    invocation.invoke_async(connection).await
}

fn enqueued(added: i64) -> Result<Enqueued> {
    Ok(if added == 1 {
        Enqueued::New
    } else {
        Enqueued::Duplicate
    })
}

fn acked(acked: i64) -> Result<()> {
    if acked == 1 {
        Ok(())
    } else {
        Err(Error::LeaseLost)
    }
}

/// The one answer of a single-job call, as its caller's result.
pub(crate) fn single<T>(
    outcome: redis::RedisResult<Vec<i64>>,
    result_of: fn(i64) -> Result<T>,
) -> Result<T> {
    match outcome.map_err(|error| batch_error(&error))?.as_slice() {
        [one] => result_of(*one),
        other => Err(Error::Backend(
            format!("Redis answered {} results for one request", other.len()).into(),
        )),
    }
}

pub(crate) fn enqueue_one(outcome: redis::RedisResult<Vec<i64>>) -> Result<Enqueued> {
    single(outcome, enqueued)
}

pub(crate) fn ack_one(outcome: redis::RedisResult<Vec<i64>>) -> Result<()> {
    single(outcome, acked)
}

pub(crate) fn spawn_enqueuer(
    connection: ConnectionManager,
    keys: Keys,
    in_flight: usize,
) -> mpsc::Sender<EnqueueRequest> {
    spawn_batcher(in_flight, move |batch: Vec<EnqueueRequest>| {
        let (mut connection, keys) = (connection.clone(), keys.clone());
        async move {
            let outcome = enqueue_jobs(&mut connection, &keys, batch.iter().map(|r| &r.job)).await;
            answer(batch, outcome, |request| request.reply, enqueued);
        }
    })
}

pub(crate) fn spawn_acker(
    connection: ConnectionManager,
    keys: Keys,
    retention_ms: u64,
    in_flight: usize,
) -> mpsc::Sender<AckRequest> {
    spawn_batcher(in_flight, move |batch: Vec<AckRequest>| {
        let (mut connection, keys) = (connection.clone(), keys.clone());
        async move {
            let leases = batch.iter().map(|r| (r.id.as_str(), r.token.as_str()));
            let outcome = ack_leases(&mut connection, &keys, retention_ms, leases).await;
            answer(batch, outcome, |request| request.reply, acked);
        }
    })
}

/// Sends each request its own result: the script's answer at its position,
/// or the batch's error.
fn answer<R, T>(
    batch: Vec<R>,
    outcome: redis::RedisResult<Vec<i64>>,
    reply_of: impl Fn(R) -> oneshot::Sender<Result<T>>,
    result_of: impl Fn(i64) -> Result<T>,
) {
    match outcome {
        Ok(results) if results.len() == batch.len() => {
            for (request, result) in batch.into_iter().zip(results) {
                let _ = reply_of(request).send(result_of(result));
            }
        }
        Ok(results) => {
            let error = format!(
                "batched Redis call answered {} results for {} requests",
                results.len(),
                batch.len()
            );
            for request in batch {
                let _ = reply_of(request).send(Err(Error::Backend(error.clone().into())));
            }
        }
        Err(error) => {
            for request in batch {
                let _ = reply_of(request).send(Err(batch_error(&error)));
            }
        }
    }
}
