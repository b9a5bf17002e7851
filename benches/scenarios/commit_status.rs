//! Commit status on a real Gitea (v1.26.0, built like the control plane, see
//! tests/support/gitea.rs): how soon after the health wait passed the developer sees `success`
//! next to the commit, and that a resync of a 1,000-object revision posts nothing.
//!
//! - Delay: a GitRepository with `spec.wait: true` and a commit status on Gitea follows a
//!   20-object repository on that Gitea; each commit is pushed through Gitea, whose own push
//!   webhook brings it to the controller. The clock starts at the timestamp of the controller's
//!   `applied` log line for that commit (written the moment the health wait passed, just before
//!   the `success` status is queued for posting) and stops when this process first reads
//!   `success` for the commit from Gitea's API (polled on one kept-alive connection every
//!   [`POLL_EVERY`]). Both clocks are the machine's wall clock.
//! - Resync: a GitRepository of 1,000 ConfigMaps, applied and `success` on its commit; then
//!   [`RESYNCS`] reconciles asked for by hand (each compares and applies all 1,000 objects
//!   again). The statuses Gitea lists for the commit and the controller's
//!   `driftless_commit_status_posts_total` are read before and after.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::{Value, json};

use crate::support::{
    cluster::{TestNamespace, install_crds},
    gitea::{Gitea, GiteaRepository},
    objects::manifest_named,
    replica::{Replica, free_port, start_replica},
    waiting::{request_reconcile, wait_applied, wait_for_named, wait_for_port},
    webhook::write_secret,
};
use crate::{millis, row, summary};

/// Objects in the repository of the delay phase (one ConfigMap changed per push).
const OBJECTS: usize = 20;
/// Measured pushes, after one warm-up push.
const PUSHES: usize = 20;
/// Objects of the resync phase.
const BIG: usize = 1_000;
/// Reconciles asked for by hand in the resync phase.
const RESYNCS: usize = 5;
/// How often Gitea's API is read while waiting for a status.
const POLL_EVERY: Duration = Duration::from_millis(5);
const HOOK_SECRET: &str = "driftless bench gitea hook secret";
/// Long enough that only a push webhook or a reconcile asked for brings work in.
const HOURLY: &str = "1h";
const POSTED: &str = r#"driftless_commit_status_posts_total{provider="gitea",outcome="posted"}"#;

pub async fn scenario() -> Result<Value> {
    install_crds().await;
    let gitea = tokio::task::spawn_blocking(Gitea::start).await?;
    let api = GiteaApi::new(&gitea);
    let delay = delay_phase(&gitea, &api).await?;
    let resync = resync_phase(&gitea, &api).await?;
    drop(gitea);

    let p99 = |v: &Value| v.get("p99").cloned().unwrap_or(Value::Null);
    Ok(json!({
        "title": format!("Commit status on a real Gitea v1.26.0 on loopback: health passed → `success` visible, and a {BIG}-object resync"),
        "driftless": "the release binary (`driftless controller`) with `spec.commitStatus` (provider gitea) and `spec.wait: true`, Gitea's own push webhook to its receiver",
        "baseline": "none run (Flux's notification-controller posts `success` when the apply event arrives, before health: notification-controller issue 327)",
        "rows": [
            row("health passed → `success` visible on Gitea's API, p50", delay.visible.clone(), Value::Null, "ms"),
            row("health passed → `success` visible on Gitea's API, p99", p99(&delay.visible), Value::Null, "ms"),
            row("push through Gitea → `success` visible, p50", delay.push_to_success.clone(), Value::Null, "ms"),
            row(&format!("statuses posted by {RESYNCS} resyncs of a {BIG}-object revision (Gitea's list, before → after)"),
                json!(format!("{} → {}", resync.statuses_before, resync.statuses_after)), Value::Null, ""),
            row(&format!("controller's posted-status counter over the {RESYNCS} resyncs"),
                json!(resync.posted_after - resync.posted_before), Value::Null, "posts"),
            row(&format!("one resync of the {BIG}-object revision (asked → handled)"), resync.took.clone(), Value::Null, "ms"),
        ],
        "delay": {
            "health_passed_to_visible_ms": delay.visible,
            "push_to_success_ms": delay.push_to_success,
            "samples_ms": delay.samples,
        },
        "resync": {
            "objects": BIG,
            "resyncs": RESYNCS,
            "gitea_statuses_before": resync.statuses_before,
            "gitea_statuses_after": resync.statuses_after,
            "posted_counter_before": resync.posted_before,
            "posted_counter_after": resync.posted_after,
            "resync_ms": resync.took,
        },
        "notes": [
            format!("Delay: {PUSHES} sequential pushes (after one warm-up) to a {OBJECTS}-ConfigMap repository on Gitea, each changing one ConfigMap; Gitea's push webhook (type gitea, signed) brings each to the controller, which polls only hourly. ConfigMaps are healthy as soon as they are applied, so the figure is the posting path, not a rollout."),
            format!("Clock of the delay: from the timestamp of the controller's own `applied` log line for the commit (JSON log, microseconds; logged once the health wait passed, right before the `success` status is queued to the background poster) to the first read of `success` for that commit from `GET /api/v1/repos/{{owner}}/{{repo}}/commits/{{sha}}/statuses`, polled every {} ms on a kept-alive connection (so a figure can be late by up to one poll plus one request). p99 of {PUSHES} samples is their maximum.", POLL_EVERY.as_millis()),
            format!("Resync: {RESYNCS} reconciles asked for by hand (`driftless.dev/reconcile-requested-at`), each comparing all {BIG} objects with the cluster and ending Ready on the same commit; no status may be posted for a (commit, context, state) already posted."),
        ],
    }))
}

struct Delay {
    visible: Value,
    push_to_success: Value,
    samples: Vec<f64>,
}

async fn delay_phase(gitea: &Gitea, api: &GiteaApi) -> Result<Delay> {
    let repository = gitea.create_repository("app");
    let first = repository.push(&file_refs(&configmaps(OBJECTS, 0)), "initial");
    let namespace = TestNamespace::create("bench-commit-status").await;
    let running = start_controller(&namespace, gitea).await?;
    let (replica, port) = (&running.replica, running.port);
    create_git_repository(&namespace, gitea, &repository).await;
    wait_applied(&namespace, &first, Duration::from_secs(120)).await;
    api.wait_success(&repository, &first, Duration::from_secs(60))
        .await?;
    wait_for_port(port).await;
    gitea.add_push_hook(
        &repository,
        &format!("http://127.0.0.1:{port}/hooks/gitea"),
        HOOK_SECRET,
    );

    let (mut samples, mut totals) = (Vec::new(), Vec::new());
    for push in 0..=PUSHES {
        let logged = replica.log_lines();
        let files = vec![(
            "deploy/cm-0000.yaml".to_owned(),
            manifest_named("cm-0000", &format!("push-{push}")),
        )];
        let pushed_at = Instant::now();
        let commit = repository.push(&file_refs(&files), &format!("push {push}"));
        let seen = api
            .wait_success(&repository, &commit, Duration::from_secs(60))
            .await?;
        let seen_after_push = pushed_at.elapsed();
        let applied = applied_at(replica, logged, &commit)?;
        let delay = seen.duration_since(applied).with_context(|| {
            format!("`success` for {commit} was read before the controller logged `applied`")
        })?;
        if push == 0 {
            continue;
        }
        eprintln!(
            "push {push}: health passed → success visible {:.1} ms",
            millis(delay)
        );
        samples.push(millis(delay));
        totals.push(millis(seen_after_push));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(running);
    Ok(Delay {
        visible: summary(&samples, 1),
        push_to_success: summary(&totals, 0),
        samples,
    })
}

struct Resync {
    statuses_before: usize,
    statuses_after: usize,
    posted_before: u64,
    posted_after: u64,
    took: Value,
}

async fn resync_phase(gitea: &Gitea, api: &GiteaApi) -> Result<Resync> {
    let repository = gitea.create_repository("platform");
    let commit = repository.push(&file_refs(&configmaps(BIG, 0)), "a thousand objects");
    let namespace = TestNamespace::create("bench-commit-status-big").await;
    let running = start_controller(&namespace, gitea).await?;
    let replica = &running.replica;
    create_git_repository(&namespace, gitea, &repository).await;
    wait_applied(&namespace, &commit, Duration::from_secs(300)).await;
    api.wait_success(&repository, &commit, Duration::from_secs(60))
        .await?;
    // Whatever the first apply queued has been posted by now: `success` is the last state.
    let statuses_before = api.statuses(&repository, &commit).await?.len();
    let posted_before = replica.counter(POSTED);
    let mut took = Vec::new();
    for resync in 0..RESYNCS {
        let token = format!("bench-resync-{resync}");
        let asked = Instant::now();
        request_reconcile(&namespace, &token).await;
        wait_for_named(
            &namespace,
            "app",
            &format!("the reconcile asked as {token}"),
            Duration::from_secs(300),
            |r| {
                r.status
                    .as_ref()
                    .and_then(|s| s.last_handled_reconcile_at.as_deref())
                    == Some(token.as_str())
            },
        )
        .await;
        took.push(millis(asked.elapsed()));
    }
    // A post would be queued during the reconcile and sent in the background: give it time.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let statuses_after = api.statuses(&repository, &commit).await?.len();
    let posted_after = replica.counter(POSTED);
    if statuses_after != statuses_before || posted_after != posted_before {
        bail!(
            "resyncs posted statuses: Gitea lists {statuses_before} → {statuses_after}, the \
             counter went {posted_before} → {posted_after}"
        );
    }
    Ok(Resync {
        statuses_before,
        statuses_after,
        posted_before,
        posted_after,
        took: summary(&took, 0),
    })
}

/// The controller on one namespace, with its receiver's port and secrets directory.
struct Running {
    replica: Replica,
    port: u16,
    _secrets: tempfile::TempDir,
}

/// Starts the controller on `namespace` with Gitea's token in Secret `gitea-token`, JSON logs
/// and its receiver on a free port.
async fn start_controller(namespace: &TestNamespace, gitea: &Gitea) -> Result<Running> {
    namespace
        .create_secret("gitea-token", &[("token", gitea.token.as_bytes())])
        .await;
    let secrets = tempfile::tempdir()?;
    write_secret(secrets.path(), "gitea", HOOK_SECRET);
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let replica = start_replica(
        namespace,
        &[
            "--log-format",
            "json",
            "--webhook-bind-address",
            &address,
            "--webhook-secrets-dir",
            secrets.path().to_str().context("a UTF-8 temporary path")?,
        ],
    );
    Ok(Running {
        replica,
        port,
        _secrets: secrets,
    })
}

async fn create_git_repository(
    namespace: &TestNamespace,
    gitea: &Gitea,
    repository: &GiteaRepository,
) {
    namespace
        .create_git_repository(
            "app",
            json!({ "url": gitea.clone_url(&repository.full_name), "path": "deploy",
                    "interval": HOURLY, "wait": true, "timeout": "5m",
                    "commitStatus": { "provider": "gitea",
                                      "secretRef": { "name": "gitea-token" } } }),
        )
        .await;
}

/// `count` ConfigMaps `cm-NNNN`, one file each under `deploy/`.
fn configmaps(count: usize, generation: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|i| {
            let name = format!("cm-{i:04}");
            (
                format!("deploy/{name}.yaml"),
                manifest_named(&name, &format!("generation-{generation}")),
            )
        })
        .collect()
}

/// `files` as the `(path, content)` pairs a commit takes.
pub fn file_refs(files: &[(String, String)]) -> Vec<(&str, &str)> {
    files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect()
}

/// The wall-clock time of the controller's `applied` log line for `commit`, logged after the
/// first `after` lines.
fn applied_at(replica: &Replica, after: usize, commit: &str) -> Result<std::time::SystemTime> {
    for line in replica.lines_since(after) {
        let Ok(entry) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let revision = entry["revision"].as_str().unwrap_or_default();
        if entry["message"] != "applied" || !revision.ends_with(commit) {
            continue;
        }
        let stamp = entry["timestamp"]
            .as_str()
            .context("a JSON log line without a timestamp")?;
        let at: jiff::Timestamp = stamp
            .parse()
            .with_context(|| format!("the log timestamp {stamp:?}"))?;
        return Ok(std::time::SystemTime::from(at));
    }
    bail!("the controller logged no `applied` line for {commit}")
}

/// Reads commit statuses (and, for the preview scenario, comments) from Gitea's API on one
/// kept-alive connection.
pub(crate) struct GiteaApi {
    client: Client<HttpConnector, Empty<Bytes>>,
    base: String,
    authorization: String,
}

impl GiteaApi {
    pub(crate) fn new(gitea: &Gitea) -> Self {
        Self {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: gitea.base_url(),
            authorization: format!("token {}", gitea.token),
        }
    }

    /// Every status Gitea lists for `commit`.
    async fn statuses(&self, repository: &GiteaRepository, commit: &str) -> Result<Vec<Value>> {
        let path = format!(
            "/api/v1/repos/{}/commits/{commit}/statuses?limit=50",
            repository.full_name
        );
        Ok(self
            .get(&path)
            .await?
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    /// The JSON Gitea answers to `GET path`.
    pub(crate) async fn get(&self, path: &str) -> Result<Value> {
        let request = hyper::Request::get(format!("{}{path}", self.base))
            .header("Authorization", &self.authorization)
            .body(Empty::new())?;
        let response = self.client.request(request).await?;
        let code = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if !code.is_success() {
            bail!("Gitea answered {code}: {}", String::from_utf8_lossy(&body));
        }
        Ok(serde_json::from_slice::<Value>(&body)?)
    }

    /// Polls until Gitea lists `success` for `commit`; returns the wall-clock time it was read.
    async fn wait_success(
        &self,
        repository: &GiteaRepository,
        commit: &str,
        within: Duration,
    ) -> Result<std::time::SystemTime> {
        let started = Instant::now();
        loop {
            let listed = self.statuses(repository, commit).await?;
            let seen = std::time::SystemTime::now();
            let success = listed
                .iter()
                .any(|s| s["status"] == "success" || s["state"] == "success");
            if success {
                return Ok(seen);
            }
            if started.elapsed() > within {
                bail!("no `success` on {commit} within {within:?}: {listed:?}");
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}
