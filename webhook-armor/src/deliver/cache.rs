//! A read-through cache in front of a shared endpoint store.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::endpoint::{Endpoint, EndpointStore, EndpointUpdate, NewEndpoint};
use crate::Result;

/// An [`EndpointStore`] that keeps what it read from `inner` for `ttl`.
///
/// Every delivery reads its endpoint (URL, secrets, active); with a store in
/// Redis or PostgreSQL that is a round trip per delivery, for data that
/// changes rarely. Through this cache, changes made by this process (through
/// the cache) are seen at once; changes made by other processes are seen
/// within `ttl`. So for up to `ttl` after another process deactivates an
/// endpoint or changes its URL, this one may still deliver to the old one;
/// choose `ttl` with that in mind (a rotated secret is no concern: the old
/// one keeps signing through its grace period). Not worth it in front of the
/// memory store, which is in-process already.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use webhook_armor::deliver::{CachedEndpointStore, EndpointStore, NewEndpoint};
/// use webhook_armor::memory::MemoryEndpointStore;
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// // In practice `inner` is a Redis or PostgreSQL backend shared by processes.
/// let inner = MemoryEndpointStore::default();
/// let endpoints = Arc::new(CachedEndpointStore::new(inner, Duration::from_secs(1)));
/// let endpoint = endpoints.create(NewEndpoint::new("crm", "https://crm.example.com/hooks")).await?;
/// assert_eq!(endpoints.get(&endpoint.id).await?.unwrap().name, "crm"); // read once...
/// assert_eq!(endpoints.get(&endpoint.id).await?.unwrap().name, "crm"); // ...then from memory
/// # Ok::<_, webhook_armor::Error>(()) }).unwrap();
/// ```
#[derive(Debug)]
pub struct CachedEndpointStore<S> {
    inner: S,
    ttl: Duration,
    /// Id -> when read, and what was read (`None`: no such endpoint).
    entries: Mutex<HashMap<String, (Instant, Option<Endpoint>)>>,
    listing: Mutex<Option<(Instant, Vec<Endpoint>)>>,
}

impl<S: EndpointStore> CachedEndpointStore<S> {
    /// Caches reads from `inner` for `ttl`.
    pub fn new(inner: S, ttl: Duration) -> Self {
        Self {
            inner,
            ttl,
            entries: Mutex::default(),
            listing: Mutex::default(),
        }
    }

    /// The store behind the cache.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Forgets everything read so far.
    pub fn clear(&self) {
        self.entries.lock().expect("poisoned").clear();
        *self.listing.lock().expect("poisoned") = None;
    }

    fn fresh(&self, read_at: Instant) -> bool {
        read_at.elapsed() < self.ttl
    }

    /// After a change through this cache: its outcome is known at once
    /// (`None`: deleted). The listing is read anew.
    fn remember(&self, id: &str, now: Option<&Endpoint>) {
        self.entries
            .lock()
            .expect("poisoned")
            .insert(id.to_owned(), (Instant::now(), now.cloned()));
        *self.listing.lock().expect("poisoned") = None;
    }

    /// After a change that failed (not found, a backend error): read anew.
    fn forget(&self, id: &str) {
        self.entries.lock().expect("poisoned").remove(id);
        *self.listing.lock().expect("poisoned") = None;
    }

    fn settle(&self, id: &str, changed: &Result<Endpoint>) {
        match changed {
            Ok(endpoint) => self.remember(id, Some(endpoint)),
            Err(_) => self.forget(id),
        }
    }
}

#[async_trait]
impl<S: EndpointStore> EndpointStore for CachedEndpointStore<S> {
    async fn create(&self, endpoint: NewEndpoint) -> Result<Endpoint> {
        let created = self.inner.create(endpoint).await?;
        self.remember(&created.id, Some(&created));
        Ok(created)
    }

    async fn get(&self, id: &str) -> Result<Option<Endpoint>> {
        if let Some((read_at, endpoint)) = self.entries.lock().expect("poisoned").get(id)
            && self.fresh(*read_at)
        {
            return Ok(endpoint.clone());
        }
        let read_at = Instant::now();
        let endpoint = self.inner.get(id).await?;
        self.entries
            .lock()
            .expect("poisoned")
            .insert(id.to_owned(), (read_at, endpoint.clone()));
        Ok(endpoint)
    }

    async fn list(&self) -> Result<Vec<Endpoint>> {
        if let Some((read_at, endpoints)) = &*self.listing.lock().expect("poisoned")
            && self.fresh(*read_at)
        {
            return Ok(endpoints.clone());
        }
        let read_at = Instant::now();
        let endpoints = self.inner.list().await?;
        *self.listing.lock().expect("poisoned") = Some((read_at, endpoints.clone()));
        Ok(endpoints)
    }

    async fn update(&self, id: &str, update: EndpointUpdate) -> Result<Endpoint> {
        let updated = self.inner.update(id, update).await;
        self.settle(id, &updated);
        updated
    }

    async fn rotate_secret(
        &self,
        id: &str,
        new_secret: Option<String>,
        grace: Duration,
    ) -> Result<Endpoint> {
        let rotated = self.inner.rotate_secret(id, new_secret, grace).await;
        self.settle(id, &rotated);
        rotated
    }

    async fn delete(&self, id: &str) -> Result<()> {
        let deleted = self.inner.delete(id).await;
        match deleted {
            Ok(()) => self.remember(id, None),
            Err(_) => self.forget(id),
        }
        deleted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryEndpointStore;

    /// Changes made behind the cache's back (another process) show after
    /// the ttl; changes through it show at once.
    #[tokio::test(start_paused = true)]
    async fn others_changes_show_within_the_ttl_and_ours_at_once() {
        let cache =
            CachedEndpointStore::new(MemoryEndpointStore::default(), Duration::from_secs(1));
        let endpoint = cache
            .create(NewEndpoint::new("crm", "https://crm.example/hooks"))
            .await
            .unwrap();
        assert_eq!(cache.list().await.unwrap().len(), 1);

        // Another process deactivates it.
        cache
            .inner()
            .update(&endpoint.id, EndpointUpdate::active(false))
            .await
            .unwrap();
        assert!(cache.get(&endpoint.id).await.unwrap().unwrap().active);
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(!cache.get(&endpoint.id).await.unwrap().unwrap().active);
        assert!(!cache.list().await.unwrap()[0].active);

        // This process reactivates it: seen at once, also in the listing.
        cache
            .update(&endpoint.id, EndpointUpdate::active(true))
            .await
            .unwrap();
        assert!(cache.get(&endpoint.id).await.unwrap().unwrap().active);
        assert!(cache.list().await.unwrap()[0].active);

        cache.delete(&endpoint.id).await.unwrap();
        assert_eq!(cache.get(&endpoint.id).await.unwrap(), None);
        assert!(
            cache
                .update(&endpoint.id, EndpointUpdate::active(true))
                .await
                .is_err()
        );
        assert_eq!(cache.get(&endpoint.id).await.unwrap(), None);
    }
}
