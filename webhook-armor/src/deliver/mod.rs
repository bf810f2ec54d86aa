//! Outbound delivery (feature `deliver`): signed webhooks to registered
//! endpoints with retries, a circuit breaker, 410 handling, an SSRF guard and
//! an attempt log, on the same queue, worker and dead letters as inbound.
//!
//! ```no_run
//! use std::sync::Arc;
//! use webhook_armor::deliver::{DeliveryClient, DeliveryHandler, Dispatcher, NewEndpoint, EndpointStore, SsrfPolicy, BreakerConfig};
//! use webhook_armor::memory::{MemoryAttemptLog, MemoryCircuitBreaker, MemoryEndpointStore, MemoryQueue};
//! use webhook_armor::Worker;
//!
//! # async fn run() -> Result<(), webhook_armor::Error> {
//! let queue = Arc::new(MemoryQueue::new());
//! let endpoints = Arc::new(MemoryEndpointStore::default());
//! let endpoint = endpoints.create(NewEndpoint::new("crm", "http://crm.example.com/hooks")).await?;
//! println!("give the receiver its secret: {}", endpoint.secrets[0].secret);
//!
//! let dispatcher = Dispatcher::new(endpoints.clone(), queue.clone());
//! dispatcher.send("msg_1", "invoice.paid", r#"{"amount":4200}"#.into(), None).await?;
//!
//! let handler = DeliveryHandler::new(
//!     endpoints,
//!     Arc::new(MemoryCircuitBreaker::new(BreakerConfig::default())),
//!     Arc::new(MemoryAttemptLog::new(100_000)),
//!     DeliveryClient::new(SsrfPolicy::default()),
//! );
//! Worker::new(queue, handler).run(std::future::pending()).await;
//! # Ok(()) }
//! ```

mod attempts;
mod breaker;
mod cache;
mod client;
mod dispatch;
mod endpoint;
mod guard;
mod handler;
mod sign;

pub use attempts::{AttemptLog, DeliveryAttempt, EndpointStats};
pub use breaker::{
    BreakerConfig, Circuit, CircuitBreaker, CircuitState, CircuitStep, CircuitStore, Permit,
    SharedCircuitBreaker, StepAnswer,
};
pub use cache::CachedEndpointStore;
pub use client::{BlockedAddress, DeliveryClient, GuardedConnector, HttpOutcome};
pub use dispatch::{
    Delivery, Dispatched, Dispatcher, KIND_DELIVERY, METADATA_ENDPOINT, METADATA_EVENT_TYPE,
    METADATA_KIND, METADATA_MESSAGE,
};
pub use endpoint::{
    Endpoint, EndpointRetryPolicy, EndpointSecret, EndpointStore, EndpointUpdate, NewEndpoint,
    generate_secret, rotate,
};
pub use guard::SsrfPolicy;
pub use handler::{DeliveryHandler, Verdict, classify};
pub use sign::{Signer, SigningStyle, signature_headers};
