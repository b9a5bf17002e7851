//! A push to a monorepo, side by side with Flux: one repository, N paths with one ConfigMap
//! each (driftless: N GitRepositories on one URL, a path each; Flux: one GitRepository and N
//! Kustomizations), then one commit that changes one path, triggered once (driftless: one
//! webhook delivery, which reaches every GitRepository on the URL; Flux: the reconcile-request
//! annotation on its one GitRepository). Measured: the time until that path's change is
//! visible, and what the tool spends until it is quiet again: API requests, CPU seconds, git
//! requests. Everything beyond the one changed path is spent on the N-1 unchanged ones.
//!
//! Parameters: `DRIFTLESS_BENCH_FLUX_MONOREPO_PATHS` (default 1000),
//! `DRIFTLESS_BENCH_FLUX_MONOREPO_CHANGED` (the path the commit changes, default 0),
//! `DRIFTLESS_BENCH_FLUX_CONFIGS`.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::{
    common::{
        flux,
        side_by_side::{
            FluxSources, Layout, Running, SECRET, Setup, Snapshot, Tool, Workload, app_files,
            app_name, commit_files, env_number, load_average, token, tools, until_quiet,
            write_monorepo,
        },
    },
    millis, round, row,
    support::{
        git::{GitRepos, HttpGitServer},
        webhook::github_push,
    },
};

/// No request for this long after the push means the tool is done with it.
const QUIET: Duration = Duration::from_secs(10);

pub async fn scenario() -> Result<Value> {
    let paths = env_number("FLUX_MONOREPO_PATHS", 1000);
    // `DRIFTLESS_BENCH_FLUX_CONFIGS=none`: driftless alone, without building Flux.
    let setup = Setup::prepare(!crate::common::flux::configs().is_empty()).await?;
    let load_before = load_average();
    let workload = Workload {
        apps: paths,
        layout: Layout::Plain { objects: 1 },
        flux_sources: FluxSources::One,
        interval: Some("1h"),
    };
    let mut runs = Vec::new();
    for tool in tools() {
        eprintln!("-- flux-monorepo: {paths} paths, {}", tool.label());
        runs.push(one_run(&setup, tool, &workload).await?);
    }
    let load_after = load_average();
    let driftless = runs.iter().find(|r| r["tool"] == "driftless").cloned();
    let mut rows = Vec::new();
    if let Some(d) = &driftless {
        for f in runs.iter().filter(|r| r["tool"] != "driftless") {
            let name = f["config"].as_str().unwrap_or("");
            let label = |what: &str| format!("{what}, vs Flux ({name})");
            rows.push(row(
                &label("push → changed path visible"),
                d["visible_ms"].clone(),
                f["visible_ms"].clone(),
                "ms",
            ));
            for (field, unit, what) in [
                ("requests", "", "API requests after the push"),
                (
                    "write_requests",
                    "",
                    "write-verb API requests after the push",
                ),
                ("cpu_seconds", "s", "CPU after the push"),
                ("git_requests", "", "git requests after the push"),
            ] {
                rows.push(row(
                    &label(what),
                    d["after_push"][field].clone(),
                    f["after_push"][field].clone(),
                    unit,
                ));
            }
            rows.push(row(
                &label(&format!("{paths} paths from scratch: time until all Ready")),
                d["seconds_to_all_ready"].clone(),
                f["seconds_to_all_ready"].clone(),
                "s",
            ));
        }
    }
    Ok(json!({
        "title": format!("Monorepo push side by side with Flux: {paths} paths of one ConfigMap each, one commit changing one path"),
        "driftless": format!("the release binary `driftless controller`: {paths} GitRepositories on one URL (a path each, polling hourly); one signed GitHub push event"),
        "baseline": format!("Flux {}: one GitRepository + {paths} Kustomizations (polling hourly); `reconcile.fluxcd.io/requestedAt` on the GitRepository", flux::versions()),
        "rows": rows,
        "runs": runs,
        "load_average": {"before": load_before, "after": load_after},
        "notes": [
            format!("One run per tool. After all {paths} are Ready the bench waits until the tool has been quiet for {} s, commits a change to `cm-0.yaml` of one path only (`apps/app-0000` unless `DRIFTLESS_BENCH_FLUX_MONOREPO_CHANGED` names another), starts the clock, and triggers once. 'After the push' is from the trigger until the tool sent no request (Lease renewals and watches aside) and the git server saw none for {} s; the quiet tail is not counted.", QUIET.as_secs(), QUIET.as_secs()),
            "Requests are counted client-side, as in flux-scale. The changed path itself costs a handful of requests in either tool; the rest is what the unchanged paths cost.".to_owned(),
        ],
    }))
}

async fn one_run(setup: &Setup, tool: Tool, workload: &Workload) -> Result<Value> {
    let repos = GitRepos::new();
    let repo = repos.create("monorepo");
    let commit = write_monorepo(repo.path(), workload)?;
    let server = HttpGitServer::start(repos.root(), Default::default());
    let url = server.url_for(&repo);
    let running = Running::start(setup, tool, "bench-flux-monorepo").await?;
    let outcome = async {
        let started = Instant::now();
        running.create(workload, &url).await?;
        running
            .until_applied(workload.apps, &commit, Duration::from_secs(60 * 60))
            .await?;
        let to_ready = started.elapsed();
        until_quiet(&running, &server, QUIET, Duration::from_secs(300)).await;

        // Which path the commit changes (`DRIFTLESS_BENCH_FLUX_MONOREPO_CHANGED`, default 0):
        // a path in the middle shows whether the changed one waits behind the others.
        let changed = env_number("FLUX_MONOREPO_CHANGED", 0).min(workload.apps - 1);
        let file = app_files(workload.layout, changed, 1).remove(0);
        let head = commit_files(repo.path(), "change one path", &[file])?;
        let before = Snapshot::take(&running, &server);
        let started = Instant::now();
        match tool {
            Tool::Driftless => {
                let port = running.webhook_port().expect("driftless has a receiver");
                let body = crate::push::github_push_body(&url, &commit, &head);
                let (code, answer) = tokio::task::spawn_blocking(move || {
                    github_push(port, "/hooks/github", SECRET.as_bytes(), "monorepo", &body)
                })
                .await?;
                if code != 202 {
                    bail!("the receiver answered {code}: {answer}");
                }
            }
            Tool::Flux(_) => {
                running
                    .request_reconcile("monorepo", &token("push"))
                    .await?
            }
        }
        running
            .config_maps
            .until_one(
                &format!("{}-cm-0", app_name(changed)),
                Duration::from_secs(300),
                &|o| o["data"]["revision"] == "1",
            )
            .await?;
        let visible = started.elapsed();
        let settled = until_quiet(&running, &server, QUIET, Duration::from_secs(900)).await;
        let after_push = before.usage(&settled);
        eprintln!(
            "   visible after {:.0} ms; after the push: {after_push}",
            millis(visible)
        );
        anyhow::Ok(json!({
            "tool": tool.key(),
            "config": match tool { Tool::Flux(c) => c.name, Tool::Driftless => "" },
            "label": tool.label(),
            "paths": workload.apps,
            "seconds_to_all_ready": round(to_ready.as_secs_f64(), 1),
            "visible_ms": round(millis(visible), 0),
            "after_push": after_push,
        }))
    }
    .await;
    let cleanup = running.finish().await;
    let result = outcome?;
    cleanup?;
    Ok(result)
}
