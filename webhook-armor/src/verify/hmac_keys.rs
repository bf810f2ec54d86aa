//! The HMAC-SHA256 machinery every signing scheme shares.

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq};

use super::InvalidSecret;

type HmacSha256 = Hmac<Sha256>;

/// Length of an HMAC-SHA256 tag.
pub(crate) const TAG_LEN: usize = 32;

/// A signature as presented by the sender, decoded.
pub(crate) type Tag = [u8; TAG_LEN];

/// Standard base64 that accepts input with or without padding; senders differ.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One keyed HMAC state per secret.
///
/// The key schedule (two SHA-256 blocks) is done once here, not per request:
/// each verification clones the keyed state, which costs a memcpy.
#[derive(Clone)]
pub(crate) struct HmacKeys {
    keys: Vec<HmacSha256>,
}

impl std::fmt::Debug for HmacKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("HmacKeys")
            .field("secrets", &self.keys.len())
            .finish()
    }
}

impl HmacKeys {
    /// Keys for each secret; at least one, none empty.
    pub(crate) fn new<I, K>(secrets: I) -> Result<Self, InvalidSecret>
    where
        I: IntoIterator<Item = K>,
        K: AsRef<[u8]>,
    {
        let mut keys = Vec::new();
        for secret in secrets {
            let secret = secret.as_ref();
            if secret.is_empty() {
                return Err(InvalidSecret("empty secret"));
            }
            keys.push(HmacSha256::new_from_slice(secret).expect("HMAC accepts keys of any length"));
        }
        if keys.is_empty() {
            return Err(InvalidSecret("no secret given"));
        }
        Ok(Self { keys })
    }

    /// The tag of the concatenation of `message` under each key, in key order.
    pub(crate) fn tags(&self, message: &[&[u8]]) -> Vec<Tag> {
        self.keys
            .iter()
            .map(|key| {
                let mut mac = key.clone();
                for part in message {
                    mac.update(part);
                }
                mac.finalize().into_bytes().into()
            })
            .collect()
    }

    /// Whether any `candidate` equals the tag of `message` under any key.
    ///
    /// Every comparison runs in constant time and none short-circuits, so the
    /// time taken says nothing about how close a forged signature came.
    pub(crate) fn matches_any(&self, message: &[&[u8]], candidates: &[Tag]) -> bool {
        let mut matched = Choice::from(0);
        for key in &self.keys {
            let mut mac = key.clone();
            for part in message {
                mac.update(part);
            }
            let tag: Tag = mac.finalize().into_bytes().into();
            for candidate in candidates {
                matched |= tag.ct_eq(candidate);
            }
        }
        matched.into()
    }
}

/// Decodes a hex signature; `None` unless it is exactly one tag long.
pub(crate) fn decode_hex_tag(text: &str) -> Option<Tag> {
    let mut tag = [0u8; TAG_LEN];
    hex::decode_to_slice(text, &mut tag).ok()?;
    Some(tag)
}

/// Decodes a base64 signature; `None` unless it is exactly one tag long.
pub(crate) fn decode_base64_tag(text: &str) -> Option<Tag> {
    // Room for one byte more than a tag, so a longer signature is detected
    // instead of silently truncated.
    let mut buffer = [0u8; TAG_LEN + 3];
    let written = BASE64_LENIENT.decode_slice(text, &mut buffer).ok()?;
    (written == TAG_LEN).then(|| buffer[..TAG_LEN].try_into().expect("length checked"))
}

/// Decodes standard base64 (with or without padding) of any length.
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    BASE64_LENIENT.decode(text).ok()
}

/// Encodes a tag as standard, padded base64.
pub(crate) fn encode_base64(bytes: &[u8]) -> String {
    general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_empty_and_missing_secrets() {
        assert!(HmacKeys::new([b"".as_slice()]).is_err());
        assert!(HmacKeys::new(Vec::<Vec<u8>>::new()).is_err());
    }

    #[test]
    fn tags_have_exact_length_or_are_refused() {
        let hex_tag = "00".repeat(TAG_LEN);
        assert!(decode_hex_tag(&hex_tag).is_some());
        assert!(decode_hex_tag(&hex_tag[2..]).is_none(), "truncated");
        assert!(
            decode_hex_tag(&format!("{hex_tag}00")).is_none(),
            "too long"
        );
        let b64 = encode_base64(&[7u8; TAG_LEN]);
        assert_eq!(decode_base64_tag(&b64), Some([7u8; TAG_LEN]));
        assert_eq!(
            decode_base64_tag(b64.trim_end_matches('=')),
            Some([7u8; TAG_LEN])
        );
        assert!(decode_base64_tag(&encode_base64(&[7u8; TAG_LEN - 1])).is_none());
        assert!(decode_base64_tag(&encode_base64(&[7u8; TAG_LEN + 1])).is_none());
        assert!(decode_base64_tag("").is_none());
    }

    #[test]
    fn debug_hides_key_material() {
        let keys = HmacKeys::new([b"super-secret".as_slice()]).unwrap();
        assert!(!format!("{keys:?}").contains("super"));
    }
}
