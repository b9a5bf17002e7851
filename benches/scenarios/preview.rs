//! Pull request preview on a real Gitea (v1.26.0, tests/support/gitea.rs): how soon after a
//! pull request event the plan comment is visible on the pull request, for a plain directory
//! of ConfigMaps and for podinfo's production overlay (the real-content fixture).
//!
//! Per case: one GitRepository following `main` with `spec.preview` (provider gitea), Gitea's
//! own signed `pull_request` webhook to the controller's receiver. A pull request is opened,
//! then pushed to [`PUSHES`] times, one at a time; each event is one sample. The clock starts
//! at the timestamp of the controller's `pull request delivery handled` log line for the event
//! (written when Gitea's delivery was verified, matched and queued for preview) and stops when
//! this process first reads, through Gitea's API, the marked plan comment naming the event's
//! head commit (polled every [`POLL_EVERY`] on one kept-alive connection). Both clocks are the
//! machine's wall clock. The time from the API call that opened the pull request, or from the
//! `git push` to it, is reported too: it adds Gitea's own queueing of the webhook.

use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::commit_status::{GiteaApi, file_refs};
use crate::support::{
    cluster::{TestNamespace, install_crds},
    gitea::{Gitea, GiteaRepository},
    objects::manifest_named,
    replica::{Replica, free_port, start_replica},
    waiting::{wait_applied, wait_for_port},
    webhook::write_secret,
};
use crate::{millis, row, summary};

/// Pushes to the open pull request after the event that opened it: 20 samples per case.
const PUSHES: usize = 19;
/// ConfigMaps of the plain directory.
const OBJECTS: usize = 20;
/// How often Gitea's API is read while waiting for the comment.
const POLL_EVERY: Duration = Duration::from_millis(5);
/// A preview's comment older than this is a failure of the run, not a slow sample.
const DEADLINE: Duration = Duration::from_secs(60);
const HOOK_SECRET: &str = "driftless bench gitea pull request hook secret";
const MARKER: &str = "<!-- driftless-plan ";
/// The goal of the issue: event → comment posted.
const GOAL_MS: f64 = 2_000.0;

#[derive(Clone, Copy)]
enum Case {
    Plain,
    Overlay,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Plain => "plain",
            Case::Overlay => "overlay",
        }
    }

    fn path(self) -> String {
        match self {
            Case::Plain => "deploy".into(),
            Case::Overlay => crate::common::side_by_side::app_path(0),
        }
    }

    /// The repository's files at `revision` (the pull request changes one object each time).
    fn files(self, revision: usize) -> Result<Vec<(String, String)>> {
        match self {
            Case::Plain => Ok(configmaps(revision)),
            Case::Overlay => crate::real_content::overlay_files(revision),
        }
    }
}

struct Measured {
    from_delivery: Vec<f64>,
    from_event: Vec<f64>,
    objects: usize,
    delayed: usize,
}

pub async fn scenario() -> Result<Value> {
    install_crds().await;
    let gitea = tokio::task::spawn_blocking(Gitea::start).await?;
    let api = GiteaApi::new(&gitea);
    let plain = measure(&gitea, &api, Case::Plain).await?;
    let overlay = measure(&gitea, &api, Case::Overlay).await?;
    drop(gitea);

    let p99 = |v: &Value| v.get("p99").cloned().unwrap_or(Value::Null);
    let mut rows = Vec::new();
    let mut cases = serde_json::Map::new();
    for (case, measured) in [(Case::Plain, &plain), (Case::Overlay, &overlay)] {
        let delivered = summary(&measured.from_delivery, 0);
        let event = summary(&measured.from_event, 0);
        let label = match case {
            Case::Plain => format!("plain directory ({OBJECTS} ConfigMaps)"),
            Case::Overlay => format!("podinfo production overlay ({} objects)", measured.objects),
        };
        rows.push(row(
            &format!("{label}: delivery → comment visible, p50"),
            delivered.clone(),
            Value::Null,
            "ms",
        ));
        rows.push(row(
            &format!("{label}: delivery → comment visible, p99"),
            p99(&delivered),
            Value::Null,
            "ms",
        ));
        rows.push(row(
            &format!("{label}: PR opened / pushed → comment visible, p50"),
            event.clone(),
            Value::Null,
            "ms",
        ));
        rows.push(row(
            &format!("{label}: PR opened / pushed → comment visible, p99"),
            p99(&event),
            Value::Null,
            "ms",
        ));
        cases.insert(
            case.name().into(),
            json!({
                "objects": measured.objects,
                "delivery_to_comment_ms": delivered,
                "event_to_comment_ms": event,
                "delivery_samples_ms": measured.from_delivery,
                "event_samples_ms": measured.from_event,
                "previews_delayed_by_rate_limit": measured.delayed,
                "goal_ms": GOAL_MS,
            }),
        );
    }
    Ok(json!({
        "title": "Pull request preview on a real Gitea v1.26.0 on loopback: pull request event → plan comment visible",
        "driftless": "the release binary (`driftless controller`) with `spec.preview` (provider gitea), Gitea's own `pull_request` webhook to its receiver",
        "baseline": "none run (argocd-diff-preview's fixed cost is about 90 s per run, by its own documentation)",
        "rows": rows,
        "cases": cases,
        "notes": [
            format!("Each case: one pull request opened, then {PUSHES} pushes to it, one at a time (the next once the previous comment was seen and its status settled): {} samples. Each push changes one object; the comment is the one marked `{MARKER}`, edited in place.", PUSHES + 1),
            format!("Clock: from the timestamp of the controller's `pull request delivery handled` log line (JSON log, microseconds; written once Gitea's delivery is verified and the preview queued) to the first read of the marked comment naming the head commit from `GET /api/v1/repos/{{owner}}/{{repo}}/issues/{{n}}/comments`, polled every {} ms on a kept-alive connection. The second figure starts before the API call that opens the pull request or the `git push` to it, so it adds Gitea's own webhook queue.", POLL_EVERY.as_millis()),
            "A preview fetches the pull request's head (shallow, through the source engine's cache), renders it (kustomize in the sandbox for the overlay), dry-runs every object as the object's ServiceAccount, lists the pull request's comments and edits the marked one; the `pending` status is posted before, the final one after.".to_owned(),
            "--preview-rate-limit is at its default (30 per repository and minute); the runs stay under it (the count of `preview rate limited` lines is recorded per case).".to_owned(),
        ],
    }))
}

async fn measure(gitea: &Gitea, api: &GiteaApi, case: Case) -> Result<Measured> {
    let repository = gitea.create_repository(&format!("preview-{}", case.name()));
    let first = repository.push(&file_refs(&case.files(0)?), "initial");
    let namespace = TestNamespace::create(&format!("bench-preview-{}", case.name())).await;
    namespace
        .create_secret("gitea-token", &[("token", gitea.token.as_bytes())])
        .await;
    let secrets = tempfile::tempdir()?;
    write_secret(secrets.path(), "gitea", HOOK_SECRET);
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let kustomize = crate::support::cluster::binaries_dir().join("kustomize");
    let replica = start_replica(
        &namespace,
        &[
            "--kustomize-binary",
            kustomize.to_str().context("a UTF-8 binaries path")?,
            "--log-format",
            "json",
            "--webhook-bind-address",
            &address,
            "--webhook-secrets-dir",
            secrets.path().to_str().context("a UTF-8 temporary path")?,
        ],
    );
    namespace
        .create_git_repository(
            "app",
            json!({ "url": gitea.clone_url(&repository.full_name), "path": case.path(),
                    "ref": { "branch": "main" }, "interval": "1h",
                    "preview": { "enabled": true, "provider": "gitea",
                                 "secretRef": { "name": "gitea-token" } } }),
        )
        .await;
    wait_applied(&namespace, &first, Duration::from_secs(180)).await;
    wait_for_port(port).await;
    gitea.add_pull_request_hook(
        &repository,
        &format!("http://127.0.0.1:{port}/hooks/gitea"),
        HOOK_SECRET,
    );

    let started_log = replica.log_lines();
    let (mut from_delivery, mut from_event) = (Vec::new(), Vec::new());
    let mut number = None;
    let mut objects = 0;
    for revision in 1..=PUSHES + 1 {
        let logged = replica.log_lines();
        let files = changed_files(case, revision)?;
        // The event: the `git push` to the open pull request, or, the first time, the API call
        // that opens it (its branch pushed before the clock starts).
        let mut event_at = Instant::now();
        let head = repository.push_to("change", &file_refs(&files), &format!("change {revision}"));
        let number = match number {
            Some(number) => number,
            None => {
                event_at = Instant::now();
                *number.insert(gitea.open_pull_request(&repository, "change", "main"))
            }
        };
        let (seen_at, body) = api
            .wait_comment(&repository, number, &head, DEADLINE)
            .await?;
        let event_ms = millis(event_at.elapsed());
        let delivered = delivery_at(&replica, logged, number)?;
        let delay = seen_at.duration_since(delivered).with_context(|| {
            format!("the comment for {head} was read before the delivery was logged")
        })?;
        objects = objects.max(plan_objects(&body));
        eprintln!(
            "{} #{revision}: delivery → comment {:.0} ms, event → comment {event_ms:.0} ms",
            case.name(),
            millis(delay)
        );
        from_delivery.push(millis(delay));
        from_event.push(event_ms);
        // The final status follows the comment: let this preview end before the next push,
        // which would cancel it.
        replica
            .wait_for_log(logged, "pull request previewed", DEADLINE)
            .await;
    }
    let delayed = replica
        .lines_since(started_log)
        .iter()
        .filter(|line| line.contains("preview rate limited"))
        .count();
    Ok(Measured {
        from_delivery,
        from_event,
        objects,
        delayed,
    })
}

/// The files a push to the pull request writes at `revision`: one object changed.
fn changed_files(case: Case, revision: usize) -> Result<Vec<(String, String)>> {
    Ok(match case {
        Case::Plain => vec![(
            "deploy/cm-0000.yaml".to_owned(),
            manifest_named("cm-0000", &format!("revision-{revision}")),
        )],
        Case::Overlay => case
            .files(revision)?
            .into_iter()
            .filter(|(path, _)| path.ends_with("/kustomization.yaml") && path.starts_with("apps/"))
            .collect(),
    })
}

/// The objects a plan comment counts (`N to create, N to change, N to prune, N unchanged`).
fn plan_objects(body: &str) -> usize {
    let Some(line) = body.lines().find(|l| l.contains(" to create, ")) else {
        return 0;
    };
    line.split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse::<usize>().ok())
        .sum()
}

/// `OBJECTS` ConfigMaps `cm-NNNN` under `deploy/`, the first at `revision`.
fn configmaps(revision: usize) -> Vec<(String, String)> {
    (0..OBJECTS)
        .map(|i| {
            let name = format!("cm-{i:04}");
            let value = if i == 0 {
                format!("revision-{revision}")
            } else {
                "steady".to_owned()
            };
            (format!("deploy/{name}.yaml"), manifest_named(&name, &value))
        })
        .collect()
}

/// The wall-clock time of the controller's `pull request delivery handled` log line for pull
/// request `number` that queued a preview, logged after the first `after` lines.
fn delivery_at(replica: &Replica, after: usize, number: u64) -> Result<SystemTime> {
    for line in replica.lines_since(after) {
        let Ok(entry) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let handled = entry["message"] == "pull request delivery handled";
        if !handled || entry["number"] != number || entry["previewed"].as_u64() == Some(0) {
            continue;
        }
        let stamp = entry["timestamp"]
            .as_str()
            .context("a JSON log line without a timestamp")?;
        let at: jiff::Timestamp = stamp
            .parse()
            .with_context(|| format!("the log timestamp {stamp:?}"))?;
        return Ok(SystemTime::from(at));
    }
    bail!("the controller logged no previewed `pull request delivery handled` for #{number}")
}

impl GiteaApi {
    /// Polls until the marked comment of pull request `number` names `commit`; returns the
    /// wall-clock time it was read and its body.
    async fn wait_comment(
        &self,
        repository: &GiteaRepository,
        number: u64,
        commit: &str,
        within: Duration,
    ) -> Result<(SystemTime, String)> {
        let short: String = commit.chars().take(12).collect();
        let path = format!(
            "/api/v1/repos/{}/issues/{number}/comments",
            repository.full_name
        );
        let started = Instant::now();
        loop {
            let listed = self.get(&path).await?;
            let seen = SystemTime::now();
            let found = listed.as_array().into_iter().flatten().find_map(|c| {
                let body = c["body"].as_str()?;
                (body.contains(MARKER) && body.contains(&short)).then(|| body.to_owned())
            });
            if let Some(body) = found {
                return Ok((seen, body));
            }
            if started.elapsed() > within {
                bail!("no plan comment naming {short} on #{number} within {within:?}: {listed}");
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}
