//! Signing outbound deliveries so receivers can verify them.

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::verify::{InvalidSecret, StandardWebhooks, Stripe};

/// How deliveries are signed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SigningStyle {
    /// `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`
    /// (one entry per secret in rotation): what
    /// [`StandardWebhooks`] verifies.
    #[default]
    StandardWebhooks,
    /// `X-Webhook-Signature: t=<ts>,v1=<hex>` (one `v1` per secret) with
    /// `X-Webhook-Event-ID`, `X-Webhook-Event-Type` and `X-Webhook-Timestamp`;
    /// the signed content and key follow Stripe's scheme.
    StripeStyle,
}

/// Prepared signing keys of one endpoint: decoding secrets and the HMAC key
/// schedule happen once here, not per delivery.
#[derive(Debug, Clone)]
pub struct Signer {
    style: SigningStyle,
    standard: Option<StandardWebhooks>,
    stripe: Option<Stripe>,
}

impl Signer {
    /// A signer of `style` with every secret in `secrets`.
    pub fn new(style: SigningStyle, secrets: &[&str]) -> Result<Self, InvalidSecret> {
        let (standard, stripe) = match style {
            SigningStyle::StandardWebhooks => (Some(StandardWebhooks::new(secrets)?), None),
            SigningStyle::StripeStyle => (None, Some(Stripe::new(secrets)?)),
        };
        Ok(Self {
            style,
            standard,
            stripe,
        })
    }

    /// The headers signing `body` of message `id` at `timestamp`.
    pub fn headers(
        &self,
        id: &str,
        event_type: &str,
        timestamp: i64,
        body: &[u8],
    ) -> Result<HeaderMap, InvalidSecret> {
        let mut headers = HeaderMap::new();
        let value = |text: &str| {
            HeaderValue::from_str(text).map_err(|_| InvalidSecret("header-unsafe id or event type"))
        };
        if let Some(signer) = &self.standard {
            headers.insert(HeaderName::from_static("webhook-id"), value(id)?);
            headers.insert(
                HeaderName::from_static("webhook-timestamp"),
                value(&timestamp.to_string())?,
            );
            headers.insert(
                HeaderName::from_static("webhook-signature"),
                value(&signer.sign(id, timestamp, body))?,
            );
        }
        if let Some(signer) = &self.stripe {
            headers.insert(
                HeaderName::from_static("x-webhook-signature"),
                value(&signer.sign(timestamp, body))?,
            );
            headers.insert(HeaderName::from_static("x-webhook-event-id"), value(id)?);
            headers.insert(
                HeaderName::from_static("x-webhook-timestamp"),
                value(&timestamp.to_string())?,
            );
        }
        if self.style == SigningStyle::StripeStyle || !event_type.is_empty() {
            headers.insert(
                HeaderName::from_static("x-webhook-event-type"),
                value(event_type)?,
            );
        }
        Ok(headers)
    }
}

/// The headers signing `body` of message `id` at `timestamp` with every
/// secret in `secrets` (a one-off [`Signer`]).
pub fn signature_headers(
    style: SigningStyle,
    secrets: &[&str],
    id: &str,
    event_type: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<HeaderMap, InvalidSecret> {
    Signer::new(style, secrets)?.headers(id, event_type, timestamp, body)
}
