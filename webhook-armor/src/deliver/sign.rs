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

/// The headers signing `body` of message `id` at `timestamp` with every
/// secret in `secrets`.
pub fn signature_headers(
    style: SigningStyle,
    secrets: &[&str],
    id: &str,
    event_type: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<HeaderMap, InvalidSecret> {
    let mut headers = HeaderMap::new();
    let value = |text: &str| {
        HeaderValue::from_str(text).map_err(|_| InvalidSecret("header-unsafe id or event type"))
    };
    match style {
        SigningStyle::StandardWebhooks => {
            let signer = StandardWebhooks::new(secrets)?;
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
        SigningStyle::StripeStyle => {
            let signer = Stripe::new(secrets)?;
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
    }
    if style == SigningStyle::StripeStyle || !event_type.is_empty() {
        headers.insert(
            HeaderName::from_static("x-webhook-event-type"),
            value(event_type)?,
        );
    }
    Ok(headers)
}
