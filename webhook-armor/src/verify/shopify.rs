//! Shopify's `X-Shopify-Hmac-Sha256` scheme.

use http::request::Parts;

use super::{Encoding, HmacScheme, InvalidSecret, Verified, Verifier};
use crate::Rejection;

/// Verifies Shopify webhooks.
///
/// `X-Shopify-Hmac-Sha256: <base64 HMAC-SHA256 of the body>` keyed with the
/// app's client secret; the id is `X-Shopify-Webhook-Id`. Shopify signs no
/// timestamp, so replays are stopped by the idempotency store alone.
///
/// ```
/// use webhook_armor::verify::{Shopify, Verifier};
///
/// let shopify = Shopify::new(["shpss_secret"]).unwrap();
/// let body = br#"{"id":1}"#;
/// let (request, ()) = http::Request::post("/shopify")
///     .header("x-shopify-hmac-sha256", shopify.sign(body))
///     .header("x-shopify-webhook-id", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043")
///     .body(())
///     .unwrap()
///     .into_parts();
/// assert!(shopify.verify(&request, body).is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct Shopify(HmacScheme);

impl Shopify {
    /// A verifier for any of the app's `secrets`.
    pub fn new<I, S>(secrets: I) -> Result<Self, InvalidSecret>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        Ok(Self(
            HmacScheme::new("shopify", "x-shopify-hmac-sha256", secrets)?
                .encoding(Encoding::Base64)
                .id_header("x-shopify-webhook-id"),
        ))
    }

    /// The `X-Shopify-Hmac-Sha256` value Shopify would send for `body`.
    pub fn sign(&self, body: &[u8]) -> String {
        self.0.sign(None, body)
    }
}

impl Verifier for Shopify {
    fn verify(&self, request: &Parts, body: &[u8]) -> Result<Verified, Rejection> {
        self.0.verify(request, body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::parts;

    // Known answer computed independently with Python:
    // base64.b64encode(hmac.new(SECRET, BODY, sha256).digest())
    const SECRET: &str = "shpss_known_answer_secret";
    const BODY: &[u8] = br#"{"id":820982911946154508,"email":"jon@example.com"}"#;
    const SIGNATURE: &str = "VQZdnB0J60hHJxjOOTpOtNgzzLjfsWFGwucoQy4H71Q=";
    const ID: &str = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043";

    fn verify(signature: &str, body: &[u8]) -> Result<Verified, Rejection> {
        Shopify::new([SECRET]).unwrap().verify(
            &parts(&[
                ("X-Shopify-Hmac-Sha256", signature),
                ("X-Shopify-Webhook-Id", ID),
            ]),
            body,
        )
    }

    #[test]
    fn accepts_the_known_answer() {
        assert_eq!(verify(SIGNATURE, BODY).unwrap().id, ID);
        assert_eq!(Shopify::new([SECRET]).unwrap().sign(BODY), SIGNATURE);
    }

    #[test]
    fn rejects_tampering_truncation_and_wrong_secret() {
        assert_eq!(
            verify(SIGNATURE, &BODY[..BODY.len() - 1]),
            Err(Rejection::InvalidSignature)
        );
        assert_eq!(
            verify(&SIGNATURE.replace("VQZd", "VQZe"), BODY),
            Err(Rejection::InvalidSignature)
        );
        assert_eq!(
            verify(&SIGNATURE[..40], BODY),
            Err(Rejection::InvalidSignature)
        );
        let other = Shopify::new(["other"]).unwrap();
        let request = parts(&[
            ("X-Shopify-Hmac-Sha256", SIGNATURE),
            ("X-Shopify-Webhook-Id", ID),
        ]);
        assert_eq!(
            other.verify(&request, BODY),
            Err(Rejection::InvalidSignature)
        );
    }
}
