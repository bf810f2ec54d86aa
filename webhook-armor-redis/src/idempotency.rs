use std::time::Duration;

use async_trait::async_trait;
use webhook_armor::idempotency::{Claim, ClaimToken, IdempotencyStore};
use webhook_armor::{Error, Result};

use crate::{RedisBackend, backend, millis, scripts};

#[async_trait]
impl IdempotencyStore for RedisBackend {
    async fn claim(&self, key: &str, ttl: Duration) -> Result<Claim> {
        let token = ClaimToken::random();
        let outcome: String = scripts::CLAIM
            .key(self.keys.idempotency(key))
            .arg(&token.0)
            .arg(millis(ttl))
            .invoke_async(&mut self.connection())
            .await
            .map_err(backend)?;
        match outcome.as_str() {
            "acquired" => Ok(Claim::Acquired(token)),
            "completed" => Ok(Claim::Completed),
            _ => Ok(Claim::InProgress),
        }
    }

    async fn complete(&self, key: &str, token: &ClaimToken, ttl: Duration) -> Result<()> {
        let done: i64 = scripts::COMPLETE
            .key(self.keys.idempotency(key))
            .arg(&token.0)
            .arg(millis(ttl))
            .invoke_async(&mut self.connection())
            .await
            .map_err(backend)?;
        if done == 1 {
            Ok(())
        } else {
            Err(Error::LeaseLost)
        }
    }

    async fn release(&self, key: &str, token: &ClaimToken) -> Result<()> {
        let done: i64 = scripts::RELEASE
            .key(self.keys.idempotency(key))
            .arg(&token.0)
            .invoke_async(&mut self.connection())
            .await
            .map_err(backend)?;
        if done == 1 {
            Ok(())
        } else {
            Err(Error::LeaseLost)
        }
    }
}
