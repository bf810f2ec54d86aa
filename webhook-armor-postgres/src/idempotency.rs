use std::time::Duration;

use async_trait::async_trait;
use webhook_armor::idempotency::{Claim, ClaimToken, IdempotencyStore};
use webhook_armor::{Error, Result};

use crate::{PostgresBackend, backend, millis};

#[async_trait]
impl IdempotencyStore for PostgresBackend {
    async fn claim(&self, key: &str, ttl: Duration) -> Result<Claim> {
        let token = ClaimToken::random();
        // Insert, or take over a row whose TTL ran out; the row lock of the
        // upsert makes exactly one of any number of concurrent claims win.
        let won: Option<String> = sqlx::query_scalar(
            "INSERT INTO idempotency_keys (key, token, completed, expires_at)
             VALUES ($1, $2, false, now() + $3 * interval '1 millisecond')
             ON CONFLICT (key) DO UPDATE SET token = EXCLUDED.token, completed = false,
                 expires_at = EXCLUDED.expires_at
             WHERE idempotency_keys.expires_at <= now()
             RETURNING token",
        )
        .bind(key)
        .bind(&token.0)
        .bind(millis(ttl))
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        if won.is_some() {
            return Ok(Claim::Acquired(token));
        }
        let completed: Option<bool> =
            sqlx::query_scalar("SELECT completed FROM idempotency_keys WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        // A row gone between the two statements expired just now: the sender's
        // retry will claim it.
        Ok(if completed == Some(true) {
            Claim::Completed
        } else {
            Claim::InProgress
        })
    }

    async fn complete(&self, key: &str, token: &ClaimToken, ttl: Duration) -> Result<()> {
        let done = sqlx::query(
            "UPDATE idempotency_keys SET completed = true, token = NULL,
                 expires_at = now() + $3 * interval '1 millisecond'
             WHERE key = $1 AND token = $2 AND NOT completed AND expires_at > now()",
        )
        .bind(key)
        .bind(&token.0)
        .bind(millis(ttl))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(Error::LeaseLost)
        }
    }

    async fn release(&self, key: &str, token: &ClaimToken) -> Result<()> {
        let done = sqlx::query(
            "DELETE FROM idempotency_keys WHERE key = $1 AND token = $2 AND NOT completed AND expires_at > now()",
        )
        .bind(key)
        .bind(&token.0)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(Error::LeaseLost)
        }
    }
}
