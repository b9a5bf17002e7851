//! Running driftless's controller in tests: settings scoped to a test namespace, and plain
//! HTTP to its endpoints.

use std::{
    io::{Read, Write},
    path::Path,
    time::Duration,
};

use driftless::{controller::Settings, source::Limits, telemetry::metrics::Metrics};

/// Settings for an in-process controller that watches only `namespace`, polls every
/// `interval`, and has neither leader election nor webhooks.
pub fn settings_for(namespace: &str, cache: &Path, interval: Duration) -> Settings {
    Settings {
        concurrency: 4,
        apply_concurrency: 4,
        default_interval: interval,
        git_cache_dir: cache.to_owned(),
        git_stall_timeout: Duration::from_secs(10),
        source_limits: Limits::default(),
        namespace: Some(namespace.to_owned()),
        controller_namespace: None,
        leader_election: None,
        webhook: None,
        default_service_account: None,
        require_service_account: false,
        render: driftless::render::RenderSettings::default(),
        commit_status_allowed_hosts: Vec::new(),
        commit_status_retry: driftless::commit_status::RetryPolicy {
            first_backoff: Duration::from_millis(200),
            ..Default::default()
        },
        allow_cross_namespace_dependencies: false,
        ignore_argocd_annotations: false,
        preview_concurrency: 2,
        preview_rate_limit: driftless::preview::rate_limit::DEFAULT_PER_MINUTE,
    }
}

/// A plain HTTP/1.0 GET on loopback, enough for the health and metrics endpoints; `None` when
/// nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// An in-process controller watching one test namespace, polling every 2 s unless adjusted,
/// stopped on drop.
pub struct RunningController {
    task: tokio::task::JoinHandle<()>,
    _cache: tempfile::TempDir,
}

impl RunningController {
    pub fn start(namespace: &str) -> Self {
        Self::start_with(namespace, |_| {})
    }

    /// With the test cluster's pinned kustomize and helm, as `make demo` and the image have
    /// them.
    pub fn start_rendering(namespace: &str) -> Self {
        Self::start_with(namespace, |settings| {
            settings.render.kustomize_binary =
                Some(super::cluster::binaries_dir().join("kustomize"));
            settings.render.helm_binary = Some(super::cluster::binaries_dir().join("helm"));
        })
    }

    /// With [`settings_for`] changed by `adjust`.
    pub fn start_with(namespace: &str, adjust: impl FnOnce(&mut Settings)) -> Self {
        Self::start_with_metrics(namespace, adjust, Metrics::default())
    }

    /// Recording into `metrics`, which the test reads.
    pub fn start_with_metrics(
        namespace: &str,
        adjust: impl FnOnce(&mut Settings),
        metrics: Metrics,
    ) -> Self {
        let cache = tempfile::tempdir().expect("a git cache directory");
        let mut settings = settings_for(namespace, cache.path(), Duration::from_secs(2));
        adjust(&mut settings);
        let task = tokio::spawn(async move {
            let config = super::cluster::admin_config().await;
            driftless::controller::run(config, settings, metrics)
                .await
                .expect("the controller runs");
        });
        Self {
            task,
            _cache: cache,
        }
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        self.task.abort();
    }
}
