//! Outbound delivery stores in PostgreSQL (feature `deliver`): endpoints,
//! circuit breakers every worker shares, and the delivery attempt log.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row;
use webhook_armor::deliver::{
    AttemptLog, BreakerConfig, Circuit, CircuitBreaker, CircuitState, DeliveryAttempt, Endpoint,
    EndpointStore, EndpointUpdate, NewEndpoint, Permit, rotate,
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
        step: impl FnOnce(&mut Circuit, i64) -> T,
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
            sqlx::query_scalar("SELECT endpoint FROM endpoints ORDER BY created_at, id")
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
#[derive(Debug, Clone)]
pub struct PostgresCircuitBreaker {
    backend: PostgresBackend,
    config: BreakerConfig,
}

impl PostgresBackend {
    /// Circuit breakers with `config`, stored in this pipeline's schema.
    pub fn circuit_breaker(&self, config: BreakerConfig) -> PostgresCircuitBreaker {
        PostgresCircuitBreaker {
            backend: self.clone(),
            config,
        }
    }
}

#[async_trait]
impl CircuitBreaker for PostgresCircuitBreaker {
    async fn acquire(&self, endpoint: &str) -> Result<Permit> {
        let config = self.config;
        self.backend
            .with_circuit(endpoint, |circuit, now| circuit.acquire(now, &config))
            .await
    }

    async fn record(&self, endpoint: &str, success: bool) -> Result<()> {
        let config = self.config;
        self.backend
            .with_circuit(endpoint, |circuit, now| {
                circuit.record(now, success, &config)
            })
            .await
    }

    async fn state(&self, endpoint: &str) -> Result<CircuitState> {
        self.backend
            .with_circuit(endpoint, |circuit, now| circuit.state(now))
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

const ATTEMPT_COLUMNS: &str =
    "message_id, endpoint_id, attempt, at_ms, status, latency_ms, outcome, error, response_snippet";

#[async_trait]
impl AttemptLog for PostgresBackend {
    async fn record(&self, attempt: DeliveryAttempt) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO delivery_attempts ({ATTEMPT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(&attempt.message_id)
        .bind(&attempt.endpoint_id)
        .bind(i32::try_from(attempt.attempt).unwrap_or(i32::MAX))
        .bind(attempt.at_ms)
        .bind(attempt.status.map(i32::from))
        .bind(i64::try_from(attempt.latency_ms).unwrap_or(i64::MAX))
        .bind(&attempt.outcome)
        .bind(&attempt.error)
        // NUL cannot be stored in text; a receiver's answer may contain one.
        .bind(attempt.response_snippet.replace('\0', "\u{FFFD}"))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
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
