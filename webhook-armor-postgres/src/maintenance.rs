//! Retention: completed jobs (with their attempt log) and expired idempotency
//! keys are deleted in small batches, so tables stay bounded without long locks.

use std::sync::Weak;

use sqlx::PgPool;

use crate::{PostgresConfig, millis};

/// Rows deleted per statement, to keep each transaction short.
const PRUNE_BATCH: i64 = 5000;

pub(crate) fn spawn(pool: PgPool, config: PostgresConfig, alive: Weak<()>) {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(config.maintenance_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if alive.upgrade().is_none() {
                return;
            }
            if let Err(error) = prune(&pool, millis(config.completed_retention)).await {
                tracing::warn!(%error, "pruning finished work failed; will retry");
            }
        }
    });
}

/// Deletes what retention allows; returns the number of jobs and keys removed.
pub(crate) async fn prune(pool: &PgPool, retention_ms: i64) -> Result<u64, sqlx::Error> {
    // A pruned job takes its attempt log with it.
    let completed_jobs = "WITH gone AS (
            DELETE FROM jobs WHERE id IN (
                SELECT id FROM jobs WHERE status = 'completed'
                  AND completed_at < now() - $2 * interval '1 millisecond'
                LIMIT $1)
            RETURNING id),
        history AS (DELETE FROM attempts WHERE job_id IN (SELECT id FROM gone))
        SELECT count(*) FROM gone";
    let expired_keys = "WITH gone AS (
            DELETE FROM idempotency_keys WHERE key IN (
                SELECT key FROM idempotency_keys WHERE expires_at < now() LIMIT $1)
            RETURNING 1)
        SELECT count(*) FROM gone";
    let mut removed = 0;
    for (statement, uses_retention) in [(completed_jobs, true), (expired_keys, false)] {
        loop {
            let mut query = sqlx::query_scalar::<_, i64>(statement).bind(PRUNE_BATCH);
            if uses_retention {
                query = query.bind(retention_ms);
            }
            let deleted = query.fetch_one(pool).await?;
            removed += u64::try_from(deleted).unwrap_or(0);
            if deleted < PRUNE_BATCH {
                break;
            }
        }
    }
    Ok(removed)
}
