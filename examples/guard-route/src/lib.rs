//! Guarding an axum webhook route with webhook-armor: the whole setup.
//!
//! `app` is what a service adds; `main.rs` serves it and sends itself a few
//! webhooks to show what happens to each.

use axum::routing::post;
use axum::{Extension, Router};
use webhook_armor::verify::StandardWebhooks;
use webhook_armor::{Verified, WebhookArmorLayer};

/// The receiving service: `POST /webhook`, Standard Webhooks signed with `secret`.
///
/// The handler runs only for authentic, fresh, first-time deliveries; it
/// reads the verified event id from the request's extensions.
///
/// # Panics
/// If `secret` is not a `whsec_<base64>` secret.
pub fn app(secret: &str) -> Router {
    let verifier = StandardWebhooks::new([secret]).expect("a whsec_ secret");
    Router::new()
        .route("/webhook", post(handle))
        .layer(WebhookArmorLayer::new(verifier))
}

async fn handle(Extension(event): Extension<Verified>, body: String) -> String {
    // Your business logic goes here: by now the request is authentic, fresh
    // and seen for the first time.
    format!("processed {} ({} bytes)\n", event.id, body.len())
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn delivery(id: &str, body: &'static str, secret: &str) -> Request<Body> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let signature =
            StandardWebhooks::new([secret])
                .unwrap()
                .sign(id, timestamp, body.as_bytes());
        Request::post("/webhook")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(Body::from(body))
            .unwrap()
    }

    async fn body_text(response: axum::response::Response) -> String {
        String::from_utf8(
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn authentic_delivery_is_processed() {
        let response = app(SECRET)
            .oneshot(delivery("msg_1", "{}", SECRET))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body_text(response).await, "processed msg_1 (2 bytes)\n");
    }

    #[tokio::test]
    async fn forged_delivery_is_refused() {
        let forged = delivery("msg_1", "{}", "whsec_ZmFrZS1zZWNyZXQtZmFrZQ==");
        let response = app(SECRET).oneshot(forged).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn redelivery_is_answered_without_processing_again() {
        let app = app(SECRET);
        let first = app
            .clone()
            .oneshot(delivery("msg_1", "{}", SECRET))
            .await
            .unwrap();
        assert_eq!(body_text(first).await, "processed msg_1 (2 bytes)\n");
        let again = app.oneshot(delivery("msg_1", "{}", SECRET)).await.unwrap();
        assert_eq!(again.status(), StatusCode::OK);
        assert_eq!(
            body_text(again).await,
            "ok",
            "answered by the layer, not the handler"
        );
    }
}
