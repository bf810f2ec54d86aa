//! In-memory stores of outbound delivery: endpoints, circuits, attempts.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::deliver::{
    AttemptLog, BreakerConfig, Circuit, CircuitBreaker, CircuitState, DeliveryAttempt, Endpoint,
    EndpointStore, EndpointUpdate, NewEndpoint, Permit, rotate,
};
use crate::{Error, Result};

/// An [`EndpointStore`] in a map.
#[derive(Debug, Clone, Default)]
pub struct MemoryEndpointStore {
    endpoints: Arc<Mutex<Vec<Endpoint>>>,
}

impl MemoryEndpointStore {
    fn change(&self, id: &str, change: impl FnOnce(&mut Endpoint)) -> Result<Endpoint> {
        let mut endpoints = self.endpoints.lock().expect("poisoned");
        let endpoint = endpoints
            .iter_mut()
            .find(|e| e.id == id)
            .ok_or_else(|| Error::NotFound(format!("endpoint {id}")))?;
        change(endpoint);
        Ok(endpoint.clone())
    }
}

#[async_trait]
impl EndpointStore for MemoryEndpointStore {
    async fn create(&self, endpoint: NewEndpoint) -> Result<Endpoint> {
        let endpoint = endpoint.into_endpoint();
        self.endpoints
            .lock()
            .expect("poisoned")
            .push(endpoint.clone());
        Ok(endpoint)
    }

    async fn get(&self, id: &str) -> Result<Option<Endpoint>> {
        Ok(self
            .endpoints
            .lock()
            .expect("poisoned")
            .iter()
            .find(|e| e.id == id)
            .cloned())
    }

    async fn list(&self) -> Result<Vec<Endpoint>> {
        Ok(self.endpoints.lock().expect("poisoned").clone())
    }

    async fn update(&self, id: &str, update: EndpointUpdate) -> Result<Endpoint> {
        self.change(id, |endpoint| update.apply(endpoint))
    }

    async fn rotate_secret(
        &self,
        id: &str,
        new: Option<String>,
        grace: Duration,
    ) -> Result<Endpoint> {
        self.change(id, |endpoint| rotate(endpoint, new, grace))
    }

    async fn delete(&self, id: &str) -> Result<()> {
        let mut endpoints = self.endpoints.lock().expect("poisoned");
        let before = endpoints.len();
        endpoints.retain(|e| e.id != id);
        if endpoints.len() == before {
            return Err(Error::NotFound(format!("endpoint {id}")));
        }
        Ok(())
    }
}

/// A [`CircuitBreaker`] for one process (workers of other processes keep
/// their own circuits; use a shared backend for agreement across processes).
#[derive(Debug, Clone)]
pub struct MemoryCircuitBreaker {
    config: BreakerConfig,
    circuits: Arc<Mutex<HashMap<String, Circuit>>>,
    /// Circuits run on milliseconds since this instant (tokio's clock, so
    /// tests can pause it).
    epoch: Instant,
}

impl MemoryCircuitBreaker {
    /// Breakers with `config`.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            circuits: Arc::default(),
            epoch: Instant::now(),
        }
    }

    fn now(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(i64::MAX)
    }
}

#[async_trait]
impl CircuitBreaker for MemoryCircuitBreaker {
    async fn acquire(&self, endpoint: &str) -> Result<Permit> {
        let mut circuits = self.circuits.lock().expect("poisoned");
        Ok(circuits
            .entry(endpoint.to_owned())
            .or_default()
            .acquire(self.now(), &self.config))
    }

    async fn record(&self, endpoint: &str, success: bool) -> Result<()> {
        let mut circuits = self.circuits.lock().expect("poisoned");
        circuits
            .entry(endpoint.to_owned())
            .or_default()
            .record(self.now(), success, &self.config);
        Ok(())
    }

    async fn state(&self, endpoint: &str) -> Result<CircuitState> {
        let circuits = self.circuits.lock().expect("poisoned");
        Ok(circuits
            .get(endpoint)
            .map_or(CircuitState::Closed, |c| c.state(self.now())))
    }
}

/// An [`AttemptLog`] keeping the newest `capacity` attempts.
#[derive(Debug, Clone)]
pub struct MemoryAttemptLog {
    capacity: usize,
    attempts: Arc<Mutex<VecDeque<DeliveryAttempt>>>,
}

impl MemoryAttemptLog {
    /// A log forgetting the oldest attempts past `capacity`.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            attempts: Arc::default(),
        }
    }
}

#[async_trait]
impl AttemptLog for MemoryAttemptLog {
    async fn record(&self, attempt: DeliveryAttempt) -> Result<()> {
        let mut attempts = self.attempts.lock().expect("poisoned");
        if attempts.len() == self.capacity {
            attempts.pop_front();
        }
        attempts.push_back(attempt);
        Ok(())
    }

    async fn for_message(&self, message_id: &str) -> Result<Vec<DeliveryAttempt>> {
        let attempts = self.attempts.lock().expect("poisoned");
        Ok(attempts
            .iter()
            .filter(|a| a.message_id == message_id)
            .cloned()
            .collect())
    }

    async fn for_endpoint(&self, endpoint_id: &str, limit: usize) -> Result<Vec<DeliveryAttempt>> {
        let attempts = self.attempts.lock().expect("poisoned");
        let mut newest: Vec<DeliveryAttempt> = attempts
            .iter()
            .rev()
            .filter(|a| a.endpoint_id == endpoint_id)
            .take(limit)
            .cloned()
            .collect();
        newest.reverse();
        Ok(newest)
    }
}
