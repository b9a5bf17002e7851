//! Many sources from scratch, side by side with Flux: N applications of one monorepo (a path
//! each, 10 ConfigMaps each), driftless with one GitRepository per path, Flux with one
//! GitRepository (sparse checkout of the path) and one Kustomization per path. Time until all
//! are Ready, peak summed RSS, CPU seconds, API requests, git requests. At the largest size it
//! then forces a no-change resync of everything by each tool's reconcile-request annotation,
//! and measures a window of idling at each tool's default interval.
//!
//! The overlay variant (`flux-overlays`) is the same with every path a Kustomize overlay of a
//! shared base (a `configMapGenerator` and a patch each), which driftless renders with the
//! pinned kustomize and Flux with its built-in kustomize.
//!
//! Parameters: `DRIFTLESS_BENCH_FLUX_SIZES` (default 100,500,1000),
//! `DRIFTLESS_BENCH_FLUX_OVERLAY_SIZES` (default 500), `DRIFTLESS_BENCH_FLUX_IDLE_SECS`
//! (default 600; 0 skips the idle window), `DRIFTLESS_BENCH_FLUX_RESYNC` (default 1; 0 skips
//! the resync, to measure the idle window alone), `DRIFTLESS_BENCH_FLUX_CONFIGS`.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Value, json};

use crate::{
    common::{
        flux,
        procfs::RssSampler,
        side_by_side::{
            FluxSources, Layout, Running, Setup, Snapshot, Tool, Workload, env_number, env_numbers,
            handled, load_average, token, tools, write_monorepo,
        },
    },
    round, row,
    support::git::{GitRepos, HttpGitServer},
};

/// How long a size may take to become Ready.
const READY_WITHIN: Duration = Duration::from_secs(60 * 60);

pub async fn scenario() -> Result<Value> {
    let sizes = env_numbers("FLUX_SIZES", &[100, 500, 1000])?;
    run(
        "flux-scale",
        &sizes,
        Layout::Plain { objects: 10 },
        env_number("FLUX_IDLE_SECS", 600) as u64,
    )
    .await
}

pub async fn overlays() -> Result<Value> {
    let sizes = env_numbers("FLUX_OVERLAY_SIZES", &[500])?;
    run("flux-overlays", &sizes, Layout::Overlay, 0).await
}

async fn run(name: &str, sizes: &[usize], layout: Layout, idle_secs: u64) -> Result<Value> {
    // `DRIFTLESS_BENCH_FLUX_CONFIGS=none`: driftless alone, without building Flux.
    let setup = Setup::prepare(!crate::common::flux::configs().is_empty()).await?;
    let largest = sizes.iter().copied().max().unwrap_or(0);
    let load_before = load_average();
    let mut runs = Vec::new();
    for &size in sizes {
        let workload = Workload {
            apps: size,
            layout,
            flux_sources: FluxSources::PerApp,
            interval: None,
        };
        let repos = GitRepos::new();
        let repo = repos.create("monorepo");
        let commit = write_monorepo(repo.path(), &workload)?;
        let at_largest = size == largest;
        // At the largest size the idle window runs once for driftless and Flux with its
        // defaults at the same time, after both converged (and were resynced); Flux with its
        // defaults then idles while driftless converges, which can only slow driftless down.
        let mut order = tools();
        if at_largest {
            order.reverse();
        }
        let mut idling = Vec::new();
        for tool in order {
            eprintln!("-- {name}: {size} sources, {}", tool.label());
            let keep = at_largest
                && idle_secs > 0
                && match tool {
                    Tool::Driftless => true,
                    Tool::Flux(config) => config.name == flux::DEFAULTS.name,
                };
            // A git server per tool (same repository), so that each one's git requests are its
            // own even while two idle at once.
            let server = HttpGitServer::start(repos.root(), Default::default());
            let url = server.url_for(&repo);
            let (run, running) = one_run(
                &setup, tool, &workload, &server, &url, &commit, at_largest, keep,
            )
            .await?;
            runs.push(run);
            idling.extend(running.map(|r| (r, server)));
        }
        if !idling.is_empty() {
            let windows = idle(&idling, idle_secs).await;
            for (running, _server) in idling {
                let _ = running.finish().await;
            }
            for (key, window) in windows? {
                if let Some(run) = runs
                    .iter_mut()
                    .find(|r| r["tool"] == key.as_str() && r["size"].as_u64() == Some(size as u64))
                {
                    run["idle"] = window;
                }
            }
        }
    }
    let load_after = load_average();
    Ok(json!({
        "title": format!("{} sources × {} objects from scratch{}, side by side with Flux",
            sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" / "),
            layout.objects(),
            if matches!(layout, Layout::Overlay) { " as Kustomize overlays (a base + configMapGenerator + a patch each)" } else { "" }),
        "driftless": "the release binary `driftless controller`, one GitRepository per path of one monorepo (smart HTTP on loopback), default interval, watching the run's namespace",
        "baseline": format!("Flux {} built from source, one GitRepository (sparseCheckout of its path) + one Kustomization per path, watching the run's namespace", flux::versions()),
        "rows": rows(&runs, largest),
        "runs": runs,
        "load_average": {"before": load_before, "after": load_after},
        "notes": notes(name, idle_secs),
    }))
}

#[allow(clippy::too_many_arguments)]
async fn one_run(
    setup: &Setup,
    tool: Tool,
    workload: &Workload,
    server: &HttpGitServer,
    url: &str,
    commit: &str,
    at_largest: bool,
    keep: bool,
) -> Result<(Value, Option<Running>)> {
    let size = workload.apps;
    let running = Running::start(setup, tool, &format!("bench-flux-scale-{size}")).await?;
    let outcome = async {
        let sampler = RssSampler::start(&running.pids());
        let before = Snapshot::take(&running, server);
        let started = Instant::now();
        running.create(workload, url).await?;
        running.until_applied(size, commit, READY_WITHIN).await?;
        let to_ready = started.elapsed();
        let after = Snapshot::take(&running, server);
        let samples = sampler.stop();
        let peak = samples.iter().map(|s| s.1).max().unwrap_or(0) as f64 / 1024.0;
        let objects = running
            .config_maps
            .count(&|o| o["metadata"]["labels"]["app"].is_string());
        eprintln!(
            "   all {size} Ready after {:.1} s, peak RSS {peak:.1} MiB, {objects} objects, {}",
            to_ready.as_secs_f64(),
            before.usage(&after)
        );
        let mut result = json!({
            "tool": tool.key(),
            "label": tool.label(),
            "size": size,
            "objects": objects,
            "seconds_to_all_ready": round(to_ready.as_secs_f64(), 1),
            "peak_rss_mib": round(peak, 1),
            "vmhwm_sum_mib": round(running.peak_rss_mib(), 1),
            "to_ready": before.usage(&after),
        });
        if at_largest && env_number("FLUX_RESYNC", 1) != 0 {
            result["resync"] = resync(&running, server, size).await?;
        }
        anyhow::Ok(result)
    }
    .await;
    if keep && outcome.is_ok() {
        return Ok((outcome?, Some(running)));
    }
    let cleanup = running.finish().await;
    let mut result = outcome?;
    result["cleanup_seconds"] = json!(round(cleanup?, 1));
    Ok((result, None))
}

/// Every object's reconcile requested at once; done when every one handled it.
async fn resync(running: &Running, server: &HttpGitServer, size: usize) -> Result<Value> {
    // Let the from-scratch work settle (Flux's Kustomizations requeue once after Ready).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let token = token("resync");
    let before = Snapshot::take(running, server);
    let started = Instant::now();
    running.request_reconcile_all(&token).await?;
    let within = Duration::from_secs(30 * 60);
    running
        .sources
        .until_count(size, within, &handled(&token))
        .await?;
    if let Some(kustomizations) = &running.kustomizations {
        kustomizations
            .until_count(size, within, &handled(&token))
            .await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = Snapshot::take(running, server);
    eprintln!(
        "   resync of {size} in {seconds:.1} s: {}",
        before.usage(&after)
    );
    let mut usage = before.usage(&after);
    usage["seconds_until_all_handled"] = json!(round(seconds, 1));
    Ok(usage)
}

/// Nothing changes for `seconds`: what each tool costs at its default interval, measured for
/// all `idling` tools over the same window.
async fn idle(idling: &[(Running, HttpGitServer)], seconds: u64) -> Result<Vec<(String, Value)>> {
    tokio::time::sleep(Duration::from_secs(5)).await;
    eprintln!("   idle for {seconds} s: {} tools at once", idling.len());
    let samplers: Vec<_> = idling
        .iter()
        .map(|(r, _)| RssSampler::start(&r.pids()))
        .collect();
    let before: Vec<_> = idling
        .iter()
        .map(|(r, server)| Snapshot::take(r, server))
        .collect();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let mut windows = Vec::new();
    for (((running, server), before), sampler) in idling.iter().zip(before).zip(samplers) {
        let after = Snapshot::take(running, server);
        let rss: Vec<f64> = sampler.stop().iter().map(|s| s.1 as f64 / 1024.0).collect();
        let mut usage = before.usage(&after);
        let cpu = usage["cpu_seconds"].as_f64().unwrap_or(0.0);
        usage["cpu_percent_of_one_core"] = json!(round(cpu / seconds as f64 * 100.0, 2));
        usage["rss_mib"] = crate::summary(&rss, 1);
        eprintln!("   idle, {}: {usage}", running.tool.label());
        windows.push((running.tool.key(), usage));
    }
    Ok(windows)
}

fn find<'a>(runs: &'a [Value], tool: &str, size: usize) -> Option<&'a Value> {
    runs.iter()
        .find(|r| r["tool"] == tool && r["size"].as_u64() == Some(size as u64))
}

fn rows(runs: &[Value], largest: usize) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut sizes: Vec<usize> = runs
        .iter()
        .filter_map(|r| r["size"].as_u64().map(|s| s as usize))
        .collect();
    sizes.dedup();
    let flux_tools: Vec<(String, String)> = runs
        .iter()
        .filter(|r| r["tool"] != "driftless")
        .map(|r| {
            (
                r["tool"].as_str().unwrap_or("").to_owned(),
                r["label"].as_str().unwrap_or("").to_owned(),
            )
        })
        .fold(Vec::new(), |mut all, t| {
            if !all.contains(&t) {
                all.push(t);
            }
            all
        });
    for (flux_key, flux_label) in &flux_tools {
        let short = flux_label
            .split(':')
            .next()
            .unwrap_or(flux_label)
            .to_owned()
            + ")";
        for &size in &sizes {
            let (Some(d), Some(f)) = (find(runs, "driftless", size), find(runs, flux_key, size))
            else {
                continue;
            };
            let label = |what: &str| format!("{size} sources: {what}, vs {short}");
            rows.push(row(
                &label("time until all Ready"),
                d["seconds_to_all_ready"].clone(),
                f["seconds_to_all_ready"].clone(),
                "s",
            ));
            rows.push(row(
                &label("peak RSS (summed)"),
                d["peak_rss_mib"].clone(),
                f["peak_rss_mib"].clone(),
                "MiB",
            ));
            rows.push(row(
                &label("CPU until all Ready"),
                d["to_ready"]["cpu_seconds"].clone(),
                f["to_ready"]["cpu_seconds"].clone(),
                "s",
            ));
            rows.push(row(
                &label("API requests until all Ready"),
                d["to_ready"]["requests"].clone(),
                f["to_ready"]["requests"].clone(),
                "",
            ));
            rows.push(row(
                &label("git requests until all Ready"),
                d["to_ready"]["git_requests"].clone(),
                f["to_ready"]["git_requests"].clone(),
                "",
            ));
            if size != largest {
                continue;
            }
            for (key, what) in [("resync", "no-change resync of all")] {
                if d[key].is_null() || f[key].is_null() {
                    continue;
                }
                rows.push(row(
                    &label(&format!("{what}: time")),
                    d[key]["seconds_until_all_handled"].clone(),
                    f[key]["seconds_until_all_handled"].clone(),
                    "s",
                ));
                for (field, unit, name) in [
                    ("requests", "", "API requests"),
                    ("write_requests", "", "write-verb API requests"),
                    ("cpu_seconds", "s", "CPU"),
                    ("git_requests", "", "git requests"),
                ] {
                    rows.push(row(
                        &label(&format!("{what}: {name}")),
                        d[key][field].clone(),
                        f[key][field].clone(),
                        unit,
                    ));
                }
            }
            if !d["idle"].is_null() && !f["idle"].is_null() {
                let secs = d["idle"]["seconds"].as_f64().unwrap_or(0.0);
                let what = format!("idle {secs:.0} s at the default interval");
                for (field, unit, name) in [
                    ("cpu_seconds", "s", "CPU"),
                    ("requests", "", "API requests"),
                    ("git_requests", "", "git requests"),
                ] {
                    rows.push(row(
                        &label(&format!("{what}: {name}")),
                        d["idle"][field].clone(),
                        f["idle"][field].clone(),
                        unit,
                    ));
                }
                rows.push(row(
                    &label(&format!("{what}: RSS (median)")),
                    d["idle"]["rss_mib"]["median"].clone(),
                    f["idle"]["rss_mib"]["median"].clone(),
                    "MiB",
                ));
            }
        }
    }
    rows
}

fn notes(name: &str, idle_secs: u64) -> Vec<String> {
    let mut notes = vec![
        "Each size and tool is one run (n=1): a fresh namespace and fresh controller processes; the clock starts when the first object create is sent (16 at a time) and stops when every applier (driftless's GitRepository, Flux's Kustomization) is Ready with the commit as `lastAppliedRevision`, seen by a watch.".to_owned(),
        "Intervals: each tool's default. driftless: no `spec.interval`, the controller's 5m. Flux has no default; `flux bootstrap`'s: GitRepository 1m, Kustomization 10m. Flux controllers run with `--watch-all-namespaces=false` and `RUNTIME_NAMESPACE` set to the run's namespace, as driftless watches only it; leader election off; artifact server on loopback.".to_owned(),
        "RSS: the sum of the tool's processes' VmRSS (driftless: 1; Flux: source-controller + kustomize-controller), sampled every 100 ms; the peak is the sampled maximum of the sum (VmHWM sums are in the JSON). CPU: utime+stime from /proc of the same processes.".to_owned(),
        "API requests are counted client-side by each tool: driftless from its kube-client debug log (one line per HTTP request, by verb and resource), Flux from each controller's client-go counter `rest_client_requests_total` (by method), summed over both controllers; watches count as one request each. Write-verb requests of Flux include its server-side-apply dry runs (the counter cannot tell them apart); driftless's exclude dry runs. git requests: HTTP requests the test git server received (ref advertisements and pack rounds).".to_owned(),
    ];
    if name == "flux-scale" {
        notes.push(format!("At the largest size: a no-change resync forced by the reconcile-request annotation on every object (driftless: `driftless.dev/reconcile-requested-at` on the GitRepositories; Flux: `reconcile.fluxcd.io/requestedAt` on GitRepositories and Kustomizations, as `flux reconcile kustomization --with-source`), done when all echo it in `status.lastHandledReconcileAt`. Then {idle_secs} s of idling, driftless and Flux with its defaults over the same window (each with a git server of its own on the same repository, so git requests are per tool); at that size the runs go Flux with its benchmark settings, Flux with its defaults (which then idles on), driftless last."));
    }
    notes
}
