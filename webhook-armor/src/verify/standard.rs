//! [Standard Webhooks](https://www.standardwebhooks.com/): the scheme Svix and
//! many SaaS senders use.

use http::HeaderName;
use http::request::Parts;

use super::hmac_keys::{HmacKeys, Tag, decode_base64, decode_base64_tag, encode_base64};
use super::{InvalidSecret, Verified, Verifier, parse_timestamp, required_header};
use crate::Rejection;

const SCHEME: &str = "standard-webhooks";
const SECRET_PREFIX: &str = "whsec_";

/// The three headers of one naming of the scheme.
struct HeaderNames {
    id: HeaderName,
    timestamp: HeaderName,
    signature: HeaderName,
}

const WEBHOOK_HEADERS: HeaderNames = HeaderNames {
    id: HeaderName::from_static("webhook-id"),
    timestamp: HeaderName::from_static("webhook-timestamp"),
    signature: HeaderName::from_static("webhook-signature"),
};

/// Svix sends the same scheme under its own header names.
const SVIX_HEADERS: HeaderNames = HeaderNames {
    id: HeaderName::from_static("svix-id"),
    timestamp: HeaderName::from_static("svix-timestamp"),
    signature: HeaderName::from_static("svix-signature"),
};

/// Verifies Standard Webhooks signatures.
///
/// The signed content is `{webhook-id}.{webhook-timestamp}.{body}`; the
/// `webhook-signature` header holds one or more space-separated `v1,<base64>`
/// entries (several while the sender rotates its secret). Secrets are given as
/// `whsec_<base64>`; the `svix-*` header names are accepted too.
///
/// ```
/// use webhook_armor::verify::{StandardWebhooks, Verifier};
///
/// let verifier = StandardWebhooks::new(["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]).unwrap();
/// let body = br#"{"test": 2432232314}"#;
/// let (request, ()) = http::Request::post("/webhook")
///     .header("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek")
///     .header("webhook-timestamp", "1614265330")
///     .header("webhook-signature", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
///     .body(())
///     .unwrap()
///     .into_parts();
/// let verified = verifier.verify(&request, body).unwrap();
/// assert_eq!(verified.id, "msg_p5jXN8AQM9LWM0D4loKWxJek");
/// assert_eq!(verified.timestamp, Some(1614265330));
/// ```
#[derive(Debug, Clone)]
pub struct StandardWebhooks {
    keys: HmacKeys,
}

impl StandardWebhooks {
    /// A verifier accepting signatures made with any of `secrets`
    /// (`whsec_<base64>`; the prefix may be omitted).
    pub fn new<I, S>(secrets: I) -> Result<Self, InvalidSecret>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let keys = secrets
            .into_iter()
            .map(|secret| decode_secret(secret.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_raw_keys(keys)
    }

    /// A verifier from raw key bytes (the decoded form of a `whsec_` secret).
    pub fn from_raw_keys<I, K>(keys: I) -> Result<Self, InvalidSecret>
    where
        I: IntoIterator<Item = K>,
        K: AsRef<[u8]>,
    {
        Ok(Self {
            keys: HmacKeys::new(keys)?,
        })
    }

    /// The `webhook-signature` header value for a message, one `v1,` entry per
    /// secret: what a Standard Webhooks sender puts on the wire.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let timestamp = timestamp.to_string();
        self.keys
            .tags(&[id.as_bytes(), b".", timestamp.as_bytes(), b".", body])
            .iter()
            .map(|tag| format!("v1,{}", encode_base64(tag)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Decodes `whsec_<base64>` (or bare base64) into key bytes.
fn decode_secret(secret: &str) -> Result<Vec<u8>, InvalidSecret> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
    let key = decode_base64(encoded).ok_or(InvalidSecret("not whsec_<base64>"))?;
    if key.is_empty() {
        return Err(InvalidSecret("empty secret"));
    }
    Ok(key)
}

impl Verifier for StandardWebhooks {
    fn verify(&self, request: &Parts, body: &[u8]) -> Result<Verified, Rejection> {
        let names = if request.headers.contains_key(&WEBHOOK_HEADERS.signature)
            || !request.headers.contains_key(&SVIX_HEADERS.signature)
        {
            &WEBHOOK_HEADERS
        } else {
            &SVIX_HEADERS
        };
        let id = required_header(request, &names.id)?;
        let timestamp_text = required_header(request, &names.timestamp)?;
        let timestamp = parse_timestamp(timestamp_text, &names.timestamp)?;
        let signatures = required_header(request, &names.signature)?;

        // Entries of other versions (say a future `v1a,`) are skipped, not errors:
        // the sender may offer several and we need only one we understand.
        let candidates: Vec<Tag> = signatures
            .split(' ')
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .filter_map(decode_base64_tag)
            .collect();
        if candidates.is_empty() {
            return Err(Rejection::InvalidSignature);
        }
        let message = [id.as_bytes(), b".", timestamp_text.as_bytes(), b".", body];
        if !self.keys.matches_any(&message, &candidates) {
            return Err(Rejection::InvalidSignature);
        }
        Ok(Verified::new(id, SCHEME).with_timestamp(timestamp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::parts;

    // The example published with the Standard Webhooks specification.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: &str = "1614265330";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn verify_with(headers: &[(&str, &str)], body: &[u8]) -> Result<Verified, Rejection> {
        StandardWebhooks::new([SECRET])
            .unwrap()
            .verify(&parts(headers), body)
    }

    fn spec_headers(signature: &str) -> Vec<(&'static str, String)> {
        vec![
            ("webhook-id", ID.to_owned()),
            ("webhook-timestamp", TIMESTAMP.to_owned()),
            ("webhook-signature", signature.to_owned()),
        ]
    }

    fn as_refs<'a>(headers: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
        headers.iter().map(|(n, v)| (*n, v.as_str())).collect()
    }

    #[test]
    fn accepts_the_specifications_published_example() {
        let verified = verify_with(&as_refs(&spec_headers(SIGNATURE)), BODY).unwrap();
        assert_eq!(verified.id, ID);
        assert_eq!(verified.timestamp, Some(1_614_265_330));
        assert_eq!(verified.scheme, "standard-webhooks");
    }

    #[test]
    fn signer_reproduces_the_published_signature() {
        let signer = StandardWebhooks::new([SECRET]).unwrap();
        assert_eq!(signer.sign(ID, 1_614_265_330, BODY), SIGNATURE);
    }

    #[test]
    fn accepts_svix_header_names() {
        let headers = [
            ("svix-id", ID),
            ("svix-timestamp", TIMESTAMP),
            ("svix-signature", SIGNATURE),
        ];
        assert_eq!(verify_with(&headers, BODY).unwrap().id, ID);
    }

    #[test]
    fn accepts_any_of_several_signatures_and_skips_unknown_versions() {
        let signature = format!("v1a,xyz v1,{} {SIGNATURE}", "A".repeat(43) + "=");
        assert!(verify_with(&as_refs(&spec_headers(&signature)), BODY).is_ok());
    }

    #[test]
    fn accepts_a_rotated_secret_set() {
        let verifier = StandardWebhooks::new(["whsec_bmV3LXNlY3JldC1rZXk=", SECRET]).unwrap();
        assert!(
            verifier
                .verify(&parts(&as_refs(&spec_headers(SIGNATURE))), BODY)
                .is_ok()
        );
    }

    #[test]
    fn rejects_tampering_of_each_signed_part() {
        let mut body = BODY.to_vec();
        body[3] ^= 1;
        assert_eq!(
            verify_with(&as_refs(&spec_headers(SIGNATURE)), &body),
            Err(Rejection::InvalidSignature)
        );
        let mut headers = spec_headers(SIGNATURE);
        headers[0].1 = "msg_p5jXN8AQM9LWM0D4loKWxJel".into();
        assert_eq!(
            verify_with(&as_refs(&headers), BODY),
            Err(Rejection::InvalidSignature)
        );
        let mut headers = spec_headers(SIGNATURE);
        headers[1].1 = "1614265331".into();
        assert_eq!(
            verify_with(&as_refs(&headers), BODY),
            Err(Rejection::InvalidSignature)
        );
        let flipped = SIGNATURE.replace("g0hM", "g0hN");
        assert_eq!(
            verify_with(&as_refs(&spec_headers(&flipped)), BODY),
            Err(Rejection::InvalidSignature)
        );
    }

    #[test]
    fn rejects_truncated_empty_and_wrong_secret_signatures() {
        for signature in [&SIGNATURE[..SIGNATURE.len() - 4], "v1,", "v1", " "] {
            let result = verify_with(&as_refs(&spec_headers(signature)), BODY);
            assert!(result.is_err(), "{signature:?} accepted");
        }
        let wrong = StandardWebhooks::new(["whsec_d3Jvbmctc2VjcmV0"]).unwrap();
        assert_eq!(
            wrong.verify(&parts(&as_refs(&spec_headers(SIGNATURE))), BODY),
            Err(Rejection::InvalidSignature)
        );
    }

    #[test]
    fn missing_and_malformed_headers_are_named() {
        let result = verify_with(
            &[("webhook-id", ID), ("webhook-signature", SIGNATURE)],
            BODY,
        );
        assert_eq!(
            result,
            Err(Rejection::MissingHeader(HeaderName::from_static(
                "webhook-timestamp"
            )))
        );
        for bad in [
            "-1614265330",
            "+1614265330",
            "16142653.30",
            "99999999999999999999999",
        ] {
            let mut headers = spec_headers(SIGNATURE);
            headers[1].1 = bad.into();
            assert_eq!(
                verify_with(&as_refs(&headers), BODY),
                Err(Rejection::MalformedHeader(HeaderName::from_static(
                    "webhook-timestamp"
                ))),
                "{bad}"
            );
        }
    }

    #[test]
    fn refuses_unusable_secrets() {
        assert!(StandardWebhooks::new(["whsec_not base64!"]).is_err());
        assert!(StandardWebhooks::new(["whsec_"]).is_err());
        assert!(StandardWebhooks::new(Vec::<String>::new()).is_err());
    }
}
