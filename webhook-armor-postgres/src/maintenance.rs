//! Retention: completed jobs, expired idempotency keys and old attempt rows
//! are deleted in small batches, so tables stay bounded without long locks.

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

/// Deletes what retention allows; returns the number of rows removed.
pub(crate) async fn prune(pool: &PgPool, retention_ms: i64) -> Result<u64, sqlx::Error> {
    let completed_jobs = "DELETE FROM jobs WHERE id IN (
        SELECT id FROM jobs WHERE status = 'completed'
          AND completed_at < now() - $2 * interval '1 millisecond'
        LIMIT $1)";
    let old_attempts = "DELETE FROM attempts WHERE ctid IN (
        SELECT ctid FROM attempts WHERE finished_at < now() - $2 * interval '1 millisecond'
        LIMIT $1)";
    let expired_keys = "DELETE FROM idempotency_keys WHERE key IN (
        SELECT key FROM idempotency_keys WHERE expires_at < now()
        LIMIT $1)";
    let mut removed = 0;
    for (statement, uses_retention) in [
        (completed_jobs, true),
        (old_attempts, true),
        (expired_keys, false),
    ] {
        loop {
            let mut query = sqlx::query(statement).bind(PRUNE_BATCH);
            if uses_retention {
                query = query.bind(retention_ms);
            }
            let deleted = query.execute(pool).await?.rows_affected();
            removed += deleted;
            if deleted < PRUNE_BATCH as u64 {
                break;
            }
        }
    }
    Ok(removed)
}
