#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod clock;
pub mod dead_letter;
mod error;
pub mod events;
pub mod idempotency;
pub mod memory;
pub mod queue;
mod rejection;
mod replay;
pub mod verify;

pub use dead_letter::{DeadLetter, DeadLetterFilter, DeadLetterStore};
pub use error::{BoxError, Error, Result};
pub use events::{EventBus, LifecycleEvent, LifecycleState};
pub use idempotency::IdempotencyStore;
pub use queue::{Job, Lease, NewJob, Queue};
pub use rejection::Rejection;
pub use replay::ReplayWindow;
pub use verify::{Verified, Verifier};
