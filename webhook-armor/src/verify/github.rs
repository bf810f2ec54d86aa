//! GitHub's `X-Hub-Signature-256` scheme.

use http::request::Parts;

use super::{Encoding, HmacScheme, InvalidSecret, Verified, Verifier};
use crate::Rejection;

/// Verifies GitHub webhook deliveries.
///
/// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`, keyed with the
/// webhook secret; the id is the `X-GitHub-Delivery` GUID, which a redelivery
/// keeps. GitHub signs no timestamp, so the replay window cannot apply: the
/// idempotency store is what stops a captured delivery from being replayed.
///
/// ```
/// use webhook_armor::verify::{GitHub, Verifier};
///
/// // The example from GitHub's documentation.
/// let github = GitHub::new(["It's a Secret to Everybody"]).unwrap();
/// let (request, ()) = http::Request::post("/github")
///     .header("x-hub-signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
///     .header("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
///     .body(())
///     .unwrap()
///     .into_parts();
/// assert!(github.verify(&request, b"Hello, World!").is_ok());
/// ```
#[derive(Debug, Clone)]
pub struct GitHub(HmacScheme);

impl GitHub {
    /// A verifier for any of the webhook `secrets`.
    pub fn new<I, S>(secrets: I) -> Result<Self, InvalidSecret>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        Ok(Self(
            HmacScheme::new("github", "x-hub-signature-256", secrets)?
                .prefix("sha256=")
                .encoding(Encoding::Hex)
                .id_header("x-github-delivery"),
        ))
    }

    /// The `X-Hub-Signature-256` value GitHub would send for `body`.
    pub fn sign(&self, body: &[u8]) -> String {
        self.0.sign(None, body)
    }
}

impl Verifier for GitHub {
    fn verify(&self, request: &Parts, body: &[u8]) -> Result<Verified, Rejection> {
        self.0.verify(request, body)
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderName;

    use super::*;
    use crate::verify::test_support::parts;

    // From GitHub's "Validating webhook deliveries" documentation.
    const SECRET: &str = "It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
    const DELIVERY: &str = "72d3162e-cc78-11e3-81ab-4c9367dc0958";

    fn verify(signature: &str, body: &[u8]) -> Result<Verified, Rejection> {
        GitHub::new([SECRET]).unwrap().verify(
            &parts(&[
                ("X-Hub-Signature-256", signature),
                ("X-GitHub-Delivery", DELIVERY),
            ]),
            body,
        )
    }

    #[test]
    fn accepts_the_documented_example() {
        let verified = verify(SIGNATURE, BODY).unwrap();
        assert_eq!(verified.id, DELIVERY);
        assert_eq!(verified.timestamp, None);
        assert_eq!(GitHub::new([SECRET]).unwrap().sign(BODY), SIGNATURE);
    }

    #[test]
    fn rejects_tampering_truncation_and_wrong_secrets() {
        assert_eq!(
            verify(SIGNATURE, b"Hello, World?"),
            Err(Rejection::InvalidSignature)
        );
        assert_eq!(
            verify(&SIGNATURE.replace("7571", "7570"), BODY),
            Err(Rejection::InvalidSignature)
        );
        assert_eq!(
            verify(&SIGNATURE[..SIGNATURE.len() - 2], BODY),
            Err(Rejection::InvalidSignature)
        );
        assert_eq!(verify("sha256=", BODY), Err(Rejection::InvalidSignature));
        let other = GitHub::new(["another secret"]).unwrap();
        let request = parts(&[
            ("X-Hub-Signature-256", SIGNATURE),
            ("X-GitHub-Delivery", DELIVERY),
        ]);
        assert_eq!(
            other.verify(&request, BODY),
            Err(Rejection::InvalidSignature)
        );
    }

    #[test]
    fn requires_the_delivery_id() {
        let result = GitHub::new([SECRET])
            .unwrap()
            .verify(&parts(&[("X-Hub-Signature-256", SIGNATURE)]), BODY);
        assert_eq!(
            result,
            Err(Rejection::MissingHeader(HeaderName::from_static(
                "x-github-delivery"
            )))
        );
    }
}
