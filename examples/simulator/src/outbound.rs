//! The outbound side of the API: endpoints and messages.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use webhook_armor::deliver::{
    Dispatcher, EndpointRetryPolicy, EndpointStats, EndpointUpdate, NewEndpoint,
};

use crate::Simulator;
use crate::api::{backend_error, error};

pub(crate) fn routes() -> Router<Simulator> {
    Router::new()
        .route("/api/endpoints", post(create).get(list))
        .route(
            "/api/endpoints/{id}",
            get(fetch).patch(update).delete(remove),
        )
        .route("/api/endpoints/{id}/rotate", post(rotate))
        .route("/api/endpoints/{id}/stats", get(stats))
        .route("/api/messages", post(send))
        .route("/api/messages/{id}", get(message))
}

#[derive(Debug, Deserialize)]
struct CreateEndpoint {
    name: String,
    url: String,
    #[serde(default)]
    event_types: Vec<String>,
    secret: Option<String>,
    retry: Option<EndpointRetryPolicy>,
}

async fn create(State(simulator): State<Simulator>, Json(body): Json<CreateEndpoint>) -> Response {
    if body.name.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "name must not be empty");
    }
    if !(body.url.starts_with("http://") || body.url.starts_with("https://")) {
        return error(
            StatusCode::BAD_REQUEST,
            "url must be an http:// or https:// URL",
        );
    }
    let mut endpoint = NewEndpoint::new(body.name, body.url).event_types(body.event_types);
    if let Some(secret) = body.secret {
        endpoint = endpoint.secret(secret);
    }
    if let Some(retry) = body.retry {
        endpoint = endpoint.retry_policy(retry);
    }
    match simulator.inner.backends.endpoints.create(endpoint).await {
        Ok(endpoint) => (StatusCode::CREATED, Json(endpoint)).into_response(),
        Err(e) => backend_error(&e),
    }
}

async fn list(State(simulator): State<Simulator>) -> Response {
    match simulator.inner.backends.endpoints.list().await {
        Ok(endpoints) => Json(endpoints).into_response(),
        Err(e) => backend_error(&e),
    }
}

async fn fetch(State(simulator): State<Simulator>, Path(id): Path<String>) -> Response {
    match simulator.inner.backends.endpoints.get(&id).await {
        Ok(Some(endpoint)) => Json(endpoint).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no endpoint {id:?}")),
        Err(e) => backend_error(&e),
    }
}

async fn update(
    State(simulator): State<Simulator>,
    Path(id): Path<String>,
    Json(update): Json<EndpointUpdate>,
) -> Response {
    match simulator.inner.backends.endpoints.update(&id, update).await {
        Ok(endpoint) => Json(endpoint).into_response(),
        Err(e) => backend_error(&e),
    }
}

async fn remove(State(simulator): State<Simulator>, Path(id): Path<String>) -> Response {
    match simulator.inner.backends.endpoints.delete(&id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => backend_error(&e),
    }
}

async fn rotate(State(simulator): State<Simulator>, Path(id): Path<String>) -> Response {
    let grace = Duration::from_secs(24 * 60 * 60);
    match simulator
        .inner
        .backends
        .endpoints
        .rotate_secret(&id, None, grace)
        .await
    {
        Ok(endpoint) => Json(endpoint).into_response(),
        Err(e) => backend_error(&e),
    }
}

async fn stats(State(simulator): State<Simulator>, Path(id): Path<String>) -> Response {
    let attempts = match simulator
        .inner
        .backends
        .delivery_attempts
        .for_endpoint(&id, 10_000)
        .await
    {
        Ok(attempts) => attempts,
        Err(e) => return backend_error(&e),
    };
    match simulator.inner.backends.breaker.state(&id).await {
        Ok(circuit) => Json(EndpointStats::from_attempts(&attempts, circuit)).into_response(),
        Err(e) => backend_error(&e),
    }
}

#[derive(Debug, Deserialize)]
struct SendMessage {
    event_type: String,
    payload: serde_json::Value,
    endpoint_id: Option<String>,
    id: Option<String>,
}

async fn send(State(simulator): State<Simulator>, Json(body): Json<SendMessage>) -> Response {
    if body.event_type.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "event_type must not be empty");
    }
    let id = body.id.unwrap_or_else(|| crate::scenarios::unique("msg"));
    let dispatcher = Dispatcher::new(
        simulator.inner.backends.endpoints.clone(),
        simulator.inner.backends.queue.clone(),
    );
    let payload = serde_json::to_vec(&body.payload).expect("JSON values serialise");
    match dispatcher
        .send(
            &id,
            &body.event_type,
            payload.into(),
            body.endpoint_id.as_deref(),
        )
        .await
    {
        Ok(dispatched) => (StatusCode::ACCEPTED, Json(dispatched)).into_response(),
        Err(e) => backend_error(&e),
    }
}

async fn message(State(simulator): State<Simulator>, Path(id): Path<String>) -> Response {
    match simulator
        .inner
        .backends
        .delivery_attempts
        .for_message(&id)
        .await
    {
        Ok(attempts) => Json(json!({ "id": id, "attempts": attempts })).into_response(),
        Err(e) => backend_error(&e),
    }
}
