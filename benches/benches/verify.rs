//! Verification per scheme next to a raw HMAC-SHA256 of the same bytes.
//!
//! The raw HMAC is the floor: no scheme can verify without computing one. The
//! ratio scheme/raw is the price of header parsing, decoding and the
//! constant-time comparison.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use webhook_armor::Verifier;
use webhook_armor::verify::{GitHub, Shopify, Slack, StandardWebhooks, Stripe};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TIMESTAMP: i64 = 1_700_000_000;

fn head(headers: &[(&str, String)]) -> http::request::Parts {
    let mut builder = http::Request::post("/");
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    builder.body(()).unwrap().into_parts().0
}

/// A JSON event of `size` bytes shaped like real deliveries: the ids first,
/// then the payload (Stripe puts `id` first; Slack's `event_id` follows a few
/// short fields).
fn realistic_body(size: usize) -> Vec<u8> {
    let head = r#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","event_id":"Ev08MFMKH6","type":"invoice.paid","data":""#;
    let mut body = head.as_bytes().to_vec();
    body.resize(size.saturating_sub(2).max(head.len()), b'x');
    body.extend_from_slice(b"\"}");
    body
}

fn bench_verification(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify");
    for size in [256usize, 1024, 64 * 1024] {
        let body = realistic_body(size);
        group.throughput(Throughput::Bytes(size as u64));

        group.bench_with_input(
            BenchmarkId::new("raw-hmac-sha256", size),
            &body,
            |b, body| {
                b.iter(|| {
                    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
                    mac.update(black_box(body));
                    black_box(mac.finalize().into_bytes())
                })
            },
        );

        let standard = StandardWebhooks::new([SECRET]).unwrap();
        let request = head(&[
            ("webhook-id", "msg_1".into()),
            ("webhook-timestamp", TIMESTAMP.to_string()),
            (
                "webhook-signature",
                standard.sign("msg_1", TIMESTAMP, &body),
            ),
        ]);
        group.bench_with_input(
            BenchmarkId::new("standard-webhooks", size),
            &body,
            |b, body| {
                b.iter(|| {
                    standard
                        .verify(black_box(&request), black_box(body))
                        .unwrap()
                })
            },
        );

        let stripe = Stripe::new([SECRET]).unwrap();
        let request = head(&[("stripe-signature", stripe.sign(TIMESTAMP, &body))]);
        group.bench_with_input(BenchmarkId::new("stripe", size), &body, |b, body| {
            b.iter(|| stripe.verify(black_box(&request), black_box(body)).unwrap())
        });

        let github = GitHub::new([SECRET]).unwrap();
        let request = head(&[
            ("x-hub-signature-256", github.sign(&body)),
            (
                "x-github-delivery",
                "72d3162e-cc78-11e3-81ab-4c9367dc0958".into(),
            ),
        ]);
        group.bench_with_input(BenchmarkId::new("github", size), &body, |b, body| {
            b.iter(|| github.verify(black_box(&request), black_box(body)).unwrap())
        });

        let slack = Slack::new([SECRET]).unwrap();
        let request = head(&[
            ("x-slack-signature", slack.sign(TIMESTAMP, &body)),
            ("x-slack-request-timestamp", TIMESTAMP.to_string()),
        ]);
        group.bench_with_input(BenchmarkId::new("slack", size), &body, |b, body| {
            b.iter(|| slack.verify(black_box(&request), black_box(body)).unwrap())
        });

        let shopify = Shopify::new([SECRET]).unwrap();
        let request = head(&[
            ("x-shopify-hmac-sha256", shopify.sign(&body)),
            ("x-shopify-webhook-id", "b54557e4".into()),
        ]);
        group.bench_with_input(BenchmarkId::new("shopify", size), &body, |b, body| {
            b.iter(|| {
                shopify
                    .verify(black_box(&request), black_box(body))
                    .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_verification);
criterion_main!(benches);
