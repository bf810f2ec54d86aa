//! A shared API key in a header, for senders that cannot sign.

use http::HeaderName;
use http::request::Parts;

use super::credentials::{CredentialSet, event_id};
use super::{InvalidSecret, Verified, Verifier, required_header};
use crate::Rejection;

const SCHEME: &str = "api-key";

/// Accepts requests whose key header matches one source's key.
///
/// Weaker than a signature (the key travels with every request and the body
/// is not bound to it), but all some senders offer. Keys are compared in
/// constant time; the matching source's name lands in [`Verified::source`].
///
/// ```
/// use webhook_armor::verify::{ApiKey, Verifier};
///
/// let keys = ApiKey::new("x-api-key")
///     .source("billing", "k_live_billing")
///     .source("crm", "k_live_crm")
///     .id_header("x-event-id");
/// let (request, ()) = http::Request::post("/hooks")
///     .header("x-api-key", "k_live_crm")
///     .header("x-event-id", "e-42")
///     .body(())
///     .unwrap()
///     .into_parts();
/// let verified = keys.verify(&request, b"{}").unwrap();
/// assert_eq!(verified.source.as_deref(), Some("crm"));
/// ```
#[derive(Debug, Clone)]
pub struct ApiKey {
    header: HeaderName,
    keys: CredentialSet,
    id_header: Option<HeaderName>,
}

impl ApiKey {
    /// Keys read from `header` (e.g. `x-api-key`); add them with [`ApiKey::source`].
    ///
    /// # Panics
    /// If `header` is not a valid header name.
    pub fn new(header: &str) -> Self {
        Self {
            header: HeaderName::try_from(header).expect("valid header name"),
            keys: CredentialSet::default(),
            id_header: None,
        }
    }

    /// Accepts `key` as the credential of `source`. Several keys may share a
    /// source, which is how a key is rotated.
    #[must_use]
    pub fn source(mut self, source: impl Into<String>, key: impl AsRef<[u8]>) -> Self {
        self.keys.insert(source, key.as_ref());
        self
    }

    /// Reads the event id from `header` instead of digesting the body.
    ///
    /// # Panics
    /// If `header` is not a valid header name.
    #[must_use]
    pub fn id_header(mut self, header: &str) -> Self {
        self.id_header = Some(HeaderName::try_from(header).expect("valid header name"));
        self
    }

    /// Checks that at least one key is configured and none is empty.
    pub fn validate(&self) -> Result<(), InvalidSecret> {
        if self.keys.is_empty() {
            return Err(InvalidSecret("no API key configured"));
        }
        Ok(())
    }
}

impl Verifier for ApiKey {
    fn verify(&self, request: &Parts, body: &[u8]) -> Result<Verified, Rejection> {
        let presented = required_header(request, &self.header)?;
        let source = self
            .keys
            .find(presented.as_bytes())
            .ok_or(Rejection::InvalidCredentials)?;
        Ok(
            Verified::new(event_id(request, self.id_header.as_ref(), body)?, SCHEME)
                .with_source(source),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::test_support::parts;

    fn keys() -> ApiKey {
        ApiKey::new("x-api-key")
            .source("a", "key-a")
            .source("b", "key-b")
    }

    #[test]
    fn matches_keys_to_their_source() {
        let verified = keys()
            .verify(&parts(&[("x-api-key", "key-b")]), b"body")
            .unwrap();
        assert_eq!(verified.source.as_deref(), Some("b"));
        assert!(verified.id.starts_with("sha256:"));
    }

    #[test]
    fn rejects_wrong_truncated_and_missing_keys() {
        for key in ["key-c", "key-", "key-bb", "KEY-B"] {
            assert_eq!(
                keys().verify(&parts(&[("x-api-key", key)]), b""),
                Err(Rejection::InvalidCredentials),
                "{key}"
            );
        }
        assert!(matches!(
            keys().verify(&parts(&[]), b""),
            Err(Rejection::MissingHeader(_))
        ));
        assert!(ApiKey::new("x-api-key").validate().is_err());
    }
}
