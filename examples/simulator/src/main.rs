//! `cargo run --release -p webhook-armor-simulator`: the simulator on
//! http://127.0.0.1:8080 (or `--port` / `PORT`), in-memory, printing the
//! secrets each provider endpoint verifies with.

use webhook_armor_simulator::{PROVIDERS, Secrets, Simulator};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .init();
    let mut port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let mut workers = 32usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().ok_or("--port needs a value")?,
            "--workers" => workers = args.next().ok_or("--workers needs a value")?.parse()?,
            "--help" | "-h" => {
                println!("usage: webhook-armor-simulator [--port PORT] [--workers N]");
                println!(
                    "secrets: WEBHOOK_SECRET, STRIPE_WEBHOOK_SECRET, GITHUB_WEBHOOK_SECRET, SLACK_SIGNING_SECRET, SHOPIFY_WEBHOOK_SECRET (generated when unset)"
                );
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}; try --help").into()),
        }
    }
    let simulator = Simulator::new(Secrets::from_env());
    simulator.spawn_background(workers, async {
        let _ = tokio::signal::ctrl_c().await;
    });
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    let address = listener.local_addr()?;
    println!("webhook-armor simulator: dashboard at http://{address}/");
    let secrets = simulator.secrets();
    for (provider, secret) in PROVIDERS.iter().zip([
        &secrets.standard,
        &secrets.stripe,
        &secrets.github,
        &secrets.slack,
        &secrets.shopify,
    ]) {
        println!("  POST http://{address}/webhooks/{provider:<8}  secret {secret}");
    }
    println!(
        "  POST http://{address}/webhook           (Standard Webhooks, same secret as standard)"
    );
    axum::serve(listener, simulator.app())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
