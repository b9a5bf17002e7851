//! The command line: `driftless controller | crd | version`.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use driftless::{
    source::{Limits, TreeLimits},
    telemetry::LogFormat,
};

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
    Controller(Box<ControllerArgs>),
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

    /// Address of the `/metrics`, `/healthz` and `/readyz` endpoints.
    #[arg(
        long,
        env = "DRIFTLESS_METRICS_BIND_ADDRESS",
        default_value = "0.0.0.0:8080"
    )]
    pub metrics_bind_address: std::net::SocketAddr,

    /// Watch GitRepositories in this namespace only (default: all namespaces).
    #[arg(long, env = "DRIFTLESS_NAMESPACE")]
    pub namespace: Option<String>,

    /// The namespace the controller runs in (the Helm chart sets it from the pod); it is
    /// never pruned.
    #[arg(long, env = "POD_NAMESPACE")]
    pub controller_namespace: Option<String>,

    /// How many objects of one revision are applied at the same time.
    #[arg(long, env = "DRIFTLESS_APPLY_CONCURRENCY", default_value_t = 8)]
    pub apply_concurrency: usize,

    /// Polling interval for GitRepositories that do not set `spec.interval` (e.g. 30s, 5m).
    #[arg(long, env = "DRIFTLESS_DEFAULT_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub default_interval: Duration,

    #[command(flatten)]
    pub source: SourceArgs,
}

/// Where repositories are cached and how much one revision may bring in.
#[derive(Args, Debug)]
pub struct SourceArgs {
    /// Directory of the persistent cache of bare repositories (an emptyDir in the Helm chart).
    #[arg(
        long,
        env = "DRIFTLESS_GIT_CACHE_DIR",
        default_value = "/var/cache/driftless/git"
    )]
    pub git_cache_dir: PathBuf,

    /// Longest a git server may stay silent before the operation is abandoned.
    #[arg(long, env = "DRIFTLESS_GIT_STALL_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub git_stall_timeout: Duration,

    /// Most bytes one fetch may receive.
    #[arg(long, env = "DRIFTLESS_MAX_FETCH_BYTES", default_value_t = Limits::default().max_pack_bytes)]
    pub max_fetch_bytes: u64,

    /// Largest manifest file, in bytes.
    #[arg(long, env = "DRIFTLESS_MAX_MANIFEST_FILE_BYTES", default_value_t = Limits::default().tree.max_file_bytes)]
    pub max_manifest_file_bytes: u64,

    /// Most manifest bytes in one revision's path.
    #[arg(long, env = "DRIFTLESS_MAX_MANIFEST_TOTAL_BYTES", default_value_t = Limits::default().tree.max_total_bytes)]
    pub max_manifest_total_bytes: u64,

    /// Most manifest files in one revision's path.
    #[arg(long, env = "DRIFTLESS_MAX_MANIFEST_FILES", default_value_t = Limits::default().tree.max_files)]
    pub max_manifest_files: usize,
}

impl SourceArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            max_pack_bytes: self.max_fetch_bytes,
            tree: TreeLimits {
                max_file_bytes: self.max_manifest_file_bytes,
                max_total_bytes: self.max_manifest_total_bytes,
                max_files: self.max_manifest_files,
            },
        }
    }
}

/// Parses Go-style durations as Kubernetes users write them: `90s`, `5m`, `1h30m`, `250ms`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    driftless::api::parse_duration(text).map_err(|error| error.to_string())
}
