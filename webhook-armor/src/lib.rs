#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod batch;
pub mod clock;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod dead_letter;
#[cfg(feature = "deliver")]
pub mod deliver;
mod enqueue;
mod error;
pub mod events;
mod handler;
pub mod idempotency;
pub mod layer;
pub mod memory;
pub mod queue;
mod rejection;
mod replay;
mod retry;
pub mod verify;
mod worker;

pub use dead_letter::{DeadLetter, DeadLetterFilter, DeadLetterStore};
pub use enqueue::{Enqueue, METADATA_HEADER_PREFIX, METADATA_SCHEME, METADATA_SOURCE, job_for};
pub use error::{BoxError, Error, Result};
pub use events::{EventBus, LifecycleEvent, LifecycleState};
pub use handler::HandlerError;
pub use idempotency::IdempotencyStore;
pub use layer::WebhookArmorLayer;
pub use queue::{Job, Lease, NewJob, Queue};
pub use rejection::Rejection;
pub use replay::ReplayWindow;
pub use retry::RetryPolicy;
pub use verify::{Verified, Verifier};
pub use worker::Worker;
