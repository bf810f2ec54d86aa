//! HTTP Basic credentials, for senders that cannot sign.

use http::HeaderName;
use http::header::AUTHORIZATION;
use http::request::Parts;

use super::credentials::{CredentialSet, event_id};
use super::hmac_keys::decode_base64;
use super::{InvalidSecret, Verified, Verifier, required_header};
use crate::Rejection;

const SCHEME: &str = "basic";

/// Accepts requests with `Authorization: Basic` credentials of a known user.
///
/// The user name becomes [`Verified::source`]. Credentials are compared as
/// digests of `user:password` in constant time.
///
/// ```
/// use webhook_armor::verify::{BasicAuth, Verifier};
///
/// let basic = BasicAuth::new().user("partner", "s3cret");
/// let (request, ()) = http::Request::post("/hooks")
///     .header("authorization", "Basic cGFydG5lcjpzM2NyZXQ=")
///     .body(())
///     .unwrap()
///     .into_parts();
/// assert_eq!(basic.verify(&request, b"{}").unwrap().source.as_deref(), Some("partner"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct BasicAuth {
    credentials: CredentialSet,
    id_header: Option<HeaderName>,
}

impl BasicAuth {
    /// No users yet; add them with [`BasicAuth::user`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `user` with `password`.
    #[must_use]
    pub fn user(mut self, user: impl Into<String>, password: impl AsRef<str>) -> Self {
        let user = user.into();
        let pair = format!("{user}:{}", password.as_ref());
        self.credentials.insert(user, pair.as_bytes());
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

    /// Checks that at least one user is configured.
    pub fn validate(&self) -> Result<(), InvalidSecret> {
        if self.credentials.is_empty() {
            return Err(InvalidSecret("no Basic credentials configured"));
        }
        Ok(())
    }
}

impl Verifier for BasicAuth {
    fn verify(&self, request: &Parts, body: &[u8]) -> Result<Verified, Rejection> {
        let header = required_header(request, &AUTHORIZATION)?;
        let (scheme, encoded) = header
            .split_once(' ')
            .ok_or(Rejection::MalformedHeader(AUTHORIZATION))?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(Rejection::MalformedHeader(AUTHORIZATION));
        }
        let pair =
            decode_base64(encoded.trim()).ok_or(Rejection::MalformedHeader(AUTHORIZATION))?;
        let source = self
            .credentials
            .find(&pair)
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
    use crate::verify::hmac_keys::encode_base64;
    use crate::verify::test_support::parts;

    fn header(pair: &str) -> String {
        format!("Basic {}", encode_base64(pair.as_bytes()))
    }

    #[test]
    fn accepts_known_users_only() {
        let basic = BasicAuth::new().user("a", "pw-a").user("b", "pw-b");
        let ok = basic.verify(&parts(&[("authorization", &header("b:pw-b"))]), b"");
        assert_eq!(ok.unwrap().source.as_deref(), Some("b"));
        for pair in ["b:pw-a", "b:pw-", "c:pw-b", "b", ":"] {
            assert_eq!(
                basic.verify(&parts(&[("authorization", &header(pair))]), b""),
                Err(Rejection::InvalidCredentials),
                "{pair}"
            );
        }
        assert_eq!(
            basic.verify(&parts(&[("authorization", "Bearer abc")]), b""),
            Err(Rejection::MalformedHeader(AUTHORIZATION))
        );
        assert_eq!(
            basic.verify(&parts(&[("authorization", "Basic !!!")]), b""),
            Err(Rejection::MalformedHeader(AUTHORIZATION))
        );
    }
}
