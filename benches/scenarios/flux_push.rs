//! Push to applied, side by side with Flux: one application of 20 ConfigMaps, commits one after
//! the other (each changes one ConfigMap), each triggered at once: driftless by its webhook
//! (a signed GitHub push event) and, separately, by its reconcile-request annotation; Flux by
//! `reconcile.fluxcd.io/requestedAt` on its GitRepository, which is what its Receiver sets.
//! The clock starts before the trigger is sent (the commit is already on the git server) and
//! stops when the changed ConfigMap shows the new content, seen by a watch; the time until the
//! status names the commit is kept too.
//!
//! Parameters: `DRIFTLESS_BENCH_FLUX_PUSHES` (default 30), `DRIFTLESS_BENCH_FLUX_CONFIGS`.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::{
    common::{
        flux,
        side_by_side::{
            FluxSources, Layout, Running, SECRET, Setup, Snapshot, Tool, Workload, app_files,
            applied, commit_files, env_number, load_average, token, tools, write_monorepo,
        },
    },
    millis, row, summary,
    support::{
        git::{GitRepos, HttpGitServer},
        webhook::github_push,
    },
};

const OBJECTS: usize = 20;

/// How a commit is announced.
#[derive(Clone, Copy, PartialEq)]
enum Trigger {
    Webhook,
    Annotation,
}

pub async fn scenario() -> Result<Value> {
    let pushes = env_number("FLUX_PUSHES", 30);
    let setup = Setup::prepare(true).await?;
    let load_before = load_average();
    let workload = Workload {
        apps: 1,
        layout: Layout::Plain { objects: OBJECTS },
        flux_sources: FluxSources::PerApp,
        interval: Some("1h"),
    };
    let mut results = Vec::new();
    for tool in tools() {
        let triggers: &[Trigger] = match tool {
            Tool::Driftless => &[Trigger::Webhook, Trigger::Annotation],
            Tool::Flux(_) => &[Trigger::Annotation],
        };
        for &trigger in triggers {
            eprintln!(
                "-- flux-push: {} by {}",
                tool.label(),
                if trigger == Trigger::Webhook {
                    "webhook"
                } else {
                    "annotation"
                }
            );
            results.push(one_run(&setup, tool, trigger, &workload, pushes).await?);
        }
    }
    let load_after = load_average();
    let find = |key: &str| results.iter().find(|r| r["key"] == key).cloned();
    let mut rows = Vec::new();
    let webhook = find("driftless_webhook");
    let annotation = find("driftless_annotation");
    for config in flux::configs() {
        let key = format!("{}_annotation", Tool::Flux(config).key());
        let Some(flux) = find(&key) else { continue };
        for (name, driftless) in [("webhook", &webhook), ("annotation", &annotation)] {
            let Some(driftless) = driftless else { continue };
            let label = format!(
                "driftless by {name} vs Flux ({}) by annotation",
                config.name
            );
            rows.push(row(
                &format!("{label}: push → changed object visible, p50"),
                driftless["visible_ms"].clone(),
                flux["visible_ms"].clone(),
                "ms",
            ));
            rows.push(row(
                &format!("{label}: push → changed object visible, p99"),
                driftless["visible_ms"]["p99"].clone(),
                flux["visible_ms"]["p99"].clone(),
                "ms",
            ));
            rows.push(row(
                &format!("{label}: push → status names the commit, p50"),
                driftless["status_ms"].clone(),
                flux["status_ms"].clone(),
                "ms",
            ));
            rows.push(row(
                &format!("{label}: API requests per push"),
                driftless["requests_per_push"].clone(),
                flux["requests_per_push"].clone(),
                "",
            ));
            rows.push(row(
                &format!("{label}: CPU per push"),
                driftless["cpu_ms_per_push"].clone(),
                flux["cpu_ms_per_push"].clone(),
                "ms",
            ));
        }
    }
    Ok(json!({
        "title": format!("Push → applied side by side with Flux: {pushes} commits to a {OBJECTS}-object application, each triggered at once"),
        "driftless": "the release binary `driftless controller` (GitRepository polling hourly), triggered by its webhook receiver (signed GitHub push event) or by the `driftless.dev/reconcile-requested-at` annotation",
        "baseline": format!("Flux {} (GitRepository and Kustomization polling hourly), triggered by `reconcile.fluxcd.io/requestedAt` on the GitRepository (what its Receiver does)", flux::versions()),
        "rows": rows,
        "runs": results,
        "load_average": {"before": load_before, "after": load_after},
        "notes": [
            format!("{pushes} sequential commits after one warm-up commit, one second apart; each changes one of the {OBJECTS} ConfigMaps. The clock starts right before the trigger is sent (the commit is already in the served repository) and stops when the changed ConfigMap carries the new value, seen by a watch from the bench process; 'status' is until the applier's `status.lastAppliedRevision` names the commit. p99 of 30 samples is their maximum."),
            "The annotation is patched by the bench (one merge PATCH, its time included); the webhook is a POST to the receiver on loopback (its time included; the receiver, on the leading replica, then queues the reconcile in-process, with no API write).".to_owned(),
            "Requests and CPU per push: over all measured pushes, divided by their number (requests counted client-side, as in flux-scale).".to_owned(),
        ],
    }))
}

async fn one_run(
    setup: &Setup,
    tool: Tool,
    trigger: Trigger,
    workload: &Workload,
    pushes: usize,
) -> Result<Value> {
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let mut head = write_monorepo(repo.path(), workload)?;
    let server = HttpGitServer::start(repos.root(), Default::default());
    let url = server.url_for(&repo);
    let running = Running::start(setup, tool, "bench-flux-push").await?;
    let outcome = async {
        running.create(workload, &url).await?;
        running
            .until_applied(1, &head, Duration::from_secs(120))
            .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (mut visible, mut status) = (Vec::new(), Vec::new());
        let mut before = None;
        for push in 0..=pushes {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if push == 1 {
                before = Some(Snapshot::take(&running, &server));
            }
            let revision = push + 1;
            let object = push % OBJECTS;
            let file = app_files(workload.layout, 0, revision)
                .into_iter()
                .nth(object)
                .expect("the file exists");
            let previous = head.clone();
            head = commit_files(repo.path(), &format!("push {revision}"), &[file])?;
            let started = Instant::now();
            let triggered_at = jiff::Timestamp::now();
            send_trigger(&running, trigger, &url, &previous, &head, push).await?;
            let name = format!("app-0000-cm-{object}");
            let want = revision.to_string();
            let within = Duration::from_secs(120);
            running
                .config_maps
                .until_one(&name, within, &|o| o["data"]["revision"] == want.as_str())
                .await?;
            let shown = started.elapsed();
            if std::env::var_os("DRIFTLESS_BENCH_CONTROLLER_LOG").is_some() {
                eprintln!(
                    "   push {revision}: triggered at {triggered_at}, visible at {}",
                    jiff::Timestamp::now()
                );
            }
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
        let usage = before.expect("at least one push").usage(&after);
        let per_push =
            |v: &Value, scale: f64| json!(crate::round(v.as_f64().unwrap_or(0.0) * scale / pushes as f64, 1));
        eprintln!(
            "   visible p50 {} ms, status p50 {} ms, {usage}",
            summary(&visible, 0)["median"],
            summary(&status, 0)["median"]
        );
        anyhow::Ok(json!({
            "key": format!("{}_{}", tool.key(), if trigger == Trigger::Webhook { "webhook" } else { "annotation" }),
            "label": tool.label(),
            "visible_ms": summary(&visible, 0),
            "status_ms": summary(&status, 0),
            "visible_samples_ms": visible.iter().map(|v| v.round()).collect::<Vec<_>>(),
            "requests_per_push": per_push(&usage["requests"], 1.0),
            "cpu_ms_per_push": per_push(&usage["cpu_seconds"], 1000.0),
            "usage": usage,
        }))
    }
    .await;
    let cleanup = running.finish().await;
    let result = outcome?;
    cleanup?;
    Ok(result)
}

async fn send_trigger(
    running: &Running,
    trigger: Trigger,
    url: &str,
    before: &str,
    after: &str,
    push: usize,
) -> Result<()> {
    match trigger {
        Trigger::Annotation => running.request_reconcile("app-0000", &token("push")).await,
        Trigger::Webhook => {
            let port = running.webhook_port().expect("driftless has a receiver");
            let body = crate::push::github_push_body(url, before, after);
            let delivery = format!("bench-flux-push-{push}");
            let (code, answer) = tokio::task::spawn_blocking(move || {
                github_push(port, "/hooks/github", SECRET.as_bytes(), &delivery, &body)
            })
            .await?;
            if code != 202 {
                bail!("push {push}: the receiver answered {code}: {answer}");
            }
            Ok(())
        }
    }
}
