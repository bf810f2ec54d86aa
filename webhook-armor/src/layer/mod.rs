//! The Tower layer that armors a webhook route.
//!
//! Each request passes, in order: the body limit (413 past it, reading no
//! more than the limit), the [`Verifier`](crate::Verifier), the
//! [`ReplayWindow`](crate::ReplayWindow), and an idempotency claim on the event
//! id; then the inner service runs with the [`Verified`](crate::Verified) facts
//! in the request's extensions and the body as
//! [`Full<Bytes>`](http_body_util::Full).
//!
//! The claim is completed when the inner service answers 2xx and released
//! otherwise (an error, a non-2xx answer, or the request being dropped), so a
//! sender's retry is never mistaken for a duplicate of something not kept.
//!
//! Put it in front of your own handler (guard mode) or in front of
//! [`Enqueue`](crate::Enqueue) (queue mode: store, answer 202, process later).

mod future;
#[allow(clippy::module_inception)]
mod layer;
mod policy;
mod service;

pub use future::ResponseFuture;
pub use layer::WebhookArmorLayer;
pub use policy::{Refusal, RejectionPolicy};
pub use service::WebhookArmor;
