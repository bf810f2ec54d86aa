//! The REST + WebSocket API and the dashboard.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;
use webhook_armor::dead_letter::{DeadLetterFilter, Replayed};
use webhook_armor::events::LifecycleState;

use crate::Simulator;
use crate::scenarios::SCENARIOS;

/// A JSON error with a message a person can act on.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

pub(crate) fn backend_error(failure: &webhook_armor::Error) -> Response {
    match failure {
        webhook_armor::Error::NotFound(what) => {
            error(StatusCode::NOT_FOUND, format!("{what} not found"))
        }
        webhook_armor::Error::InvalidInput(why) => error(StatusCode::BAD_REQUEST, why.clone()),
        other => error(StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
    }
}

pub(crate) fn routes(simulator: Simulator) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/api/health", get(health))
        .route("/api/openapi.json", get(openapi))
        .route("/api/docs", get(docs))
        .route("/api/stats", get(stats))
        .route("/api/events", get(events))
        .route("/api/events/{id}", get(event))
        .route("/api/dead-letters", get(dead_letters))
        .route("/api/dead-letters/replay", post(replay_all))
        .route("/api/dead-letters/{id}/replay", post(replay_one))
        .route("/api/dead-letters/{id}", axum::routing::delete(discard))
        .route("/api/scenarios", get(|| async { Json(SCENARIOS) }))
        .route("/api/scenarios/{name}", post(scenario))
        .route("/ws", get(websocket))
        .route("/metrics", get(crate::metrics::metrics))
        .merge(crate::outbound::routes())
        .with_state(simulator)
}

async fn dashboard() -> Html<&'static str> {
    Html(include_str!("../assets/dashboard.html"))
}

/// The API described for people and tools (OpenAPI 3.1), kept next to the
/// routes; a test checks that every documented operation is routed.
async fn openapi() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("../assets/openapi.json"),
    )
}

async fn docs() -> Html<&'static str> {
    Html(include_str!("../assets/docs.html"))
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn stats_value(simulator: &Simulator) -> serde_json::Value {
    let queue = simulator.queue_stats().await;
    json!({ "states": simulator.log().counts(), "queue": queue, "queue_depth": queue.depth() })
}

async fn stats(State(simulator): State<Simulator>) -> Json<serde_json::Value> {
    Json(stats_value(&simulator).await)
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    status: Option<String>,
    limit: Option<usize>,
}

fn parse_state(text: &str) -> Option<LifecycleState> {
    serde_json::from_value(json!(text.to_ascii_uppercase())).ok()
}

async fn events(State(simulator): State<Simulator>, Query(query): Query<EventsQuery>) -> Response {
    let state = match query.status.as_deref() {
        None | Some("") => None,
        Some(text) => match parse_state(text) {
            Some(state) => Some(state),
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "unknown status {text:?}; use QUEUED, PROCESSING, COMPLETED, RETRYING, DEAD_LETTERED, FAILED or DUPLICATE"
                    ),
                );
            }
        },
    };
    let limit = query.limit.unwrap_or(100).min(1000);
    Json(simulator.log().webhooks(state, limit)).into_response()
}

async fn event(State(simulator): State<Simulator>, Path(id): Path<String>) -> Response {
    let history = simulator.log().history_of(&id);
    if history.is_empty() {
        return error(StatusCode::NOT_FOUND, format!("no event {id:?} seen"));
    }
    Json(json!({ "id": id, "state": history.last().map(|e| e.state), "history": history }))
        .into_response()
}

async fn dead_letters(State(simulator): State<Simulator>) -> Response {
    match simulator
        .inner
        .backends
        .dead_letters
        .list(&DeadLetterFilter::all(), None, 200)
        .await
    {
        Ok(page) => {
            let letters: Vec<serde_json::Value> = page
                .items
                .iter()
                .map(|l| {
                    json!({
                        "id": l.job.id, "reason": l.reason, "attempts": l.attempts,
                        "dead_lettered_at_ms": l.dead_lettered_at_ms, "state": l.state,
                        "payload": String::from_utf8_lossy(&l.job.payload),
                    })
                })
                .collect();
            Json(letters).into_response()
        }
        Err(e) => backend_error(&e),
    }
}

async fn replay_one(State(simulator): State<Simulator>, Path(id): Path<String>) -> Response {
    match simulator.inner.backends.dead_letters.replay(&id).await {
        Ok(Replayed::Requeued) => Json(json!({ "id": id, "replayed": true })).into_response(),
        Ok(Replayed::AlreadyReplayed) => {
            Json(json!({ "id": id, "replayed": false, "reason": "already replayed" }))
                .into_response()
        }
        Err(e) => backend_error(&e),
    }
}

async fn replay_all(State(simulator): State<Simulator>) -> Response {
    match simulator
        .inner
        .backends
        .dead_letters
        .replay_matching(&DeadLetterFilter::pending())
        .await
    {
        Ok(count) => Json(json!({ "replayed": count })).into_response(),
        Err(e) => backend_error(&e),
    }
}

async fn discard(State(simulator): State<Simulator>, Path(id): Path<String>) -> Response {
    match simulator.inner.backends.dead_letters.discard(&id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => backend_error(&e),
    }
}

#[derive(Debug, Deserialize)]
struct ScenarioQuery {
    count: Option<usize>,
}

async fn scenario(
    State(simulator): State<Simulator>,
    Path(name): Path<String>,
    Query(query): Query<ScenarioQuery>,
) -> Response {
    match simulator
        .run_scenario(&name, query.count.unwrap_or(50))
        .await
    {
        Some(report) => Json(report).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no scenario {name:?}; try one of {SCENARIOS:?}"),
        ),
    }
}

async fn websocket(State(simulator): State<Simulator>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| stream_events(simulator, socket))
}

/// A snapshot first, then every lifecycle event as it happens, with a
/// stats message twice a second.
async fn stream_events(simulator: Simulator, mut socket: WebSocket) {
    let mut events = simulator.inner.backends.bus.subscribe();
    let snapshot = json!({
        "type": "snapshot",
        "stats": stats_value(&simulator).await,
        "recent": simulator.log().recent(200),
    });
    if socket
        .send(Message::Text(snapshot.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    loop {
        let message = tokio::select! {
            event = events.next() => match event {
                Some(event) => json!({ "type": "event", "event": event }),
                None => return,
            },
            _ = ticker.tick() => json!({ "type": "stats", "stats": stats_value(&simulator).await }),
            incoming = socket.recv() => match incoming {
                Some(Ok(_)) => continue,
                _ => return, // closed by the browser
            },
        };
        if socket
            .send(Message::Text(message.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
    }
}
