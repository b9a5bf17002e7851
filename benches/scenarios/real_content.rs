//! Push to applied on real content, side by side with Flux and next to the small synthetic case
//! in the same run. Four repositories, each pushed to `DRIFTLESS_BENCH_REAL_PUSHES` times:
//! - **small**: the 20-ConfigMap application of `flux-push`;
//! - **platform**: five prometheus-operator CRDs (2.4 MB of YAML, the largest 833 KB),
//!   podinfo's `kustomize/` (a kustomization: Deployment, HPA, Service), a ServiceMonitor, a
//!   PrometheusRule and a ConfigMap; each push changes the ConfigMap;
//! - **overlay**: podinfo's `deploy/overlays/production` (the backend, frontend and cache bases
//!   with their script and config generators, the production label transformer), with a
//!   `configMapGenerator` whose literal each push changes; the database base is left out (its
//!   PersistentVolumeClaim never binds on simulated nodes), and so is the overlay's
//!   `namespace: production`, so that each tool applies into its run's namespace;
//! - **chart**: podinfo's Helm chart with `values-prod.yaml` and a values file each push changes
//!   (`ui.message`, seen in the Deployment's `PODINFO_UI_MESSAGE`). driftless only: Flux renders
//!   charts in helm-controller, which the benchmark does not build.
//!
//! The fixtures are those of `tests/fixtures/` (their READMEs name the upstream repositories
//! and commits). driftless is triggered by its webhook receiver (a signed GitHub push event);
//! Flux, which has no receiver without notification-controller, by the reconcile-request
//! annotation on its GitRepository (what its receiver does). The clock runs from the trigger
//! until the changed object is seen by a watch.
//!
//! Printed and kept per case and tool: first apply, push → visible p50/p99, the no-change
//! resync (forced by annotation), CPU, API and git requests per push; for driftless also the
//! time per step of the reconcile (`driftless_reconcile_stage_duration_seconds`, mean per push)
//! and the manifest files parsed or taken from the parse cache per push
//! (`driftless_manifest_files_total`).
//!
//! Parameters: `DRIFTLESS_BENCH_REAL_PUSHES` (default 30); `DRIFTLESS_BENCH_REAL_CASES` (default
//! `small,platform,overlay,chart`); `DRIFTLESS_BENCH_FLUX_CONFIGS=none`: driftless alone;
//! `DRIFTLESS_BENCH_DRIFTLESS_BINARY` measures another build of the controller.

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use kube::{Api, discovery::ApiResource};
use serde_json::{Value, json};

use crate::{
    common::{
        flux,
        side_by_side::{
            FluxSources, Layout, Running, SECRET, Setup, Snapshot, Store, Tool, Workload,
            app_files, app_path, applied, commit_files, env_number, handled, load_average,
            plain_config_map, token, write_monorepo,
        },
    },
    millis, row, summary,
    support::{
        git::{GitRepos, HttpGitServer},
        webhook::github_push,
    },
};

/// The objects of the small case.
const SMALL_OBJECTS: usize = 20;

/// The GitRepository (driftless) or Kustomization (Flux) of every case.
const APPLIER: &str = "app-0000";

/// Which repository a case pushes to.
#[derive(Clone, Copy, PartialEq)]
enum Case {
    /// 20 ConfigMaps.
    Small,
    /// CRDs, podinfo's kustomization, a ServiceMonitor, a PrometheusRule and a ConfigMap.
    Platform,
    /// podinfo's production overlay and a generated ConfigMap.
    Overlay,
    /// podinfo's chart.
    Chart,
}

impl Case {
    const ALL: [Case; 4] = [Case::Small, Case::Platform, Case::Overlay, Case::Chart];

    fn key(self) -> &'static str {
        match self {
            Case::Small => "small",
            Case::Platform => "platform",
            Case::Overlay => "overlay",
            Case::Chart => "chart",
        }
    }

    /// Flux runs every case but the chart (helm-controller is not built).
    fn flux_runs_it(self) -> bool {
        self != Case::Chart
    }

    /// What driftless's GitRepository adds to `{url, path, interval}`.
    fn driftless_spec(self) -> Value {
        match self {
            Case::Chart => json!({"helm": {"chart": app_path(0),
                "valuesFiles": [format!("{}/values-prod.yaml", app_path(0)),
                                format!("{}/values-bench.yaml", app_path(0))]}}),
            _ => json!({}),
        }
    }
}

/// The object a push changes and how its new value shows.
enum Visible {
    /// A ConfigMap whose `data.revision` is the push's revision.
    ConfigMap(String),
    /// A Deployment whose `PODINFO_UI_MESSAGE` is `revision N`.
    UiMessage,
}

pub async fn scenario() -> Result<Value> {
    let pushes = env_number("REAL_PUSHES", 30);
    let cases: Vec<Case> = match std::env::var("DRIFTLESS_BENCH_REAL_CASES") {
        Ok(list) => Case::ALL
            .into_iter()
            .filter(|c| list.split(',').any(|k| k.trim() == c.key()))
            .collect(),
        Err(_) => Case::ALL.to_vec(),
    };
    let with_flux = !flux::configs().is_empty();
    let setup = Setup::prepare(with_flux).await?;
    let load_before = load_average();
    let mut runs = Vec::new();
    for &case in &cases {
        let mut tools = vec![Tool::Driftless];
        if with_flux && case.flux_runs_it() {
            tools.push(Tool::Flux(flux::DEFAULTS));
        }
        for tool in tools {
            eprintln!("-- real-content: {}, {}", case.key(), tool.label());
            runs.push(one_run(&setup, case, tool, pushes).await?);
        }
    }
    let load_after = load_average();
    let find = |case: Case, tool: &str| {
        runs.iter()
            .find(|r| r["key"] == case.key() && r["tool"] == tool)
            .cloned()
    };
    let mut rows = Vec::new();
    let driftless = |case| find(case, "driftless");
    let mut platform_vs_small = Value::Null;
    if let (Some(platform), Some(small)) = (driftless(Case::Platform), driftless(Case::Small)) {
        let ratio = |key: &str| {
            let a = platform[key]["median"].as_f64().unwrap_or(0.0);
            let b = small[key]["median"].as_f64().unwrap_or(1.0);
            crate::round(a / b, 2)
        };
        platform_vs_small = json!(ratio("visible_ms"));
        rows.push(row(
            "platform push → changed ConfigMap visible, p50 (vs the 20-ConfigMap one)",
            platform["visible_ms"].clone(),
            small["visible_ms"].clone(),
            "ms",
        ));
        rows.push(row(
            "platform push → changed ConfigMap visible, p99 (vs the 20-ConfigMap one)",
            platform["visible_ms"]["p99"].clone(),
            small["visible_ms"]["p99"].clone(),
            "ms",
        ));
    }
    let flux_key = Tool::Flux(flux::DEFAULTS).key();
    for &case in &cases {
        let Some(d) = driftless(case) else { continue };
        let f = find(case, &flux_key).unwrap_or(Value::Null);
        let against = if f.is_null() {
            "alone"
        } else {
            "vs Flux (defaults)"
        };
        let label = |what: &str| format!("{}: {what}, {against}", case.key());
        rows.push(row(
            &label("push → changed object visible, p50"),
            d["visible_ms"].clone(),
            f["visible_ms"].clone(),
            "ms",
        ));
        rows.push(row(
            &label("push → changed object visible, p99"),
            d["visible_ms"]["p99"].clone(),
            f["visible_ms"]["p99"].clone(),
            "ms",
        ));
        for (what, key, unit) in [
            ("first apply (create → Ready)", "first_apply_ms", "ms"),
            ("no-change resync, forced by annotation", "resync_ms", "ms"),
            ("API requests per push", "requests_per_push", ""),
            ("CPU per push", "cpu_ms_per_push", "ms"),
            ("git requests per push", "git_requests_per_push", ""),
        ] {
            rows.push(row(&label(what), d[key].clone(), f[key].clone(), unit));
        }
        rows.push(row(
            &label("manifest files parsed per push"),
            d["files_parsed_per_push"].clone(),
            Value::Null,
            "",
        ));
    }
    Ok(json!({
        "title": format!("Push → applied on real content, side by side with Flux: {pushes} commits to each of a platform repository (5 prometheus-operator CRDs, podinfo's kustomization, a ServiceMonitor, a PrometheusRule, a ConfigMap), podinfo's production overlay and podinfo's chart, next to the 20-ConfigMap application, same run"),
        "driftless": "the release binary `driftless controller` (GitRepository polling hourly), triggered by its webhook receiver (signed GitHub push event)",
        "baseline": format!("Flux {} with its defaults: one GitRepository and one Kustomization per case (polling hourly), triggered by `reconcile.fluxcd.io/requestedAt` on the GitRepository; the platform rows also compare driftless's platform case with its own 20-ConfigMap case", flux::versions()),
        "rows": rows,
        "runs": runs,
        "platform_vs_small_visible_p50": platform_vs_small,
        "load_average": {"before": load_before, "after": load_after},
        "notes": [
            format!("Per case and tool: {pushes} sequential commits after one warm-up commit, one second apart, each changing one file; the clock starts right before the trigger (the commit is already in the served repository) and stops when the changed object carries the new value, seen by a watch."),
            "Stage times (driftless): deltas of `driftless_reconcile_stage_duration_seconds` (sum / pushes) over the measured pushes; `fetch` includes the ref listing, the fetch and reading the files; `apply_list` the LISTs of live objects; `apply_plan` the comparisons and dry runs; `apply_established` waiting for CRDs and refreshing discovery.".to_owned(),
            "Fixtures: tests/fixtures/prometheus-operator, tests/fixtures/kustomize/podinfo and tests/fixtures/helm/podinfo (their READMEs name the upstream commits). The chart case has no Flux run: Flux renders charts in helm-controller, not built by the benchmark.".to_owned(),
        ],
    }))
}

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every file under `dir`, as repository paths under `prefix`.
fn files_under(dir: &Path, prefix: &str) -> Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{prefix}/{name}");
        if entry.file_type()?.is_dir() {
            files.extend(files_under(&entry.path(), &path)?);
        } else {
            files.push((path, std::fs::read_to_string(entry.path())?));
        }
    }
    Ok(files)
}

/// The files of the platform repository under `apps/app-0000`, with the ConfigMap at
/// `revision`.
fn platform_files(revision: usize) -> Result<Vec<(String, String)>> {
    let fixtures = fixtures();
    let base = app_path(0);
    let mut files = files_under(
        &fixtures.join("prometheus-operator/example/prometheus-operator-crd"),
        &format!("{base}/crds"),
    )?;
    let examples = fixtures.join("prometheus-operator/example/user-guides");
    files.push((
        format!("{base}/monitoring/servicemonitor.yaml"),
        std::fs::read_to_string(examples.join("getting-started/example-app-service-monitor.yaml"))?,
    ));
    files.push((
        format!("{base}/monitoring/prometheusrule.yaml"),
        std::fs::read_to_string(examples.join("alerting/prometheus-example-rules.yaml"))?,
    ));
    let podinfo = fixtures.join("kustomize/podinfo/kustomize");
    for name in [
        "kustomization.yaml",
        "deployment.yaml",
        "hpa.yaml",
        "service.yaml",
    ] {
        files.push((
            format!("{base}/podinfo/{name}"),
            std::fs::read_to_string(podinfo.join(name))?,
        ));
    }
    files.push(config_map_file(revision));
    Ok(files)
}

fn config_map_file(revision: usize) -> (String, String) {
    (
        format!("{}/config/cm-0.yaml", app_path(0)),
        plain_config_map(0, 0, revision),
    )
}

/// podinfo's deploy bases (database aside) and the production overlay's label transformer,
/// with the overlay's kustomization at `revision`.
pub(crate) fn overlay_files(revision: usize) -> Result<Vec<(String, String)>> {
    let deploy = fixtures().join("kustomize/podinfo/deploy");
    let mut files = Vec::new();
    for base in ["backend", "frontend", "cache"] {
        files.extend(files_under(
            &deploy.join("bases").join(base),
            &format!("podinfo/bases/{base}"),
        )?);
    }
    files.push((
        format!("{}/labels.yaml", app_path(0)),
        std::fs::read_to_string(deploy.join("overlays/production/labels.yaml"))?,
    ));
    files.push(overlay_kustomization(revision));
    Ok(files)
}

fn overlay_kustomization(revision: usize) -> (String, String) {
    (
        format!("{}/kustomization.yaml", app_path(0)),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../podinfo/bases/backend
  - ../../podinfo/bases/frontend
  - ../../podinfo/bases/cache
transformers:
  - labels.yaml
configMapGenerator:
  - name: app-0000-cm-0
    literals:
      - revision={revision}
    options:
      disableNameSuffixHash: true
"
        ),
    )
}

/// podinfo's chart under `apps/app-0000`, with the values file a push changes at `revision`.
fn chart_files(revision: usize) -> Result<Vec<(String, String)>> {
    let mut files = files_under(&fixtures().join("helm/podinfo"), &app_path(0))?;
    files.push(chart_values(revision));
    Ok(files)
}

fn chart_values(revision: usize) -> (String, String) {
    (
        format!("{}/values-bench.yaml", app_path(0)),
        format!("ui:\n  message: \"revision {revision}\"\n"),
    )
}

/// The repository of `case` as first committed.
fn initial_files(case: Case) -> Result<Vec<(String, String)>> {
    match case {
        Case::Small => unreachable!("the small case is written by write_monorepo"),
        Case::Platform => platform_files(0),
        Case::Overlay => overlay_files(0),
        Case::Chart => chart_files(0),
    }
}

/// The file a push changes and where it shows.
fn pushed_file(case: Case, push: usize, revision: usize) -> ((String, String), Visible) {
    match case {
        Case::Small => {
            let object = push % SMALL_OBJECTS;
            let layout = Layout::Plain {
                objects: SMALL_OBJECTS,
            };
            let file = app_files(layout, 0, revision)
                .into_iter()
                .nth(object)
                .expect("the file exists");
            (file, Visible::ConfigMap(format!("app-0000-cm-{object}")))
        }
        Case::Platform => (
            config_map_file(revision),
            Visible::ConfigMap("app-0000-cm-0".into()),
        ),
        Case::Overlay => (
            overlay_kustomization(revision),
            Visible::ConfigMap("app-0000-cm-0".into()),
        ),
        Case::Chart => (chart_values(revision), Visible::UiMessage),
    }
}

fn deployments(setup: &Setup, namespace: &str) -> Store {
    Store::start(Api::namespaced_with(
        setup.admin.clone(),
        namespace,
        &ApiResource {
            group: "apps".into(),
            version: "v1".into(),
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            plural: "deployments".into(),
        },
    ))
}

/// Some container of `deployment` has `PODINFO_UI_MESSAGE` = `message`.
fn shows_message(deployment: &Value, message: &str) -> bool {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["env"].as_array().into_iter().flatten())
        .any(|e| e["name"] == "PODINFO_UI_MESSAGE" && e["value"] == message)
}

/// Starts the clock and triggers the tool for the commit `head` (after `previous`).
async fn trigger(
    running: &Running,
    url: &str,
    previous: &str,
    head: &str,
    delivery: String,
) -> Result<()> {
    match running.tool {
        Tool::Driftless => {
            let port = running.webhook_port().context("driftless has a receiver")?;
            let body = crate::push::github_push_body(url, previous, head);
            let id = delivery.clone();
            let (code, answer) = tokio::task::spawn_blocking(move || {
                github_push(port, "/hooks/github", SECRET.as_bytes(), &id, &body)
            })
            .await?;
            if code != 202 {
                bail!("{delivery}: the receiver answered {code}: {answer}");
            }
            Ok(())
        }
        Tool::Flux(_) => running.request_reconcile("monorepo", &token("push")).await,
    }
}

async fn one_run(setup: &Setup, case: Case, tool: Tool, pushes: usize) -> Result<Value> {
    let workload = Workload {
        apps: 1,
        layout: Layout::Plain {
            objects: SMALL_OBJECTS,
        },
        flux_sources: FluxSources::One,
        interval: Some("1h"),
    };
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let mut head = match case {
        Case::Small => write_monorepo(repo.path(), &workload)?,
        _ => commit_files(repo.path(), case.key(), &initial_files(case)?)?,
    };
    let server = HttpGitServer::start(repos.root(), Default::default());
    let url = server.url_for(&repo);
    let running = Running::start(setup, tool, "bench-real").await?;
    let deployments = deployments(setup, &running.namespace);
    let outcome = async {
        let created = Instant::now();
        running
            .create_with(&workload, &url, &case.driftless_spec())
            .await?;
        running
            .until_applied(1, &head, Duration::from_secs(300))
            .await?;
        let first_apply = millis(created.elapsed());
        eprintln!("   first apply {first_apply:.0} ms");
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (mut visible, mut status) = (Vec::new(), Vec::new());
        let mut before = None;
        let mut metrics_before = String::new();
        for push in 0..=pushes {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if push == 1 {
                before = Some(Snapshot::take(&running, &server));
                metrics_before = running.metrics_text();
            }
            let revision = push + 1;
            let (file, shown_in) = pushed_file(case, push, revision);
            let previous = head.clone();
            head = commit_files(repo.path(), &format!("push {revision}"), &[file])?;
            let started = Instant::now();
            let delivery = format!("bench-real-{}-{push}", case.key());
            trigger(&running, &url, &previous, &head, delivery).await?;
            let within = Duration::from_secs(120);
            let want = revision.to_string();
            match shown_in {
                Visible::ConfigMap(name) => {
                    running
                        .config_maps
                        .until_one(&name, within, &|o| o["data"]["revision"] == want.as_str())
                        .await?
                }
                Visible::UiMessage => {
                    let message = format!("revision {revision}");
                    deployments
                        .until_count(1, within, &|o| shows_message(o, &message))
                        .await?
                }
            }
            let shown = started.elapsed();
            running
                .appliers()
                .until_one(APPLIER, within, &applied(&head))
                .await?;
            let recorded = started.elapsed();
            if push > 0 {
                visible.push(millis(shown));
                status.push(millis(recorded));
            }
        }
        let after = Snapshot::take(&running, &server);
        let metrics_after = running.metrics_text();
        let usage = before.expect("at least one push").usage(&after);
        let per_push = |v: &Value, scale: f64| {
            json!(crate::round(
                v.as_f64().unwrap_or(0.0) * scale / pushes as f64,
                1
            ))
        };
        let stages = stage_means(&metrics_before, &metrics_after, pushes);
        let files = |outcome: &str| {
            let key = format!("driftless_manifest_files_total{{outcome=\"{outcome}\"}}");
            (sample(&metrics_after, &key) - sample(&metrics_before, &key)) / pushes as f64
        };
        // The no-change resync: asked by hand (Flux: `flux reconcile ks --with-source`), so
        // every object is compared with the cluster.
        let mut resync = Vec::new();
        for _ in 0..5 {
            let asked = token("resync");
            let started = Instant::now();
            running.request_reconcile_all(&asked).await?;
            running
                .appliers()
                .until_one(APPLIER, Duration::from_secs(120), &handled(&asked))
                .await?;
            resync.push(millis(started.elapsed()));
        }
        eprintln!(
            "   visible p50 {} ms, status p50 {} ms, resync p50 {} ms, {usage}\n   stages (ms per push): {stages}",
            summary(&visible, 0)["median"],
            summary(&status, 0)["median"],
            summary(&resync, 0)["median"],
        );
        anyhow::Ok(json!({
            "key": case.key(),
            "tool": tool.key(),
            "first_apply_ms": crate::round(first_apply, 0),
            "visible_ms": summary(&visible, 0),
            "status_ms": summary(&status, 0),
            "resync_ms": summary(&resync, 0),
            "visible_samples_ms": visible.iter().map(|v| v.round()).collect::<Vec<_>>(),
            "requests_per_push": per_push(&usage["requests"], 1.0),
            "cpu_ms_per_push": per_push(&usage["cpu_seconds"], 1000.0),
            "git_requests_per_push": per_push(&usage["git_requests"], 1.0),
            "files_parsed_per_push": crate::round(files("parsed"), 2),
            "files_cached_per_push": crate::round(files("cached"), 2),
            "stage_ms_per_push": stages,
            "usage": usage,
        }))
    }
    .await;
    drop(deployments);
    let cleanup = running.finish().await;
    let result = outcome?;
    cleanup?;
    Ok(result)
}

/// The value of the sample named exactly `key` (name and labels) in a `/metrics` text.
fn sample(text: &str, key: &str) -> f64 {
    text.lines()
        .find(|line| line.starts_with(key) && line[key.len()..].starts_with(' '))
        .map(crate::common::sample_value)
        .unwrap_or(0.0)
}

/// Mean milliseconds per push spent in each stage between two `/metrics` texts.
fn stage_means(before: &str, after: &str, pushes: usize) -> Value {
    let prefix = "driftless_reconcile_stage_duration_seconds_sum{stage=\"";
    let mut stages = BTreeMap::new();
    for line in after.lines() {
        let Some(rest) = line.strip_prefix(prefix) else {
            continue;
        };
        let Some(stage) = rest.split('"').next() else {
            continue;
        };
        let key = format!("{prefix}{stage}\"}}");
        let seconds = sample(after, &key) - sample(before, &key);
        stages.insert(
            stage.to_owned(),
            json!(crate::round(seconds * 1000.0 / pushes as f64, 2)),
        );
    }
    json!(stages)
}
