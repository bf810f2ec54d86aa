use std::time::Duration;

use futures_util::StreamExt;

use super::Backend;
use crate::events::{LifecycleEvent, LifecycleState};

/// Two subscribers both receive published events, in order, intact.
pub async fn events_reach_every_subscriber(backend: Backend) {
    let mut first = backend.events.subscribe();
    let mut second = backend.events.subscribe();
    // Remote buses subscribe asynchronously; publish until the first arrives.
    let probe = LifecycleEvent::new("probe", LifecycleState::Queued);
    let mut probes_seen = [false, false];
    for _ in 0..50 {
        backend.events.publish(probe.clone());
        for (seen, stream) in probes_seen.iter_mut().zip([&mut first, &mut second]) {
            if !*seen {
                *seen = tokio::time::timeout(Duration::from_millis(100), stream.next())
                    .await
                    .is_ok();
            }
        }
        if probes_seen == [true, true] {
            break;
        }
    }
    assert_eq!(
        probes_seen,
        [true, true],
        "subscribers never received the probe"
    );
    let event = LifecycleEvent::new("evt-1", LifecycleState::DeadLettered)
        .with_attempt(3)
        .with_detail("boom")
        .with_scheme("stripe");
    let after = LifecycleEvent::new("evt-2", LifecycleState::Completed);
    backend.events.publish(event.clone());
    backend.events.publish(after.clone());
    for stream in [&mut first, &mut second] {
        let received = next_non_probe(stream).await;
        assert_eq!(received, event);
        assert_eq!(next_non_probe(stream).await, after);
    }
}

async fn next_non_probe(stream: &mut crate::events::EventStream) -> LifecycleEvent {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("event within 5 s")
            .expect("stream open");
        if event.event_id != "probe" {
            return event;
        }
    }
}
