mod cli;

use clap::Parser;
use cli::{Cli, Command, ControllerArgs};
use driftless::{
    controller::{LeaderElectionSettings, WebhookSettings, WebhookTls, process_identity},
    telemetry::metrics::{self, Metrics, Readiness},
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Controller(args) => run_controller(*args).await,
        Command::Crd => {
            print!("{}", driftless::api::crd_yaml());
            Ok(())
        }
        Command::Version(args) => {
            println!("driftless {}", driftless::VERSION);
            let binary = args.kustomize_binary.as_deref();
            match driftless::render::Kustomize::locate(binary, None).await {
                Ok(kustomize) => println!(
                    "kustomize {} ({})",
                    kustomize.version,
                    kustomize.binary.display()
                ),
                Err(error) => println!("kustomize: {error}"),
            }
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
        leader_election: leader_election(&args),
        webhook: (!args.webhook.disable_webhook).then(|| WebhookSettings {
            bind_address: args.webhook.webhook_bind_address,
            secrets_dir: args.webhook.webhook_secrets_dir.clone(),
            max_body_bytes: args.webhook.webhook_max_body_bytes,
            rate_limit: args.webhook.rate_limit(),
            header_timeout: args.webhook.webhook_header_timeout,
            body_timeout: args.webhook.webhook_body_timeout,
            tls: webhook_tls(&args),
        }),
        default_interval: args.default_interval,
        git_cache_dir: args.source.git_cache_dir.clone(),
        git_stall_timeout: args.source.git_stall_timeout,
        source_limits: args.source.limits(),
        render: args.render.settings(),
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

fn leader_election(args: &ControllerArgs) -> Option<LeaderElectionSettings> {
    let election = &args.leader_election;
    election.leader_elect.then(|| LeaderElectionSettings {
        namespace: election
            .leader_election_namespace
            .clone()
            .or_else(|| args.controller_namespace.clone())
            .unwrap_or_else(|| "default".into()),
        lease_name: election.leader_election_lease.clone(),
        identity: process_identity(),
        lease_duration: election.leader_election_lease_duration,
        renew_period: election.leader_election_renew_period,
    })
}

fn webhook_tls(args: &ControllerArgs) -> Option<WebhookTls> {
    let webhook = &args.webhook;
    Some(WebhookTls {
        cert: webhook.webhook_tls_cert.clone()?,
        key: webhook.webhook_tls_key.clone()?,
        client_ca: webhook.webhook_client_ca.clone(),
    })
}
