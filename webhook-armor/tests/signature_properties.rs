//! Property tests: whatever the secret, id, timestamp and body, a signature
//! made by the scheme's signer verifies, and any mutation of what was signed
//! or of the signature itself is rejected.

use http::request::Parts;
use proptest::prelude::*;
use webhook_armor::Verifier;
use webhook_armor::verify::{GitHub, Shopify, Slack, StandardWebhooks, Stripe};

/// A scheme's signer: (id, timestamp, body) to the signature header value.
type Signer = Box<dyn Fn(&str, i64, &[u8]) -> String>;

/// One scheme, reduced to: sign, then build the request head from the parts.
struct Case {
    verifier: Box<dyn Verifier>,
    /// The signature header value for (id, timestamp, body).
    sign: Signer,
    /// Request head carrying (signature, id, timestamp).
    head: fn(&str, &str, i64) -> Parts,
    /// Characters before the encoded signature that are not part of it.
    signature_prefix_len: fn(&str) -> usize,
    signs_id: bool,
    signs_timestamp: bool,
}

fn parts(headers: &[(&str, String)]) -> Parts {
    let mut builder = http::Request::post("/");
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    builder.body(()).unwrap().into_parts().0
}

fn cases(secret: &str) -> Vec<Case> {
    let whsec = format!("whsec_{}", base64_of(secret.as_bytes()));
    let standard = StandardWebhooks::new([&whsec]).unwrap();
    let stripe = Stripe::new([secret]).unwrap();
    let github = GitHub::new([secret]).unwrap();
    let slack = Slack::new([secret]).unwrap();
    let shopify = Shopify::new([secret]).unwrap();
    vec![
        Case {
            verifier: Box::new(standard.clone()),
            sign: Box::new(move |id, t, body| standard.sign(id, t, body)),
            head: |sig, id, t| {
                parts(&[
                    ("webhook-id", id.into()),
                    ("webhook-timestamp", t.to_string()),
                    ("webhook-signature", sig.into()),
                ])
            },
            signature_prefix_len: |_| 3, // "v1,"
            signs_id: true,
            signs_timestamp: true,
        },
        Case {
            verifier: Box::new(stripe.clone()),
            sign: Box::new(move |_, t, body| stripe.sign(t, body)),
            head: |sig, _, t| {
                // The timestamp travels inside the header; rewrite it.
                let v1 = sig.split_once(",v1=").map_or("", |(_, v)| v);
                parts(&[("stripe-signature", format!("t={t},v1={v1}"))])
            },
            signature_prefix_len: |sig| sig.find(",v1=").map_or(0, |i| i + 4),
            signs_id: false,
            signs_timestamp: true,
        },
        Case {
            verifier: Box::new(github.clone()),
            sign: Box::new(move |_, _, body| github.sign(body)),
            head: |sig, id, _| {
                parts(&[
                    ("x-hub-signature-256", sig.into()),
                    ("x-github-delivery", id.into()),
                ])
            },
            signature_prefix_len: |_| 7, // "sha256="
            signs_id: false,
            signs_timestamp: false,
        },
        Case {
            verifier: Box::new(slack.clone()),
            sign: Box::new(move |_, t, body| slack.sign(t, body)),
            head: |sig, _, t| {
                parts(&[
                    ("x-slack-signature", sig.into()),
                    ("x-slack-request-timestamp", t.to_string()),
                ])
            },
            signature_prefix_len: |_| 3, // "v0="
            signs_id: false,
            signs_timestamp: true,
        },
        Case {
            verifier: Box::new(shopify.clone()),
            sign: Box::new(move |_, _, body| shopify.sign(body)),
            head: |sig, id, _| {
                parts(&[
                    ("x-shopify-hmac-sha256", sig.into()),
                    ("x-shopify-webhook-id", id.into()),
                ])
            },
            signature_prefix_len: |_| 0,
            signs_id: false,
            signs_timestamp: false,
        },
    ]
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Replaces the character at `index` with a different one of the same alphabet.
fn change_char(text: &str, index: usize) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    let original = chars[index];
    chars[index] = if original == 'a' { 'b' } else { 'a' };
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn signed_requests_verify(
        secret in "[ -~]{1,64}",
        id in "[A-Za-z0-9_-]{1,40}",
        timestamp in 0i64..4_000_000_000,
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        for (index, case) in cases(&secret).into_iter().enumerate() {
            let signature = (case.sign)(&id, timestamp, &body);
            let verified = case.verifier.verify(&(case.head)(&signature, &id, timestamp), &body);
            prop_assert!(verified.is_ok(), "case {index}: {verified:?}");
            if case.signs_timestamp {
                prop_assert_eq!(verified.unwrap().timestamp, Some(timestamp));
            }
        }
    }

    #[test]
    fn any_mutation_is_rejected(
        secret in "[ -~]{1,64}",
        other_secret in "[ -~]{1,64}",
        id in "[A-Za-z0-9_-]{1,40}",
        timestamp in 1000i64..4_000_000_000,
        body in proptest::collection::vec(any::<u8>(), 1..512),
        bit in 0usize..4096,
        position in any::<prop::sample::Index>(),
        cut in 1usize..40,
        shift in 1i64..1000,
    ) {
        prop_assume!(secret != other_secret);
        for (index, case) in cases(&secret).into_iter().enumerate() {
            let signature = (case.sign)(&id, timestamp, &body);
            let reject = |head: Parts, body: &[u8]| case.verifier.verify(&head, body).is_err();

            let mut flipped = body.clone();
            flipped[(bit / 8) % body.len()] ^= 1 << (bit % 8);
            prop_assert!(reject((case.head)(&signature, &id, timestamp), &flipped), "case {index}: body bit");

            let start = (case.signature_prefix_len)(&signature);
            let encoded_len = signature.len() - start;
            let changed = change_char(&signature, start + position.index(encoded_len));
            prop_assert!(reject((case.head)(&changed, &id, timestamp), &body), "case {index}: signature char");

            // Padding is cosmetic (dropping `=` loses no signature bits), so
            // truncation cuts into the encoded tag itself.
            let unpadded = signature.trim_end_matches('=');
            let truncated = &unpadded[..unpadded.len() - cut.min(unpadded.len() - start)];
            prop_assert!(reject((case.head)(truncated, &id, timestamp), &body), "case {index}: truncated");

            if case.signs_timestamp {
                prop_assert!(reject((case.head)(&signature, &id, timestamp + shift), &body), "case {index}: timestamp");
            }
            if case.signs_id {
                let other_id = format!("{id}x");
                prop_assert!(reject((case.head)(&signature, &other_id, timestamp), &body), "case {index}: id");
            }
            let foreign = (cases(&other_secret).remove(index).sign)(&id, timestamp, &body);
            prop_assert!(reject((case.head)(&foreign, &id, timestamp), &body), "case {index}: wrong secret");
        }
    }
}
