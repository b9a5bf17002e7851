//! The command line: `driftless controller | crd | version`.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use driftless::telemetry::LogFormat;

/// driftless: a GitOps reconciliation controller for Kubernetes.
#[derive(Parser, Debug)]
#[command(name = "driftless", version = driftless::VERSION)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the operator: reconcile every GitRepository in the cluster.
    Controller(ControllerArgs),
    /// Print the CustomResourceDefinitions as YAML (what `crds/` and the Helm chart ship).
    Crd,
    /// Print the version of this build.
    Version,
}

#[derive(Args, Debug)]
pub struct ControllerArgs {
    /// Log line format: `text` for terminals, `json` for log collectors.
    #[arg(long, env = "DRIFTLESS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter, e.g. `info` or `driftless=debug,kube=info` (RUST_LOG wins when set).
    #[arg(long, env = "DRIFTLESS_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// How many GitRepositories are reconciled at the same time.
    #[arg(long, env = "DRIFTLESS_CONCURRENCY", default_value_t = 8)]
    pub concurrency: u16,

    /// Polling interval for GitRepositories that do not set `spec.interval` (e.g. 30s, 5m).
    #[arg(long, env = "DRIFTLESS_DEFAULT_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub default_interval: Duration,
}

/// Parses Go-style durations as Kubernetes users write them: `90s`, `5m`, `1h30m`, `250ms`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    driftless::api::parse_duration(text).map_err(|error| error.to_string())
}
