//! The command line of the binary: `driftless controller | crd | version | completion`, and
//! the client commands of [`driftless::cli`].

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};
use driftless::{
    render::{InputLimits, RenderSettings},
    source::{CacheLimits, Limits, TreeLimits},
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
    /// Print the version of this build and of the kustomize it would render with.
    Version(RenderBinaryArgs),
    /// Print a shell completion script: `driftless completion bash > /etc/bash_completion.d/driftless`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    #[command(flatten)]
    Client(driftless::cli::ClientCommand),
}

/// Which renderer binaries to use.
#[derive(Args, Debug)]
pub struct RenderBinaryArgs {
    /// The kustomize binary that renders kustomizations (default: `kustomize` on PATH). Its
    /// version is checked at start; without one, only plain-YAML paths can be applied.
    #[arg(long, env = "DRIFTLESS_KUSTOMIZE_BINARY")]
    pub kustomize_binary: Option<PathBuf>,

    /// The helm binary that renders `spec.helm` charts (default: `helm` on PATH). Its version
    /// is checked at start; without one, only GitRepositories without `spec.helm` work.
    #[arg(long, env = "DRIFTLESS_HELM_BINARY")]
    pub helm_binary: Option<PathBuf>,
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

    /// Leave the GitRepositories' namespaces and names out of the metrics: the per-object
    /// `driftless_ready` gauge is not exported, only `driftless_gitrepositories{ready}` counts.
    /// For clusters where whoever scrapes `/metrics` must not learn which tenants exist.
    #[arg(long, env = "DRIFTLESS_METRICS_WITHOUT_OBJECT_LABELS")]
    pub metrics_without_object_labels: bool,

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

    /// How often free heap pages are handed back to the system (glibc's `malloc_trim`), so
    /// an idle controller's RSS follows what it holds; 0s: never.
    #[arg(long, env = "DRIFTLESS_MEMORY_TRIM_INTERVAL", default_value = "60s", value_parser = parse_duration_or_never)]
    pub memory_trim_interval: Duration,

    /// Polling interval for GitRepositories that do not set `spec.interval` (e.g. 30s, 5m).
    #[arg(long, env = "DRIFTLESS_DEFAULT_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub default_interval: Duration,

    /// ServiceAccount, in each GitRepository's own namespace, that applies GitRepositories
    /// without `spec.serviceAccountName` (as Flux's --default-service-account).
    #[arg(long, env = "DRIFTLESS_DEFAULT_SERVICE_ACCOUNT")]
    pub default_service_account: Option<String>,

    /// Never apply with the controller's own identity: a GitRepository without
    /// `spec.serviceAccountName` is applied as --default-service-account, or, without one,
    /// refused (Stalled). The chart sets it in `rbac.mode=restricted`.
    #[arg(long, env = "DRIFTLESS_REQUIRE_SERVICE_ACCOUNT")]
    pub require_service_account: bool,

    /// Hosts besides the repository's own that `spec.commitStatus.address` may name, comma
    /// separated (e.g. a GitHub Enterprise API on its own host). A commit status's token is
    /// only ever sent to the repository's host or to one of these, so a tenant cannot send a
    /// token to a server of its choosing.
    #[arg(
        long,
        env = "DRIFTLESS_COMMIT_STATUS_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub commit_status_allowed_hosts: Vec<String>,
    /// Let `spec.dependsOn` name objects of another namespace although
    /// --require-service-account is set (restricted mode refuses them otherwise: a tenant's
    /// apply would wait on, and so learn the readiness of, another tenant's objects).
    #[arg(long, env = "DRIFTLESS_ALLOW_CROSS_NAMESPACE_DEPENDENCIES")]
    pub allow_cross_namespace_dependencies: bool,

    /// Do not read Argo CD's `argocd.argoproj.io/sync-wave` annotation as
    /// `driftless.dev/apply-wave` (read by default, so an Argo CD repository keeps its order).
    #[arg(long, env = "DRIFTLESS_IGNORE_ARGOCD_ANNOTATIONS")]
    pub ignore_argocd_annotations: bool,

    /// How many pull request previews (`spec.preview`) run at the same time; a newer push to
    /// a pull request cancels the preview of the older one.
    #[arg(long, env = "DRIFTLESS_PREVIEW_CONCURRENCY", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    pub preview_concurrency: u16,

    /// How many pull request previews one repository (all spellings of its URL, all
    /// GitRepositories tracking it) starts per minute; more wait their turn, with an Event
    /// saying so. 0 disables the limit.
    #[arg(long, env = "DRIFTLESS_PREVIEW_RATE_LIMIT", default_value_t = driftless::preview::rate_limit::DEFAULT_PER_MINUTE)]
    pub preview_rate_limit: u32,

    #[command(flatten)]
    pub source: SourceArgs,

    #[command(flatten)]
    pub render: RenderArgs,

    #[command(flatten)]
    pub repository_shape: RepositoryShapeArgs,

    #[command(flatten)]
    pub leader_election: LeaderElectionArgs,

    #[command(flatten)]
    pub webhook: WebhookArgs,
}

/// Rendering kustomizations with the pinned upstream kustomize, as a sandboxed child process.
#[derive(Args, Debug)]
pub struct RenderArgs {
    #[command(flatten)]
    pub binaries: RenderBinaryArgs,

    /// Most kustomize processes running at once (each may take ~100 MiB).
    #[arg(long, env = "DRIFTLESS_RENDER_CONCURRENCY", default_value_t = RenderSettings::default().concurrency)]
    pub render_concurrency: usize,

    /// Longest one render may run before its process group is killed.
    #[arg(long, env = "DRIFTLESS_RENDER_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub render_timeout: Duration,
}

impl RenderArgs {
    pub fn settings(&self) -> RenderSettings {
        RenderSettings {
            kustomize_binary: self.binaries.kustomize_binary.clone(),
            helm_binary: self.binaries.helm_binary.clone(),
            concurrency: self.render_concurrency,
            timeout: self.render_timeout,
            ..RenderSettings::default()
        }
    }
}

/// Running several replicas: one leads and reconciles, the others wait and receive webhooks.
#[derive(Args, Debug)]
pub struct LeaderElectionArgs {
    /// Elect a leader on a Lease before reconciling (needed with more than one replica).
    #[arg(long, env = "DRIFTLESS_LEADER_ELECT")]
    pub leader_elect: bool,

    /// Namespace of the Lease (default: the controller's namespace, else `default`).
    #[arg(long, env = "DRIFTLESS_LEADER_ELECTION_NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// Name of the Lease.
    #[arg(
        long,
        env = "DRIFTLESS_LEADER_ELECTION_LEASE",
        default_value = "driftless-leader"
    )]
    pub leader_election_lease: String,

    /// How long a standby waits, after it last saw the Lease renewed, before it takes over; a
    /// dead leader is replaced after this.
    #[arg(long, env = "DRIFTLESS_LEADER_ELECTION_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub leader_election_lease_duration: Duration,

    /// How long the leader tries to renew before it stops leading (and cancels its in-flight
    /// reconciles); shorter than the lease duration. Default: two thirds of the lease duration
    /// (10s of 15s).
    #[arg(long, env = "DRIFTLESS_LEADER_ELECTION_RENEW_DEADLINE", value_parser = parse_duration)]
    pub leader_election_renew_deadline: Option<Duration>,

    /// How often the leader renews (and candidates retry); shorter than the renew deadline.
    #[arg(long, env = "DRIFTLESS_LEADER_ELECTION_RENEW_PERIOD", default_value = "2s", value_parser = parse_duration)]
    pub leader_election_renew_period: Duration,
}

/// The push webhook receiver, served by every replica.
#[derive(Args, Debug)]
pub struct WebhookArgs {
    /// Address of the webhook receiver (`POST /hooks/{github,gitlab,gitea,forgejo,bitbucket,generic}`).
    #[arg(
        long,
        env = "DRIFTLESS_WEBHOOK_BIND_ADDRESS",
        default_value = "0.0.0.0:9292"
    )]
    pub webhook_bind_address: std::net::SocketAddr,

    /// Directory holding the shared receivers' secrets, one file per provider: `github`,
    /// `gitlab`, `gitea`, `bitbucket`, `generic`. A provider without a file is disabled.
    #[arg(long, env = "DRIFTLESS_WEBHOOK_SECRETS_DIR")]
    pub webhook_secrets_dir: Option<PathBuf>,

    /// Largest webhook request body in bytes; larger deliveries get 413.
    #[arg(long, env = "DRIFTLESS_WEBHOOK_MAX_BODY_BYTES", default_value_t = driftless::webhook::DEFAULT_BODY_LIMIT)]
    pub webhook_max_body_bytes: usize,

    /// Most request-body bytes all webhook receivers together hold at once (a body of unknown
    /// length counts as --webhook-max-body-bytes); requests beyond it get 503 without being
    /// read.
    #[arg(long, env = "DRIFTLESS_WEBHOOK_BODY_BUDGET_BYTES", default_value_t = driftless::webhook::DEFAULT_BODY_BUDGET, value_parser = parse_positive)]
    pub webhook_body_budget_bytes: usize,

    /// Most verified webhook deliveries whose reconcile requests are still being written at
    /// once; more get 503 and trigger nothing (the Git host retries).
    #[arg(long, env = "DRIFTLESS_WEBHOOK_MAX_IN_FLIGHT_DELIVERIES", default_value_t = driftless::webhook::DEFAULT_MAX_IN_FLIGHT_DELIVERIES, value_parser = parse_positive)]
    pub webhook_max_in_flight_deliveries: usize,

    /// How often the webhook secrets directory and TLS files are re-read, so that rotated
    /// files are used without a restart.
    #[arg(long, env = "DRIFTLESS_WEBHOOK_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub webhook_reload_interval: Duration,

    /// Webhook requests per second each receiver accepts (each shared provider and each
    /// per-object hook has its own budget); more get 429. 0 disables the limit.
    #[arg(long, env = "DRIFTLESS_WEBHOOK_RATE_LIMIT", default_value_t = driftless::webhook::RateLimit::DEFAULT.per_second, value_parser = parse_rate)]
    pub webhook_rate_limit: f64,

    /// How many webhook requests one receiver accepts at once after a quiet period.
    #[arg(long, env = "DRIFTLESS_WEBHOOK_RATE_BURST", default_value_t = driftless::webhook::RateLimit::DEFAULT.burst)]
    pub webhook_rate_burst: u32,

    /// Longest a webhook client may take to send its request head (and to finish the TLS
    /// handshake); slower connections are closed.
    #[arg(long, env = "DRIFTLESS_WEBHOOK_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub webhook_header_timeout: Duration,

    /// Longest a webhook client may take to send its request body; slower ones get 408.
    #[arg(long, env = "DRIFTLESS_WEBHOOK_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub webhook_body_timeout: Duration,

    /// Serve the receiver over HTTPS with this PEM certificate chain (with --webhook-tls-key).
    #[arg(long, env = "DRIFTLESS_WEBHOOK_TLS_CERT", requires = "webhook_tls_key")]
    pub webhook_tls_cert: Option<PathBuf>,

    /// PEM private key of --webhook-tls-cert.
    #[arg(long, env = "DRIFTLESS_WEBHOOK_TLS_KEY", requires = "webhook_tls_cert")]
    pub webhook_tls_key: Option<PathBuf>,

    /// Mutual TLS: accept only clients presenting a certificate from this PEM CA.
    #[arg(
        long,
        env = "DRIFTLESS_WEBHOOK_CLIENT_CA",
        requires = "webhook_tls_cert"
    )]
    pub webhook_client_ca: Option<PathBuf>,

    /// Do not serve webhooks at all.
    #[arg(long, env = "DRIFTLESS_DISABLE_WEBHOOK")]
    pub disable_webhook: bool,
}

impl WebhookArgs {
    pub fn rate_limit(&self) -> driftless::webhook::RateLimit {
        driftless::webhook::RateLimit {
            per_second: self.webhook_rate_limit,
            burst: self.webhook_rate_burst,
        }
    }
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

    /// Git cache entries no GitRepository used for this long are deleted (0s: never).
    #[arg(long, env = "DRIFTLESS_GIT_CACHE_MAX_AGE", default_value = "24h", value_parser = parse_duration)]
    pub git_cache_max_age: Duration,

    /// While the git cache holds more bytes than this, its least recently used entries are
    /// deleted (0: no bound). Keep it below the size of the cache's volume.
    #[arg(long, env = "DRIFTLESS_GIT_CACHE_MAX_BYTES", default_value_t = Limits::default().cache.max_bytes)]
    pub git_cache_max_bytes: u64,
}

impl SourceArgs {
    pub fn limits(&self) -> Limits {
        Limits {
            max_pack_bytes: self.max_fetch_bytes,
            tree: TreeLimits {
                max_file_bytes: self.max_manifest_file_bytes,
                max_total_bytes: self.max_manifest_total_bytes,
                max_files: self.max_manifest_files,
                ..TreeLimits::default()
            },
            cache: CacheLimits {
                max_age: self.git_cache_max_age,
                max_bytes: self.git_cache_max_bytes,
            },
        }
    }
}

/// How large and deep one revision's tree and kustomizations may be: a repository decides
/// both, so each is bounded, and the revision fails naming the bound when it is passed.
#[derive(Args, Debug)]
pub struct RepositoryShapeArgs {
    /// Most entries (files, directories, links) in one commit's whole tree, counted by path.
    #[arg(long, env = "DRIFTLESS_MAX_TREE_ENTRIES", default_value_t = TreeLimits::default().max_entries, value_parser = parse_positive)]
    pub max_tree_entries: usize,

    /// Most directories in one commit's whole tree, counted by path.
    #[arg(long, env = "DRIFTLESS_MAX_TREE_DIRECTORIES", default_value_t = TreeLimits::default().max_directories, value_parser = parse_positive)]
    pub max_tree_directories: usize,

    /// Deepest nesting of directories in one commit's tree.
    #[arg(long, env = "DRIFTLESS_MAX_TREE_DEPTH", default_value_t = TreeLimits::default().max_depth, value_parser = parse_positive)]
    pub max_tree_depth: usize,

    /// Most kustomizations one kustomize unit may reach through its bases and components, and
    /// most kustomize units under one path.
    #[arg(long, env = "DRIFTLESS_MAX_KUSTOMIZATIONS", default_value_t = InputLimits::default().max_kustomizations, value_parser = parse_positive)]
    pub max_kustomizations: usize,
}

impl RepositoryShapeArgs {
    /// `limits` with the tree's shape bounded.
    pub fn bound_source(&self, limits: Limits) -> Limits {
        Limits {
            tree: TreeLimits {
                max_entries: self.max_tree_entries,
                max_directories: self.max_tree_directories,
                max_depth: self.max_tree_depth,
                ..limits.tree
            },
            ..limits
        }
    }

    /// `settings` with the kustomizations bounded.
    pub fn bound_render(&self, settings: RenderSettings) -> RenderSettings {
        RenderSettings {
            input_limits: InputLimits {
                max_kustomizations: self.max_kustomizations,
                ..settings.input_limits
            },
            ..settings
        }
    }
}

/// A count or size that must be at least 1.
fn parse_positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(value) if value >= 1 => Ok(value),
        _ => Err(format!("{text:?} is not a whole number of at least 1")),
    }
}

/// A rate in requests per second: finite and not negative (0 disables).
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a rate: use a number of requests per second, 0 to disable"
        )),
    }
}

/// Parses Go-style durations as Kubernetes users write them: `90s`, `5m`, `1h30m`, `250ms`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    driftless::api::parse_duration(text).map_err(|error| error.to_string())
}

/// [`parse_duration`], or `0` / `0s` for "never".
fn parse_duration_or_never(text: &str) -> Result<Duration, String> {
    match text {
        "0" | "0s" => Ok(Duration::ZERO),
        _ => parse_duration(text),
    }
}
