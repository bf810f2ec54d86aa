//! Outbound delivery stores in Redis (feature `deliver`): endpoints, circuit
//! breakers every worker shares, and the attempt log.

use std::time::Duration;

use async_trait::async_trait;
use webhook_armor::deliver::{
    AttemptLog, BreakerConfig, Circuit, CircuitStep, CircuitStore, DeliveryAttempt, Endpoint,
    EndpointStore, EndpointUpdate, NewEndpoint, SharedCircuitBreaker, StepAnswer, rotate,
};
use webhook_armor::{Error, Result};

use crate::{Keys, RedisBackend, backend};

/// Attempts kept per endpoint (the newest).
const ATTEMPTS_PER_ENDPOINT: isize = 10_000;
/// Optimistic circuit updates retried this often before giving up.
const CAS_ATTEMPTS: usize = 20;

/// Register an endpoint once, remembering registration order.
/// KEYS: endpoints hash, order zset, sequence. ARGV: id, json.
static CREATE_ENDPOINT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[3]), ARGV[1])
return 1",
    )
});

/// Delete an endpoint and its place in the order. KEYS: endpoints hash, order zset. ARGV: id.
static DELETE_ENDPOINT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])",
    )
});

/// Write the endpoint only if it still exists (a concurrent delete wins).
static REPLACE_IF_EXISTS: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1",
    )
});

/// The circuit's stored JSON (or false) and the server time in ms.
static READ_CIRCUIT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
return {redis.call('GET', KEYS[1]) or '', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)}",
    )
});

/// Compare-and-set of the circuit's JSON ('' meaning absent).
static SWAP_CIRCUIT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1",
    )
});

impl RedisBackend {
    fn endpoints_key(&self) -> String {
        format!("{}:endpoints", self.keys.tag)
    }

    fn endpoint_order_key(&self) -> String {
        format!("{}:endpoint-order", self.keys.tag)
    }

    fn endpoint_sequence_key(&self) -> String {
        format!("{}:endpoint-seq", self.keys.tag)
    }

    fn circuit_key(&self, endpoint: &str) -> String {
        format!("{}:circuit:{endpoint}", self.keys.tag)
    }

    async fn change_endpoint(
        &self,
        id: &str,
        change: impl FnOnce(&mut Endpoint),
    ) -> Result<Endpoint> {
        let mut endpoint = self
            .get(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("endpoint {id}")))?;
        change(&mut endpoint);
        let written: i64 = REPLACE_IF_EXISTS
            .key(self.endpoints_key())
            .arg(id)
            .arg(serde_json::to_string(&endpoint).expect("endpoints serialise"))
            .invoke_async(&mut self.connection())
            .await
            .map_err(backend)?;
        if written == 1 {
            Ok(endpoint)
        } else {
            Err(Error::NotFound(format!("endpoint {id}")))
        }
    }

    /// Runs `step` on the endpoint's circuit at the server's time, retrying
    /// if another worker changed the circuit meanwhile.
    async fn with_circuit<T>(
        &self,
        endpoint: &str,
        mut step: impl FnMut(&mut Circuit, i64) -> T,
    ) -> Result<T> {
        let key = self.circuit_key(endpoint);
        for _ in 0..CAS_ATTEMPTS {
            let (stored, now): (String, i64) = READ_CIRCUIT
                .key(&key)
                .invoke_async(&mut self.connection())
                .await
                .map_err(backend)?;
            let mut circuit: Circuit = if stored.is_empty() {
                Circuit::default()
            } else {
                serde_json::from_str(&stored)
                    .map_err(|e| Error::Backend(format!("corrupt circuit: {e}").into()))?
            };
            let answer = step(&mut circuit, now);
            let updated = serde_json::to_string(&circuit).expect("circuits serialise");
            if updated == stored || (stored.is_empty() && circuit == Circuit::default()) {
                return Ok(answer);
            }
            let swapped: i64 = SWAP_CIRCUIT
                .key(&key)
                .arg(&stored)
                .arg(&updated)
                .invoke_async(&mut self.connection())
                .await
                .map_err(backend)?;
            if swapped == 1 {
                return Ok(answer);
            }
        }
        Err(Error::Backend("circuit too contended to update".into()))
    }
}

#[async_trait]
impl EndpointStore for RedisBackend {
    async fn create(&self, endpoint: NewEndpoint) -> Result<Endpoint> {
        let endpoint = endpoint.into_endpoint();
        let added: i64 = CREATE_ENDPOINT
            .key(self.endpoints_key())
            .key(self.endpoint_order_key())
            .key(self.endpoint_sequence_key())
            .arg(&endpoint.id)
            .arg(serde_json::to_string(&endpoint).expect("endpoints serialise"))
            .invoke_async(&mut self.connection())
            .await
            .map_err(backend)?;
        if added == 1 {
            Ok(endpoint)
        } else {
            Err(Error::AlreadyExists(format!("endpoint {}", endpoint.id)))
        }
    }

    async fn get(&self, id: &str) -> Result<Option<Endpoint>> {
        let stored: Option<String> = redis::cmd("HGET")
            .arg(self.endpoints_key())
            .arg(id)
            .query_async(&mut self.connection())
            .await
            .map_err(backend)?;
        stored
            .map(|json| {
                serde_json::from_str(&json)
                    .map_err(|e| Error::Backend(format!("corrupt endpoint: {e}").into()))
            })
            .transpose()
    }

    async fn list(&self) -> Result<Vec<Endpoint>> {
        let mut connection = self.connection();
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(self.endpoint_order_key())
            .arg(0)
            .arg(-1)
            .query_async(&mut connection)
            .await
            .map_err(backend)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let stored: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.endpoints_key())
            .arg(&ids)
            .query_async(&mut connection)
            .await
            .map_err(backend)?;
        // Registration order; an id whose endpoint vanished meanwhile is skipped.
        stored
            .iter()
            .flatten()
            .map(|json| {
                serde_json::from_str(json)
                    .map_err(|e| Error::Backend(format!("corrupt endpoint: {e}").into()))
            })
            .collect()
    }

    async fn update(&self, id: &str, update: EndpointUpdate) -> Result<Endpoint> {
        self.change_endpoint(id, |endpoint| update.apply(endpoint))
            .await
    }

    async fn rotate_secret(
        &self,
        id: &str,
        new: Option<String>,
        grace: Duration,
    ) -> Result<Endpoint> {
        self.change_endpoint(id, |endpoint| rotate(endpoint, new, grace))
            .await
    }

    async fn delete(&self, id: &str) -> Result<()> {
        let removed: i64 = DELETE_ENDPOINT
            .key(self.endpoints_key())
            .key(self.endpoint_order_key())
            .arg(id)
            .invoke_async(&mut self.connection())
            .await
            .map_err(backend)?;
        if removed == 1 {
            Ok(())
        } else {
            Err(Error::NotFound(format!("endpoint {id}")))
        }
    }
}

/// Circuit breakers shared by every process on this Redis.
pub type RedisCircuitBreaker = SharedCircuitBreaker<RedisBackend>;

impl RedisBackend {
    /// Circuit breakers with `config`, stored in this pipeline.
    pub fn circuit_breaker(&self, config: BreakerConfig) -> RedisCircuitBreaker {
        SharedCircuitBreaker::new(self.clone(), config)
    }
}

#[async_trait]
impl CircuitStore for RedisBackend {
    async fn apply(
        &self,
        endpoint: &str,
        step: CircuitStep,
        config: &BreakerConfig,
    ) -> Result<StepAnswer> {
        self.with_circuit(endpoint, |circuit, now| circuit.apply(step, now, config))
            .await
    }
}

/// One attempt waiting for its batch, and who to tell when it is stored.
pub(crate) type AttemptRequest = (DeliveryAttempt, tokio::sync::oneshot::Sender<Result<()>>);

/// Appends `attempts` to their message's and endpoint's lists in one
/// MULTI/EXEC round trip; used for a batch, and for one attempt when group
/// commit is off.
///
/// A batch's attempts to one endpoint (or of one message) go in one RPUSH,
/// trimmed and given their expiry once: concurrent deliveries mostly share
/// endpoints, and each command costs the server its own parse and dispatch.
async fn append_attempts<'a>(
    connection: &mut redis::aio::ConnectionManager,
    keys: &Keys,
    retention: Duration,
    attempts: impl IntoIterator<Item = &'a DeliveryAttempt>,
) -> redis::RedisResult<()> {
    // At least 1 ms: PEXPIRE 0 would delete the list at once.
    let retention = i64::try_from(retention.as_millis())
        .unwrap_or(i64::MAX)
        .max(1);
    let attempts: Vec<&DeliveryAttempt> = attempts.into_iter().collect();
    let json: Vec<String> = attempts
        .iter()
        .map(|attempt| serde_json::to_string(attempt).expect("attempts serialise"))
        .collect();
    let by_message = grouped(attempts.iter().map(|a| a.message_id.as_str()));
    let by_endpoint = grouped(attempts.iter().map(|a| a.endpoint_id.as_str()));
    let values = |positions: &[usize]| -> Vec<&str> {
        positions.iter().map(|&i| json[i].as_str()).collect()
    };
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (message, positions) in &by_message {
        let key = format!("{}:attempts:msg:{message}", keys.tag);
        pipe.rpush(&key, values(positions))
            .ignore()
            .pexpire(&key, retention)
            .ignore();
    }
    for (endpoint, positions) in &by_endpoint {
        let key = format!("{}:attempts:ep:{endpoint}", keys.tag);
        pipe.rpush(&key, values(positions))
            .ignore()
            .ltrim(&key, -ATTEMPTS_PER_ENDPOINT, -1)
            .ignore()
            .pexpire(&key, retention)
            .ignore();
    }
    pipe.query_async::<()>(connection).await
}

/// The positions of each distinct name, names in order of first appearance
/// and each name's positions in order.
fn grouped<'a>(names: impl Iterator<Item = &'a str>) -> Vec<(&'a str, Vec<usize>)> {
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    let mut index: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (position, name) in names.enumerate() {
        let group = *index.entry(name).or_insert_with(|| {
            groups.push((name, Vec::new()));
            groups.len() - 1
        });
        groups[group].1.push(position);
    }
    groups
}

/// Group commit for the attempt log: concurrent attempts share one round trip.
pub(crate) fn spawn_attempt_logger(
    connection: redis::aio::ConnectionManager,
    keys: Keys,
    retention: Duration,
    in_flight: usize,
) -> tokio::sync::mpsc::Sender<AttemptRequest> {
    webhook_armor::batch::spawn_batcher(in_flight, move |batch: Vec<AttemptRequest>| {
        let (mut connection, keys) = (connection.clone(), keys.clone());
        async move {
            let attempts = batch.iter().map(|(a, _)| a);
            let stored = append_attempts(&mut connection, &keys, retention, attempts).await;
            for (_, reply) in batch {
                let _ = reply.send(match &stored {
                    Ok(()) => Ok(()),
                    Err(error) => Err(Error::Backend(
                        format!("attempt log append failed: {error}").into(),
                    )),
                });
            }
        }
    })
}

#[async_trait]
impl AttemptLog for RedisBackend {
    async fn record(&self, attempt: DeliveryAttempt) -> Result<()> {
        let Some(logger) = &self.attempts else {
            let retention = self.config.attempt_retention;
            return append_attempts(&mut self.connection(), &self.keys, retention, [&attempt])
                .await
                .map_err(backend);
        };
        webhook_armor::batch::submit(logger, |reply| (attempt, reply)).await
    }

    async fn for_message(&self, message_id: &str) -> Result<Vec<DeliveryAttempt>> {
        let key = format!("{}:attempts:msg:{message_id}", self.keys.tag);
        self.attempts_in(&key, 0).await
    }

    async fn for_endpoint(&self, endpoint_id: &str, limit: usize) -> Result<Vec<DeliveryAttempt>> {
        let key = format!("{}:attempts:ep:{endpoint_id}", self.keys.tag);
        self.attempts_in(&key, isize::try_from(limit).unwrap_or(isize::MAX))
            .await
    }
}

impl RedisBackend {
    /// The list's attempts, the newest `newest` of them (0: all).
    async fn attempts_in(&self, key: &str, newest: isize) -> Result<Vec<DeliveryAttempt>> {
        let start = if newest == 0 { 0 } else { -newest };
        let stored: Vec<String> = redis::cmd("LRANGE")
            .arg(key)
            .arg(start)
            .arg(-1)
            .query_async(&mut self.connection())
            .await
            .map_err(backend)?;
        stored
            .iter()
            .map(|json| {
                serde_json::from_str(json)
                    .map_err(|e| Error::Backend(format!("corrupt attempt: {e}").into()))
            })
            .collect()
    }
}
