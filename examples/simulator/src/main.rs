//! `cargo run --release -p webhook-armor-simulator`: the simulator on
//! http://127.0.0.1:8080, in memory, printing the secrets each provider
//! endpoint verifies with. `--help` for the backends and roles.

use clap::{Parser, ValueEnum};
use webhook_armor_simulator::{Backends, PROVIDERS, Secrets, Simulator};

/// mimalloc, as we recommend for a service on webhook-armor: glibc's malloc
/// cost a busy pipeline much of its time in the benches (see the README).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    /// The API, the dashboard and the workers in one process.
    All,
    /// The API and the dashboard only; `worker` processes do the work.
    Api,
    /// Workers only, sharing the queue with an `api` process.
    Worker,
}

#[derive(Debug, Parser)]
#[command(
    about = "The webhook-armor simulator: a full webhook pipeline with a live dashboard",
    after_help = "Without --redis or --postgres everything lives in this process. With one of \
                  them, run one `--role api` and any number of `--role worker` processes on the \
                  same URL and namespace; the dashboard shows every worker's events."
)]
struct Args {
    /// Port on 127.0.0.1 for the API and dashboard.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    port: u16,
    /// Address to bind (0.0.0.0 inside a container).
    #[arg(long, env = "BIND", default_value = "127.0.0.1")]
    bind: String,
    /// Jobs processed at once per process.
    #[arg(long, env = "WORKERS", default_value_t = 32)]
    workers: usize,
    /// Share the pipeline through Redis at this URL.
    #[arg(long, env = "REDIS_URL", conflicts_with = "postgres")]
    redis: Option<String>,
    /// Share the pipeline through PostgreSQL at this URL.
    #[arg(long, env = "DATABASE_URL")]
    postgres: Option<String>,
    /// Redis key prefix or PostgreSQL schema of this pipeline.
    #[arg(long, env = "NAMESPACE", default_value = "webhook_armor_sim")]
    namespace: String,
    /// What this process runs.
    #[arg(long, env = "ROLE", value_enum, default_value_t = Role::All)]
    role: Role,
    /// Standard Webhooks secret (`whsec_...`) of /webhook and /webhooks/standard.
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// Secret of /webhooks/stripe.
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    stripe_secret: Option<String>,
    /// Secret of /webhooks/github.
    #[arg(long, env = "GITHUB_WEBHOOK_SECRET", hide_env_values = true)]
    github_secret: Option<String>,
    /// Secret of /webhooks/slack.
    #[arg(long, env = "SLACK_SIGNING_SECRET", hide_env_values = true)]
    slack_secret: Option<String>,
    /// Secret of /webhooks/shopify.
    #[arg(long, env = "SHOPIFY_WEBHOOK_SECRET", hide_env_values = true)]
    shopify_secret: Option<String>,
}

impl Args {
    fn secrets(&self) -> Secrets {
        let generated = Secrets::generated();
        let pick = |given: &Option<String>, fallback: String| {
            given.clone().filter(|s| !s.is_empty()).unwrap_or(fallback)
        };
        Secrets {
            standard: pick(&self.webhook_secret, generated.standard),
            stripe: pick(&self.stripe_secret, generated.stripe),
            github: pick(&self.github_secret, generated.github),
            slack: pick(&self.slack_secret, generated.slack),
            shopify: pick(&self.shopify_secret, generated.shopify),
        }
    }

    async fn backends(&self) -> Result<Backends, String> {
        match (&self.redis, &self.postgres) {
            (Some(url), _) => Backends::redis(url, &self.namespace).await,
            (None, Some(url)) => Backends::postgres(url, &self.namespace).await,
            (None, None) if self.role != Role::All => Err(
                "--role api and --role worker share a pipeline: give --redis URL or --postgres URL"
                    .into(),
            ),
            (None, None) => Ok(Backends::memory()),
        }
    }
}

/// Ctrl-C or SIGTERM (what `docker stop` sends).
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let backends = args.backends().await?;
    let kind = backends.kind;
    let simulator = Simulator::with_backends(args.secrets(), backends);

    if args.role == Role::Worker {
        println!(
            "webhook-armor simulator: worker ({} jobs at once) on {kind}, namespace {}",
            args.workers, args.namespace
        );
        simulator
            .spawn_worker(args.workers, shutdown_signal())
            .await?;
        return Ok(());
    }

    simulator.spawn_collector();
    if args.role == Role::All {
        simulator.spawn_worker(args.workers, shutdown_signal());
    }
    let listener = tokio::net::TcpListener::bind((args.bind.as_str(), args.port)).await?;
    let address = listener.local_addr()?;
    println!("webhook-armor simulator: dashboard at http://{address}/ ({kind} backend)");
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
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}
