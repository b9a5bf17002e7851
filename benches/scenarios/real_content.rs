//! Push to applied on real content, next to the small synthetic case in the same run: a
//! platform repository holding five prometheus-operator CRDs (2.4 MB of YAML, the largest
//! 833 KB), podinfo's `kustomize/` (a kustomization: Deployment, HPA, Service), a
//! ServiceMonitor, a PrometheusRule and a ConfigMap (the fixtures of `tests/fixtures/`, with
//! their upstream repositories and commits named in their READMEs). Each push changes the
//! ConfigMap; the clock runs from the webhook's POST until the changed ConfigMap is seen by a
//! watch. The small case is the 20-ConfigMap application of `flux-push`, measured first by the
//! same controller build, so the ratio between the two is of one run at one load.
//!
//! Printed and kept per case: first apply, push → visible p50/p99, the no-change resync
//! (forced by annotation), CPU, API and git requests per push, the time per step of the
//! reconcile (`driftless_reconcile_stage_duration_seconds`, mean per push) and the manifest
//! files parsed or taken from the parse cache per push (`driftless_manifest_files_total`).
//!
//! Parameters: `DRIFTLESS_BENCH_REAL_PUSHES` (default 30); `DRIFTLESS_BENCH_DRIFTLESS_BINARY`
//! measures another build of the controller (e.g. the one before a change) with this harness.

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::{
    common::side_by_side::{
        FluxSources, Layout, Running, SECRET, Setup, Snapshot, Tool, Workload, app_files, app_path,
        applied, commit_files, env_number, handled, load_average, plain_config_map, token,
        write_monorepo,
    },
    millis, row, summary,
    support::{
        git::{GitRepos, HttpGitServer},
        webhook::github_push,
    },
};

/// The objects of the small case.
const SMALL_OBJECTS: usize = 20;

/// Which repository a case pushes to.
#[derive(Clone, Copy, PartialEq)]
enum Case {
    /// 20 ConfigMaps.
    Small,
    /// CRDs, podinfo's kustomization, a ServiceMonitor, a PrometheusRule and a ConfigMap.
    Platform,
}

impl Case {
    fn key(self) -> &'static str {
        match self {
            Case::Small => "small",
            Case::Platform => "platform",
        }
    }
}

pub async fn scenario() -> Result<Value> {
    let pushes = env_number("REAL_PUSHES", 30);
    let setup = Setup::prepare(false).await?;
    let load_before = load_average();
    let mut runs = Vec::new();
    for case in [Case::Small, Case::Platform] {
        eprintln!("-- real-content: {}", case.key());
        runs.push(one_run(&setup, case, pushes).await?);
    }
    let load_after = load_average();
    let (small, platform) = (&runs[0], &runs[1]);
    let ratio = |key: &str| {
        let a = platform[key]["median"].as_f64().unwrap_or(0.0);
        let b = small[key]["median"].as_f64().unwrap_or(1.0);
        crate::round(a / b, 2)
    };
    let mut rows = vec![
        row(
            "push → changed ConfigMap visible, p50 (platform repository vs the 20-ConfigMap one)",
            platform["visible_ms"].clone(),
            small["visible_ms"].clone(),
            "ms",
        ),
        row(
            "push → changed ConfigMap visible, p99",
            platform["visible_ms"]["p99"].clone(),
            small["visible_ms"]["p99"].clone(),
            "ms",
        ),
    ];
    for (label, key) in [
        ("first apply (create → Ready)", "first_apply_ms"),
        ("no-change resync, forced by annotation", "resync_ms"),
        ("API requests per push", "requests_per_push"),
        ("CPU per push", "cpu_ms_per_push"),
        ("git requests per push", "git_requests_per_push"),
        ("manifest files parsed per push", "files_parsed_per_push"),
    ] {
        rows.push(row(label, platform[key].clone(), small[key].clone(), ""));
    }
    Ok(json!({
        "title": format!("Push → applied on real content: {pushes} commits to a platform repository (5 prometheus-operator CRDs, podinfo's kustomization, a ServiceMonitor, a PrometheusRule, a ConfigMap) next to the 20-ConfigMap application, same run"),
        "driftless": "the release binary `driftless controller` (GitRepository polling hourly), triggered by its webhook receiver (signed GitHub push event)",
        "baseline": "the same controller on the 20-ConfigMap application of flux-push (the small case), in the same run",
        "rows": rows,
        "runs": runs,
        "platform_vs_small_visible_p50": ratio("visible_ms"),
        "load_average": {"before": load_before, "after": load_after},
        "notes": [
            format!("{pushes} sequential commits after one warm-up commit, one second apart, each changing one ConfigMap; the clock starts right before the webhook POST (the commit is already in the served repository) and stops when the changed ConfigMap carries the new value, seen by a watch."),
            "Stage times: deltas of `driftless_reconcile_stage_duration_seconds` (sum / pushes) over the measured pushes; `fetch` includes the ref listing, the fetch and reading the files; `apply_list` the LISTs of live objects; `apply_plan` the comparisons and dry runs; `apply_established` waiting for CRDs and refreshing discovery.".to_owned(),
            "Fixtures: tests/fixtures/prometheus-operator and tests/fixtures/kustomize/podinfo (their READMEs name the upstream commits).".to_owned(),
        ],
    }))
}

/// The files of the platform repository under `apps/app-0000`, with the ConfigMap at
/// `revision`.
fn platform_files(revision: usize) -> Result<Vec<(String, String)>> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let base = app_path(0);
    let mut files = Vec::new();
    let crds = fixtures.join("prometheus-operator/example/prometheus-operator-crd");
    let mut names: Vec<_> = std::fs::read_dir(&crds)?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    names.sort();
    for name in names {
        let name = name.to_string_lossy().into_owned();
        let text = std::fs::read_to_string(crds.join(&name))?;
        files.push((format!("{base}/crds/{name}"), text));
    }
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

/// The file a push changes and the ConfigMap it shows in.
fn pushed_file(case: Case, push: usize, revision: usize) -> ((String, String), String) {
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
            (file, format!("app-0000-cm-{object}"))
        }
        Case::Platform => (config_map_file(revision), "app-0000-cm-0".to_owned()),
    }
}

async fn one_run(setup: &Setup, case: Case, pushes: usize) -> Result<Value> {
    let workload = Workload {
        apps: 1,
        layout: Layout::Plain {
            objects: SMALL_OBJECTS,
        },
        flux_sources: FluxSources::PerApp,
        interval: Some("1h"),
    };
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let mut head = match case {
        Case::Small => write_monorepo(repo.path(), &workload)?,
        Case::Platform => commit_files(repo.path(), "platform", &platform_files(0)?)?,
    };
    let server = HttpGitServer::start(repos.root(), Default::default());
    let url = server.url_for(&repo);
    let running = Running::start(setup, Tool::Driftless, "bench-real").await?;
    let outcome = async {
        let created = Instant::now();
        running.create(&workload, &url).await?;
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
            let (file, name) = pushed_file(case, push, revision);
            let previous = head.clone();
            head = commit_files(repo.path(), &format!("push {revision}"), &[file])?;
            let started = Instant::now();
            let port = running.webhook_port().context("driftless has a receiver")?;
            let body = crate::push::github_push_body(&url, &previous, &head);
            let delivery = format!("bench-real-{}-{push}", case.key());
            let (code, answer) = tokio::task::spawn_blocking(move || {
                github_push(port, "/hooks/github", SECRET.as_bytes(), &delivery, &body)
            })
            .await?;
            if code != 202 {
                bail!("push {push}: the receiver answered {code}: {answer}");
            }
            let want = revision.to_string();
            let within = Duration::from_secs(120);
            running
                .config_maps
                .until_one(&name, within, &|o| o["data"]["revision"] == want.as_str())
                .await?;
            let shown = started.elapsed();
            running
                .appliers()
                .until_one("app-0000", within, &applied(&head))
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
        // The no-change resync: asked by hand, so every object is compared with the cluster.
        let mut resync = Vec::new();
        for _ in 0..5 {
            let asked = token("resync");
            let started = Instant::now();
            running.request_reconcile("app-0000", &asked).await?;
            running
                .appliers()
                .until_one("app-0000", Duration::from_secs(120), &handled(&asked))
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
