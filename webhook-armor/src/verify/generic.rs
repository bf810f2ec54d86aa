//! A configurable HMAC-SHA256 scheme; GitHub, Slack and Shopify are presets of it.

use http::HeaderName;
use http::request::Parts;

use super::hmac_keys::{HmacKeys, decode_base64_tag, decode_hex_tag, encode_base64};
use super::{
    InvalidSecret, Verified, Verifier, body_digest_id, json_string_field, parse_timestamp,
    required_header,
};
use crate::Rejection;

/// How the signature is written in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Lower- or upper-case hexadecimal.
    Hex,
    /// Standard base64, padding optional.
    Base64,
}

/// What bytes the sender signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedContent {
    /// The raw body alone.
    Body,
    /// `{prefix}{timestamp}{separator}{body}`, the timestamp read from a header
    /// (Slack: prefix `v0:`, separator `:`).
    TimestampAndBody {
        /// Header carrying the Unix timestamp in seconds.
        timestamp_header: HeaderName,
        /// Bytes signed before the timestamp.
        prefix: String,
        /// Bytes signed between the timestamp and the body.
        separator: String,
    },
}

/// Where the event id comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum IdSource {
    Header(HeaderName),
    JsonField(String),
    BodyDigest,
}

/// A generic HMAC-SHA256 verifier: signature header, optional prefix such as
/// `sha256=`, hex or base64, over the body or a timestamp and the body.
///
/// ```
/// use webhook_armor::verify::{Encoding, HmacScheme, SignedContent, Verifier};
///
/// let acme = HmacScheme::new("acme", "x-acme-signature", ["acme-secret"])
///     .unwrap()
///     .prefix("sha256=")
///     .encoding(Encoding::Hex)
///     .id_header("x-acme-delivery");
/// let body = br#"{"hello":"world"}"#;
/// let (request, ()) = http::Request::post("/acme")
///     .header("x-acme-signature", acme.sign(None, body))
///     .header("x-acme-delivery", "d-1")
///     .body(())
///     .unwrap()
///     .into_parts();
/// let verified = acme.verify(&request, body).unwrap();
/// assert_eq!((verified.id.as_str(), verified.scheme), ("d-1", "acme"));
/// ```
#[derive(Debug, Clone)]
pub struct HmacScheme {
    scheme: &'static str,
    keys: HmacKeys,
    signature_header: HeaderName,
    prefix: String,
    encoding: Encoding,
    signed_content: SignedContent,
    id_source: IdSource,
}

impl HmacScheme {
    /// A scheme named `scheme` (reported in [`Verified::scheme`]) reading hex
    /// signatures over the body from `signature_header`, accepting any of
    /// `secrets` (used as raw bytes). Ids default to a digest of the body.
    ///
    /// # Panics
    /// If `signature_header` is not a valid header name: it is configuration,
    /// fixed when the program is written.
    pub fn new<I, S>(
        scheme: &'static str,
        signature_header: &str,
        secrets: I,
    ) -> Result<Self, InvalidSecret>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        Ok(Self {
            scheme,
            keys: HmacKeys::new(secrets)?,
            signature_header: header_name(signature_header),
            prefix: String::new(),
            encoding: Encoding::Hex,
            signed_content: SignedContent::Body,
            id_source: IdSource::BodyDigest,
        })
    }

    /// Text before the encoded signature, e.g. `sha256=`.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How the signature is encoded.
    #[must_use]
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// What the sender signs.
    #[must_use]
    pub fn signed_content(mut self, content: SignedContent) -> Self {
        self.signed_content = content;
        self
    }

    /// Read the event id from this header (required on every request).
    ///
    /// # Panics
    /// If `name` is not a valid header name.
    #[must_use]
    pub fn id_header(mut self, name: &str) -> Self {
        self.id_source = IdSource::Header(header_name(name));
        self
    }

    /// Read the event id from this top-level string field of the JSON body,
    /// falling back to a digest of the body when it is absent.
    #[must_use]
    pub fn id_json_field(mut self, field: impl Into<String>) -> Self {
        self.id_source = IdSource::JsonField(field.into());
        self
    }

    /// The signature header value this scheme expects for `body` (and the
    /// timestamp, for [`SignedContent::TimestampAndBody`]), made with the first
    /// secret: what a sender puts on the wire.
    pub fn sign(&self, timestamp: Option<i64>, body: &[u8]) -> String {
        let timestamp = timestamp.map(|t| t.to_string()).unwrap_or_default();
        let tags = self.keys.tags(&self.message(&timestamp, body));
        let encoded = match self.encoding {
            Encoding::Hex => hex::encode(tags[0]),
            Encoding::Base64 => encode_base64(&tags[0]),
        };
        format!("{}{encoded}", self.prefix)
    }

    fn message<'a>(&'a self, timestamp: &'a str, body: &'a [u8]) -> Vec<&'a [u8]> {
        match &self.signed_content {
            SignedContent::Body => vec![body],
            SignedContent::TimestampAndBody {
                prefix, separator, ..
            } => vec![
                prefix.as_bytes(),
                timestamp.as_bytes(),
                separator.as_bytes(),
                body,
            ],
        }
    }
}

fn header_name(name: &str) -> HeaderName {
    HeaderName::try_from(name).unwrap_or_else(|_| panic!("invalid header name {name:?}"))
}

impl Verifier for HmacScheme {
    fn verify(&self, request: &Parts, body: &[u8]) -> Result<Verified, Rejection> {
        let header = required_header(request, &self.signature_header)?;
        let (timestamp_text, timestamp) = match &self.signed_content {
            SignedContent::Body => ("", None),
            SignedContent::TimestampAndBody {
                timestamp_header, ..
            } => {
                let text = required_header(request, timestamp_header)?;
                (text, Some(parse_timestamp(text, timestamp_header)?))
            }
        };
        let id = match &self.id_source {
            IdSource::Header(name) => Some(required_header(request, name)?.to_owned()),
            IdSource::JsonField(_) | IdSource::BodyDigest => None,
        };
        // A missing prefix is a forged or foreign signature, not a parse problem.
        let encoded = header
            .strip_prefix(self.prefix.as_str())
            .ok_or(Rejection::InvalidSignature)?;
        let candidate = match self.encoding {
            Encoding::Hex => decode_hex_tag(encoded),
            Encoding::Base64 => decode_base64_tag(encoded),
        }
        .ok_or(Rejection::InvalidSignature)?;
        if !self
            .keys
            .matches_any(&self.message(timestamp_text, body), &[candidate])
        {
            return Err(Rejection::InvalidSignature);
        }
        let id = match (&self.id_source, id) {
            (_, Some(id)) => id,
            (IdSource::JsonField(field), None) => {
                json_string_field(body, field).unwrap_or_else(|| body_digest_id(body))
            }
            _ => body_digest_id(body),
        };
        let verified = Verified::new(id, self.scheme);
        Ok(match timestamp {
            Some(t) => verified.with_timestamp(t),
            None => verified,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::parts;

    fn scheme() -> HmacScheme {
        HmacScheme::new("custom", "x-sig", ["k1"])
            .unwrap()
            .prefix("sha256=")
            .signed_content(SignedContent::TimestampAndBody {
                timestamp_header: HeaderName::from_static("x-ts"),
                prefix: String::new(),
                separator: ".".into(),
            })
    }

    #[test]
    fn timestamped_scheme_round_trips_and_binds_the_timestamp() {
        let scheme = scheme();
        let signature = scheme.sign(Some(1_700_000_000), b"body");
        let ok = scheme.verify(
            &parts(&[("x-sig", &signature), ("x-ts", "1700000000")]),
            b"body",
        );
        assert_eq!(ok.unwrap().timestamp, Some(1_700_000_000));
        let moved = scheme.verify(
            &parts(&[("x-sig", &signature), ("x-ts", "1700000001")]),
            b"body",
        );
        assert_eq!(moved, Err(Rejection::InvalidSignature));
    }

    #[test]
    fn missing_prefix_is_an_invalid_signature() {
        let scheme = scheme();
        let signature = scheme.sign(Some(1), b"body");
        let bare = signature.trim_start_matches("sha256=");
        let result = scheme.verify(&parts(&[("x-sig", bare), ("x-ts", "1")]), b"body");
        assert_eq!(result, Err(Rejection::InvalidSignature));
    }

    #[test]
    fn json_field_ids_fall_back_to_the_body_digest() {
        let scheme = HmacScheme::new("j", "x-sig", ["k"])
            .unwrap()
            .id_json_field("event_id");
        let body = br#"{"event_id":"Ev1"}"#;
        let verified = scheme.verify(&parts(&[("x-sig", &scheme.sign(None, body))]), body);
        assert_eq!(verified.unwrap().id, "Ev1");
        let verified = scheme.verify(&parts(&[("x-sig", &scheme.sign(None, b"x"))]), b"x");
        assert_eq!(verified.unwrap().id, body_digest_id(b"x"));
    }
}
