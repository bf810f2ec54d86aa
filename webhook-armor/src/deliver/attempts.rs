//! The attempt log of outbound deliveries, and what it says per endpoint.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::breaker::CircuitState;
use crate::Result;

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DeliveryAttempt {
    /// The outbound message.
    pub message_id: String,
    /// The endpoint it went to.
    pub endpoint_id: String,
    /// Attempt number, 1 first.
    pub attempt: u32,
    /// When it ended, Unix ms.
    pub at_ms: i64,
    /// The receiver's status, if it answered.
    pub status: Option<u16>,
    /// From send to outcome, ms.
    pub latency_ms: u64,
    /// `delivered`, `retrying`, `dead_lettered`, `gone`, `deferred`.
    pub outcome: String,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// The start of the receiver's answer.
    pub response_snippet: String,
}

impl DeliveryAttempt {
    /// An attempt of `message_id` to `endpoint_id` that ended at `at_ms`
    /// with `outcome`; no status, no error, no snippet, 0 ms latency. The
    /// fields are public: set the rest on the value. For a backend's own
    /// tests, and for anything that logs attempts made elsewhere.
    ///
    /// ```
    /// use webhook_armor::deliver::DeliveryAttempt;
    ///
    /// let mut attempt = DeliveryAttempt::new("msg_1", "ep_1", 1, 1_700_000_000_000, "delivered");
    /// attempt.status = Some(200);
    /// assert_eq!(attempt.error, None);
    /// ```
    pub fn new(
        message_id: impl Into<String>,
        endpoint_id: impl Into<String>,
        attempt: u32,
        at_ms: i64,
        outcome: impl Into<String>,
    ) -> Self {
        Self {
            message_id: message_id.into(),
            endpoint_id: endpoint_id.into(),
            attempt,
            at_ms,
            status: None,
            latency_ms: 0,
            outcome: outcome.into(),
            error: None,
            response_snippet: String::new(),
        }
    }
}

/// Figures of one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EndpointStats {
    /// Attempts logged.
    pub attempts: u64,
    /// Of which delivered.
    pub delivered: u64,
    /// delivered / attempts (0 without attempts).
    pub success_rate: f64,
    /// Median latency, ms.
    pub latency_p50_ms: u64,
    /// 99th percentile latency, ms.
    pub latency_p99_ms: u64,
    /// The circuit, as the breaker sees it.
    pub circuit: CircuitState,
}

impl EndpointStats {
    /// Figures over `attempts` with the circuit in `circuit`.
    pub fn from_attempts<'a>(
        attempts: impl IntoIterator<Item = &'a DeliveryAttempt>,
        circuit: CircuitState,
    ) -> Self {
        let mut latencies = Vec::new();
        let mut delivered = 0;
        for attempt in attempts {
            latencies.push(attempt.latency_ms);
            if attempt.outcome == "delivered" {
                delivered += 1;
            }
        }
        latencies.sort_unstable();
        let percentile = |p: f64| -> u64 {
            if latencies.is_empty() {
                return 0;
            }
            let rank = ((p * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
            latencies[rank - 1]
        };
        let attempts = latencies.len() as u64;
        Self {
            attempts,
            delivered,
            success_rate: if attempts == 0 {
                0.0
            } else {
                delivered as f64 / attempts as f64
            },
            latency_p50_ms: percentile(0.50),
            latency_p99_ms: percentile(0.99),
            circuit,
        }
    }
}

/// Where delivery attempts are recorded.
///
/// ```
/// use webhook_armor::deliver::{AttemptLog, DeliveryAttempt};
/// use webhook_armor::memory::MemoryAttemptLog;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let log = MemoryAttemptLog::new(10_000);
/// assert!(log.for_message("msg_1").await?.is_empty());
/// # Ok::<_, webhook_armor::Error>(()) }).unwrap();
/// ```
#[async_trait]
pub trait AttemptLog: Send + Sync + std::fmt::Debug + 'static {
    /// Records one attempt.
    async fn record(&self, attempt: DeliveryAttempt) -> Result<()>;
    /// Every attempt of a message, oldest first.
    async fn for_message(&self, message_id: &str) -> Result<Vec<DeliveryAttempt>>;
    /// The newest `limit` attempts to an endpoint, oldest first.
    async fn for_endpoint(&self, endpoint_id: &str, limit: usize) -> Result<Vec<DeliveryAttempt>>;
}
