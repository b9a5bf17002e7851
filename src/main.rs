mod cli;

use clap::Parser;
use cli::{Cli, Command, ControllerArgs};
use driftless::telemetry::metrics::{self, Metrics, Readiness};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Controller(args) => run_controller(*args).await,
        Command::Crd => {
            print!("{}", driftless::api::crd_yaml());
            Ok(())
        }
        Command::Version => {
            println!("driftless {}", driftless::VERSION);
            Ok(())
        }
    }
}

async fn run_controller(args: ControllerArgs) -> anyhow::Result<()> {
    driftless::telemetry::init_logging(args.log_format, &args.log_level);
    let config = kube::Config::infer().await?;
    let settings = driftless::controller::Settings {
        concurrency: args.concurrency,
        apply_concurrency: args.apply_concurrency,
        namespace: args.namespace.clone(),
        controller_namespace: args.controller_namespace.clone(),
        default_interval: args.default_interval,
        git_cache_dir: args.source.git_cache_dir.clone(),
        git_stall_timeout: args.source.git_stall_timeout,
        source_limits: args.source.limits(),
    };
    tracing::info!(
        version = driftless::VERSION,
        ?settings,
        "starting controller"
    );
    let metrics = Metrics::default();
    let readiness = Readiness::default();
    let endpoints = metrics::serve(
        args.metrics_bind_address,
        metrics.clone(),
        readiness.clone(),
    );
    tokio::spawn(async move {
        if let Err(error) = endpoints.await {
            tracing::error!(%error, "metrics and health endpoints stopped");
        }
    });
    readiness.set(true);
    driftless::controller::run(config, settings, metrics).await?;
    Ok(())
}
