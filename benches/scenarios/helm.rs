//! Helm: the first render + apply of a chart of ~50 objects, then resyncs of the unchanged
//! commit, which must run helm zero times.
//!
//! Shape: one repository served by `git http-backend` on loopback holding a chart whose
//! templates loop over `.Values.apps` (N ConfigMaps, N Services, N ServiceAccounts,
//! N/5 Deployments... summing to OBJECTS), an in-process controller with the pinned helm,
//! watching only the run's namespace. Reported: seconds from creating the GitRepository to
//! Ready, helm runs (`driftless_render_total{renderer="helm",outcome="success"}`), and the runs
//! and cache hits seen over RESYNC_WINDOW of 1 s polling afterwards.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use driftless::{api::GitRepository, render::RenderSettings, telemetry::metrics::Metrics};
use serde_json::{Value, json};

use crate::support::{
    cluster::{TestNamespace, binaries_dir, install_crds},
    controller::settings_for,
    git::{GitRepos, HttpGitServer, HttpOptions},
};
use crate::{round, row};

/// Objects the chart renders: a ConfigMap, a Service and a ServiceAccount per app, 16 apps,
/// plus one Deployment per 8 apps.
const APPS: usize = 16;
const RESYNC_WINDOW: Duration = Duration::from_secs(10);

const CHART: &str = "apiVersion: v2\nname: fleet\nversion: 0.1.0\n";
const TEMPLATES: &str = r#"{{- range $i, $app := .Values.apps }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $app }}-config
data:
  index: {{ $i | quote }}
  greeting: {{ $.Values.greeting | quote }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $app }}
spec:
  selector: {app: {{ $app }}}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ $app }}
{{- if eq (mod $i 8) 0 }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $app }}
spec:
  replicas: 1
  selector: {matchLabels: {app: {{ $app }}}}
  template:
    metadata: {labels: {app: {{ $app }}}}
    spec:
      serviceAccountName: {{ $app }}
      containers: [{name: app, image: example.invalid/app:1}]
{{- end }}
{{- end }}
"#;

fn renders(metrics: &Metrics, outcome: &str) -> u64 {
    let series = format!("driftless_render_total{{renderer=\"helm\",outcome=\"{outcome}\"}} ");
    metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().unwrap_or(0))
}

pub async fn helm_scenario() -> Result<Value> {
    install_crds().await;
    let namespace = TestNamespace::create("bench-helm").await;
    let repos = GitRepos::new();
    let repo = repos.create("fleet");
    let apps: Vec<String> = (0..APPS).map(|i| format!("app-{i:02}")).collect();
    let values = format!("greeting: hello\napps: {}\n", json!(apps));
    repo.commit(
        "fleet",
        &[
            ("chart/Chart.yaml", CHART),
            ("chart/values.yaml", &values),
            ("chart/templates/apps.yaml", TEMPLATES),
        ],
    );
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let cache = tempfile::tempdir()?;
    let mut settings = settings_for(&namespace.name, cache.path(), Duration::from_secs(1));
    settings.render = RenderSettings {
        helm_binary: Some(binaries_dir().join("helm")),
        ..RenderSettings::default()
    };
    let metrics = Metrics::default();
    let controller = tokio::spawn({
        let metrics = metrics.clone();
        async move {
            let config = crate::support::cluster::admin_config().await;
            let _ = driftless::controller::run(config, settings, metrics).await;
        }
    });
    let started = Instant::now();
    namespace
        .create_git_repository(
            "fleet",
            json!({ "url": server.url_for(&repo), "interval": "1s", "helm": { "chart": "chart" } }),
        )
        .await;
    let api = namespace.api::<GitRepository>();
    let objects = loop {
        let repository = api.get("fleet").await?;
        let status = repository.status.unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if ready {
            break status.inventory.len();
        }
        if started.elapsed() > Duration::from_secs(180) {
            bail!("the chart never became Ready: {:?}", status.conditions);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let to_ready = started.elapsed().as_secs_f64();
    let first_renders = renders(&metrics, "success");
    let cached_before = renders(&metrics, "cached");
    tokio::time::sleep(RESYNC_WINDOW).await;
    let resync_renders = renders(&metrics, "success") - first_renders;
    let resync_cached = renders(&metrics, "cached") - cached_before;
    controller.abort();
    if resync_renders != 0 {
        bail!("{resync_renders} helm runs during resyncs of an unchanged commit");
    }
    let rows = vec![
        row(
            &format!("a chart of {objects} objects: create → Ready (render + apply)"),
            json!(round(to_ready, 1)),
            json!(null),
            "s",
        ),
        row(
            "helm runs in the first reconcile",
            json!(first_renders),
            json!(null),
            "",
        ),
        row(
            &format!(
                "helm runs in {} s of 1 s resyncs of the unchanged commit",
                RESYNC_WINDOW.as_secs()
            ),
            json!(resync_renders),
            json!(null),
            "",
        ),
        row(
            "render cache hits in those resyncs",
            json!(resync_cached),
            json!(null),
            "",
        ),
    ];
    Ok(json!({
        "title": "Helm rendering: a chart of the repository rendered and applied, then resynced",
        "driftless": "the controller in the bench process with the pinned helm (`--helm-binary`), interval 1s",
        "baseline": "none: driftless's own figures",
        "rows": rows,
        "objects": objects,
        "first_render_apply_to_ready_seconds": round(to_ready, 1),
        "helm_runs_first": first_renders,
        "resync_window_seconds": RESYNC_WINDOW.as_secs(),
        "helm_runs_during_resyncs": resync_renders,
        "cache_hits_during_resyncs": resync_cached,
    }))
}
