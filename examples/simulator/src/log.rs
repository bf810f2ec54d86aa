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
}

/// Counts per lifecycle state since start.
#[derive(Debug, Clone, Serialize)]
pub struct Counts(pub BTreeMap<&'static str, u64>);

impl EventLog {
    /// Records one event.
    pub fn record(&self, event: LifecycleEvent) {
        let mut inner = self.inner.lock().expect("poisoned");
        *inner.counts.entry(event.state.as_str()).or_default() += 1;
        if !event.event_id.is_empty() {
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
