//! Constant-time lookup of shared credentials (API keys, Basic passwords).

use http::HeaderName;
use http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::{body_digest_id, required_header};
use crate::Rejection;

/// Named credentials, kept only as SHA-256 digests.
///
/// Comparing fixed-length digests means neither the length of a stored
/// credential nor the position of the first wrong byte shows in the timing,
/// and no plaintext credential sits in memory.
#[derive(Clone, Default)]
pub(crate) struct CredentialSet {
    entries: Vec<(String, [u8; 32])>,
}

impl std::fmt::Debug for CredentialSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sources: Vec<&str> = self.entries.iter().map(|(s, _)| s.as_str()).collect();
        f.debug_struct("CredentialSet")
            .field("sources", &sources)
            .finish()
    }
}

impl CredentialSet {
    pub(crate) fn insert(&mut self, source: impl Into<String>, credential: &[u8]) {
        self.entries
            .push((source.into(), Sha256::digest(credential).into()));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The source whose credential equals `presented`; every entry is compared.
    pub(crate) fn find(&self, presented: &[u8]) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(presented).into();
        let mut found = u32::MAX;
        for (index, (_, stored)) in self.entries.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            found.conditional_assign(&index, stored.ct_eq(&digest));
        }
        self.entries
            .get(usize::try_from(found).ok()?)
            .map(|(source, _)| source.as_str())
    }
}

/// The event id for credential schemes: an id header if configured, else a
/// digest of the body.
pub(crate) fn event_id(
    request: &Parts,
    id_header: Option<&HeaderName>,
    body: &[u8],
) -> Result<String, Rejection> {
    match id_header {
        Some(name) => Ok(required_header(request, name)?.to_owned()),
        None => Ok(body_digest_id(body)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_matching_source_only() {
        let mut set = CredentialSet::default();
        set.insert("a", b"key-a");
        set.insert("b", b"key-b");
        assert_eq!(set.find(b"key-b"), Some("b"));
        assert_eq!(set.find(b"key-a"), Some("a"));
        assert_eq!(set.find(b"key-c"), None);
        assert_eq!(set.find(b""), None);
        assert!(!format!("{set:?}").contains("key-"));
    }
}
