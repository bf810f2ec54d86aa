//! Serves the guarded route on 127.0.0.1:8080 (or `PORT`), then sends itself
//! an authentic delivery, the same delivery again, and a forged one, printing
//! what each got back. Ctrl-C stops it.

use std::time::{SystemTime, UNIX_EPOCH};

use webhook_armor::verify::StandardWebhooks;

const DEMO_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .init();
    let secret = std::env::var("WEBHOOK_SECRET").unwrap_or_else(|_| DEMO_SECRET.to_owned());
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    let address = listener.local_addr()?;
    println!("webhook-armor guard example listening on http://{address}/webhook");
    println!("secret: {secret}");
    tokio::spawn(demo(address, secret.clone()));
    axum::serve(listener, webhook_armor_example_guard::app(&secret))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// Sends three deliveries over a raw TCP connection each (no HTTP client
/// dependency needed for a demo) and prints the status lines.
async fn demo(address: std::net::SocketAddr, secret: String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let body = r#"{"type":"invoice.paid","amount":4200}"#;
    let signer = StandardWebhooks::new([&secret]).expect("valid secret");
    let good = signer.sign("msg_demo_1", timestamp, body.as_bytes());
    let forged = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".to_owned();
    for (label, signature) in [
        ("authentic", &good),
        ("redelivered", &good),
        ("forged", &forged),
    ] {
        let request = format!(
            "POST /webhook HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\ncontent-type: application/json\r\n\
             webhook-id: msg_demo_1\r\nwebhook-timestamp: {timestamp}\r\nwebhook-signature: {signature}\r\n\
             content-length: {}\r\n\r\n{body}",
            body.len()
        );
        let Ok(mut stream) = tokio::net::TcpStream::connect(address).await else {
            return;
        };
        let mut response = String::new();
        if stream.write_all(request.as_bytes()).await.is_ok()
            && stream.read_to_string(&mut response).await.is_ok()
        {
            let status = response.lines().next().unwrap_or_default();
            let reply = response.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
            println!("{label:>12} delivery -> {status} {reply:?}");
        }
    }
    println!("try your own: sign with the secret above and POST to http://{address}/webhook");
}
