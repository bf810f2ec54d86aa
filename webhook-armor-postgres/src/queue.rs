use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;
use sqlx::Row;
use webhook_armor::queue::{Enqueued, Job, Lease, LeaseToken, NewJob, Queue, QueueStats};
use webhook_armor::{Error, Result};

use webhook_armor::batch::{AckRequest, EnqueueRequest, submit};

use crate::{PostgresBackend, backend, millis};

pub(crate) fn encode_metadata(metadata: &BTreeMap<String, String>) -> String {
    serde_json::to_string(metadata).expect("string maps serialise")
}

pub(crate) fn decode_metadata(value: serde_json::Value) -> Result<BTreeMap<String, String>> {
    serde_json::from_value(value)
        .map_err(|e| Error::Backend(format!("corrupt job metadata: {e}").into()))
}

/// The fence every change to a leased job passes: `$1` the job id, `$2` the
/// lease token. Only the current holder, before its deadline, changes a row.
///
/// A token is only ever set while the job is leased (a table constraint), so
/// the status need not be matched. Leaving it out keeps the `jobs_leased`
/// partial index out of the planner's reach: on stale statistics it would
/// scan every leased row for this one (migration 0003 tells the story).
macro_rules! held {
    () => {
        "id = $1 AND lease_token = $2 AND lease_until > now()"
    };
}

/// `Ok` if the fenced statement changed the job, `LeaseLost` if the fence held it back.
fn fenced(applied: bool) -> Result<()> {
    if applied {
        Ok(())
    } else {
        Err(Error::LeaseLost)
    }
}

/// One processing attempt as the attempt log recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AttemptRecord {
    /// The job (event) id.
    pub job_id: String,
    /// Attempt number, 1 for the first.
    pub attempt: u32,
    /// `completed`, `retrying` or `dead_lettered`.
    pub outcome: String,
    /// The error, for failed attempts.
    pub error: Option<String>,
    /// From lease to outcome, milliseconds.
    pub duration_ms: i64,
    /// When the attempt ended, Unix milliseconds.
    pub finished_at_ms: i64,
}

impl PostgresBackend {
    /// Every recorded attempt of `job_id`, oldest first.
    pub async fn attempts(&self, job_id: &str) -> Result<Vec<AttemptRecord>> {
        let rows = sqlx::query(
            "SELECT job_id, attempt, outcome, error, duration_ms,
                    (extract(epoch FROM finished_at) * 1000)::bigint AS finished_at_ms
             FROM attempts WHERE job_id = $1 ORDER BY finished_at, attempt",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|row| AttemptRecord {
                job_id: row.get("job_id"),
                attempt: u32::try_from(row.get::<i32, _>("attempt")).unwrap_or(0),
                outcome: row.get("outcome"),
                error: row.get("error"),
                duration_ms: row.get("duration_ms"),
                finished_at_ms: row.get("finished_at_ms"),
            })
            .collect())
    }

    async fn enqueue_now(&self, job: NewJob) -> Result<Enqueued> {
        let inserted = sqlx::query(
            "INSERT INTO jobs (id, payload, metadata, status, run_at)
             VALUES ($1, $2, $3::jsonb, 'ready', now() + $4 * interval '1 millisecond')
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&job.id)
        .bind(job.payload.as_ref())
        .bind(encode_metadata(&job.metadata))
        .bind(millis(job.delay))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if inserted.rows_affected() == 1 {
            self.new_work.notify_one();
            Ok(Enqueued::New)
        } else {
            Ok(Enqueued::Duplicate)
        }
    }

    /// One ack, one statement. Not the batch function `ack_jobs` with arrays
    /// of one: its call (plpgsql, its settings saved and restored each time)
    /// cost a tenth of the unbatched rate (4,950-5,030 against 5,230-5,640
    /// jobs/s, `queue-throughput postgres-unbatched`). The fence alone keeps
    /// the plan on the primary key, as for nack.
    async fn ack_now(&self, lease: &Lease) -> Result<()> {
        let acked = sqlx::query(concat!(
            "WITH done AS (
                 UPDATE jobs SET status = 'completed', completed_at = now(), payload = '\\x'::bytea,
                        lease_token = NULL, lease_until = NULL
                 WHERE ",
            held!(),
            "
                 RETURNING id, attempt, leased_at
             ),
             logged AS (
                 INSERT INTO attempts (job_id, attempt, outcome, duration_ms)
                 SELECT id, attempt, 'completed', (extract(epoch FROM clock_timestamp() - leased_at) * 1000)::bigint
                 FROM done
             )
             SELECT id FROM done"
        ))
            .bind(&lease.job.id)
            .bind(&lease.token.0)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        fenced(!acked.is_empty())
    }
}

#[async_trait]
impl Queue for PostgresBackend {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        let Some(enqueues) = &self.enqueues else {
            return self.enqueue_now(job).await;
        };
        submit(enqueues, |reply| EnqueueRequest { job, reply }).await
    }

    async fn lease(&self, max: usize, lease_for: Duration) -> Result<Vec<Lease>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let rows = sqlx::query("SELECT * FROM lease_jobs($1, $2)")
            .bind(i32::try_from(max).unwrap_or(i32::MAX))
            .bind(millis(lease_for).max(1))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        let mut leased = rows
            .into_iter()
            .map(|row| {
                let mut job = Job::from_new(
                    NewJob::new(
                        row.get::<String, _>("id"),
                        Bytes::from(row.get::<Vec<u8>, _>("payload")),
                    ),
                    row.get("enqueued_at_ms"),
                );
                job.metadata = decode_metadata(row.get("metadata"))?.into();
                job.attempt = u32::try_from(row.get::<i32, _>("attempt")).unwrap_or(0);
                job.last_error = row.get("last_error");
                let lease = Lease {
                    job,
                    token: LeaseToken(row.get("lease_token")),
                };
                Ok((row.get::<i64, _>("seq"), lease))
            })
            .collect::<Result<Vec<_>>>()?;
        // RETURNING has no order; hand jobs out oldest first.
        leased.sort_by_key(|(seq, _)| *seq);
        Ok(leased.into_iter().map(|(_, lease)| lease).collect())
    }

    async fn ack(&self, lease: &Lease) -> Result<()> {
        let Some(acks) = &self.acks else {
            return self.ack_now(lease).await;
        };
        submit(acks, |reply| AckRequest {
            id: lease.job.id.clone(),
            token: lease.token.0.clone(),
            reply,
        })
        .await
    }

    async fn nack(&self, lease: &Lease, retry_in: Duration, error: &str) -> Result<()> {
        let rows = sqlx::query(
            concat!(
            "WITH failed AS (
                 UPDATE jobs SET status = 'ready', run_at = now() + $3 * interval '1 millisecond',
                        last_error = $4, lease_token = NULL, lease_until = NULL
                 WHERE ", held!(), "
                 RETURNING id, attempt, leased_at
             ),
             logged AS (
                 INSERT INTO attempts (job_id, attempt, outcome, error, duration_ms)
                 SELECT id, attempt, 'retrying', $4, (extract(epoch FROM clock_timestamp() - leased_at) * 1000)::bigint
                 FROM failed
             )
             SELECT id FROM failed"
        ),
        )
        .bind(&lease.job.id)
        .bind(&lease.token.0)
        .bind(millis(retry_in))
        .bind(error)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        fenced(!rows.is_empty())
    }

    async fn defer(&self, lease: &Lease, delay: Duration) -> Result<()> {
        let deferred = sqlx::query(concat!(
            "UPDATE jobs SET status = 'ready', run_at = now() + $3 * interval '1 millisecond',
                    attempt = greatest(attempt - 1, 0), lease_token = NULL, lease_until = NULL
             WHERE ",
            held!(),
            ""
        ))
        .bind(&lease.job.id)
        .bind(&lease.token.0)
        .bind(millis(delay))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        fenced(deferred.rows_affected() == 1)
    }

    async fn dead_letter(&self, lease: &Lease, reason: &str) -> Result<()> {
        let rows = sqlx::query(
            concat!(
            "WITH dead AS (
                 UPDATE jobs SET status = 'dead', last_error = $3, lease_token = NULL, lease_until = NULL
                 WHERE ", held!(), "
                 RETURNING id, payload, metadata, enqueued_at, attempt, leased_at
             ),
             letter AS (
                 INSERT INTO dead_letters (id, payload, metadata, enqueued_at, attempts, reason, dead_lettered_at, state)
                 SELECT id, payload, metadata, enqueued_at, attempt, $3, clock_timestamp(), 'pending' FROM dead
                 ON CONFLICT (id) DO UPDATE SET payload = EXCLUDED.payload, metadata = EXCLUDED.metadata,
                     attempts = EXCLUDED.attempts, reason = EXCLUDED.reason,
                     dead_lettered_at = EXCLUDED.dead_lettered_at, state = 'pending'
             ),
             logged AS (
                 INSERT INTO attempts (job_id, attempt, outcome, error, duration_ms)
                 SELECT id, attempt, 'dead_lettered', $3, (extract(epoch FROM clock_timestamp() - leased_at) * 1000)::bigint
                 FROM dead
             )
             SELECT id FROM dead"
        ),
        )
        .bind(&lease.job.id)
        .bind(&lease.token.0)
        .bind(reason)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        fenced(!rows.is_empty())
    }

    async fn stats(&self) -> Result<QueueStats> {
        let row = sqlx::query(
            "SELECT
                 (SELECT count(*) FROM jobs WHERE status = 'ready' AND run_at <= now()) AS ready,
                 (SELECT count(*) FROM jobs WHERE status = 'ready' AND run_at > now()) AS scheduled,
                 (SELECT count(*) FROM jobs WHERE status = 'leased') AS leased,
                 (SELECT count(*) FROM dead_letters WHERE state = 'pending') AS dead",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        let count = |name: &str| u64::try_from(row.get::<i64, _>(name)).unwrap_or(0);
        Ok(QueueStats {
            ready: count("ready"),
            scheduled: count("scheduled"),
            leased: count("leased"),
            dead_lettered: count("dead"),
        })
    }

    async fn wait_for_work(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.work_available.notified()).await;
    }
}
