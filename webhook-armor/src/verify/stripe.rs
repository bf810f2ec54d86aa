//! Stripe's `Stripe-Signature` scheme.

use http::HeaderName;
use http::request::Parts;

use super::hmac_keys::{HmacKeys, Tag, decode_hex_tag};
use super::{
    InvalidSecret, Verified, Verifier, body_digest_id, json_string_field, parse_timestamp,
    required_header,
};
use crate::Rejection;

const SCHEME: &str = "stripe";
const SIGNATURE_HEADER: HeaderName = HeaderName::from_static("stripe-signature");

/// Verifies Stripe webhook signatures.
///
/// `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...][,v0=...]`; the signed
/// content is `{t}.{body}` and the key is the whole endpoint secret string
/// (`whsec_...` included, not base64-decoded). Several `v1` entries appear
/// while Stripe rolls a secret; `v0` (test-mode legacy) is ignored. The event id
/// is read from the verified body's `id` field.
///
/// ```
/// use webhook_armor::verify::{Stripe, Verifier};
///
/// let stripe = Stripe::new(["whsec_test"]).unwrap();
/// let body = br#"{"id":"evt_1","type":"charge.succeeded"}"#;
/// let (request, ()) = http::Request::post("/stripe")
///     .header("stripe-signature", stripe.sign(1_700_000_000, body))
///     .body(())
///     .unwrap()
///     .into_parts();
/// assert_eq!(stripe.verify(&request, body).unwrap().id, "evt_1");
/// ```
#[derive(Debug, Clone)]
pub struct Stripe {
    keys: HmacKeys,
}

impl Stripe {
    /// A verifier for any of the endpoint `secrets`.
    pub fn new<I, S>(secrets: I) -> Result<Self, InvalidSecret>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let secrets: Vec<S> = secrets.into_iter().collect();
        Ok(Self {
            keys: HmacKeys::new(secrets.iter().map(|s| s.as_ref().as_bytes()))?,
        })
    }

    /// The `Stripe-Signature` header value Stripe would send: `t=..` and one
    /// `v1=..` per secret.
    pub fn sign(&self, timestamp: i64, body: &[u8]) -> String {
        let t = timestamp.to_string();
        let mut header = format!("t={t}");
        for tag in self.keys.tags(&[t.as_bytes(), b".", body]) {
            header.push_str(",v1=");
            header.push_str(&hex::encode(tag));
        }
        header
    }
}

impl Verifier for Stripe {
    fn verify(&self, request: &Parts, body: &[u8]) -> Result<Verified, Rejection> {
        let header = required_header(request, &SIGNATURE_HEADER)?;
        let malformed = || Rejection::MalformedHeader(SIGNATURE_HEADER.clone());
        let mut timestamp_text = None;
        let mut candidates: Vec<Tag> = Vec::new();
        for item in header.split(',') {
            let (key, value) = item.trim().split_once('=').ok_or_else(malformed)?;
            match key {
                // Two timestamps would make the signed content ambiguous.
                "t" if timestamp_text.is_some() => return Err(malformed()),
                "t" => timestamp_text = Some(value),
                "v1" => candidates.extend(decode_hex_tag(value)),
                _ => {} // v0 and future schemes
            }
        }
        let timestamp_text = timestamp_text.ok_or_else(malformed)?;
        let timestamp = parse_timestamp(timestamp_text, &SIGNATURE_HEADER)?;
        if candidates.is_empty()
            || !self
                .keys
                .matches_any(&[timestamp_text.as_bytes(), b".", body], &candidates)
        {
            return Err(Rejection::InvalidSignature);
        }
        let id = json_string_field(body, "id").unwrap_or_else(|| body_digest_id(body));
        Ok(Verified::new(id, SCHEME).with_timestamp(timestamp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::parts;

    // Known answer computed independently with Python's hmac module:
    // hmac.new(SECRET, b"1700000000." + BODY, sha256).hexdigest()
    const SECRET: &str = "whsec_test_secret_for_known_answer";
    const BODY: &[u8] = br#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"payment_intent.succeeded"}"#;
    const V1: &str = "ed1919ba5fdc503f8b0b6fce9981dd23ed3cc5f6d67cb85a0599817416d492c2";

    fn verify(header: &str, body: &[u8]) -> Result<Verified, Rejection> {
        Stripe::new([SECRET])
            .unwrap()
            .verify(&parts(&[("Stripe-Signature", header)]), body)
    }

    #[test]
    fn accepts_the_known_answer_and_reads_the_event_id() {
        let verified = verify(&format!("t=1700000000,v1={V1}"), BODY).unwrap();
        assert_eq!(verified.id, "evt_1NG8Du2eZvKYlo2CUI79vXWy");
        assert_eq!(verified.timestamp, Some(1_700_000_000));
        assert_eq!(
            Stripe::new([SECRET]).unwrap().sign(1_700_000_000, BODY),
            format!("t=1700000000,v1={V1}")
        );
    }

    #[test]
    fn accepts_one_of_several_v1_and_ignores_v0() {
        let other = "0".repeat(64);
        let header = format!("t=1700000000,v1={other},v0={other},v1={V1}");
        assert!(verify(&header, BODY).is_ok());
        // A v0 alone never authenticates.
        assert_eq!(
            verify(&format!("t=1700000000,v0={V1}"), BODY),
            Err(Rejection::InvalidSignature)
        );
    }

    #[test]
    fn rejects_tampering_truncation_and_wrong_secret() {
        assert_eq!(
            verify(&format!("t=1700000001,v1={V1}"), BODY),
            Err(Rejection::InvalidSignature)
        );
        let mut body = BODY.to_vec();
        body[10] ^= 0x01;
        assert_eq!(
            verify(&format!("t=1700000000,v1={V1}"), &body),
            Err(Rejection::InvalidSignature)
        );
        assert_eq!(
            verify(&format!("t=1700000000,v1={}", &V1[..62]), BODY),
            Err(Rejection::InvalidSignature)
        );
        assert_eq!(
            verify("t=1700000000,v1=", BODY),
            Err(Rejection::InvalidSignature)
        );
        let wrong = Stripe::new(["whsec_other"]).unwrap();
        let header = format!("t=1700000000,v1={V1}");
        assert_eq!(
            wrong.verify(&parts(&[("Stripe-Signature", &header)]), BODY),
            Err(Rejection::InvalidSignature)
        );
    }

    #[test]
    fn rejects_malformed_headers() {
        for header in [
            format!("v1={V1}"),
            format!("t=1700000000,t=1700000001,v1={V1}"),
            format!("t=abc,v1={V1}"),
            "garbage".to_owned(),
        ] {
            assert_eq!(
                verify(&header, BODY),
                Err(Rejection::MalformedHeader(SIGNATURE_HEADER)),
                "{header}"
            );
        }
    }

    #[test]
    fn falls_back_to_a_body_digest_when_the_body_has_no_id() {
        let stripe = Stripe::new([SECRET]).unwrap();
        let body = b"not json";
        let header = stripe.sign(1_700_000_000, body);
        let verified = stripe
            .verify(&parts(&[("Stripe-Signature", &header)]), body)
            .unwrap();
        assert!(verified.id.starts_with("sha256:"));
    }
}
