//! Slack's `v0` request signing.

use http::HeaderName;
use http::request::Parts;

use super::{Encoding, HmacScheme, InvalidSecret, SignedContent, Verified, Verifier};
use crate::Rejection;

/// Verifies requests from Slack.
///
/// `X-Slack-Signature: v0=<hex>` over `v0:{X-Slack-Request-Timestamp}:{body}`,
/// keyed with the app's signing secret. Slack sends no delivery id header;
/// the id is the body's `event_id` (Events API) or else a digest of the body,
/// which a retry repeats.
///
/// ```
/// use webhook_armor::verify::{Slack, Verifier};
///
/// let slack = Slack::new(["8f742231b10e8888abcd99yyyzzz85a5"]).unwrap();
/// let body = br#"{"event_id":"Ev1","type":"event_callback"}"#;
/// let (request, ()) = http::Request::post("/slack")
///     .header("x-slack-request-timestamp", "1531420618")
///     .header("x-slack-signature", slack.sign(1531420618, body))
///     .body(())
///     .unwrap()
///     .into_parts();
/// assert_eq!(slack.verify(&request, body).unwrap().id, "Ev1");
/// ```
#[derive(Debug, Clone)]
pub struct Slack(HmacScheme);

impl Slack {
    /// A verifier for any of the app's signing `secrets`.
    pub fn new<I, S>(secrets: I) -> Result<Self, InvalidSecret>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        Ok(Self(
            HmacScheme::new("slack", "x-slack-signature", secrets)?
                .prefix("v0=")
                .encoding(Encoding::Hex)
                .signed_content(SignedContent::TimestampAndBody {
                    timestamp_header: HeaderName::from_static("x-slack-request-timestamp"),
                    prefix: "v0:".into(),
                    separator: ":".into(),
                })
                .id_json_field("event_id"),
        ))
    }

    /// The `X-Slack-Signature` value Slack would send.
    pub fn sign(&self, timestamp: i64, body: &[u8]) -> String {
        self.0.sign(Some(timestamp), body)
    }
}

impl Verifier for Slack {
    fn verify(&self, request: &Parts, body: &[u8]) -> Result<Verified, Rejection> {
        self.0.verify(request, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::parts;

    // The worked example in Slack's "Verifying requests from Slack".
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const TIMESTAMP: &str = "1531420618";
    const BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn verify(timestamp: &str, signature: &str, body: &[u8]) -> Result<Verified, Rejection> {
        Slack::new([SECRET]).unwrap().verify(
            &parts(&[
                ("X-Slack-Request-Timestamp", timestamp),
                ("X-Slack-Signature", signature),
            ]),
            body,
        )
    }

    #[test]
    fn accepts_the_documented_example() {
        let verified = verify(TIMESTAMP, SIGNATURE, BODY).unwrap();
        assert_eq!(verified.timestamp, Some(1_531_420_618));
        assert!(
            verified.id.starts_with("sha256:"),
            "form bodies carry no event_id"
        );
        assert_eq!(
            Slack::new([SECRET]).unwrap().sign(1_531_420_618, BODY),
            SIGNATURE
        );
    }

    #[test]
    fn rejects_tampering_truncation_and_wrong_secret() {
        assert_eq!(
            verify("1531420619", SIGNATURE, BODY),
            Err(Rejection::InvalidSignature)
        );
        assert_eq!(
            verify(TIMESTAMP, SIGNATURE, &BODY[1..]),
            Err(Rejection::InvalidSignature)
        );
        assert_eq!(
            verify(TIMESTAMP, &SIGNATURE[..20], BODY),
            Err(Rejection::InvalidSignature)
        );
        assert_eq!(
            verify(TIMESTAMP, &SIGNATURE.replace("v0=", "v1="), BODY),
            Err(Rejection::InvalidSignature)
        );
        let other = Slack::new(["another"]).unwrap();
        let request = parts(&[
            ("X-Slack-Request-Timestamp", TIMESTAMP),
            ("X-Slack-Signature", SIGNATURE),
        ]);
        assert_eq!(
            other.verify(&request, BODY),
            Err(Rejection::InvalidSignature)
        );
    }
}
