mod flags;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};
use driftless::{
    controller::{LeaderElectionSettings, WebhookSettings, WebhookTls, process_identity},
    telemetry::metrics::{self, Metrics, Readiness},
};
use flags::{Cli, Command, ControllerArgs};

/// Installed as `kubectl-driftless`, the binary is a kubectl plugin: `kubectl driftless get`.
const PLUGIN_NAME: &str = "kubectl-driftless";

fn main() -> ExitCode {
    // Before the runtime's threads allocate: see `driftless::memory`.
    driftless::memory::cap_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build();
    match runtime {
        Ok(runtime) => runtime.block_on(run()),
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let cli = parse_command_line();
    if !matches!(cli.command, Command::Controller(_)) {
        end_quietly_when_the_reader_leaves();
    }
    let result = match cli.command {
        Command::Client(command) => return driftless::cli::run(command).await,
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
            let binary = args.helm_binary.as_deref();
            match driftless::render::Helm::locate(binary, None).await {
                Ok(helm) => println!("helm {} ({})", helm.version, helm.binary.display()),
                Err(error) => println!("helm: {error}"),
            }
            Ok(())
        }
        Command::Completion { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, invoked_as(), &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// A client command whose reader went away (`driftless get --watch | head`) ends as other Unix
/// tools do, by SIGPIPE, instead of panicking at its next `println!` (Rust ignores SIGPIPE).
/// Only for client commands: the controller's sockets must never end the process, and its
/// network writes do not raise SIGPIPE anyway (they are sent with `MSG_NOSIGNAL`).
fn end_quietly_when_the_reader_leaves() {
    // SAFETY: restores the default disposition of one signal before any thread writes output.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Usage and errors name the program the way it was called, so a plugin user reads
/// `kubectl driftless get`, not `driftless get`.
fn parse_command_line() -> Cli {
    let command = Cli::command();
    let command = match invoked_as() {
        PLUGIN_NAME => command.bin_name("kubectl driftless"),
        _ => command,
    };
    Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|error| error.exit())
}

fn invoked_as() -> &'static str {
    let program = std::env::args_os().next().unwrap_or_default();
    let name = std::path::Path::new(&program)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if name.starts_with(PLUGIN_NAME) {
        PLUGIN_NAME
    } else {
        "driftless"
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
            body_budget_bytes: args.webhook.webhook_body_budget_bytes,
            max_in_flight_deliveries: args.webhook.webhook_max_in_flight_deliveries,
            reload_interval: args.webhook.webhook_reload_interval,
            rate_limit: args.webhook.rate_limit(),
            header_timeout: args.webhook.webhook_header_timeout,
            body_timeout: args.webhook.webhook_body_timeout,
            tls: webhook_tls(&args),
        }),
        default_interval: args.default_interval,
        git_cache_dir: args.source.git_cache_dir.clone(),
        git_stall_timeout: args.source.git_stall_timeout,
        source_limits: args.repository_shape.bound_source(args.source.limits()),
        default_service_account: args.default_service_account.clone(),
        require_service_account: args.require_service_account,
        render: args.repository_shape.bound_render(args.render.settings()),
        commit_status_allowed_hosts: args.commit_status_allowed_hosts.clone(),
        commit_status_retry: Default::default(),
        allow_cross_namespace_dependencies: args.allow_cross_namespace_dependencies,
        ignore_argocd_annotations: args.ignore_argocd_annotations,
        preview_concurrency: usize::from(args.preview_concurrency),
        preview_rate_limit: args.preview_rate_limit,
    };
    tracing::info!(
        version = driftless::VERSION,
        ?settings,
        "starting controller"
    );
    let metrics = Metrics::new(metrics::Options {
        object_labels: !args.metrics_without_object_labels,
    });
    let readiness = Readiness::default();
    let endpoints = metrics::serve_endpoints(
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
    tokio::spawn(driftless::memory::keep_trimming(args.memory_trim_interval));
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
        renew_deadline: election
            .leader_election_renew_deadline
            .unwrap_or(election.leader_election_lease_duration * 2 / 3),
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
