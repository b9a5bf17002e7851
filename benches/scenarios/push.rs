//! Push to applied: push → applied for a 20-object repository.
//!
//! The clock starts when the new commit is on the git server (its branch updated in the served
//! bare repository, which is what a finished `git push` leaves behind) and stops when the
//! changed ConfigMap has the new content in the cluster and, for driftless, the GitRepository's
//! `status.lastAppliedRevision` names the new commit. Both are observed through watches from
//! this process, so the figures include the watch delivery (a few ms on loopback).
//!
//! - driftless with the webhook: the release binary with its receiver; after each commit a
//!   signed GitHub push event is POSTed to `/hooks/github` (the time of that request counts).
//!   The GitRepository polls once an hour, so only the webhook can apply a commit quickly.
//!   Sequential pushes, one second apart.
//! - driftless with polling only, at the controller's default interval (read from `driftless
//!   controller --help`), and the baseline: a naive loop per repository running `git fetch` +
//!   `git reset --hard` + `kubectl apply --server-side -f DIR` every interval (start to start),
//!   the same period. Polling latency is set by where the push falls in the poll cycle, so
//!   instead of 30 sequential pushes (hours at 5 minutes) each sample is one repository of its
//!   own, pushed once at a uniformly random time within one interval after everything
//!   converged; the 30 driftless repositories and the 30 loops run side by side, so the phase
//!   takes about two intervals.

use std::{
    collections::HashMap,
    fmt::Debug,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use driftless::api::GitRepository;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ListParams, Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::{sync::watch, task::JoinHandle};

use crate::support::{
    cluster::{TestNamespace, install_crds},
    git::{GitRepos, HttpGitServer, HttpOptions, TestRepo},
    objects::create_repository_named,
    replica::{free_port, start_replica},
    waiting::wait_for_port,
    webhook::{github_push, write_secret},
};
use crate::{common::kubectl_apply, millis, row, summary};

/// Objects (ConfigMaps, one file each) in every repository of this scenario.
const OBJECTS: usize = 20;
/// Measured webhook pushes (after one warm-up push).
const WEBHOOK_PUSHES: usize = 30;
/// Repositories pushed once each for polling, and as many naive loops.
const POLL_SAMPLES: usize = 30;
/// The shared GitHub secret the receiver is started with.
pub(crate) const SECRET: &str = "driftless bench webhook secret";

pub async fn push_scenario() -> Result<Value> {
    install_crds().await;
    let client = crate::support::cluster::admin_client().await;
    let (interval_text, interval) = default_interval()?;
    let repos = GitRepos::new();
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());

    let webhook = webhook_phase(&client, &repos, &server).await?;
    eprintln!(
        "webhook: p50 {:?} ms over {} pushes; polling phase next (about two intervals of {interval_text})",
        webhook.total["median"], WEBHOOK_PUSHES
    );
    let polling = polling_phase(&client, &repos, &server, &interval_text, interval).await?;

    let p99 = |v: &Value| v.get("p99").cloned().unwrap_or(Value::Null);
    let seconds = |samples: &[f64]| summary(samples, 1);
    let (poll, naive) = (seconds(&polling.driftless), seconds(&polling.naive));
    let naive_ms = summary(
        &polling.naive.iter().map(|s| s * 1000.0).collect::<Vec<_>>(),
        0,
    );
    Ok(json!({
        "title": format!("Push → applied, {OBJECTS}-object repository (one ConfigMap changed per commit), git smart HTTP on loopback"),
        "driftless": format!("the release binary (`driftless controller`); with its webhook receiver (signed GitHub push event after each commit, GitRepository polling every 1h), and with polling only at the default interval ({interval_text})"),
        "baseline": format!("a naive poll-and-apply loop per repository: `git fetch` + `git reset --hard` + `kubectl apply --server-side -f DIR`, every {interval_text} (the same period as driftless's default polling)"),
        "rows": [
            row("webhook vs naive loop: push → applied, p50", webhook.total.clone(), naive_ms.clone(), "ms"),
            row("webhook vs naive loop: push → applied, p99", p99(&webhook.total), p99(&naive_ms), "ms"),
            row(&format!("polling only ({interval_text}) vs naive loop: push → applied, p50"), poll.clone(), naive.clone(), "s"),
            row(&format!("polling only ({interval_text}) vs naive loop: push → applied, p99"), p99(&poll), p99(&naive), "s"),
            row("webhook: response time of the push delivery (202)", webhook.response.clone(), Value::Null, "ms"),
            row("webhook: push → changed ConfigMap in the cluster, p50", webhook.configmap.clone(), Value::Null, "ms"),
        ],
        "webhook": {
            "total_ms": webhook.total,
            "response_ms": webhook.response,
            "configmap_ms": webhook.configmap,
            "status_ms": webhook.status,
            "samples_ms": webhook.samples,
        },
        "polling": {
            "interval": interval_text,
            "expected_mean_s": interval.as_secs_f64() / 2.0,
            "driftless_s": poll,
            "naive_loop_s": naive,
            "driftless_samples_s": polling.driftless,
            "naive_loop_samples_s": polling.naive,
            "naive_loop_cycle_ms": summary(&polling.naive_cycles, 0),
            "push_offsets_seed": polling.seed,
        },
        "notes": [
            "Clock: from the commit being on the git server (branch updated in the served bare repository, as a finished `git push` leaves it) until the changed ConfigMap has its new content and, for driftless, `status.lastAppliedRevision` names the commit; both observed through watches from the bench process.",
            format!("Webhook: {WEBHOOK_PUSHES} sequential pushes after one warm-up, one second apart, each followed by a GitHub push event signed with the shared secret (HMAC-SHA256), POSTed on a fresh connection; its response time is part of the figure. p99 of {WEBHOOK_PUSHES} samples is their maximum."),
            format!("Polling and the naive loop: {POLL_SAMPLES} repositories each (own GitRepository / own loop, {OBJECTS} ConfigMaps each), every one pushed once at a uniformly random time within one interval after all converged, so each sample falls at a random point of its poll cycle (expected mean: interval/2 = {:.0} s, plus the time one cycle takes). The {POLL_SAMPLES} driftless GitRepositories and the {POLL_SAMPLES} loops ran at the same time; each loop started its period at a random offset so that the loops do not all fire at once (driftless jitters its polls by ±10%).", interval.as_secs_f64() / 2.0),
            format!("One naive-loop cycle (fetch, reset, `kubectl apply --server-side` of {OBJECTS} files, sending {OBJECTS} apply PATCHes every time even when nothing changed): median {} ms; a loop every N seconds has an expected latency of about N/2 plus that.", summary(&polling.naive_cycles, 0)["median"]),
        ],
    }))
}

// ---------------------------------------------------------------------------------------------
// The controller's default interval

/// `driftless controller --help` of the release binary the bench starts.
pub(crate) fn controller_help() -> Result<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_driftless"))
        .args(["controller", "--help"])
        .output()
        .context("cannot run the driftless binary")?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The `--default-interval` default, as text and as a duration. `DRIFTLESS_BENCH_POLL_INTERVAL`
/// overrides it for trying the scenario out quickly (the result then says which was used).
fn default_interval() -> Result<(String, Duration)> {
    let text = match std::env::var("DRIFTLESS_BENCH_POLL_INTERVAL") {
        Ok(text) => text,
        Err(_) => {
            let help = controller_help()?;
            let after_flag = help
                .split("--default-interval")
                .nth(1)
                .context("`driftless controller --help` has no --default-interval")?;
            after_flag
                .split("[default: ")
                .nth(1)
                .and_then(|rest| rest.split(']').next())
                .context("--default-interval shows no default")?
                .to_owned()
        }
    };
    let interval = driftless::api::parse_duration(&text)
        .map_err(|error| anyhow::anyhow!("interval {text:?}: {error}"))?;
    Ok((text, interval))
}

// ---------------------------------------------------------------------------------------------
// Repository content and what the cluster shows

fn configmap(name: &str, index: usize, revision: usize) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  labels:\n    app: bench-push\n\
         data:\n  revision: \"{revision}\"\n  settings.yaml: |\n    replicas: 3\n    \
         description: object {index} of the push benchmark\n"
    )
}

/// A repository of [`OBJECTS`] ConfigMaps named `<prefix>-NN`; commit n changes ConfigMap
/// n mod [`OBJECTS`] to revision n.
struct Content {
    repo: TestRepo,
    prefix: String,
    revisions: Vec<usize>,
    commits: usize,
    head: String,
}

/// What one commit changed: the commit, the ConfigMap and its new `data.revision`.
struct Change {
    before: String,
    commit: String,
    configmap: String,
    value: String,
}

impl Content {
    /// Writes the first commit (every ConfigMap at revision 0).
    fn create(repos: &GitRepos, name: &str, prefix: &str) -> Content {
        let mut content = Content {
            repo: repos.create(name),
            prefix: prefix.to_owned(),
            revisions: vec![0; OBJECTS],
            commits: 0,
            head: String::new(),
        };
        content.head = content.write("initial");
        content
    }

    fn name(&self, index: usize) -> String {
        format!("{}-{index:02}", self.prefix)
    }

    fn write(&mut self, message: &str) -> String {
        let files: Vec<(String, String)> = self
            .revisions
            .iter()
            .enumerate()
            .map(|(index, revision)| {
                let name = self.name(index);
                (
                    format!("deploy/{name}.yaml"),
                    configmap(&name, index, *revision),
                )
            })
            .collect();
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(path, text)| (path.as_str(), text.as_str()))
            .collect();
        self.repo.commit(message, &files)
    }

    /// Commits the next change; returns once the branch points at it.
    fn push_change(&mut self) -> Change {
        self.commits += 1;
        let n = self.commits;
        let index = n % OBJECTS;
        self.revisions[index] = n;
        let commit = self.write(&format!("change {n}"));
        let before = std::mem::replace(&mut self.head, commit.clone());
        Change {
            before,
            commit,
            configmap: self.name(index),
            value: n.to_string(),
        }
    }

    /// Every ConfigMap at its current revision, per what the cluster shows.
    fn converged(&self, observed: &Observed) -> bool {
        self.revisions.iter().enumerate().all(|(index, revision)| {
            observed.values.get(&self.name(index)) == Some(&revision.to_string())
        })
    }
}

/// `status.lastAppliedRevision` by GitRepository name and `data.revision` by ConfigMap name in
/// one namespace, as the watches last reported them.
#[derive(Default)]
struct Observed {
    applied: HashMap<String, String>,
    values: HashMap<String, String>,
}

impl Observed {
    fn applied(&self, repository: &str, commit: &str) -> bool {
        self.applied
            .get(repository)
            .is_some_and(|revision| revision.ends_with(commit))
    }

    fn shows(&self, change: &Change) -> bool {
        self.values.get(&change.configmap) == Some(&change.value)
    }
}

/// Watches of one namespace feeding an [`Observed`]; stopped when dropped.
struct Observer {
    receiver: watch::Receiver<Observed>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Observer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Observer {
    fn start(client: &Client, namespace: &str) -> Observer {
        let (sender, receiver) = watch::channel(Observed::default());
        let sender = Arc::new(sender);
        let tasks = vec![
            follow(
                Api::<GitRepository>::namespaced(client.clone(), namespace),
                sender.clone(),
                |observed, repository| {
                    let revision = repository
                        .status
                        .and_then(|s| s.last_applied_revision)
                        .unwrap_or_default();
                    observed
                        .applied
                        .insert(repository.metadata.name.unwrap_or_default(), revision);
                },
            ),
            follow(
                Api::<ConfigMap>::namespaced(client.clone(), namespace),
                sender,
                |observed, configmap| {
                    let name = configmap.metadata.name.unwrap_or_default();
                    if let Some(value) = configmap.data.and_then(|mut d| d.remove("revision")) {
                        observed.values.insert(name, value);
                    }
                },
            ),
        ];
        Observer { receiver, tasks }
    }

    /// Waits until `done` holds for what the watches report.
    async fn until(&self, within: Duration, done: impl FnMut(&Observed) -> bool) -> Result<()> {
        let mut receiver = self.receiver.clone();
        match tokio::time::timeout(within, receiver.wait_for(done)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => bail!("the watch ended"),
            Err(_) => bail!("not observed within {within:?}"),
        }
    }
}

fn follow<K>(
    api: Api<K>,
    sender: Arc<watch::Sender<Observed>>,
    record: fn(&mut Observed, K),
) -> JoinHandle<()>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default,
{
    tokio::spawn(async move {
        let objects = watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects();
        let mut objects = std::pin::pin!(objects);
        while let Some(object) = objects.next().await {
            if let Ok(object) = object {
                sender.send_modify(|observed| record(observed, object));
            }
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Webhook deliveries

/// A GitHub push event as GitHub sends it (about 4 KiB: the repository's URL templates, the
/// pusher, one commit), for `clone_url`.
pub(crate) fn github_push_body(clone_url: &str, before: &str, after: &str) -> Vec<u8> {
    let api = "https://api.github.example/repos/bench/app";
    let mut repository = json!({
        "id": 123456789, "node_id": "R_kgDOBench", "name": "app", "full_name": "bench/app",
        "private": true, "owner": {"name": "bench", "login": "bench", "id": 1, "type": "Organization"},
        "html_url": "https://github.example/bench/app", "description": "benchmark repository",
        "fork": false, "url": api, "clone_url": clone_url,
        "git_url": "git://github.example/bench/app.git", "ssh_url": "git@github.example:bench/app.git",
        "svn_url": "https://github.example/bench/app", "homepage": null, "size": 120,
        "stargazers_count": 0, "watchers_count": 0, "language": null, "has_issues": true,
        "default_branch": "main", "master_branch": "main", "visibility": "private",
        "created_at": 1700000000, "pushed_at": 1700000600, "updated_at": "2026-11-28T05:00:00Z",
    });
    for name in [
        "archive",
        "assignees",
        "blobs",
        "branches",
        "collaborators",
        "comments",
        "commits",
        "compare",
        "contents",
        "contributors",
        "deployments",
        "downloads",
        "events",
        "forks",
        "git_commits",
        "git_refs",
        "git_tags",
        "hooks",
        "issue_comment",
        "issue_events",
        "issues",
        "keys",
        "labels",
        "languages",
        "merges",
        "milestones",
        "notifications",
        "pulls",
        "releases",
        "stargazers",
        "statuses",
        "subscribers",
        "subscription",
        "tags",
        "teams",
        "trees",
    ] {
        repository[format!("{name}_url")] = json!(format!("{api}/{name}{{/id}}"));
    }
    let commit = json!({
        "id": after, "tree_id": after, "distinct": true,
        "message": "Change one ConfigMap of the benchmark repository",
        "timestamp": "2026-11-28T05:00:00Z",
        "url": format!("https://github.example/bench/app/commit/{after}"),
        "author": {"name": "Bench", "email": "bench@driftless.invalid", "username": "bench"},
        "committer": {"name": "Bench", "email": "bench@driftless.invalid", "username": "bench"},
        "added": [], "removed": [], "modified": ["deploy/app-01.yaml"],
    });
    let payload = json!({
        "ref": "refs/heads/main", "before": before, "after": after,
        "created": false, "deleted": false, "forced": false, "base_ref": null,
        "compare": format!("https://github.example/bench/app/compare/{before}...{after}"),
        "commits": [commit.clone()], "head_commit": commit,
        "repository": repository,
        "pusher": {"name": "bench", "email": "bench@driftless.invalid"},
        "sender": {"login": "bench", "id": 2, "type": "User", "site_admin": false},
    });
    serde_json::to_vec(&payload).expect("JSON")
}

/// Starts `driftless controller` on `namespace` with the GitHub receiver on a free port (and
/// `extra` flags); returns the replica, the port and the secrets directory to keep.
pub(crate) async fn start_with_receiver(
    namespace: &TestNamespace,
    extra: &[&str],
) -> Result<(crate::support::replica::Replica, u16, tempfile::TempDir)> {
    let secrets = tempfile::tempdir()?;
    write_secret(secrets.path(), "github", SECRET);
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let secrets_dir = secrets.path().to_str().context("UTF-8 path")?.to_owned();
    let mut flags = vec![
        "--webhook-bind-address",
        address.as_str(),
        "--webhook-secrets-dir",
        secrets_dir.as_str(),
    ];
    flags.extend_from_slice(extra);
    let replica = start_replica(namespace, &flags);
    wait_for_port(port).await;
    Ok((replica, port, secrets))
}

/// Removes the finalizers of the GitRepositories left in `namespace` (after their controller
/// was stopped) so that deleting the namespace does not hang on them.
pub(crate) async fn release_repositories(client: &Client, namespace: &str) -> Result<()> {
    let api: Api<GitRepository> = Api::namespaced(client.clone(), namespace);
    let names: Vec<String> = api
        .list_metadata(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|r| r.name_any())
        .collect();
    let patch = json!({"metadata": {"finalizers": null}});
    let results: Vec<_> = futures::stream::iter(names)
        .map(|name| {
            let (api, patch) = (api.clone(), patch.clone());
            async move {
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for result in results {
        result?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The webhook phase

struct WebhookResults {
    total: Value,
    response: Value,
    configmap: Value,
    status: Value,
    samples: Vec<f64>,
}

async fn webhook_phase(
    client: &Client,
    repos: &GitRepos,
    server: &HttpGitServer,
) -> Result<WebhookResults> {
    let namespace = TestNamespace::create("bench-push-webhook").await;
    let mut content = Content::create(repos, "webhook", "app");
    let url = server.url_for(&content.repo);
    let observer = Observer::start(client, &namespace.name);
    let (replica, port, _secrets) = start_with_receiver(&namespace, &[]).await?;
    // Hourly polling: only the webhook can apply a commit within the measurement.
    create_repository_named(&namespace, "app", &url, "1h").await;
    let first = content.head.clone();
    observer
        .until(Duration::from_secs(120), |o| {
            o.applied("app", &first) && content.converged(o)
        })
        .await
        .context("the first commit was not applied")?;

    let (mut total, mut response, mut configmap, mut status) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for push in 0..=WEBHOOK_PUSHES {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let change = content.push_change();
        let started = Instant::now();
        let body = github_push_body(&url, &change.before, &change.commit);
        let delivery = format!("bench-push-{push}");
        let (code, answer) = tokio::task::spawn_blocking(move || {
            github_push(port, "/hooks/github", SECRET.as_bytes(), &delivery, &body)
        })
        .await?;
        let answered = started.elapsed();
        if code != 202 || !answer.contains(r#""triggered":1"#) {
            bail!("push {push}: the receiver answered {code}: {answer}");
        }
        let within = Duration::from_secs(60);
        observer.until(within, |o| o.shows(&change)).await?;
        let shown = started.elapsed();
        observer
            .until(within, |o| o.applied("app", &change.commit))
            .await?;
        let recorded = started.elapsed();
        let done = shown.max(recorded);
        eprintln!(
            "webhook push {push}: 202 after {:.1} ms, ConfigMap {:.0} ms, status {:.0} ms",
            millis(answered),
            millis(shown),
            millis(recorded)
        );
        if push > 0 {
            total.push(millis(done));
            response.push(millis(answered));
            configmap.push(millis(shown));
            status.push(millis(recorded));
        }
    }
    drop(replica);
    release_repositories(client, &namespace.name).await?;
    Ok(WebhookResults {
        total: summary(&total, 0),
        response: summary(&response, 1),
        configmap: summary(&configmap, 0),
        status: summary(&status, 0),
        samples: total.iter().map(|ms| ms.round()).collect(),
    })
}

// ---------------------------------------------------------------------------------------------
// The polling phase: driftless polling and the naive loops side by side

struct PollingResults {
    driftless: Vec<f64>,
    naive: Vec<f64>,
    naive_cycles: Vec<f64>,
    seed: u64,
}

/// xorshift64*: push times need to be spread, not secret.
struct Random(u64);

impl Random {
    fn seeded() -> Random {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        Random(nanos | 1)
    }

    /// Uniform in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One naive poll-and-apply cycle: fetch, check out, `kubectl apply --server-side` the files.
fn naive_cycle(clone: &Path, namespace: &str) -> Result<Duration> {
    let started = Instant::now();
    crate::common::git(clone, &["fetch", "--quiet", "origin", "main"], None)?;
    crate::common::git(clone, &["reset", "--quiet", "--hard", "FETCH_HEAD"], None)?;
    kubectl_apply(&clone.join("deploy"), namespace, false)?;
    Ok(started.elapsed())
}

/// The naive loop: a first cycle at once, then one every `interval` (start to start) from
/// `offset` on.
async fn naive_loop(
    clone: PathBuf,
    namespace: String,
    interval: Duration,
    offset: Duration,
    cycles: Arc<Mutex<Vec<f64>>>,
) {
    let cycle = |clone: PathBuf, namespace: String| async move {
        match tokio::task::spawn_blocking(move || naive_cycle(&clone, &namespace)).await {
            Ok(Ok(took)) => Some(took),
            Ok(Err(error)) => {
                eprintln!("naive loop cycle failed: {error:#}");
                None
            }
            Err(error) => {
                eprintln!("naive loop cycle panicked: {error}");
                None
            }
        }
    };
    cycle(clone.clone(), namespace.clone()).await;
    tokio::time::sleep(offset).await;
    loop {
        let started = tokio::time::Instant::now();
        if let Some(took) = cycle(clone.clone(), namespace.clone()).await {
            cycles.lock().unwrap().push(millis(took));
        }
        tokio::time::sleep_until(started + interval).await;
    }
}

async fn polling_phase(
    client: &Client,
    repos: &GitRepos,
    server: &HttpGitServer,
    interval_text: &str,
    interval: Duration,
) -> Result<PollingResults> {
    let polled = TestNamespace::create("bench-push-polling").await;
    let looped = TestNamespace::create("bench-push-naive").await;
    let polled_observer = Observer::start(client, &polled.name);
    let looped_observer = Observer::start(client, &looped.name);
    let replica = start_replica(&polled, &["--disable-webhook"]);
    let mut random = Random::seeded();
    let seed = random.0;

    let mut driftless = Vec::new();
    for i in 0..POLL_SAMPLES {
        let content = Content::create(repos, &format!("poll-{i:02}"), &format!("p{i:02}"));
        let name = content.prefix.clone();
        create_repository_named(
            &polled,
            &name,
            &server.url_for(&content.repo),
            interval_text,
        )
        .await;
        driftless.push(content);
    }
    let clones = tempfile::tempdir()?;
    let cycles = Arc::new(Mutex::new(Vec::new()));
    let mut naive = Vec::new();
    let mut loops = Vec::new();
    for i in 0..POLL_SAMPLES {
        let content = Content::create(repos, &format!("loop-{i:02}"), &format!("l{i:02}"));
        let clone = clones.path().join(&content.prefix);
        let url = server.url_for(&content.repo);
        crate::common::git(
            clones.path(),
            &[
                "clone",
                "--quiet",
                &url,
                clone.to_str().context("UTF-8 path")?,
            ],
            None,
        )?;
        let offset = interval.mul_f64(random.next());
        loops.push(tokio::spawn(naive_loop(
            clone,
            looped.name.clone(),
            interval,
            offset,
            cycles.clone(),
        )));
        naive.push(content);
    }
    let converged = Duration::from_secs(300);
    polled_observer
        .until(converged, |o| {
            driftless
                .iter()
                .all(|c| o.applied(&c.prefix, &c.head) && c.converged(o))
        })
        .await
        .context("the polled repositories did not converge")?;
    looped_observer
        .until(converged, |o| naive.iter().all(|c| c.converged(o)))
        .await
        .context("the naive loops did not converge")?;
    eprintln!(
        "polling phase: {POLL_SAMPLES} GitRepositories and {POLL_SAMPLES} naive loops converged; pushing each once within the next {interval_text}"
    );

    let within = interval * 3;
    let sample = |mut content: Content, offset: Duration, observer: &Observer, driftless: bool| {
        let observer_receiver = observer.receiver.clone();
        async move {
            tokio::time::sleep(offset).await;
            let (content, change) = tokio::task::spawn_blocking(move || {
                let change = content.push_change();
                (content, change)
            })
            .await?;
            let started = Instant::now();
            let mut receiver = observer_receiver;
            let done = receiver.wait_for(|o| {
                o.shows(&change) && (!driftless || o.applied(&content.prefix, &change.commit))
            });
            match tokio::time::timeout(within, done).await {
                Ok(Ok(_)) => Ok(started.elapsed().as_secs_f64()),
                _ => bail!("{} was not applied within {within:?}", change.commit),
            }
        }
    };
    let mut driftless_samples = Vec::new();
    for content in driftless {
        let offset = interval.mul_f64(random.next());
        driftless_samples.push(sample(content, offset, &polled_observer, true));
    }
    let mut naive_samples = Vec::new();
    for content in naive {
        let offset = interval.mul_f64(random.next());
        naive_samples.push(sample(content, offset, &looped_observer, false));
    }
    let (driftless, naive) = futures::future::join(
        futures::future::join_all(driftless_samples),
        futures::future::join_all(naive_samples),
    )
    .await;
    for task in loops {
        task.abort();
    }
    drop(replica);
    release_repositories(client, &polled.name).await?;
    let driftless = driftless.into_iter().collect::<Result<Vec<f64>>>()?;
    let naive = naive.into_iter().collect::<Result<Vec<f64>>>()?;
    let naive_cycles = cycles.lock().unwrap().clone();
    Ok(PollingResults {
        driftless,
        naive,
        naive_cycles,
        seed,
    })
}
