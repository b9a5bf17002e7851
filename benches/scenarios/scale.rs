//! Scale and idle cost: the `driftless controller` binary, as a process of its own,
//! reconciling 500 and 1,000 GitRepositories of 10 objects each from scratch (time until all
//! are Ready, peak RSS, API requests), then idle with the 1,000 Ready and nothing changing (CPU,
//! RSS, API requests).
//!
//! Shape: one repository (a monorepo) served by `git http-backend` on loopback, with one
//! directory of 10 ConfigMaps per application; GitRepository `app-NNNN` follows `main` of that
//! URL at `spec.path: apps/app-NNNN`, so every object name is distinct and everything lands in
//! the run's own namespace. The controller is the release binary with its production defaults
//! (concurrency 8, apply concurrency 8, leader election on, webhook receiver on), watching only
//! the run's namespace (the test cluster is shared).
//!
//! API requests are counted client-side from the controller's own log: it runs with
//! `kube_client::client::builder=debug`, which logs one `requesting` line per HTTP request with
//! its method and URL. `apiserver_request_total` deltas for the resources involved are kept as a
//! cross-check; they are cluster-wide, so other clients of the shared cluster inflate them.
//!
//! Sizes and windows can be shrunk for a quick check: `DRIFTLESS_BENCH_SCALE_SIZES=50,100`,
//! `DRIFTLESS_BENCH_IDLE_QUIET_SECS`, `DRIFTLESS_BENCH_IDLE_POLL_SECS` (0 skips that window).

use std::{
    collections::{BTreeMap, HashSet},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use driftless::api::GitRepository;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::{Value, json};

use crate::{
    common::{
        apiserver_requests,
        driftless::{Controller, request_delta},
        procfs::{RssSampler, clock_ticks, cpu_ticks, rss_kib},
    },
    support::{self, git::GitRepos},
};

/// Objects in each application directory (one ConfigMap per file).
const OBJECTS_PER_APP: usize = 10;
/// GitRepositories created at the same time.
const CREATE_CONCURRENCY: usize = 16;
/// The polling interval while converging from scratch: long, so that the measurement is the
/// first reconcile of every object and not polling.
const CONVERGE_INTERVAL: &str = "10m";
/// The controller's default `--default-interval`, used for the idle measurement.
const DEFAULT_INTERVAL_SECS: u64 = 300;
/// No reconcile work for this long means the controller has settled.
const SETTLE_QUIET: Duration = Duration::from_secs(5);

/// Flux's published figures (flux-benchmark RESULTS.md, kustomize-controller): seconds until all
/// Kustomizations were ready and the controller's maximum memory, by number of applications.
fn flux_published(size: usize) -> Option<(f64, f64)> {
    match size {
        500 => Some((124.0, 122.0)),
        1000 => Some((255.0, 175.0)),
        _ => None,
    }
}

pub async fn scenario() -> Result<Value> {
    let sizes = sizes()?;
    let largest = *sizes.iter().max().context("no sizes")?;
    let quiet_secs = env_secs("DRIFTLESS_BENCH_IDLE_QUIET_SECS", 60);
    let poll_secs = env_secs("DRIFTLESS_BENCH_IDLE_POLL_SECS", DEFAULT_INTERVAL_SECS);
    support::cluster::install_crds().await;
    let admin = support::cluster::admin_client().await;

    let repos = GitRepos::new();
    let repo = repos.create("monorepo");
    let started = Instant::now();
    let commit = write_monorepo(repo.path(), largest)?;
    eprintln!(
        "built the monorepo ({largest} apps x {OBJECTS_PER_APP} ConfigMaps) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let server = support::git::HttpGitServer::start(repos.root(), Default::default());
    // A private copy of the release binary: other builds in the shared checkout may replace
    // `target/release/driftless` while the scenario runs, and both controller processes of a
    // run must be the same build.
    let binary_dir = tempfile::tempdir()?;
    let binary = binary_dir.path().join("driftless");
    std::fs::copy(env!("CARGO_BIN_EXE_driftless"), &binary)?;
    let setup = Setup {
        admin: admin.clone(),
        url: server.url_for(&repo),
        commit,
        binary,
        quiet_secs,
        poll_secs,
    };

    let mut runs = Vec::new();
    let mut idle = json!(null);
    for &size in &sizes {
        eprintln!("-- {size} GitRepositories from scratch");
        let with_idle = size == largest && (quiet_secs > 0 || poll_secs > 0);
        let run = run_size(&setup, size, with_idle).await?;
        runs.push(run.0);
        if with_idle {
            idle = run.1;
        }
    }

    let mut rows = Vec::new();
    for run in &runs {
        let size = run["size"].as_u64().unwrap_or(0) as usize;
        let flux = flux_published(size);
        let published = |v: Option<f64>| v.map(|v| json!(v)).unwrap_or(json!(null));
        rows.push(crate::row(
            &format!("{size} GitRepositories: time until all Ready"),
            run["seconds_to_all_ready"].clone(),
            published(flux.map(|f| f.0)),
            "s",
        ));
        rows.push(crate::row(
            &format!("{size} GitRepositories: controller peak RSS (VmHWM)"),
            run["controller_peak_rss_mib"].clone(),
            published(flux.map(|f| f.1)),
            "MiB",
        ));
        rows.push(crate::row(
            &format!("{size} GitRepositories: API requests until all Ready (write-verb)"),
            json!(format!(
                "{} ({})",
                run["requests_to_ready"]["total"], run["requests_to_ready"]["writes"]
            )),
            json!(null),
            "",
        ));
        rows.push(crate::row(
            &format!("{size} GitRepositories: API requests until settled (write-verb)"),
            json!(format!(
                "{} ({})",
                run["requests_to_settled"]["total"], run["requests_to_settled"]["writes"]
            )),
            json!(null),
            "",
        ));
        rows.push(crate::row(
            &format!("{size} GitRepositories: controller CPU until all Ready"),
            run["cpu_seconds_to_ready"].clone(),
            json!(null),
            "s",
        ));
    }
    if !idle.is_null() {
        let restart = &idle["restart_resync"];
        rows.push(crate::row(
            &format!(
                "{largest}: restart with the default 5m interval, no-change resync of all: time"
            ),
            restart["seconds"].clone(),
            json!(null),
            "s",
        ));
        rows.push(crate::row(
            &format!("{largest}: restart resync: API requests (write-verb)"),
            json!(format!(
                "{} ({})",
                restart["requests"]["total"], restart["requests"]["writes"]
            )),
            json!(null),
            "",
        ));
        for (key, label) in [
            ("quiet", "idle between polls"),
            (
                "polling",
                "idle over one default interval (each polls once)",
            ),
        ] {
            let window = &idle[key];
            if window.is_null() {
                continue;
            }
            let seconds = window["seconds"].as_f64().unwrap_or(0.0);
            rows.push(crate::row(
                &format!("{largest}: {label}, {seconds:.0} s: controller CPU"),
                window["cpu_percent_of_one_core"].clone(),
                json!(null),
                "% of one core",
            ));
            rows.push(crate::row(
                &format!("{largest}: {label}: controller RSS (VmRSS median, max)"),
                json!(format!(
                    "{} ({})",
                    window["rss_mib"]["median"], window["rss_mib"]["max"]
                )),
                json!(null),
                "MiB",
            ));
            rows.push(crate::row(
                &format!("{largest}: {label}: API requests (write-verb), reconciles"),
                json!(format!(
                    "{} ({}), {}",
                    window["requests"]["total"], window["requests"]["writes"], window["reconciles"]
                )),
                json!(null),
                "",
            ));
        }
    }

    Ok(json!({
        "title": format!("{} GitRepositories x {OBJECTS_PER_APP} ConfigMaps from scratch (scenario 5), then idle with {largest} (scenario 8): the controller binary", sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" and ")),
        "driftless": "the release binary `driftless controller` as a process of its own, production defaults (concurrency 8, apply concurrency 8, leader election with its Lease in a namespace of its own, webhook receiver), watching the run's namespace; one monorepo on loopback smart HTTP, GitRepository `app-NNNN` at `spec.path: apps/app-NNNN` of the same URL",
        "baseline": "Flux's **published** figures for kustomize-controller (flux-benchmark RESULTS.md: 500 → 2 m 4 s / 122 MiB, 1,000 → 4 m 15 s / 175 MiB), measured on another machine (16-core GitHub runner, Kind, concurrency 20) with one OCIRepository per app and 4 objects per app; **not measured here**, so the ratio is only indicative",
        "rows": rows,
        "runs": runs,
        "idle": idle,
        "working_tree": working_tree_state(),
        "notes": [
            format!("Each size is one run (n=1) with a fresh controller process, a fresh git cache and a fresh namespace; the clock starts when the first GitRepository create is sent (the controller already runs and watches), creates go {CREATE_CONCURRENCY} at a time, and all Ready means every object's `Ready` condition is True (seen by a watch)."),
            format!("The GitRepositories set no `spec.interval`; while converging the controller runs with `--default-interval {CONVERGE_INTERVAL}` so no poll interferes. For idle it is restarted (SIGTERM, same git cache) with the default 5m interval: its start-up reconciles all {largest} once (the restart resync row), then the idle windows follow: 'between polls' while no poll is due, and one full default interval in which every GitRepository polls once (ref listing, no fetch, the apply engine's no-change check, no write)."),
            "Controller RSS is sampled from `/proc/<pid>/status` of the controller process (VmHWM for the peak, VmRSS every 100 ms); CPU is utime+stime from `/proc/<pid>/stat`.",
            "API requests: counted client-side from the controller's debug log of kube-client (one line per HTTP request), by verb and resource in latest.json; write-verb = non-dry-run POST/PUT/PATCH/DELETE. 'Until settled' adds the work the controller does after the last object is Ready until no reconcile ran for 5 s. `apiserver_request_total` deltas are in latest.json as a cluster-wide cross-check (other clients of the shared cluster inflate them).",
            "Flux's figures come from a different machine, controller split (source-controller + kustomize-controller) and object shape; they are a published reference, not a measurement of this run.",
        ],
    }))
}

fn sizes() -> Result<Vec<usize>> {
    match std::env::var("DRIFTLESS_BENCH_SCALE_SIZES") {
        Ok(text) => text
            .split(',')
            .map(|s| s.trim().parse().context("DRIFTLESS_BENCH_SCALE_SIZES"))
            .collect(),
        Err(_) => Ok(vec![500, 1000]),
    }
}

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Which files of the crate differ from the commit the figures are attributed to (the shared
/// checkout may hold other people's uncommitted work, which the bench builds too).
fn working_tree_state() -> Value {
    let output = Command::new("git")
        .args([
            "-C",
            env!("CARGO_MANIFEST_DIR"),
            "status",
            "--porcelain",
            "src",
        ])
        .output();
    match output {
        Ok(output) => json!(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        ),
        Err(_) => json!(null),
    }
}

// ---------------------------------------------------------------------------------------------
// The repository

fn app_name(index: usize) -> String {
    format!("app-{index:04}")
}

fn app_config_map(app: usize, object: usize) -> String {
    let name = app_name(app);
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}-cm-{object}\n  labels:\n    app: {name}\n\
         data:\n  index: \"{object}\"\n  owner: team-a\n  settings.yaml: |\n    replicas: 3\n    \
         feature: enabled\n    description: object {object} of application {name}\n"
    )
}

/// One commit on `main` with `apps/app-NNNN/cm-K.yaml` for every application.
fn write_monorepo(repo: &Path, apps: usize) -> Result<String> {
    let mut stream = Vec::new();
    stream.extend_from_slice(b"commit refs/heads/main\n");
    stream.extend_from_slice(b"committer bench <bench@driftless.invalid> 1700000000 +0000\n");
    crate::common::fast_import_data(&mut stream, "monorepo");
    for app in 0..apps {
        for object in 0..OBJECTS_PER_APP {
            stream.extend_from_slice(
                format!("M 100644 inline apps/{}/cm-{object}.yaml\n", app_name(app)).as_bytes(),
            );
            crate::common::fast_import_data(&mut stream, &app_config_map(app, object));
        }
    }
    stream.push(b'\n');
    crate::common::git(repo, &["fast-import", "--quiet"], Some(&stream))?;
    crate::common::git(repo, &["rev-parse", "refs/heads/main"], None)
}

// ---------------------------------------------------------------------------------------------
// One size: a controller process, N GitRepositories, until all are Ready

/// What every size shares.
struct Setup {
    admin: Client,
    url: String,
    commit: String,
    binary: std::path::PathBuf,
    quiet_secs: u64,
    poll_secs: u64,
}

async fn run_size(setup: &Setup, size: usize, with_idle: bool) -> Result<(Value, Value)> {
    let admin = &setup.admin;
    let namespace = crate::common::create_namespace(admin, &format!("bench-scale-{size}")).await?;
    // The controller's own namespace (its Lease): apart from the GitRepositories', so that
    // deleting theirs cannot take the Lease away while the finalizers still need the leader.
    let home =
        crate::common::create_namespace(admin, &format!("bench-scale-{size}-controller")).await?;
    let namespaces = [namespace.as_str(), home.as_str()];
    let cache = tempfile::tempdir()?;
    let mut controller = Some(Controller::start(
        &setup.binary,
        namespaces,
        cache.path(),
        &["--default-interval", CONVERGE_INTERVAL],
    )?);
    let outcome = async {
        let converged = converge(
            admin,
            controller.as_mut().unwrap(),
            &namespace,
            &setup.url,
            &setup.commit,
            size,
        )
        .await?;
        let mut idle = json!(null);
        if with_idle {
            // Stop the converging controller (it releases its Lease) and start one with the
            // default interval on the same git cache.
            controller.take().unwrap().terminate()?;
            let restarted = Controller::start(&setup.binary, namespaces, cache.path(), &[])?;
            controller = Some(restarted);
            idle = idle_windows(
                admin,
                controller.as_mut().unwrap(),
                size,
                setup.quiet_secs,
                setup.poll_secs,
            )
            .await?;
        }
        Ok::<_, anyhow::Error>((converged, idle))
    }
    .await;
    let cleaned = clean_up(admin, &namespace, controller.as_mut()).await;
    if let Some(controller) = controller.take() {
        let _ = controller.terminate();
    }
    let _ = Api::<Namespace>::all(admin.clone())
        .delete(&home, &DeleteParams::background())
        .await;
    let (mut converged, idle) = outcome?;
    converged["cleanup_seconds"] = json!(round1(cleaned?));
    Ok((converged, idle))
}

async fn converge(
    admin: &Client,
    controller: &mut Controller,
    namespace: &str,
    url: &str,
    commit: &str,
    size: usize,
) -> Result<Value> {
    controller.wait_watching(Duration::from_secs(60)).await?;
    let api: Api<GitRepository> = Api::namespaced(admin.clone(), namespace);
    let (ready_tx, mut ready_rx) = tokio::sync::watch::channel(0usize);
    let watch = tokio::spawn(watch_ready(api.clone(), ready_tx));

    let sampler = RssSampler::start(&[controller.pid]);
    let metrics_before = apiserver_requests(admin).await?;
    let requests_before = controller.log.requests();
    let cpu_before = cpu_ticks(controller.pid)?;
    let started = Instant::now();

    let objects: Vec<GitRepository> = (0..size)
        .map(|app| {
            serde_json::from_value(json!({
                "apiVersion": "driftless.dev/v1alpha1", "kind": "GitRepository",
                "metadata": { "name": app_name(app) },
                "spec": { "url": url, "path": format!("apps/{}", app_name(app)) },
            }))
        })
        .collect::<Result<_, _>>()?;
    futures::stream::iter(objects.iter().map(|object| {
        let api = api.clone();
        async move { api.create(&PostParams::default(), object).await }
    }))
    .buffer_unordered(CREATE_CONCURRENCY)
    .try_collect::<Vec<_>>()
    .await?;
    let created = started.elapsed();
    eprintln!(
        "created {size} GitRepositories in {:.1} s",
        created.as_secs_f64()
    );

    let mut milestones = BTreeMap::new();
    let deadline = started + Duration::from_secs(60 * 60);
    loop {
        let ready = *ready_rx.borrow_and_update();
        for percent in [10usize, 50, 90, 100] {
            if ready * 100 >= size * percent && !milestones.contains_key(&percent) {
                milestones.insert(percent, started.elapsed());
                eprintln!(
                    "{percent}% Ready ({ready}/{size}) after {:.1} s, controller RSS {:.1} MiB",
                    started.elapsed().as_secs_f64(),
                    rss_kib(controller.pid, "VmRSS:") as f64 / 1024.0
                );
            }
        }
        if ready >= size {
            break;
        }
        if !controller.running() {
            bail!(
                "the controller exited with {ready}/{size} Ready: {:?}",
                controller.log.errors()
            );
        }
        let wait = tokio::time::timeout(Duration::from_secs(30), ready_rx.changed()).await;
        if Instant::now() > deadline {
            bail!(
                "only {ready}/{size} Ready after an hour; last controller errors: {:?}",
                controller.log.errors()
            );
        }
        if let Ok(Err(_)) = wait {
            bail!("the Ready watch ended");
        }
        if wait.is_err() {
            eprintln!(
                "{ready}/{size} Ready after {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let to_ready = started.elapsed();
    let requests_ready = controller.log.requests();
    let cpu_ready = cpu_ticks(controller.pid)?;
    let peak_at_ready = rss_kib(controller.pid, "VmHWM:");

    // What the controller still does once everything is Ready (e.g. reconciles triggered by its
    // own status writes), until no reconcile work happened for a while.
    controller.log.wait_settled(SETTLE_QUIET).await;
    let to_settled = started.elapsed() - SETTLE_QUIET;
    let requests_settled = controller.log.requests();
    let cpu_settled = cpu_ticks(controller.pid)?;
    let metrics_after = apiserver_requests(admin).await?;
    let peak = rss_kib(controller.pid, "VmHWM:");
    let samples = sampler.stop();
    watch.abort();
    verify_applied(admin, namespace, commit, size).await?;
    let reconciles = controller.reconcile_counts();
    let ticks = clock_ticks();
    eprintln!(
        "{size}: all Ready after {:.1} s, peak RSS {:.1} MiB, {} requests",
        to_ready.as_secs_f64(),
        peak as f64 / 1024.0,
        request_delta(&requests_before, &requests_ready)["total"]
    );

    Ok(json!({
        "size": size,
        "objects": size * OBJECTS_PER_APP,
        "seconds_to_all_ready": round1(to_ready.as_secs_f64()),
        "seconds_to_create_all": round1(created.as_secs_f64()),
        "seconds_to_ready_percent": milestones.iter().map(|(p, t)| (p.to_string(), json!(round1(t.as_secs_f64())))).collect::<serde_json::Map<_, _>>(),
        "seconds_to_settled": round1(to_settled.as_secs_f64()),
        "controller_peak_rss_mib": round1(peak as f64 / 1024.0),
        "controller_peak_rss_at_all_ready_mib": round1(peak_at_ready as f64 / 1024.0),
        "controller_rss_samples_max_mib": round1(samples.iter().map(|s| s.1).max().unwrap_or(0) as f64 / 1024.0),
        "controller_rss_timeline_mib": timeline(&samples),
        "cpu_seconds_to_ready": round1((cpu_ready - cpu_before) as f64 / ticks),
        "cpu_seconds_to_settled": round1((cpu_settled - cpu_before) as f64 / ticks),
        "requests_to_ready": request_delta(&requests_before, &requests_ready),
        "requests_to_settled": request_delta(&requests_before, &requests_settled),
        "requests_per_gitrepository_to_settled": round1(request_delta(&requests_before, &requests_settled)["total"].as_f64().unwrap_or(0.0) / size as f64),
        "controller_reconciles": reconciles,
        "apiserver_request_total_delta_cluster_wide": crate::common::metrics_delta(&metrics_before, &metrics_after),
    }))
}

/// Every GitRepository applied `commit`, and every object of every application exists.
async fn verify_applied(admin: &Client, namespace: &str, commit: &str, size: usize) -> Result<()> {
    let repositories: Api<GitRepository> = Api::namespaced(admin.clone(), namespace);
    let stale = repositories
        .list(&ListParams::default())
        .await?
        .into_iter()
        .filter(|r| {
            !r.status
                .as_ref()
                .and_then(|s| s.last_applied_revision.as_deref())
                .is_some_and(|revision| revision.ends_with(commit))
        })
        .count();
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(admin.clone(), namespace);
    let objects = config_maps
        .list_metadata(&ListParams::default().labels("app"))
        .await?
        .items
        .len();
    if stale > 0 || objects != size * OBJECTS_PER_APP {
        bail!(
            "{stale} GitRepositories lack revision {commit}; {objects} of {} objects exist",
            size * OBJECTS_PER_APP
        );
    }
    Ok(())
}

/// RSS every 10 s of the run (MiB), for latest.json.
fn timeline(samples: &[(f64, u64)]) -> Value {
    let mut points = Vec::new();
    let mut next = 0.0;
    for (at, kib) in samples {
        if *at >= next {
            points.push(json!([round1(*at), round1(*kib as f64 / 1024.0)]));
            next += 10.0;
        }
    }
    json!(points)
}

async fn watch_ready(api: Api<GitRepository>, ready: tokio::sync::watch::Sender<usize>) {
    let mut names = HashSet::new();
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Apply(object)) | Ok(watcher::Event::InitApply(object)) => {
                let name = object.metadata.name.clone().unwrap_or_default();
                if is_ready(&object) {
                    names.insert(name);
                } else {
                    names.remove(&name);
                }
            }
            Ok(watcher::Event::Delete(object)) => {
                names.remove(&object.metadata.name.clone().unwrap_or_default());
            }
            _ => continue,
        }
        ready.send_replace(names.len());
    }
}

fn is_ready(object: &GitRepository) -> bool {
    object.status.as_ref().is_some_and(|status| {
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

// ---------------------------------------------------------------------------------------------
// Idle: the restart resync, then a quiet window, then one default interval of polls

async fn idle_windows(
    admin: &Client,
    controller: &mut Controller,
    size: usize,
    quiet_secs: u64,
    poll_secs: u64,
) -> Result<Value> {
    // The restarted controller reconciles every GitRepository once (no change: no write).
    let started = Instant::now();
    let before = controller.log.requests();
    let reconciles_before = controller.log.reconciles();
    let deadline = started + Duration::from_secs(30 * 60);
    while controller.log.reconciles() - reconciles_before < size {
        if Instant::now() > deadline || !controller.running() {
            bail!(
                "the restarted controller reconciled {} of {size}: {:?}",
                controller.log.reconciles() - reconciles_before,
                controller.log.errors()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resync = started.elapsed();
    let resync_requests = request_delta(&before, &controller.log.requests());
    controller.log.wait_settled(SETTLE_QUIET).await;
    eprintln!(
        "restart resync of {size} in {:.1} s ({} requests)",
        resync.as_secs_f64(),
        resync_requests["total"]
    );
    let restart_resync = json!({
        "seconds": round1(resync.as_secs_f64()),
        "requests": resync_requests,
        "controller_peak_rss_mib": round1(rss_kib(controller.pid, "VmHWM:") as f64 / 1024.0),
    });

    let quiet = if quiet_secs > 0 {
        eprintln!("idle window between polls: {quiet_secs} s");
        window(admin, controller, Duration::from_secs(quiet_secs)).await?
    } else {
        json!(null)
    };
    let polling = if poll_secs > 0 {
        eprintln!("idle window over one default interval: {poll_secs} s");
        window(admin, controller, Duration::from_secs(poll_secs)).await?
    } else {
        json!(null)
    };
    Ok(json!({
        "size": size,
        "interval": "5m (the default; GitRepositories set no spec.interval)",
        "restart_resync": restart_resync,
        "quiet": quiet,
        "polling": polling,
        "controller_peak_rss_since_restart_mib": round1(rss_kib(controller.pid, "VmHWM:") as f64 / 1024.0),
        "controller_reconciles_since_restart": controller.reconcile_counts(),
    }))
}

/// CPU, RSS, requests and reconciles of the controller over `length`.
async fn window(admin: &Client, controller: &Controller, length: Duration) -> Result<Value> {
    let metrics_before = apiserver_requests(admin).await?;
    let requests_before = controller.log.requests();
    let reconciles_before = controller.log.reconciles();
    let sampler = RssSampler::start(&[controller.pid]);
    let cpu_before = cpu_ticks(controller.pid)?;
    let started = Instant::now();
    tokio::time::sleep(length).await;
    let cpu_after = cpu_ticks(controller.pid)?;
    let elapsed = started.elapsed().as_secs_f64();
    let samples = sampler.stop();
    let requests_after = controller.log.requests();
    let metrics_after = apiserver_requests(admin).await?;
    let cpu_seconds = (cpu_after - cpu_before) as f64 / clock_ticks();
    let rss: Vec<f64> = samples.iter().map(|s| s.1 as f64 / 1024.0).collect();
    let requests = request_delta(&requests_before, &requests_after);
    eprintln!(
        "  {elapsed:.0} s: CPU {:.2} % of one core, RSS {:.1} MiB, {} requests",
        cpu_seconds / elapsed * 100.0,
        rss.last().copied().unwrap_or(0.0),
        requests["total"]
    );
    Ok(json!({
        "seconds": round1(elapsed),
        "cpu_seconds": round(cpu_seconds, 2),
        "cpu_percent_of_one_core": round(cpu_seconds / elapsed * 100.0, 2),
        "rss_mib": crate::summary(&rss, 1),
        "requests": requests,
        "requests_per_minute": round1(requests["total"].as_f64().unwrap_or(0.0) / elapsed * 60.0),
        "reconciles": controller.log.reconciles() - reconciles_before,
        "apiserver_request_total_delta_cluster_wide": crate::common::metrics_delta(&metrics_before, &metrics_after),
    }))
}

// ---------------------------------------------------------------------------------------------
// Clean-up

/// Deletes the namespace while the controller still runs (its finalizer sees the namespace
/// terminating and lets the GitRepositories go); strips finalizers if it cannot. Returns the
/// seconds until the namespace was gone.
async fn clean_up(
    admin: &Client,
    namespace: &str,
    mut controller: Option<&mut Controller>,
) -> Result<f64> {
    let started = Instant::now();
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    let _ = namespaces
        .delete(namespace, &DeleteParams::background())
        .await;
    let mut stripped = false;
    loop {
        if let Ok(None) = namespaces.get_opt(namespace).await {
            return Ok(started.elapsed().as_secs_f64());
        }
        let controller_gone = controller.as_mut().is_none_or(|c| !c.running());
        if !stripped && (controller_gone || started.elapsed() > Duration::from_secs(300)) {
            eprintln!("removing finalizers of the GitRepositories left in {namespace}");
            strip_finalizers(admin, namespace).await;
            stripped = true;
        }
        if started.elapsed() > Duration::from_secs(900) {
            bail!("namespace {namespace} still exists after 15 minutes");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn strip_finalizers(admin: &Client, namespace: &str) {
    let api: Api<GitRepository> = Api::namespaced(admin.clone(), namespace);
    let Ok(list) = api.list_metadata(&ListParams::default()).await else {
        return;
    };
    let patch = json!({ "metadata": { "finalizers": null } });
    for object in list {
        if let Some(name) = object.metadata.name {
            let _ = api
                .patch_metadata(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await;
        }
    }
}

fn round1(value: f64) -> f64 {
    round(value, 1)
}

fn round(value: f64, digits: i32) -> f64 {
    crate::round(value, digits)
}
