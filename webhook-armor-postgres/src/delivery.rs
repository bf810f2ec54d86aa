//! Outbound delivery stores in PostgreSQL (feature `deliver`): endpoints,
//! circuit breakers every worker shares, and the delivery attempt log.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use webhook_armor::deliver::{
    AttemptLog, BreakerConfig, Circuit, CircuitStep, CircuitStore, DeliveryAttempt, Endpoint,
    EndpointStore, EndpointUpdate, NewEndpoint, SharedCircuitBreaker, StepAnswer, rotate,
};
use webhook_armor::{Error, Result};

use crate::{PostgresBackend, backend};

fn decode<T: serde::de::DeserializeOwned>(value: serde_json::Value, what: &str) -> Result<T> {
    serde_json::from_value(value).map_err(|e| Error::Backend(format!("corrupt {what}: {e}").into()))
}

fn encode<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("serialisable")
}

impl PostgresBackend {
    /// The attempt logger, started on first use.
    fn attempt_log(&self) -> &tokio::sync::mpsc::Sender<AttemptRequest> {
        self.attempt_logger
            .get_or_init(|| spawn_attempt_logger(self.pool.clone(), self.config.batches_in_flight))
    }

    async fn change_endpoint(
        &self,
        id: &str,
        change: impl FnOnce(&mut Endpoint),
    ) -> Result<Endpoint> {
        let mut transaction = self.pool.begin().await.map_err(backend)?;
        let stored: Option<serde_json::Value> =
            sqlx::query_scalar("SELECT endpoint FROM endpoints WHERE id = $1 FOR UPDATE")
                .bind(id)
                .fetch_optional(&mut *transaction)
                .await
                .map_err(backend)?;
        let mut endpoint: Endpoint = decode(
            stored.ok_or_else(|| Error::NotFound(format!("endpoint {id}")))?,
            "endpoint",
        )?;
        change(&mut endpoint);
        sqlx::query("UPDATE endpoints SET endpoint = $2 WHERE id = $1")
            .bind(id)
            .bind(encode(&endpoint))
            .execute(&mut *transaction)
            .await
            .map_err(backend)?;
        transaction.commit().await.map_err(backend)?;
        Ok(endpoint)
    }

    /// Runs `step` on the endpoint's circuit at the database's time, with the
    /// row locked, so concurrent workers take turns on the same state.
    async fn with_circuit<T>(
        &self,
        endpoint: &str,
        step: impl Fn(&mut Circuit, i64) -> T,
    ) -> Result<T> {
        // Fast path, the healthy case: read without a lock; if the step
        // changes nothing (a closed circuit allowing, a success on a clean
        // circuit), that is the answer. Every delivery to one endpoint would
        // otherwise queue on the same row lock.
        let row = sqlx::query(
            "SELECT c.circuit, (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now_ms
             FROM (SELECT 1) one LEFT JOIN circuits c ON c.endpoint_id = $1",
        )
        .bind(endpoint)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        let stored: Circuit = match row.get::<Option<serde_json::Value>, _>("circuit") {
            Some(value) => decode(value, "circuit")?,
            None => Circuit::default(),
        };
        let mut circuit = stored.clone();
        let answer = step(&mut circuit, row.get("now_ms"));
        if circuit == stored {
            return Ok(answer);
        }
        self.with_locked_circuit(endpoint, step).await
    }

    /// The slow path: the circuit's row locked while the step runs.
    async fn with_locked_circuit<T>(
        &self,
        endpoint: &str,
        step: impl Fn(&mut Circuit, i64) -> T,
    ) -> Result<T> {
        let mut transaction = self.pool.begin().await.map_err(backend)?;
        sqlx::query(
            "INSERT INTO circuits (endpoint_id, circuit) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(endpoint)
        .bind(encode(&Circuit::default()))
        .execute(&mut *transaction)
        .await
        .map_err(backend)?;
        let row = sqlx::query(
            "SELECT circuit, (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now_ms
             FROM circuits WHERE endpoint_id = $1 FOR UPDATE",
        )
        .bind(endpoint)
        .fetch_one(&mut *transaction)
        .await
        .map_err(backend)?;
        let stored: Circuit = decode(row.get("circuit"), "circuit")?;
        let mut circuit = stored.clone();
        let answer = step(&mut circuit, row.get("now_ms"));
        if circuit != stored {
            sqlx::query("UPDATE circuits SET circuit = $2 WHERE endpoint_id = $1")
                .bind(endpoint)
                .bind(encode(&circuit))
                .execute(&mut *transaction)
                .await
                .map_err(backend)?;
        }
        transaction.commit().await.map_err(backend)?;
        Ok(answer)
    }
}

#[async_trait]
impl EndpointStore for PostgresBackend {
    async fn create(&self, endpoint: NewEndpoint) -> Result<Endpoint> {
        let endpoint = endpoint.into_endpoint();
        sqlx::query("INSERT INTO endpoints (id, endpoint) VALUES ($1, $2)")
            .bind(&endpoint.id)
            .bind(encode(&endpoint))
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(endpoint)
    }

    async fn get(&self, id: &str) -> Result<Option<Endpoint>> {
        let stored: Option<serde_json::Value> =
            sqlx::query_scalar("SELECT endpoint FROM endpoints WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        stored.map(|value| decode(value, "endpoint")).transpose()
    }

    async fn list(&self) -> Result<Vec<Endpoint>> {
        let stored: Vec<serde_json::Value> =
            sqlx::query_scalar("SELECT endpoint FROM endpoints ORDER BY seq")
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
        stored
            .into_iter()
            .map(|value| decode(value, "endpoint"))
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
        let deleted = sqlx::query("DELETE FROM endpoints WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        if deleted.rows_affected() == 1 {
            Ok(())
        } else {
            Err(Error::NotFound(format!("endpoint {id}")))
        }
    }
}

/// Circuit breakers shared by every process on this database.
pub type PostgresCircuitBreaker = SharedCircuitBreaker<PostgresBackend>;

impl PostgresBackend {
    /// Circuit breakers with `config`, stored in this pipeline.
    pub fn circuit_breaker(&self, config: BreakerConfig) -> PostgresCircuitBreaker {
        SharedCircuitBreaker::new(self.clone(), config)
    }
}

#[async_trait]
impl CircuitStore for PostgresBackend {
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

fn attempt_from(row: &sqlx::postgres::PgRow) -> DeliveryAttempt {
    // DeliveryAttempt is non-exhaustive outside the core crate; build it
    // through serde, as a stored record.
    serde_json::from_value(serde_json::json!({
        "message_id": row.get::<String, _>("message_id"),
        "endpoint_id": row.get::<String, _>("endpoint_id"),
        "attempt": row.get::<i32, _>("attempt"),
        "at_ms": row.get::<i64, _>("at_ms"),
        "status": row.get::<Option<i32>, _>("status"),
        "latency_ms": row.get::<i64, _>("latency_ms"),
        "outcome": row.get::<String, _>("outcome"),
        "error": row.get::<Option<String>, _>("error"),
        "response_snippet": row.get::<String, _>("response_snippet"),
    }))
    .expect("columns match the struct")
}

/// One attempt waiting for its batch, and who to tell when it is stored.
pub(crate) type AttemptRequest = (DeliveryAttempt, tokio::sync::oneshot::Sender<Result<()>>);

/// Group commit for the attempt log: one INSERT per batch of concurrent attempts.
pub(crate) fn spawn_attempt_logger(
    pool: sqlx::PgPool,
    in_flight: usize,
) -> tokio::sync::mpsc::Sender<AttemptRequest> {
    webhook_armor::batch::spawn_batcher(in_flight, move |batch: Vec<AttemptRequest>| {
        let pool = pool.clone();
        async move {
            let messages: Vec<&str> = batch.iter().map(|(a, _)| a.message_id.as_str()).collect();
            let endpoints: Vec<&str> = batch.iter().map(|(a, _)| a.endpoint_id.as_str()).collect();
            let numbers: Vec<i32> = batch
                .iter()
                .map(|(a, _)| i32::try_from(a.attempt).unwrap_or(i32::MAX))
                .collect();
            let at: Vec<i64> = batch.iter().map(|(a, _)| a.at_ms).collect();
            let statuses: Vec<Option<i32>> =
                batch.iter().map(|(a, _)| a.status.map(i32::from)).collect();
            let latencies: Vec<i64> = batch
                .iter()
                .map(|(a, _)| i64::try_from(a.latency_ms).unwrap_or(i64::MAX))
                .collect();
            let outcomes: Vec<&str> = batch.iter().map(|(a, _)| a.outcome.as_str()).collect();
            let errors: Vec<Option<&str>> = batch.iter().map(|(a, _)| a.error.as_deref()).collect();
            // NUL cannot be stored in text; a receiver's answer may contain one.
            let snippets: Vec<String> = batch
                .iter()
                .map(|(a, _)| a.response_snippet.replace('\0', "\u{FFFD}"))
                .collect();
            let stored = sqlx::query(&format!(
                "INSERT INTO delivery_attempts ({ATTEMPT_COLUMNS})
                 SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[], $5::int[], $6::bigint[],
                                      $7::text[], $8::text[], $9::text[])"
            ))
            .bind(&messages)
            .bind(&endpoints)
            .bind(&numbers)
            .bind(&at)
            .bind(&statuses)
            .bind(&latencies)
            .bind(&outcomes)
            .bind(&errors)
            .bind(&snippets)
            .execute(&pool)
            .await;
            for (_, reply) in batch {
                let _ = reply.send(match &stored {
                    Ok(_) => Ok(()),
                    Err(error) => Err(Error::Backend(
                        format!("attempt log insert failed: {error}").into(),
                    )),
                });
            }
        }
    })
}

const ATTEMPT_COLUMNS: &str =
    "message_id, endpoint_id, attempt, at_ms, status, latency_ms, outcome, error, response_snippet";

#[async_trait]
impl AttemptLog for PostgresBackend {
    async fn record(&self, attempt: DeliveryAttempt) -> Result<()> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let gone = || Error::Backend("attempt log task stopped".into());
        self.attempt_log()
            .send((attempt, reply))
            .await
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    async fn for_message(&self, message_id: &str) -> Result<Vec<DeliveryAttempt>> {
        let rows = sqlx::query(&format!(
            "SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts WHERE message_id = $1 ORDER BY seq"
        ))
        .bind(message_id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows.iter().map(attempt_from).collect())
    }

    async fn for_endpoint(&self, endpoint_id: &str, limit: usize) -> Result<Vec<DeliveryAttempt>> {
        let rows = sqlx::query(&format!(
            "SELECT * FROM (SELECT {ATTEMPT_COLUMNS}, seq FROM delivery_attempts WHERE endpoint_id = $1
             ORDER BY seq DESC LIMIT $2) newest ORDER BY seq"
        ))
        .bind(endpoint_id)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(rows.iter().map(attempt_from).collect())
    }
}
