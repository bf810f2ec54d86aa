//! The server the load generator measures: the full inbound pipeline on one
//! backend, or the bare axum baseline.
//!
//! ```sh
//! cargo run --release -p webhook-armor-benches --bin pipeline-server -- memory --port 9000
//! ```
//!
//! Prints `listening on http://ADDR` as its first line, then serves
//! `POST /webhook` and `GET /stats` until stdin closes or Ctrl-C, so a parent
//! process that dies takes its server with it.

use std::time::Duration;

use clap::Parser;
use tokio::io::AsyncReadExt;
use webhook_armor_benches::server::{Pipeline, ServerOptions, Target};

#[derive(Debug, Parser)]
#[command(about = "The inbound pipeline (or the bare baseline) behind POST /webhook")]
struct Args {
    /// bare, memory, redis (REDIS_URL) or postgres (DATABASE_URL).
    target: String,
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Seconds completed ids are remembered for dedupe (their TTL).
    #[arg(long, default_value_t = 60)]
    retention_secs: u64,
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse();
    let target = Target::parse(&args.target)?;
    let options = ServerOptions {
        completed_retention: Duration::from_secs(args.retention_secs),
        ..ServerOptions::default()
    };
    let pipeline = Pipeline::build(&target, &options).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = pipeline.spawn_worker(&options, {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    });

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .map_err(|error| format!("cannot listen on port {}: {error}", args.port))?;
    let address = listener.local_addr().map_err(|error| error.to_string())?;
    println!("listening on http://{address}");

    tokio::spawn(async move {
        // EOF on stdin (the parent closed it or died) or Ctrl-C: stop.
        let mut sink = [0u8; 64];
        let mut stdin = tokio::io::stdin();
        tokio::select! {
            _ = async { while stdin.read(&mut sink).await.is_ok_and(|n| n > 0) {} } => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        let _ = stop.send(true);
    });
    let mut stopped_serving = stopped.clone();
    axum::serve(listener, pipeline.router.clone())
        .with_graceful_shutdown(async move {
            let _ = stopped_serving.wait_for(|stop| *stop).await;
        })
        .await
        .map_err(|error| error.to_string())?;
    if let Some(worker) = worker {
        let _ = worker.await;
    }
    pipeline.clean_up().await;
    Ok(())
}
