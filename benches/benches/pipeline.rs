//! The Tower layer's overhead next to the same service without it, and the
//! memory queue's enqueue + lease + ack cycle.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Full;
use tower::{Layer, ServiceExt};
use webhook_armor::memory::MemoryQueue;
use webhook_armor::queue::{NewJob, Queue};
use webhook_armor::verify::StandardWebhooks;
use webhook_armor::{Enqueue, WebhookArmorLayer};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const BODY: &[u8] = &[b'x'; 1024];

fn handler() -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future: Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(|_request: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    })
}

fn bench_layer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let signer = StandardWebhooks::new([SECRET]).unwrap();
    let counter = Arc::new(AtomicU64::new(0));
    let signed = move || {
        // A fresh id each time, so the idempotency claim is really taken.
        let id = format!("msg_{}", counter.fetch_add(1, Ordering::Relaxed));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        Request::post("/webhook")
            .header("webhook-id", &id)
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", signer.sign(&id, now, BODY))
            .body(Full::new(Bytes::from_static(BODY)))
            .unwrap()
    };

    let mut group = c.benchmark_group("layer-1KiB");
    let bare = handler();
    group.bench_function("bare-service", |b| {
        b.to_async(&runtime).iter(|| {
            bare.clone()
                .oneshot(Request::new(Full::new(Bytes::from_static(BODY))))
        })
    });
    let armored = WebhookArmorLayer::new(StandardWebhooks::new([SECRET]).unwrap()).layer(handler());
    let make = signed.clone();
    group.bench_function("armored-guard-mode", |b| {
        b.to_async(&runtime).iter_batched(
            &make,
            |request| armored.clone().oneshot(request),
            criterion::BatchSize::SmallInput,
        )
    });
    let queue = Arc::new(MemoryQueue::new().completed_retention(Duration::from_secs(1)));
    let queued = WebhookArmorLayer::new(StandardWebhooks::new([SECRET]).unwrap())
        .without_idempotency()
        .layer(Enqueue::new(queue.clone()));
    group.bench_function("armored-queue-mode", |b| {
        b.to_async(&runtime).iter_batched(
            &signed,
            |request| queued.clone().oneshot(request),
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn bench_memory_queue(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let queue = MemoryQueue::new().completed_retention(Duration::from_secs(1));
    let counter = AtomicU64::new(0);
    c.bench_function("memory-queue/enqueue+lease+ack", |b| {
        b.to_async(&runtime).iter(|| async {
            let id = counter.fetch_add(1, Ordering::Relaxed).to_string();
            queue
                .enqueue(NewJob::new(id, Bytes::from_static(BODY)))
                .await
                .unwrap();
            let lease = queue
                .lease(1, Duration::from_secs(30))
                .await
                .unwrap()
                .remove(0);
            queue.ack(&lease).await.unwrap();
        })
    });
}

criterion_group!(benches, bench_layer, bench_memory_queue);
criterion_main!(benches);
