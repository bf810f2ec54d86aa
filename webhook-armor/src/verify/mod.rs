//! Signature verification: one [`Verifier`] trait and one scheme per provider.
//!
//! Every scheme works on the raw body bytes exactly as received (never
//! re-serialised JSON), accepts several secrets at once so secrets can be
//! rotated without downtime, and compares in constant time.
//!
//! | scheme | provider format |
//! |---|---|
//! | [`StandardWebhooks`] | `webhook-id` / `webhook-timestamp` / `webhook-signature` (also `svix-*`) |
//! | [`Stripe`] | `Stripe-Signature: t=..,v1=..` |
//! | [`GitHub`] | `X-Hub-Signature-256: sha256=<hex>` |
//! | [`Slack`] | `X-Slack-Signature: v0=<hex>` over `v0:{ts}:{body}` |
//! | [`Shopify`] | `X-Shopify-Hmac-Sha256: <base64>` |
//! | [`HmacScheme`] | any HMAC-SHA256 header you configure |
//! | [`ApiKey`], [`BasicAuth`] | senders that cannot sign |

mod api_key;
mod basic;
mod credentials;
mod generic;
mod github;
mod hmac_keys;
mod shopify;
mod slack;
mod standard;
mod stripe;

use std::sync::Arc;

use http::HeaderName;
use http::request::Parts;
use sha2::{Digest, Sha256};

pub use api_key::ApiKey;
pub use basic::BasicAuth;
pub use generic::{Encoding, HmacScheme, SignedContent};
pub use github::GitHub;
pub use shopify::Shopify;
pub use slack::Slack;
pub use standard::StandardWebhooks;
pub use stripe::Stripe;

use crate::Rejection;

/// The facts a verifier established about an authentic request.
///
/// The layer puts this in the request's extensions, so handlers can read the
/// event id without parsing headers again.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Verified {
    /// The sender's id for this event or delivery; retries carry the same id.
    /// Schemes whose sender sends no id use `sha256:<hex of the body>`.
    pub id: String,
    /// The signed Unix timestamp, for schemes that sign one.
    pub timestamp: Option<i64>,
    /// Which scheme verified the request (`standard-webhooks`, `stripe`, ...).
    pub scheme: &'static str,
    /// Which configured source matched, for schemes with named sources
    /// (API keys, Basic credentials).
    pub source: Option<String>,
}

impl Verified {
    /// Facts for an event `id` verified by `scheme`.
    pub fn new(id: impl Into<String>, scheme: &'static str) -> Self {
        Self {
            id: id.into(),
            timestamp: None,
            scheme,
            source: None,
        }
    }

    /// With the signed timestamp.
    #[must_use]
    pub fn with_timestamp(mut self, timestamp: i64) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// With the name of the source that matched.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }
}

/// Decides whether a request is authentic.
///
/// Synchronous and pure: it sees the request head and the raw body bytes, and
/// answers with the [`Verified`] facts or a typed [`Rejection`]. Freshness of the
/// timestamp is the [`ReplayWindow`](crate::ReplayWindow)'s job, not the verifier's.
///
/// Implement it for a provider this crate does not ship:
///
/// ```
/// use http::request::Parts;
/// use webhook_armor::verify::{Verified, Verifier};
/// use webhook_armor::Rejection;
///
/// /// Accepts requests carrying a fixed token in `x-token` (do not do this in production).
/// #[derive(Debug)]
/// struct Token(&'static str);
///
/// impl Verifier for Token {
///     fn verify(&self, request: &Parts, _body: &[u8]) -> Result<Verified, Rejection> {
///         let name = http::HeaderName::from_static("x-token");
///         match request.headers.get(&name) {
///             Some(value) if value.as_bytes() == self.0.as_bytes() => {
///                 Ok(Verified::new("event-1", "token"))
///             }
///             Some(_) => Err(Rejection::InvalidCredentials),
///             None => Err(Rejection::MissingHeader(name)),
///         }
///     }
/// }
///
/// let (parts, ()) = http::Request::post("/").header("x-token", "t0k3n").body(()).unwrap().into_parts();
/// assert_eq!(Token("t0k3n").verify(&parts, b"{}").unwrap().scheme, "token");
/// ```
pub trait Verifier: Send + Sync + std::fmt::Debug + 'static {
    /// Verifies `request` with its raw `body`.
    fn verify(&self, request: &Parts, body: &[u8]) -> Result<Verified, Rejection>;
}

impl<V: Verifier + ?Sized> Verifier for Arc<V> {
    fn verify(&self, request: &Parts, body: &[u8]) -> Result<Verified, Rejection> {
        (**self).verify(request, body)
    }
}

impl<V: Verifier + ?Sized> Verifier for Box<V> {
    fn verify(&self, request: &Parts, body: &[u8]) -> Result<Verified, Rejection> {
        (**self).verify(request, body)
    }
}

/// A secret that cannot be used: empty, or not in the encoding the scheme needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid secret: {0}")]
pub struct InvalidSecret(pub(crate) &'static str);

/// The value of a required header as trimmed, non-empty ASCII text.
pub(crate) fn required_header<'a>(
    request: &'a Parts,
    name: &HeaderName,
) -> Result<&'a str, Rejection> {
    let value = request
        .headers
        .get(name)
        .ok_or_else(|| Rejection::MissingHeader(name.clone()))?;
    let text = value
        .to_str()
        .map_err(|_| Rejection::MalformedHeader(name.clone()))?
        .trim();
    if text.is_empty() {
        return Err(Rejection::MalformedHeader(name.clone()));
    }
    Ok(text)
}

/// Parses a Unix timestamp in seconds: ASCII digits only (no sign, no
/// fraction), and small enough for `i64`, so no arithmetic on it can overflow.
pub(crate) fn parse_timestamp(text: &str, header: &HeaderName) -> Result<i64, Rejection> {
    // 12 digits reach year 33658; anything longer is not a timestamp and would
    // only invite overflow games.
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Rejection::MalformedHeader(header.clone()));
    }
    text.parse()
        .map_err(|_| Rejection::MalformedHeader(header.clone()))
}

/// The id used for senders that send none: a digest of the body, so a
/// retried delivery of the same bytes is recognised as the same event.
pub(crate) fn body_digest_id(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

/// A top-level string field of a JSON body, read only after the signature
/// checked out (the bytes are authentic, so parsing them is safe).
///
/// Reading stops at the field: providers put the id first (Stripe's
/// `{"id": "evt_..."`), so finding it costs a few bytes of parsing, not a
/// second pass over the whole body next to the HMAC's.
pub(crate) fn json_string_field(body: &[u8], field: &str) -> Option<String> {
    use serde::de::{Deserializer, Error, IgnoredAny, MapAccess, Visitor};

    struct FieldVisitor<'a> {
        field: &'a str,
        found: &'a mut Option<String>,
    }

    impl<'de> Visitor<'de> for FieldVisitor<'_> {
        type Value = ();

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if key == self.field {
                    let value: serde_json::Value = map.next_value()?;
                    *self.found = value.as_str().map(str::to_owned);
                    // Leaving a map before its end is only possible as an
                    // error; the caller reads `found`, not the error.
                    return Err(A::Error::custom("field found"));
                }
                map.next_value::<IgnoredAny>()?;
            }
            Ok(())
        }
    }

    let mut found = None;
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let _ = deserializer.deserialize_map(FieldVisitor {
        field,
        found: &mut found,
    });
    found
}

#[cfg(test)]
mod json_field_tests {
    use super::json_string_field;

    #[test]
    fn reads_top_level_strings_only() {
        let body =
            br#"{"object":"event","data":{"id":"inner"},"id":"evt_1","tail":[1,2,{"x":"y"}]}"#;
        assert_eq!(json_string_field(body, "id").as_deref(), Some("evt_1"));
        assert_eq!(
            json_string_field(br#"{"id":"evt \"quoted\" at line 3"}"#, "id").as_deref(),
            Some("evt \"quoted\" at line 3")
        );
        assert_eq!(json_string_field(br#"{"id":42}"#, "id"), None);
        assert_eq!(json_string_field(br#"{"data":{"id":"inner"}}"#, "id"), None);
        assert_eq!(json_string_field(b"not json", "id"), None);
        assert_eq!(json_string_field(br#"["id"]"#, "id"), None);
        // Stops at the field: what follows need not even be valid.
        assert_eq!(
            json_string_field(br#"{"id":"evt_2", garbage"#, "id").as_deref(),
            Some("evt_2")
        );
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use http::request::Parts;

    /// Request head with the given headers.
    pub(crate) fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::post("/webhook");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap().into_parts().0
    }
}
