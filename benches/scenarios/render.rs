//! Kustomize rendering in the controller: the first render and apply of a real multi-base
//! overlay from the kustomize corpus (`tests/fixtures/kustomize/kustomize/examples/multibases`:
//! three overlays of one base under one kustomization), the no-change resync of it (which must
//! run kustomize zero times: its result is cached by the digest of what the build reads), and
//! many GitRepositories each on an overlay of one monorepo (time until all Ready, renders run,
//! controller RSS). Renders are counted by the controller's `driftless_render_total` metric.
//!
//! Parameters: `DRIFTLESS_BENCH_RENDER_OVERLAYS` (default 100).

use std::{
    collections::BTreeMap,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::Result;
use serde_json::{Value, json};

use crate::{
    common::{
        procfs::RssSampler,
        side_by_side::{
            FluxSources, Layout, Running, Setup, Snapshot, Tool, Workload, commit_files,
            env_number, handled, load_average, token, write_monorepo,
        },
    },
    millis, round, row,
    support::git::{GitRepos, HttpGitServer},
};

const FIXTURE: &str = "tests/fixtures/kustomize/kustomize/examples/multibases";

pub async fn scenario() -> Result<Value> {
    let overlays = env_number("RENDER_OVERLAYS", 100);
    let setup = Setup::prepare(false).await?;
    let load_before = load_average();
    let corpus = corpus_overlay(&setup).await?;
    let many = many_overlays(&setup, overlays).await?;
    let load_after = load_average();
    let rows = vec![
        row(
            "multi-base overlay of the corpus: first render + apply",
            corpus["first_ms"].clone(),
            json!(null),
            "ms",
        ),
        row(
            "multi-base overlay: kustomize runs in the first reconcile",
            corpus["first_renders"].clone(),
            json!(null),
            "",
        ),
        row(
            "multi-base overlay: no-change resync",
            corpus["resync_ms"].clone(),
            json!(null),
            "ms",
        ),
        row(
            "multi-base overlay: kustomize runs in the no-change resync",
            corpus["resync_renders"].clone(),
            json!(null),
            "",
        ),
        row(
            &format!(
                "{overlays} GitRepositories on overlays of one monorepo: time until all Ready"
            ),
            many["seconds_to_all_ready"].clone(),
            json!(null),
            "s",
        ),
        row(
            &format!("{overlays} overlays: kustomize runs"),
            many["renders"].clone(),
            json!(null),
            "",
        ),
        row(
            &format!("{overlays} overlays: controller peak RSS"),
            many["peak_rss_mib"].clone(),
            json!(null),
            "MiB",
        ),
    ];
    Ok(json!({
        "title": "Kustomize rendering: a multi-base overlay of the corpus, its no-change resync, and many overlays of one monorepo",
        "driftless": "the release binary `driftless controller` with the pinned kustomize (`--kustomize-binary`), render concurrency at its default",
        "baseline": "none: the render rows are driftless's own figures (Flux's build of overlays is compared in flux-overlays)",
        "rows": rows,
        "corpus_overlay": corpus,
        "many_overlays": many,
        "load_average": {"before": load_before, "after": load_after},
        "notes": [
            format!("Corpus overlay: `{FIXTURE}` copied into the repository unchanged (three overlays, dev/staging/production, of one base, under one kustomization with a namePrefix: one unit, one render); the clock runs from the GitRepository create to Ready with the commit. The resync is forced by `driftless.dev/reconcile-requested-at` and done when `status.lastHandledReconcileAt` echoes it."),
            "Kustomize runs: the delta of `driftless_render_total` outcomes other than `cached` (a cached result runs no process).".to_owned(),
            format!("Many overlays: the flux-overlays shape (a shared base of nine ConfigMaps, a configMapGenerator and a patch per overlay, ten objects each), {overlays} GitRepositories, one per overlay path."),
        ],
    }))
}

/// Outcomes of `driftless_render_total` between two readings that ran kustomize.
fn renders_run(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> u64 {
    after
        .iter()
        .filter(|(outcome, _)| outcome.as_str() != "cached")
        .map(|(outcome, count)| count - before.get(outcome).copied().unwrap_or(0))
        .sum()
}

fn fixture_files(root: &Path, prefix: &str) -> Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let relative = path.strip_prefix(root)?.to_string_lossy().into_owned();
                files.push((
                    format!("{prefix}/{relative}"),
                    std::fs::read_to_string(&path)?,
                ));
            }
        }
    }
    files.sort();
    Ok(files)
}

async fn corpus_overlay(setup: &Setup) -> Result<Value> {
    let repos = GitRepos::new();
    let repo = repos.create("corpus");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    let commit = commit_files(
        repo.path(),
        "corpus overlay",
        &fixture_files(&fixture, "apps/app-0000")?,
    )?;
    let server = HttpGitServer::start(repos.root(), Default::default());
    let workload = Workload {
        apps: 1,
        layout: Layout::Overlay,
        flux_sources: FluxSources::PerApp,
        interval: Some("1h"),
    };
    let running = Running::start(setup, Tool::Driftless, "bench-render-corpus").await?;
    let outcome = async {
        let renders_before = running.render_counts();
        let started = Instant::now();
        running.create(&workload, &server.url_for(&repo)).await?;
        running
            .until_applied(1, &commit, Duration::from_secs(120))
            .await?;
        let first = started.elapsed();
        let renders_first = running.render_counts();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut resync_ms = Vec::new();
        let mut resync_renders = 0;
        let mut usage = json!(null);
        for _ in 0..5 {
            let token = token("render");
            let renders = running.render_counts();
            let before = Snapshot::take(&running, &server);
            let started = Instant::now();
            running.request_reconcile("app-0000", &token).await?;
            running
                .sources
                .until_one("app-0000", Duration::from_secs(60), &handled(&token))
                .await?;
            resync_ms.push(millis(started.elapsed()));
            resync_renders += renders_run(&renders, &running.render_counts());
            usage = before.usage(&Snapshot::take(&running, &server));
        }
        let objects = running.config_maps.count(&|_| true);
        eprintln!(
            "   corpus overlay: first {:.0} ms, resync {resync_ms:?} ms, renders {:?}",
            millis(first),
            running.render_counts()
        );
        anyhow::Ok(json!({
            "first_ms": round(millis(first), 0),
            "first_renders": renders_run(&renders_before, &renders_first),
            "resync_ms": crate::summary(&resync_ms, 0),
            "resync_renders": resync_renders,
            "last_resync_usage": usage,
            "render_total": running.render_counts(),
            "config_maps_in_namespace": objects,
        }))
    }
    .await;
    let cleanup = running.finish().await;
    let result = outcome?;
    cleanup?;
    Ok(result)
}

async fn many_overlays(setup: &Setup, overlays: usize) -> Result<Value> {
    let workload = Workload {
        apps: overlays,
        layout: Layout::Overlay,
        flux_sources: FluxSources::PerApp,
        interval: None,
    };
    let repos = GitRepos::new();
    let repo = repos.create("overlays");
    let commit = write_monorepo(repo.path(), &workload)?;
    let server = HttpGitServer::start(repos.root(), Default::default());
    let running = Running::start(setup, Tool::Driftless, "bench-render-many").await?;
    let outcome = async {
        let sampler = RssSampler::start(&running.pids());
        let renders_before = running.render_counts();
        let before = Snapshot::take(&running, &server);
        let started = Instant::now();
        running.create(&workload, &server.url_for(&repo)).await?;
        running
            .until_applied(overlays, &commit, Duration::from_secs(30 * 60))
            .await?;
        let to_ready = started.elapsed();
        let after = Snapshot::take(&running, &server);
        let peak = sampler.stop().iter().map(|s| s.1).max().unwrap_or(0) as f64 / 1024.0;
        let renders = renders_run(&renders_before, &running.render_counts());
        eprintln!(
            "   {overlays} overlays Ready after {:.1} s, {renders} renders, peak RSS {peak:.1} MiB",
            to_ready.as_secs_f64()
        );
        anyhow::Ok(json!({
            "overlays": overlays,
            "seconds_to_all_ready": round(to_ready.as_secs_f64(), 1),
            "renders": renders,
            "render_total": running.render_counts(),
            "peak_rss_mib": round(peak, 1),
            "vmhwm_mib": round(running.peak_rss_mib(), 1),
            "to_ready": before.usage(&after),
        }))
    }
    .await;
    let cleanup = running.finish().await;
    let result = outcome?;
    cleanup?;
    Ok(result)
}
