//! `GET /metrics`: Prometheus text exposition of what the simulator saw.

use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::Simulator;

pub(crate) async fn metrics(State(simulator): State<Simulator>) -> impl IntoResponse {
    let snapshot = simulator.log().metrics();
    let queue = simulator.queue_stats().await;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# HELP webhook_armor_events_total Lifecycle events by state."
    );
    let _ = writeln!(text, "# TYPE webhook_armor_events_total counter");
    for (state, count) in &snapshot.states {
        let _ = writeln!(
            text,
            "webhook_armor_events_total{{state=\"{state}\"}} {count}"
        );
    }
    let _ = writeln!(
        text,
        "# HELP webhook_armor_rejected_total Requests rejected at the door, by reason."
    );
    let _ = writeln!(text, "# TYPE webhook_armor_rejected_total counter");
    for (reason, count) in &snapshot.rejected {
        let _ = writeln!(
            text,
            "webhook_armor_rejected_total{{reason=\"{reason}\"}} {count}"
        );
    }
    let _ = writeln!(
        text,
        "# HELP webhook_armor_queue_jobs Jobs in the queue by state."
    );
    let _ = writeln!(text, "# TYPE webhook_armor_queue_jobs gauge");
    for (state, count) in [
        ("ready", queue.ready),
        ("scheduled", queue.scheduled),
        ("leased", queue.leased),
        ("dead_lettered", queue.dead_lettered),
    ] {
        let _ = writeln!(
            text,
            "webhook_armor_queue_jobs{{state=\"{state}\"}} {count}"
        );
    }
    let _ = writeln!(
        text,
        "# HELP webhook_armor_queue_depth Jobs waiting or running."
    );
    let _ = writeln!(text, "# TYPE webhook_armor_queue_depth gauge");
    let _ = writeln!(text, "webhook_armor_queue_depth {}", queue.depth());
    let _ = writeln!(
        text,
        "# HELP webhook_armor_processing_seconds From QUEUED to COMPLETED."
    );
    let _ = writeln!(text, "# TYPE webhook_armor_processing_seconds histogram");
    let mut cumulative = 0;
    for (bound, count) in crate::log::LATENCY_BUCKETS
        .iter()
        .zip(&snapshot.latency_buckets)
    {
        cumulative += count;
        let _ = writeln!(
            text,
            "webhook_armor_processing_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        text,
        "webhook_armor_processing_seconds_bucket{{le=\"+Inf\"}} {}",
        snapshot.latency_count
    );
    let _ = writeln!(
        text,
        "webhook_armor_processing_seconds_sum {}",
        snapshot.latency_sum_seconds
    );
    let _ = writeln!(
        text,
        "webhook_armor_processing_seconds_count {}",
        snapshot.latency_count
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
