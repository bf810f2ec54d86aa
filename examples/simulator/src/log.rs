//! What the simulator has seen: every lifecycle event, the latest state per
//! webhook and counts per state, bounded in memory.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;
use webhook_armor::events::{LifecycleEvent, LifecycleState};

/// Events kept for the history endpoints.
const HISTORY: usize = 20_000;

/// The event log shared by the API and the WebSocket.
#[derive(Debug, Default)]
pub struct EventLog {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    history: VecDeque<LifecycleEvent>,
    latest: HashMap<String, LifecycleEvent>,
    counts: BTreeMap<&'static str, u64>,
    rejected: BTreeMap<String, u64>,
    /// When each webhook in flight was queued, for the latency histogram.
    queued_at: HashMap<String, i64>,
    latency_buckets: [u64; LATENCY_BUCKETS.len()],
    latency_sum_seconds: f64,
    latency_count: u64,
}

/// Upper bounds (seconds) of the processing latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Webhooks in flight tracked for latency at most; past that the oldest
/// measurements are given up rather than memory.
const MAX_IN_FLIGHT: usize = 100_000;

/// Counters for `/metrics`.
#[derive(Debug, Clone)]
pub struct MetricsSnapshot {
    /// Events per state.
    pub states: BTreeMap<&'static str, u64>,
    /// Rejections per reason.
    pub rejected: BTreeMap<String, u64>,
    /// Per-bucket (not cumulative) counts of QUEUED -> COMPLETED latency.
    pub latency_buckets: Vec<u64>,
    /// Sum of the latencies, seconds.
    pub latency_sum_seconds: f64,
    /// Latencies observed (also those beyond the last bucket).
    pub latency_count: u64,
}

/// Counts per lifecycle state since start.
#[derive(Debug, Clone, Serialize)]
pub struct Counts(pub BTreeMap<&'static str, u64>);

impl Inner {
    fn observe_latency(&mut self, millis: i64) {
        let seconds = millis.max(0) as f64 / 1000.0;
        if let Some(bucket) = LATENCY_BUCKETS.iter().position(|bound| seconds <= *bound) {
            self.latency_buckets[bucket] += 1;
        }
        self.latency_sum_seconds += seconds;
        self.latency_count += 1;
    }
}

impl EventLog {
    /// Records one event.
    pub fn record(&self, event: LifecycleEvent) {
        let mut inner = self.inner.lock().expect("poisoned");
        *inner.counts.entry(event.state.as_str()).or_default() += 1;
        match event.state {
            LifecycleState::Failed => {
                let reason = event.detail.clone().unwrap_or_else(|| "unknown".into());
                *inner.rejected.entry(reason).or_default() += 1;
            }
            LifecycleState::Queued => {
                // With several processes, a worker's COMPLETED can arrive
                // before the api's QUEUED (two connections to the bus).
                let completed_at = inner
                    .latest
                    .get(&event.event_id)
                    .filter(|l| l.state == LifecycleState::Completed)
                    .map(|l| l.at_ms);
                if let Some(completed_at) = completed_at {
                    inner.observe_latency(completed_at - event.at_ms);
                } else {
                    if inner.queued_at.len() >= MAX_IN_FLIGHT {
                        inner.queued_at.clear();
                    }
                    inner
                        .queued_at
                        .entry(event.event_id.clone())
                        .or_insert(event.at_ms);
                }
            }
            LifecycleState::Completed => {
                if let Some(queued) = inner.queued_at.remove(&event.event_id) {
                    inner.observe_latency(event.at_ms - queued);
                }
            }
            LifecycleState::DeadLettered => {
                inner.queued_at.remove(&event.event_id);
            }
            _ => {}
        }
        // QUEUED comes first in a webhook's life, whenever it arrives: with
        // several processes the api's QUEUED can reach the bus after a
        // worker's PROCESSING or COMPLETED (and be stamped later, as the api
        // publishes once the enqueue has returned). It never replaces a
        // later stage; every event stays in the history.
        let replaces = |current: &LifecycleEvent| {
            event.state != LifecycleState::Queued || current.state == LifecycleState::Queued
        };
        if !event.event_id.is_empty() && inner.latest.get(&event.event_id).is_none_or(replaces) {
            inner.latest.insert(event.event_id.clone(), event.clone());
        }
        if inner.history.len() == HISTORY
            && let Some(old) = inner.history.pop_front()
            // Forget the latest state only if this was it.
            && inner.latest.get(&old.event_id).is_some_and(|l| l.at_ms == old.at_ms && l.state == old.state)
        {
            inner.latest.remove(&old.event_id);
        }
        inner.history.push_back(event);
    }

    /// The counters behind `/metrics`.
    pub fn metrics(&self) -> MetricsSnapshot {
        let inner = self.inner.lock().expect("poisoned");
        MetricsSnapshot {
            states: inner.counts.clone(),
            rejected: inner.rejected.clone(),
            latency_buckets: inner.latency_buckets.to_vec(),
            latency_sum_seconds: inner.latency_sum_seconds,
            latency_count: inner.latency_count,
        }
    }

    /// Counts per state.
    pub fn counts(&self) -> Counts {
        Counts(self.inner.lock().expect("poisoned").counts.clone())
    }

    /// The newest `limit` events, newest first.
    pub fn recent(&self, limit: usize) -> Vec<LifecycleEvent> {
        let inner = self.inner.lock().expect("poisoned");
        inner.history.iter().rev().take(limit).cloned().collect()
    }

    /// Webhooks by their latest state, newest first, optionally one state only.
    pub fn webhooks(&self, state: Option<LifecycleState>, limit: usize) -> Vec<LifecycleEvent> {
        let inner = self.inner.lock().expect("poisoned");
        let mut latest: Vec<&LifecycleEvent> = inner
            .latest
            .values()
            .filter(|e| state.is_none_or(|s| e.state == s))
            .collect();
        latest.sort_by(|a, b| {
            b.at_ms
                .cmp(&a.at_ms)
                .then_with(|| b.event_id.cmp(&a.event_id))
        });
        latest.into_iter().take(limit).cloned().collect()
    }

    /// Every recorded event of one webhook, oldest first.
    pub fn history_of(&self, event_id: &str) -> Vec<LifecycleEvent> {
        let inner = self.inner.lock().expect("poisoned");
        inner
            .history
            .iter()
            .filter(|e| e.event_id == event_id)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(id: &str, state: LifecycleState, at_ms: i64) -> LifecycleEvent {
        let mut event = LifecycleEvent::new(id, state);
        event.at_ms = at_ms;
        event
    }

    #[test]
    fn events_arriving_out_of_order_keep_the_newest_state_and_the_latency() {
        let log = EventLog::default();
        // A worker process's events overtake the api's QUEUED on the bus.
        log.record(at("evt_1", LifecycleState::Processing, 1_000));
        log.record(at("evt_1", LifecycleState::Completed, 1_020));
        log.record(at("evt_1", LifecycleState::Queued, 1_021));
        assert_eq!(
            log.history_of("evt_1").len(),
            3,
            "every event is in the history"
        );
        let completed = log.webhooks(Some(LifecycleState::Completed), 10);
        assert_eq!(completed.len(), 1, "the latest state is COMPLETED");
        let metrics = log.metrics();
        assert_eq!(metrics.latency_count, 1);
        assert_eq!(
            metrics.latency_buckets[0], 1,
            "in the first bucket, not lost"
        );

        // In order, the same result.
        log.record(at("evt_2", LifecycleState::Queued, 2_000));
        log.record(at("evt_2", LifecycleState::Completed, 2_005));
        assert_eq!(log.webhooks(Some(LifecycleState::Completed), 10).len(), 2);
        assert_eq!(log.metrics().latency_count, 2);
    }
}
