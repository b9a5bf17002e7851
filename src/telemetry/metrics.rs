//! Prometheus metrics, served on `/metrics` next to `/healthz` and `/readyz`.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `success` or the failure reason, e.g. `GitOperationFailed`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    /// `queue` (straight into the leading replica's reconcile queue) or `annotation` (an API
    /// write that reaches the leader from any replica).
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// What ended the reconcile before its outcome was recorded, e.g. `cleanup`, `kube`.
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    /// `shared` (`/hooks/{provider}`) or `object` (a per-object hook).
    pub receiver: String,
    /// `github`, `gitlab`, `gitea`, `forgejo`, `bitbucket`, `generic` or `unknown`.
    pub provider: String,
    /// How the request ended, e.g. `accepted`, `unauthorized`, `rate_limited`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLatencyLabels {
    pub receiver: String,
    pub provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RenderLabels {
    /// `kustomize`.
    pub renderer: String,
    /// `success`, `cached` (no process ran), `error`, `refused` (a sandbox rule), `timeout`,
    /// `output_too_large` or `unavailable` (no usable binary).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommitStatusLabels {
    /// `github`, `gitlab`, `gitea`, `forgejo`, `bitbucket` or `bitbucketserver`.
    pub provider: String,
    /// `posted`, `failed` (refused by the host or unreachable after retries), `refused` (an
    /// address or token the controller would not use) or `dropped` (the queue was full).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    /// `slack`, `msteams`, `discord`, `webhook` or `cloudevents`.
    pub r#type: String,
    /// `sent`, `failed` (after retries), `refused` (a Secret the controller could not use) or
    /// `dropped` (the queue was full).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RendererLabels {
    pub renderer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    /// A step of the reconcile: `fetch` (ref listing, fetch and reading the files), `render`,
    /// `parse`, `prepare` (digest of the desired objects), `status` (the `Reconciling` write),
    /// `apply_list` (reading live objects), `apply_plan` (comparison and dry runs),
    /// `apply_write`, `apply_established` (waiting for CRDs and refreshing discovery),
    /// `prune`, `record` (the final status write); `push_order` (ordering the GitRepositories
    /// one push reached, changed paths first).
    pub stage: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ParseLabels {
    /// `parsed` (the file's bytes were parsed) or `cached` (the objects of the same blob
    /// were reused).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadyLabels {
    /// `true` or `false`.
    pub ready: String,
}

/// What the metrics may say.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Export series labelled with a GitRepository's namespace and name (`driftless_ready`).
    /// Off, whoever can scrape `/metrics` learns how many objects there are, never which.
    pub object_labels: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            object_labels: true,
        }
    }
}

fn seconds_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 16))
}

/// 0.5 ms to about 4 s: a receiver answers in milliseconds; the top buckets catch trigger
/// calls waiting on a slow API server.
fn webhook_latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

/// 0.1 ms to about 3 s: most steps of a reconcile take milliseconds.
fn stage_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 15))
}

fn lead_time_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.25, 2.0, 16))
}

/// Every metric driftless exports. Cheap to clone; all clones update the same series.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub reconcile_duration: Family<ResultLabels, Histogram, fn() -> Histogram>,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub fetch_duration: Histogram,
    pub objects_applied: Counter,
    pub objects_pruned: Counter,
    pub objects_drift_corrected: Counter,
    pub ready: Family<ObjectLabels, Gauge>,
    /// GitRepositories by readiness, without naming any.
    pub repositories: Family<ReadyLabels, Gauge>,
    /// The readiness last set for each object, from which `repositories` is counted; never
    /// exported itself.
    readiness: Arc<std::sync::Mutex<std::collections::HashMap<(String, String), bool>>>,
    options: Options,
    pub lead_time: Histogram,
    pub webhook_requests: Family<WebhookLabels, Counter>,
    pub webhook_duration: Family<WebhookLatencyLabels, Histogram, fn() -> Histogram>,
    pub webhook_trigger_failures: Counter,
    pub webhook_triggers: Family<TriggerLabels, Counter>,
    pub renders: Family<RenderLabels, Counter>,
    pub render_duration: Family<RendererLabels, Histogram, fn() -> Histogram>,
    pub stage_duration: Family<StageLabels, Histogram, fn() -> Histogram>,
    pub manifest_files: Family<ParseLabels, Counter>,
    pub commit_statuses: Family<CommitStatusLabels, Counter>,
    pub alerts: Family<AlertLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(Options::default())
    }
}

impl Metrics {
    pub fn new(options: Options) -> Self {
        let reconcile_duration = Family::new_with_constructor(seconds_buckets as fn() -> Histogram);
        let fetch_duration = seconds_buckets();
        let (objects_applied, objects_pruned, objects_drift_corrected) = Default::default();
        let ready = Family::default();
        let lead_time = lead_time_buckets();
        let webhook_requests = Family::<WebhookLabels, Counter>::default();
        let webhook_duration =
            Family::new_with_constructor(webhook_latency_buckets as fn() -> Histogram);
        let mut registry = Registry::with_prefix("driftless");
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration by result",
            reconcile_duration.clone(),
        );
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that ended before their outcome could be recorded in the status (the \
             object is retried), by error",
            reconcile_errors.clone(),
        );
        registry.register(
            "fetch_duration_seconds",
            "Git ref check and fetch duration",
            fetch_duration.clone(),
        );
        registry.register(
            "objects_applied",
            "Objects written (created or configured)",
            Counter::clone(&objects_applied),
        );
        registry.register(
            "objects_pruned",
            "Objects deleted because they left the repository",
            Counter::clone(&objects_pruned),
        );
        registry.register(
            "objects_drift_corrected",
            "Objects changed by hand and written back",
            Counter::clone(&objects_drift_corrected),
        );
        if options.object_labels {
            registry.register(
                "ready",
                "1 when the GitRepository is Ready, else 0",
                ready.clone(),
            );
        }
        let repositories = Family::<ReadyLabels, Gauge>::default();
        registry.register(
            "gitrepositories",
            "GitRepositories reconciled by this process, by readiness",
            repositories.clone(),
        );
        registry.register(
            "lead_time_seconds",
            "Seconds from a commit's time to its revision being applied",
            lead_time.clone(),
        );
        registry.register(
            "webhook_requests",
            "Webhook requests by receiver, provider and outcome (accepted, unauthorized, rate_limited ...)",
            webhook_requests.clone(),
        );
        registry.register(
            "webhook_request_duration_seconds",
            "Time from a webhook request's head to its answer, by receiver and provider",
            webhook_duration.clone(),
        );
        let webhook_trigger_failures = Counter::default();
        registry.register(
            "webhook_trigger_failures",
            "Objects a verified webhook matched but could not ask to reconcile, after retries \
             (polling catches up at the interval)",
            webhook_trigger_failures.clone(),
        );
        let webhook_triggers = Family::<TriggerLabels, Counter>::default();
        registry.register(
            "webhook_triggers",
            "Reconciles a verified webhook asked for, by route (queue: in this process; \
             annotation: through the API, from a replica that does not lead)",
            webhook_triggers.clone(),
        );
        let renders = Family::<RenderLabels, Counter>::default();
        registry.register(
            "render",
            "Renders by renderer and outcome (cached: served from the render cache, no process)",
            renders.clone(),
        );
        let render_duration = Family::new_with_constructor(seconds_buckets as fn() -> Histogram);
        registry.register(
            "render_duration_seconds",
            "Duration of renderer processes that ran, by renderer",
            render_duration.clone(),
        );
        let stage_duration = Family::new_with_constructor(stage_buckets as fn() -> Histogram);
        registry.register(
            "reconcile_stage_duration_seconds",
            "Duration of each step of a reconcile (fetch, render, parse, prepare, status, \
             apply_list, apply_plan, apply_write, apply_established, prune, record)",
            stage_duration.clone(),
        );
        let manifest_files = Family::<ParseLabels, Counter>::default();
        registry.register(
            "manifest_files",
            "Manifest files read into objects, by outcome (parsed, or cached: the objects of \
             the same git blob reused)",
            manifest_files.clone(),
        );
        let commit_statuses = Family::<CommitStatusLabels, Counter>::default();
        registry.register(
            "commit_status_posts",
            "Commit statuses for the Git host, by provider and outcome (posted, failed after \
             retries, refused, dropped from a full queue)",
            commit_statuses.clone(),
        );
        let alerts = Family::<AlertLabels, Counter>::default();
        registry.register(
            "alerts",
            "Alerts by type and outcome (sent, failed after retries, refused, dropped from a \
             full queue)",
            alerts.clone(),
        );
        Self {
            registry: Arc::new(registry),
            reconcile_duration,
            reconcile_errors,
            fetch_duration,
            objects_applied,
            objects_pruned,
            objects_drift_corrected,
            ready,
            repositories,
            readiness: Arc::default(),
            options,
            lead_time,
            webhook_requests,
            webhook_duration,
            webhook_trigger_failures,
            webhook_triggers,
            renders,
            render_duration,
            stage_duration,
            manifest_files,
            commit_statuses,
            alerts,
        }
    }
}

impl Metrics {
    /// The OpenMetrics text of every series.
    pub fn render(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }

    pub fn observe_reconcile(&self, result: &str, took: Duration) {
        let labels = ResultLabels {
            result: result.to_owned(),
        };
        self.reconcile_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Records how long one step of a reconcile took.
    pub fn observe_stage(&self, stage: &str, took: Duration) {
        let labels = StageLabels {
            stage: stage.to_owned(),
        };
        self.stage_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Counts manifest files parsed and files whose objects came from the parse cache.
    pub fn count_manifest_files(&self, parsed: u64, cached: u64) {
        for (outcome, count) in [("parsed", parsed), ("cached", cached)] {
            let labels = ParseLabels {
                outcome: outcome.to_owned(),
            };
            self.manifest_files.get_or_create(&labels).inc_by(count);
        }
    }

    /// Counts one reconcile that ended in an error (not a failure recorded in the status).
    pub fn count_reconcile_error(&self, error: &str) {
        let labels = ErrorLabels {
            error: error.to_owned(),
        };
        self.reconcile_errors.get_or_create(&labels).inc();
    }

    /// Counts one render outcome, and the duration of a process that ran.
    pub fn observe_render(&self, renderer: &str, outcome: &str, took: Option<Duration>) {
        let labels = RenderLabels {
            renderer: renderer.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.renders.get_or_create(&labels).inc();
        if let Some(took) = took {
            let labels = RendererLabels {
                renderer: renderer.to_owned(),
            };
            self.render_duration
                .get_or_create(&labels)
                .observe(took.as_secs_f64());
        }
    }

    pub fn set_ready(&self, namespace: &str, name: &str, ready: bool) {
        if self.options.object_labels {
            let labels = ObjectLabels {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            };
            self.ready.get_or_create(&labels).set(i64::from(ready));
        }
        let mut readiness = crate::sync::lock(&self.readiness);
        readiness.insert((namespace.to_owned(), name.to_owned()), ready);
        self.count_repositories(&readiness);
    }

    fn count_repositories(&self, readiness: &std::collections::HashMap<(String, String), bool>) {
        let ready = readiness.values().filter(|ready| **ready).count();
        for (label, count) in [("true", ready), ("false", readiness.len() - ready)] {
            let labels = ReadyLabels {
                ready: label.to_owned(),
            };
            self.repositories
                .get_or_create(&labels)
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// Counts one webhook request and its latency. The labels come from fixed sets, never from
    /// what a sender wrote, so requests cannot create series.
    pub fn observe_webhook(&self, receiver: &str, provider: &str, outcome: &str, took: Duration) {
        let labels = WebhookLabels {
            receiver: receiver.to_owned(),
            provider: provider.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.webhook_requests.get_or_create(&labels).inc();
        let latency = WebhookLatencyLabels {
            receiver: labels.receiver,
            provider: labels.provider,
        };
        self.webhook_duration
            .get_or_create(&latency)
            .observe(took.as_secs_f64());
    }

    /// Counts one reconcile a webhook asked for, by `route` (`queue` or `annotation`).
    pub fn count_webhook_trigger(&self, route: &str) {
        let labels = TriggerLabels {
            route: route.to_owned(),
        };
        self.webhook_triggers.get_or_create(&labels).inc();
    }

    /// Counts one commit status by `provider` and `outcome` (see [`CommitStatusLabels`]).
    pub fn count_commit_status(&self, provider: &str, outcome: &str) {
        let labels = CommitStatusLabels {
            provider: provider.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.commit_statuses.get_or_create(&labels).inc();
    }

    /// Counts one alert by `kind` and `outcome` (see [`AlertLabels`]).
    pub fn count_alert(&self, kind: &str, outcome: &str) {
        let labels = AlertLabels {
            r#type: kind.to_owned(),
            outcome: outcome.to_owned(),
        };
        self.alerts.get_or_create(&labels).inc();
    }

    pub fn count_webhook_trigger_failures(&self, objects: usize) {
        self.webhook_trigger_failures.inc_by(objects as u64);
    }

    /// Drops the series of a deleted GitRepository.
    pub fn forget(&self, namespace: &str, name: &str) {
        let labels = ObjectLabels {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        };
        self.ready.remove(&labels);
        let mut readiness = crate::sync::lock(&self.readiness);
        readiness.remove(&(labels.namespace, labels.name));
        self.count_repositories(&readiness);
    }
}

/// Whether the process is ready for traffic; set once the controller runs.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
struct Endpoints {
    metrics: Metrics,
    readiness: Readiness,
}

/// `/metrics`, `/healthz` and `/readyz`.
pub fn router(metrics: Metrics, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(serve_readiness))
        .with_state(Endpoints { metrics, readiness })
}

async fn serve_metrics(State(endpoints): State<Endpoints>) -> impl IntoResponse {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        endpoints.metrics.render(),
    )
}

async fn serve_readiness(State(endpoints): State<Endpoints>) -> impl IntoResponse {
    if endpoints.readiness.get() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// Serves the endpoints on `address` until the process ends.
pub async fn serve_endpoints(
    address: SocketAddr,
    metrics: Metrics,
    readiness: Readiness,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    axum::serve(listener, router(metrics, readiness)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_series_it_was_given() {
        let metrics = Metrics::default();
        metrics.observe_reconcile("success", Duration::from_millis(120));
        metrics.set_ready("team-a", "app", true);
        metrics.lead_time.observe(3.5);
        metrics.objects_applied.inc_by(4);
        let text = metrics.render();
        assert!(
            text.contains("driftless_reconcile_duration_seconds_count{result=\"success\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("driftless_ready{namespace=\"team-a\",name=\"app\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("driftless_lead_time_seconds_count 1"),
            "{text}"
        );
        assert!(text.contains("driftless_objects_applied_total 4"), "{text}");
    }

    /// Every kind of series the controller exports, fed as a reconcile, a render and a
    /// webhook would.
    fn exercised(metrics: &Metrics) -> String {
        metrics.observe_reconcile("success", Duration::from_millis(120));
        metrics.count_reconcile_error("kube");
        metrics.set_ready("team-a", "app", true);
        metrics.set_ready("team-b", "secret-project", false);
        metrics.set_ready("team-b", "gone", true);
        metrics.forget("team-b", "gone");
        metrics.observe_render("kustomize", "success", Some(Duration::from_millis(80)));
        metrics.observe_webhook("object", "github", "accepted", Duration::from_millis(2));
        metrics.count_webhook_trigger("queue");
        metrics.fetch_duration.observe(0.2);
        metrics.lead_time.observe(3.5);
        metrics.objects_applied.inc();
        metrics.render()
    }

    #[test]
    fn without_object_labels_no_series_names_a_namespace_or_an_object() {
        let text = exercised(&Metrics::new(Options {
            object_labels: false,
        }));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(
                !line.contains("namespace=") && !line.contains("name="),
                "a series names an object: {line}"
            );
        }
        for word in ["team-a", "team-b", "app", "secret-project"] {
            assert!(
                !text.contains(&format!("\"{word}\"")),
                "{word} appears in the metrics:\n{text}"
            );
        }
        assert!(!text.contains("driftless_ready"), "{text}");
        assert!(
            text.contains(r#"driftless_gitrepositories{ready="true"} 1"#)
                && text.contains(r#"driftless_gitrepositories{ready="false"} 1"#),
            "the objects are still counted: {text}"
        );

        // With the default, the same calls do label by object: the test above can fail.
        let labelled = exercised(&Metrics::default());
        assert!(
            labelled.contains(r#"driftless_ready{namespace="team-b",name="secret-project"} 0"#),
            "{labelled}"
        );
        assert!(!labelled.contains(r#"name="gone""#), "{labelled}");
    }

    #[test]
    fn webhook_requests_are_counted_with_their_latency() {
        let metrics = Metrics::default();
        let took = Duration::from_millis(3);
        metrics.observe_webhook("shared", "github", "accepted", took);
        metrics.observe_webhook("shared", "github", "unauthorized", took);
        let text = metrics.render();
        let accepted = r#"driftless_webhook_requests_total{receiver="shared",provider="github",outcome="accepted"} 1"#;
        assert!(text.contains(accepted), "{text}");
        let count = r#"driftless_webhook_request_duration_seconds_count{receiver="shared",provider="github"} 2"#;
        assert!(text.contains(count), "{text}");
        let bucket = r#"driftless_webhook_request_duration_seconds_bucket{le="0.004",receiver="shared",provider="github"} 2"#;
        assert!(text.contains(bucket), "{text}");
    }
}
