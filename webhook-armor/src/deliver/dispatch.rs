//! Fan-out: one delivery job per subscribed endpoint.

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use super::endpoint::EndpointStore;
use crate::queue::{NewJob, Queue};
use crate::{Error, Result};

/// Metadata key marking a job as an outbound delivery.
pub const METADATA_KIND: &str = "kind";
/// Value of [`METADATA_KIND`] for deliveries.
pub const KIND_DELIVERY: &str = "delivery";
/// Metadata key of the message a delivery belongs to.
pub const METADATA_MESSAGE: &str = "message_id";
/// Metadata key of the endpoint a delivery goes to.
pub const METADATA_ENDPOINT: &str = "endpoint";
/// Metadata key of the event type.
pub const METADATA_EVENT_TYPE: &str = "event_type";

/// One delivery created by a send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Delivery {
    /// The endpoint.
    pub endpoint_id: String,
    /// The delivery's job id (its tracking id).
    pub delivery_id: String,
}

/// What a send created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dispatched {
    /// The message id (also the `webhook-id` receivers see).
    pub message_id: String,
    /// One per subscribed, active endpoint.
    pub deliveries: Vec<Delivery>,
}

/// Turns an event into delivery jobs on a queue.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    endpoints: Arc<dyn EndpointStore>,
    queue: Arc<dyn Queue>,
}

impl Dispatcher {
    /// Fans out over `endpoints` into `queue`.
    pub fn new(endpoints: Arc<dyn EndpointStore>, queue: Arc<dyn Queue>) -> Self {
        Self { endpoints, queue }
    }

    /// Queues `payload` of `event_type` for every active endpoint subscribed
    /// to it, or only for `endpoint_id` when given. `message_id` makes the send
    /// idempotent: sending the same id twice queues each delivery once.
    pub async fn send(
        &self,
        message_id: &str,
        event_type: &str,
        payload: Bytes,
        endpoint_id: Option<&str>,
    ) -> Result<Dispatched> {
        let targets = match endpoint_id {
            Some(id) => {
                let endpoint = self
                    .endpoints
                    .get(id)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("endpoint {id}")))?;
                vec![endpoint]
            }
            None => self.endpoints.list().await?,
        };
        let mut deliveries = Vec::new();
        for endpoint in targets.into_iter().filter(|e| e.subscribes_to(event_type)) {
            let delivery_id = format!("{message_id}:{}", endpoint.id);
            let job = NewJob::new(&delivery_id, payload.clone())
                .with_metadata(METADATA_KIND, KIND_DELIVERY)
                .with_metadata(METADATA_MESSAGE, message_id)
                .with_metadata(METADATA_ENDPOINT, &endpoint.id)
                .with_metadata(METADATA_EVENT_TYPE, event_type);
            self.queue.enqueue(job).await?;
            deliveries.push(Delivery {
                endpoint_id: endpoint.id,
                delivery_id,
            });
        }
        Ok(Dispatched {
            message_id: message_id.to_owned(),
            deliveries,
        })
    }
}
