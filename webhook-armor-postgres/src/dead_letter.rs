use async_trait::async_trait;
use bytes::Bytes;
use sqlx::Row;
use sqlx::postgres::PgRow;
use webhook_armor::dead_letter::{
    DeadLetter, DeadLetterFilter, DeadLetterState, DeadLetterStore, Page, Replayed, decode_cursor,
    encode_cursor,
};
use webhook_armor::queue::{Job, NewJob};
use webhook_armor::{Error, Result};

use crate::queue::decode_metadata;
use crate::{PostgresBackend, backend};

const LETTER_COLUMNS: &str =
    "id, payload, metadata, (extract(epoch FROM enqueued_at) * 1000)::bigint AS enqueued_at_ms,
    attempts, reason, (extract(epoch FROM dead_lettered_at) * 1000)::bigint AS at_ms,
    (extract(epoch FROM dead_lettered_at) * 1000000)::bigint AS at_us, state";

fn letter_from(row: &PgRow) -> Result<DeadLetter> {
    let attempts = u32::try_from(row.get::<i32, _>("attempts")).unwrap_or(0);
    let reason: String = row.get("reason");
    let mut job = Job::from_new(
        NewJob::new(
            row.get::<String, _>("id"),
            Bytes::from(row.get::<Vec<u8>, _>("payload")),
        ),
        row.get("enqueued_at_ms"),
    );
    job.metadata = decode_metadata(row.get("metadata"))?.into();
    job.attempt = attempts;
    job.last_error = Some(reason.clone());
    let mut letter = DeadLetter::from_job(job, reason, row.get("at_ms"));
    if row.get::<String, _>("state") == "replayed" {
        letter.state = DeadLetterState::Replayed;
    }
    Ok(letter)
}

/// PostgreSQL timestamps span 4713 BC to 294276 AD; a filter bound beyond
/// that means "no bound" in practice, so it is clamped rather than refused.
fn clamp_to_timestamp_range(unix_ms: i64) -> i64 {
    unix_ms.clamp(-200_000_000_000_000, 8_000_000_000_000_000)
}

fn state_name(state: DeadLetterState) -> &'static str {
    match state {
        DeadLetterState::Pending => "pending",
        DeadLetterState::Replayed => "replayed",
    }
}

#[async_trait]
impl DeadLetterStore for PostgresBackend {
    async fn list(
        &self,
        filter: &DeadLetterFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page<DeadLetter>> {
        let cursor = after.map(decode_cursor).transpose()?;
        let (metadata_key, metadata_value) = filter.metadata.clone().unzip();
        let sql = format!(
            "SELECT {LETTER_COLUMNS} FROM dead_letters
             WHERE ($1::text IS NULL OR state = $1)
               AND ($2::bigint IS NULL OR dead_lettered_at >= to_timestamp($2 / 1000.0))
               AND ($3::bigint IS NULL OR dead_lettered_at < to_timestamp($3 / 1000.0))
               AND ($4::text IS NULL OR metadata ->> $4 = $5)
               AND ($6::bigint IS NULL OR (dead_lettered_at, id) > (to_timestamp($6 / 1000000.0), $7))
             ORDER BY dead_lettered_at, id
             LIMIT $8"
        );
        let rows = sqlx::query(&sql)
            .bind(filter.state.map(state_name))
            .bind(filter.since_ms.map(clamp_to_timestamp_range))
            .bind(filter.until_ms.map(clamp_to_timestamp_range))
            .bind(metadata_key)
            .bind(metadata_value)
            .bind(cursor.as_ref().map(|(at, _)| *at))
            .bind(cursor.map(|(_, id)| id))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        let more = rows.len() > limit;
        let rows = &rows[..rows.len().min(limit)];
        let next = if more {
            rows.last()
                .map(|row| encode_cursor(row.get::<i64, _>("at_us"), &row.get::<String, _>("id")))
        } else {
            None
        };
        let items = rows.iter().map(letter_from).collect::<Result<_>>()?;
        Ok(Page { items, next })
    }

    async fn get(&self, id: &str) -> Result<Option<DeadLetter>> {
        let row = sqlx::query(&format!(
            "SELECT {LETTER_COLUMNS} FROM dead_letters WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.as_ref().map(letter_from).transpose()
    }

    async fn replay(&self, id: &str) -> Result<Replayed> {
        let requeued = sqlx::query(
            "WITH letter AS (
                 UPDATE dead_letters SET state = 'replayed'
                 WHERE id = $1 AND state = 'pending'
                 RETURNING id, payload, metadata, enqueued_at, reason
             )
             INSERT INTO jobs (id, payload, metadata, status, run_at, attempt, last_error, enqueued_at)
             SELECT id, payload, metadata, 'ready', now(), 0, reason, enqueued_at FROM letter
             ON CONFLICT (id) DO UPDATE SET status = 'ready', run_at = now(), attempt = 0,
                 payload = EXCLUDED.payload, last_error = EXCLUDED.last_error,
                 lease_token = NULL, lease_until = NULL, completed_at = NULL",
        )
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if requeued.rows_affected() == 1 {
            self.new_work.notify_one();
            return Ok(Replayed::Requeued);
        }
        let known = sqlx::query("SELECT 1 FROM dead_letters WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        match known {
            Some(_) => Ok(Replayed::AlreadyReplayed),
            None => Err(Error::NotFound(format!("dead letter {id}"))),
        }
    }

    async fn discard(&self, id: &str) -> Result<()> {
        let deleted: i64 = sqlx::query_scalar(
            "WITH letter AS (DELETE FROM dead_letters WHERE id = $1 RETURNING state),
             job AS (
                 DELETE FROM jobs WHERE id = $1 AND status = 'dead'
                   AND EXISTS (SELECT 1 FROM letter WHERE state = 'pending')
                 RETURNING id
             ),
             history AS (DELETE FROM attempts WHERE job_id IN (SELECT id FROM job))
             SELECT count(*) FROM letter",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        if deleted == 1 {
            Ok(())
        } else {
            Err(Error::NotFound(format!("dead letter {id}")))
        }
    }
}
