use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::sharded::ShardedMap;
use crate::idempotency::{Claim, ClaimToken, IdempotencyStore};
use crate::{Error, Result};

/// How many expired keys one call sweeps at most, so no single request pays
/// for a large backlog.
const SWEEP_BATCH: usize = 64;

/// An [`IdempotencyStore`] in a mutex-guarded map.
///
/// Keys expire on their TTL: expired entries are swept a few at a time on
/// each claim, so memory follows the number of keys alive, not the number
/// ever seen.
#[derive(Debug, Clone, Default)]
pub struct MemoryIdempotencyStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: ShardedMap<Entry>,
    /// Expiry times, earliest first; an item is stale when its key's entry
    /// has since moved to another expiry.
    expiries: BinaryHeap<Reverse<(Instant, String)>>,
}

#[derive(Debug)]
struct Entry {
    holder: Option<ClaimToken>,
    expires_at: Instant,
}

impl Inner {
    /// Forgets up to [`SWEEP_BATCH`] expired keys. Stale heap items (the key
    /// moved on to a later expiry) are dropped without counting: each item is
    /// popped once, so their cost is amortised over the pushes.
    fn sweep(&mut self, now: Instant) {
        let mut removed = 0;
        while removed < SWEEP_BATCH {
            match self.expiries.peek() {
                Some(Reverse((at, _))) if *at <= now => {}
                _ => return,
            }
            let Reverse((at, key)) = self.expiries.pop().expect("peeked");
            if self.entries.get(&key).is_some_and(|e| e.expires_at == at) {
                self.entries.remove(&key);
                removed += 1;
            }
        }
    }

    fn set(&mut self, key: &str, holder: Option<ClaimToken>, expires_at: Instant) {
        self.entries
            .insert(key.to_owned(), Entry { holder, expires_at });
        self.expiries.push(Reverse((expires_at, key.to_owned())));
    }

    fn live_entry(&self, key: &str, now: Instant) -> Option<&Entry> {
        self.entries.get(key).filter(|e| e.expires_at > now)
    }
}

impl MemoryIdempotencyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keys currently remembered (live or not yet swept); for tests and metrics.
    pub fn len(&self) -> usize {
        self.inner.lock().expect("poisoned").entries.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[async_trait]
impl IdempotencyStore for MemoryIdempotencyStore {
    async fn claim(&self, key: &str, ttl: Duration) -> Result<Claim> {
        let now = Instant::now();
        let mut inner = self.inner.lock().expect("poisoned");
        inner.sweep(now);
        match inner.live_entry(key, now) {
            Some(Entry {
                holder: Some(_), ..
            }) => Ok(Claim::InProgress),
            Some(Entry { holder: None, .. }) => Ok(Claim::Completed),
            None => {
                let token = ClaimToken::random();
                inner.set(key, Some(token.clone()), now + ttl);
                Ok(Claim::Acquired(token))
            }
        }
    }

    async fn complete(&self, key: &str, token: &ClaimToken, ttl: Duration) -> Result<()> {
        let now = Instant::now();
        let mut inner = self.inner.lock().expect("poisoned");
        match inner.live_entry(key, now) {
            Some(Entry {
                holder: Some(held), ..
            }) if held == token => {
                inner.set(key, None, now + ttl);
                Ok(())
            }
            _ => Err(Error::LeaseLost),
        }
    }

    async fn release(&self, key: &str, token: &ClaimToken) -> Result<()> {
        let now = Instant::now();
        let mut inner = self.inner.lock().expect("poisoned");
        match inner.live_entry(key, now) {
            Some(Entry {
                holder: Some(held), ..
            }) if held == token => {
                inner.entries.remove(key);
                Ok(())
            }
            _ => Err(Error::LeaseLost),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expired_keys_are_swept_so_memory_stays_bounded() {
        let store = MemoryIdempotencyStore::new();
        for i in 0..SWEEP_BATCH {
            let Claim::Acquired(token) = store
                .claim(&format!("k{i}"), Duration::from_secs(5))
                .await
                .unwrap()
            else {
                panic!("fresh key");
            };
            store
                .complete(&format!("k{i}"), &token, Duration::from_secs(10))
                .await
                .unwrap();
        }
        assert_eq!(store.len(), SWEEP_BATCH);
        tokio::time::advance(Duration::from_secs(11)).await;
        // One claim sweeps up to a batch of expired keys.
        store.claim("fresh", Duration::from_secs(5)).await.unwrap();
        assert_eq!(store.len(), 1);
    }
}
