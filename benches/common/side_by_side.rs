//! Running driftless and Flux one after the other on identical input: one monorepo served by
//! the test git server, the same applications (same files, same object counts), a fresh
//! namespace per run, a fresh controller process per run. What a scenario measures is built
//! from the pieces here: [`Workload`] (what the repository holds and which objects point at
//! it), [`Running`] (a tool watching its namespace, with watches on its objects) and
//! [`Snapshot`] (CPU, requests and git requests at one moment).

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
    discovery::ApiResource,
    runtime::{WatchStreamExt, watcher},
};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::{
    common::{
        create_namespace,
        driftless::{Controller, request_delta},
        fast_import_data, flux, git,
        procfs::{clock_ticks, cpu_ticks, rss_kib},
    },
    support::{self, git::HttpGitServer},
};

/// The shared webhook secret driftless's receiver is started with.
pub const SECRET: &str = "driftless bench webhook secret";
/// Objects created at the same time.
const CREATE_CONCURRENCY: usize = 16;

/// Which tool a run measures.
#[derive(Clone, Copy, Debug)]
pub enum Tool {
    Driftless,
    Flux(flux::FluxConfig),
}

impl Tool {
    pub fn label(&self) -> String {
        match self {
            Tool::Driftless => "driftless".into(),
            Tool::Flux(config) => format!(
                "Flux ({}: source-controller --concurrent={}, kustomize-controller --concurrent={})",
                config.name, config.source_concurrent, config.kustomize_concurrent
            ),
        }
    }

    pub fn key(&self) -> String {
        match self {
            Tool::Driftless => "driftless".into(),
            Tool::Flux(config) => format!("flux_{}", config.name.replace(' ', "_")),
        }
    }
}

/// What one application directory holds.
#[derive(Clone, Copy, Debug)]
pub enum Layout {
    /// `apps/app-NNNN/cm-K.yaml`: that many plain ConfigMaps.
    Plain { objects: usize },
    /// `apps/app-NNNN/kustomization.yaml`: the shared `base/` (nine ConfigMaps), a
    /// `configMapGenerator` and a strategic-merge patch of one base ConfigMap, under a
    /// `namePrefix` of the application: ten objects.
    Overlay,
}

impl Layout {
    pub fn objects(&self) -> usize {
        match self {
            Layout::Plain { objects } => *objects,
            Layout::Overlay => BASE_OBJECTS + 1,
        }
    }
}

const BASE_OBJECTS: usize = 9;

/// How Flux points at the monorepo.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FluxSources {
    /// One GitRepository per application (with `sparseCheckout` of its path), like driftless's
    /// one GitRepository per application.
    PerApp,
    /// One GitRepository for the whole repository and one Kustomization per path.
    One,
}

/// The repository and the objects that follow it.
#[derive(Clone, Copy, Debug)]
pub struct Workload {
    pub apps: usize,
    pub layout: Layout,
    pub flux_sources: FluxSources,
    /// `spec.interval` for every object; `None`: each tool's default (driftless: none set, the
    /// controller's 5m; Flux has no default: `flux bootstrap`'s 1m for GitRepositories and 10m
    /// for Kustomizations).
    pub interval: Option<&'static str>,
}

pub fn app_name(index: usize) -> String {
    format!("app-{index:04}")
}

pub fn app_path(index: usize) -> String {
    format!("apps/{}", app_name(index))
}

/// The plain ConfigMap `object` of `app`, as of `revision`.
pub fn plain_config_map(app: usize, object: usize, revision: usize) -> String {
    let name = app_name(app);
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}-cm-{object}\n  labels:\n    app: {name}\n\
         data:\n  index: \"{object}\"\n  revision: \"{revision}\"\n  owner: team-a\n  settings.yaml: |\n    \
         replicas: 3\n    feature: enabled\n    description: object {object} of application {name}\n"
    )
}

fn base_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = (0..BASE_OBJECTS)
        .map(|object| {
            (
                format!("base/cm-{object}.yaml"),
                format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{object}\n  labels:\n    tier: base\n\
                     data:\n  index: \"{object}\"\n  owner: team-a\n  settings.yaml: |\n    replicas: 3\n    \
                     feature: enabled\n"
                ),
            )
        })
        .collect();
    let resources: String = (0..BASE_OBJECTS)
        .map(|o| format!("  - cm-{o}.yaml\n"))
        .collect();
    files.push((
        "base/kustomization.yaml".into(),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n{resources}"
        ),
    ));
    files
}

fn overlay_files(app: usize, revision: usize) -> Vec<(String, String)> {
    let name = app_name(app);
    let dir = app_path(app);
    vec![
        (
            format!("{dir}/kustomization.yaml"),
            format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamePrefix: {name}-\n\
                 commonLabels:\n  app: {name}\nresources:\n  - ../../base\nconfigMapGenerator:\n  - name: settings\n    \
                 literals:\n      - revision={revision}\n      - application={name}\npatches:\n  - path: patch.yaml\n"
            ),
        ),
        (
            format!("{dir}/patch.yaml"),
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-0\ndata:\n  revision: \"{revision}\"\n  \
                 application: {name}\n"
            ),
        ),
    ]
}

/// Every file of application `app` at `revision`.
pub fn app_files(layout: Layout, app: usize, revision: usize) -> Vec<(String, String)> {
    match layout {
        Layout::Plain { objects } => (0..objects)
            .map(|object| {
                (
                    format!("{}/cm-{object}.yaml", app_path(app)),
                    plain_config_map(app, object, revision),
                )
            })
            .collect(),
        Layout::Overlay => overlay_files(app, revision),
    }
}

/// Writes one commit on `main` of `repo` with `files` (the first commit of an empty repository
/// or on top of `main`); returns the commit.
pub fn commit_files(repo: &Path, message: &str, files: &[(String, String)]) -> Result<String> {
    let parent = git(
        repo,
        &["rev-parse", "--verify", "-q", "refs/heads/main"],
        None,
    )
    .ok();
    let mut stream = Vec::new();
    stream.extend_from_slice(b"commit refs/heads/main\n");
    let time = 1_700_000_000u64
        + std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
            % 1_000_000;
    stream.extend_from_slice(
        format!("committer bench <bench@driftless.invalid> {time} +0000\n").as_bytes(),
    );
    fast_import_data(&mut stream, message);
    if let Some(parent) = parent.filter(|p| !p.is_empty()) {
        stream.extend_from_slice(format!("from {parent}\n").as_bytes());
    }
    for (path, content) in files {
        stream.extend_from_slice(format!("M 100644 inline {path}\n").as_bytes());
        fast_import_data(&mut stream, content);
    }
    stream.push(b'\n');
    git(repo, &["fast-import", "--quiet"], Some(&stream))?;
    git(repo, &["rev-parse", "refs/heads/main"], None)
}

/// The monorepo of `workload` at revision 0.
pub fn write_monorepo(repo: &Path, workload: &Workload) -> Result<String> {
    let mut files = Vec::new();
    if matches!(workload.layout, Layout::Overlay) {
        files.extend(base_files());
    }
    for app in 0..workload.apps {
        files.extend(app_files(workload.layout, app, 0));
    }
    commit_files(repo, "monorepo", &files)
}

/// What every run of a scenario shares: the cluster, the binaries, the git server.
pub struct Setup {
    pub admin: Client,
    pub driftless_binary: PathBuf,
    /// Flux's controllers, when the scenario compares with Flux.
    pub flux_binaries: Option<PathBuf>,
    pub kustomize_binary: PathBuf,
    pub helm_binary: PathBuf,
    _binary_dir: tempfile::TempDir,
}

impl Setup {
    /// Installs driftless's CRDs; with `with_flux`, builds Flux if needed and installs its CRDs.
    pub async fn prepare(with_flux: bool) -> Result<Self> {
        support::cluster::install_crds().await;
        let flux_binaries = if with_flux {
            let binaries = flux::binaries()?;
            flux::install_crds()?;
            Some(binaries)
        } else {
            None
        };
        // A private copy of the release binary: another build may replace it mid-run.
        let binary_dir = tempfile::tempdir()?;
        let driftless_binary = binary_dir.path().join("driftless");
        // `DRIFTLESS_BENCH_DRIFTLESS_BINARY`: another build, e.g. the one before a change.
        let source = std::env::var_os("DRIFTLESS_BENCH_DRIFTLESS_BINARY")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_driftless")));
        std::fs::copy(&source, &driftless_binary)?;
        Ok(Self {
            admin: support::cluster::admin_client().await,
            driftless_binary,
            flux_binaries,
            kustomize_binary: support::cluster::binaries_dir().join("kustomize"),
            helm_binary: support::cluster::binaries_dir().join("helm"),
            _binary_dir: binary_dir,
        })
    }
}

/// The latest version of every object of one kind in a namespace, from a watch.
pub struct Store {
    objects: Arc<Mutex<HashMap<String, Value>>>,
    changed: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Store {
    pub fn start(api: Api<DynamicObject>) -> Self {
        let objects = Arc::new(Mutex::new(HashMap::new()));
        let (sender, changed) = watch::channel(0u64);
        let task = tokio::spawn({
            let objects = objects.clone();
            async move {
                let stream = watcher(api, watcher::Config::default()).default_backoff();
                futures::pin_mut!(stream);
                while let Some(event) = stream.next().await {
                    let mut map = objects.lock().unwrap();
                    match event {
                        Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => {
                            let name = o.metadata.name.clone().unwrap_or_default();
                            map.insert(name, serde_json::to_value(&o).unwrap_or_default());
                        }
                        Ok(watcher::Event::Delete(o)) => {
                            map.remove(&o.metadata.name.clone().unwrap_or_default());
                        }
                        _ => continue,
                    }
                    drop(map);
                    sender.send_modify(|n| *n += 1);
                }
            }
        });
        Self {
            objects,
            changed,
            task,
        }
    }

    pub fn count(&self, predicate: &dyn Fn(&Value) -> bool) -> usize {
        self.objects
            .lock()
            .unwrap()
            .values()
            .filter(|o| predicate(o))
            .count()
    }

    pub fn get(&self, name: &str) -> Option<Value> {
        self.objects.lock().unwrap().get(name).cloned()
    }

    /// Waits until `wanted` objects satisfy `predicate`; prints progress every 30 s.
    pub async fn until_count(
        &self,
        wanted: usize,
        within: Duration,
        predicate: &dyn Fn(&Value) -> bool,
    ) -> Result<()> {
        let started = Instant::now();
        let mut changed = self.changed.clone();
        loop {
            let have = self.count(predicate);
            if have >= wanted {
                return Ok(());
            }
            if started.elapsed() > within {
                bail!("only {have} of {wanted} after {within:?}");
            }
            match tokio::time::timeout(Duration::from_secs(30), changed.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => bail!("the watch ended"),
                Err(_) => eprintln!(
                    "  {have}/{wanted} after {:.0} s",
                    started.elapsed().as_secs_f64()
                ),
            }
        }
    }

    /// Waits until the object `name` satisfies `predicate`.
    pub async fn until_one(
        &self,
        name: &str,
        within: Duration,
        predicate: &dyn Fn(&Value) -> bool,
    ) -> Result<()> {
        let started = Instant::now();
        let mut changed = self.changed.clone();
        loop {
            if self.get(name).is_some_and(|o| predicate(&o)) {
                return Ok(());
            }
            if started.elapsed() > within {
                bail!("{name} not as wanted after {within:?}");
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), changed.changed()).await;
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Ready=True and the applied revision names `commit` (driftless's GitRepository and Flux's
/// Kustomization use the same field names).
pub fn applied(commit: &str) -> impl Fn(&Value) -> bool + '_ {
    move |object| {
        let status = &object["status"];
        let ready = status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        ready
            && status["lastAppliedRevision"]
                .as_str()
                .is_some_and(|r| r.ends_with(commit))
    }
}

/// `status.lastHandledReconcileAt` is `token` (the same field in both tools).
pub fn handled(token: &str) -> impl Fn(&Value) -> bool + '_ {
    move |object| object["status"]["lastHandledReconcileAt"] == token
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn driftless_resource() -> ApiResource {
    resource(
        "driftless.dev",
        "v1alpha1",
        "GitRepository",
        "gitrepositories",
    )
}

pub fn config_maps(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        namespace,
        &resource("", "v1", "ConfigMap", "configmaps"),
    )
}

enum Process {
    Driftless {
        controller: Controller,
        home: String,
        _cache: tempfile::TempDir,
        _secrets: tempfile::TempDir,
    },
    Flux(flux::Flux),
}

/// A tool running in a fresh namespace, with watches on the objects it reports on.
pub struct Running {
    pub tool: Tool,
    pub namespace: String,
    admin: Client,
    process: Option<Process>,
    /// The GitRepositories (driftless's or Flux's).
    pub sources: Store,
    /// Flux's Kustomizations (driftless has none: its GitRepository is both).
    pub kustomizations: Option<Store>,
    pub config_maps: Store,
}

impl Running {
    pub async fn start(setup: &Setup, tool: Tool, prefix: &str) -> Result<Self> {
        let admin = setup.admin.clone();
        let namespace = create_namespace(&admin, &format!("{prefix}-{}", tool.key())).await?;
        let (process, sources, kustomizations) = match tool {
            Tool::Driftless => {
                let home = create_namespace(&admin, &format!("{prefix}-home")).await?;
                let cache = tempfile::tempdir()?;
                let secrets = tempfile::tempdir()?;
                support::webhook::write_secret(secrets.path(), "github", SECRET);
                let mut controller = Controller::start(
                    &setup.driftless_binary,
                    [namespace.as_str(), home.as_str()],
                    cache.path(),
                    &[
                        "--webhook-secrets-dir",
                        secrets.path().to_str().context("UTF-8 path")?,
                        "--kustomize-binary",
                        setup.kustomize_binary.to_str().context("UTF-8 path")?,
                        "--helm-binary",
                        setup.helm_binary.to_str().context("UTF-8 path")?,
                    ],
                )?;
                controller.wait_watching(Duration::from_secs(60)).await?;
                let sources = Store::start(Api::namespaced_with(
                    admin.clone(),
                    &namespace,
                    &driftless_resource(),
                ));
                let process = Process::Driftless {
                    controller,
                    home,
                    _cache: cache,
                    _secrets: secrets,
                };
                (process, sources, None)
            }
            Tool::Flux(config) => {
                let binaries = setup.flux_binaries.as_ref().context("Flux was not built")?;
                let flux = flux::Flux::start(binaries, &namespace, config).await?;
                let sources = Store::start(flux::git_repositories(&admin, &namespace));
                let kustomizations = Store::start(flux::kustomizations(&admin, &namespace));
                (Process::Flux(flux), sources, Some(kustomizations))
            }
        };
        let config_maps = Store::start(config_maps(&admin, &namespace));
        Ok(Self {
            tool,
            namespace,
            admin,
            process: Some(process),
            sources,
            kustomizations,
            config_maps,
        })
    }

    /// The objects whose status says what was applied.
    pub fn appliers(&self) -> &Store {
        self.kustomizations.as_ref().unwrap_or(&self.sources)
    }

    pub fn pids(&self) -> Vec<u32> {
        match self.process.as_ref() {
            Some(Process::Driftless { controller, .. }) => vec![controller.pid],
            Some(Process::Flux(flux)) => flux.pids(),
            None => vec![],
        }
    }

    pub fn requests(&self) -> BTreeMap<String, u64> {
        match self.process.as_ref() {
            Some(Process::Driftless { controller, .. }) => controller.log.requests(),
            Some(Process::Flux(flux)) => flux.requests(),
            None => BTreeMap::new(),
        }
    }

    pub fn webhook_port(&self) -> Option<u16> {
        match self.process.as_ref() {
            Some(Process::Driftless { controller, .. }) => Some(controller.webhook_port),
            _ => None,
        }
    }

    /// The controller's `/metrics` text (driftless only; empty for Flux).
    pub fn metrics_text(&self) -> String {
        match self.process.as_ref() {
            Some(Process::Driftless { controller, .. }) => {
                support::controller::http_get(controller.metrics_port, "/metrics")
                    .unwrap_or_default()
            }
            _ => String::new(),
        }
    }

    /// `driftless_render_total` by outcome (driftless only).
    pub fn render_counts(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        if let Some(Process::Driftless { controller, .. }) = self.process.as_ref() {
            let text = support::controller::http_get(controller.metrics_port, "/metrics")
                .unwrap_or_default();
            for line in text.lines() {
                let Some(rest) = line.strip_prefix("driftless_render_total{") else {
                    continue;
                };
                let outcome = rest
                    .split("outcome=\"")
                    .nth(1)
                    .and_then(|v| v.split('"').next())
                    .unwrap_or("?");
                *counts.entry(outcome.to_owned()).or_default() +=
                    crate::common::sample_value(line) as u64;
            }
        }
        counts
    }

    pub fn errors(&self) -> Vec<String> {
        match self.process.as_ref() {
            Some(Process::Driftless { controller, .. }) => controller.log.errors(),
            Some(Process::Flux(flux)) => flux.errors(10),
            None => vec![],
        }
    }

    /// Sum of the processes' VmHWM (each process is fresh per run), MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        let kib: u64 = self.pids().iter().map(|&p| rss_kib(p, "VmHWM:")).sum();
        kib as f64 / 1024.0
    }

    /// Creates the objects of `workload` following `url`.
    pub async fn create(&self, workload: &Workload, url: &str) -> Result<()> {
        self.create_with(workload, url, &json!({})).await
    }

    /// As `create`, with `driftless_spec` merged into each driftless GitRepository's spec
    /// (e.g. `helm`); Flux's objects are the same as with `create`.
    pub async fn create_with(
        &self,
        workload: &Workload,
        url: &str,
        driftless_spec: &Value,
    ) -> Result<()> {
        let mut objects: Vec<(Api<DynamicObject>, Value)> = Vec::new();
        let interval = |default: &str| workload.interval.unwrap_or(default).to_owned();
        match self.tool {
            Tool::Driftless => {
                let api = Api::namespaced_with(
                    self.admin.clone(),
                    &self.namespace,
                    &driftless_resource(),
                );
                for app in 0..workload.apps {
                    let mut spec = json!({"url": url, "path": app_path(app)});
                    if let Some(interval) = workload.interval {
                        spec["interval"] = json!(interval);
                    }
                    for (field, value) in driftless_spec.as_object().into_iter().flatten() {
                        spec[field] = value.clone();
                    }
                    objects.push((
                        api.clone(),
                        json!({"apiVersion": "driftless.dev/v1alpha1", "kind": "GitRepository",
                               "metadata": {"name": app_name(app)}, "spec": spec}),
                    ));
                }
            }
            Tool::Flux(_) => {
                let sources = flux::git_repositories(&self.admin, &self.namespace);
                let kustomizations = flux::kustomizations(&self.admin, &self.namespace);
                let source = |name: &str, sparse: Option<Vec<String>>| {
                    let mut spec = json!({"url": url, "ref": {"branch": "main"},
                                          "interval": interval("1m"), "timeout": "60s"});
                    if let Some(paths) = sparse {
                        spec["sparseCheckout"] = json!(paths);
                    }
                    json!({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                           "metadata": {"name": name}, "spec": spec})
                };
                if workload.flux_sources == FluxSources::One {
                    objects.push((sources.clone(), source("monorepo", None)));
                }
                for app in 0..workload.apps {
                    let source_name = match workload.flux_sources {
                        FluxSources::One => "monorepo".to_owned(),
                        FluxSources::PerApp => {
                            let mut paths = vec![app_path(app)];
                            if matches!(workload.layout, Layout::Overlay) {
                                paths.push("base".into());
                            }
                            objects.push((sources.clone(), source(&app_name(app), Some(paths))));
                            app_name(app)
                        }
                    };
                    objects.push((
                        kustomizations.clone(),
                        json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                               "metadata": {"name": app_name(app)},
                               "spec": {"sourceRef": {"kind": "GitRepository", "name": source_name},
                                        "path": format!("./{}", app_path(app)), "prune": true,
                                        "interval": interval("10m"), "retryInterval": "30s",
                                        "timeout": "2m", "wait": false,
                                        "targetNamespace": self.namespace}}),
                    ));
                }
            }
        }
        futures::stream::iter(objects.into_iter().map(|(api, object)| async move {
            let object: DynamicObject = serde_json::from_value(object)?;
            api.create(&PostParams::default(), &object).await?;
            anyhow::Ok(())
        }))
        .buffer_unordered(CREATE_CONCURRENCY)
        .try_collect::<Vec<_>>()
        .await?;
        Ok(())
    }

    /// Sets the tool's reconcile-request annotation to `token` on every object that the
    /// request should reach: driftless's GitRepositories; Flux's GitRepositories and
    /// Kustomizations (what `flux reconcile kustomization --with-source` does).
    pub async fn request_reconcile_all(&self, token: &str) -> Result<()> {
        let mut targets = Vec::new();
        match self.tool {
            Tool::Driftless => targets.push((
                Api::namespaced_with(self.admin.clone(), &self.namespace, &driftless_resource()),
                driftless::api::RECONCILE_REQUESTED_AT,
            )),
            Tool::Flux(_) => {
                targets.push((
                    flux::git_repositories(&self.admin, &self.namespace),
                    "reconcile.fluxcd.io/requestedAt",
                ));
                targets.push((
                    flux::kustomizations(&self.admin, &self.namespace),
                    "reconcile.fluxcd.io/requestedAt",
                ));
            }
        }
        for (api, annotation) in targets {
            let names: Vec<String> = api
                .list_metadata(&ListParams::default())
                .await?
                .items
                .into_iter()
                .filter_map(|o| o.metadata.name)
                .collect();
            futures::stream::iter(names.into_iter().map(|name| {
                let api = api.clone();
                let patch = json!({"metadata": {"annotations": {annotation: token}}});
                async move {
                    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                }
            }))
            .buffer_unordered(CREATE_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        }
        Ok(())
    }

    /// Sets the reconcile-request annotation on one GitRepository.
    pub async fn request_reconcile(&self, source: &str, token: &str) -> Result<()> {
        let (api, annotation) = match self.tool {
            Tool::Driftless => (
                Api::namespaced_with(self.admin.clone(), &self.namespace, &driftless_resource()),
                driftless::api::RECONCILE_REQUESTED_AT,
            ),
            Tool::Flux(_) => (
                flux::git_repositories(&self.admin, &self.namespace),
                "reconcile.fluxcd.io/requestedAt",
            ),
        };
        let patch = json!({"metadata": {"annotations": {annotation: token}}});
        api.patch(source, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// Waits until `count` appliers applied `commit`, failing early if the tool stopped.
    pub async fn until_applied(&self, count: usize, commit: &str, within: Duration) -> Result<()> {
        self.appliers()
            .until_count(count, within, &applied(commit))
            .await
            .with_context(|| format!("{}: errors: {:?}", self.tool.label(), self.errors()))
    }

    /// Deletes the namespace while the tool still runs (both remove their finalizers then),
    /// waits until it is gone, then stops the tool. Returns the seconds the deletion took.
    pub async fn finish(mut self) -> Result<f64> {
        let started = Instant::now();
        let namespaces: Api<Namespace> = Api::all(self.admin.clone());
        let _ = namespaces
            .delete(&self.namespace, &DeleteParams::background())
            .await;
        let mut stripped = false;
        loop {
            if let Ok(None) = namespaces.get_opt(&self.namespace).await {
                break;
            }
            if !stripped && started.elapsed() > Duration::from_secs(300) {
                eprintln!("removing finalizers left in {}", self.namespace);
                self.strip_finalizers().await;
                stripped = true;
            }
            if started.elapsed() > Duration::from_secs(900) {
                bail!("namespace {} still exists after 15 minutes", self.namespace);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let seconds = started.elapsed().as_secs_f64();
        if let Some(Process::Driftless {
            controller, home, ..
        }) = self.process.take()
        {
            let _ = controller.terminate();
            let _ = namespaces.delete(&home, &DeleteParams::background()).await;
        }
        Ok(seconds)
    }

    async fn strip_finalizers(&self) {
        let apis = [
            Api::namespaced_with(self.admin.clone(), &self.namespace, &driftless_resource()),
            flux::git_repositories(&self.admin, &self.namespace),
            flux::kustomizations(&self.admin, &self.namespace),
        ];
        let patch = json!({"metadata": {"finalizers": null}});
        for api in apis {
            let Ok(list) = api.list_metadata(&ListParams::default()).await else {
                continue;
            };
            for object in list {
                if let Some(name) = object.metadata.name {
                    let _ = api
                        .patch_metadata(&name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await;
                }
            }
        }
    }
}

/// CPU, requests and git requests of a running tool at one moment.
pub struct Snapshot {
    at: Instant,
    cpu_ticks: u64,
    requests: BTreeMap<String, u64>,
    git_requests: usize,
}

impl Snapshot {
    pub fn take(running: &Running, server: &HttpGitServer) -> Self {
        Self {
            at: Instant::now(),
            cpu_ticks: running
                .pids()
                .iter()
                .map(|&p| cpu_ticks(p).unwrap_or(0))
                .sum(),
            requests: running.requests(),
            git_requests: server.requests(),
        }
    }

    /// What happened between `self` and `later`.
    pub fn usage(&self, later: &Snapshot) -> Value {
        let requests = request_delta(&self.requests, &later.requests);
        json!({
            "seconds": crate::round((later.at - self.at).as_secs_f64(), 2),
            "cpu_seconds": crate::round(later.cpu_ticks.saturating_sub(self.cpu_ticks) as f64 / clock_ticks(), 2),
            "requests": requests["total"],
            "write_requests": requests["writes"],
            "requests_by_kind": requests["by_verb_and_resource"],
            "git_requests": later.git_requests.saturating_sub(self.git_requests),
        })
    }
}

/// The token a reconcile request carries: unique per request.
pub fn token(label: &str) -> String {
    format!(
        "{label}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}

/// The load average of the machine (1, 5, 15 minutes).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `DRIFTLESS_BENCH_<name>` as a number, else `default`.
pub fn env_number(name: &str, default: usize) -> usize {
    std::env::var(format!("DRIFTLESS_BENCH_{name}"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `DRIFTLESS_BENCH_<name>` as a comma-separated list of numbers, else `default`.
pub fn env_numbers(name: &str, default: &[usize]) -> Result<Vec<usize>> {
    match std::env::var(format!("DRIFTLESS_BENCH_{name}")) {
        Ok(text) => text
            .split(',')
            .map(|s| {
                s.trim()
                    .parse()
                    .with_context(|| format!("DRIFTLESS_BENCH_{name}"))
            })
            .collect(),
        Err(_) => Ok(default.to_vec()),
    }
}

/// Every tool a scenario compares: driftless, then Flux in each configuration asked for.
pub fn tools() -> Vec<Tool> {
    std::iter::once(Tool::Driftless)
        .chain(flux::configs().into_iter().map(Tool::Flux))
        .collect()
}

/// Waits until the tool sent no request (Lease renewals and watches aside) and the git server
/// saw none for `quiet`, at most `within`; returns the snapshot at the last activity.
pub async fn until_quiet(
    running: &Running,
    server: &HttpGitServer,
    quiet: Duration,
    within: Duration,
) -> Snapshot {
    let activity = |snapshot: &Snapshot| {
        let work: u64 = snapshot
            .requests
            .iter()
            .filter(|(k, _)| !k.ends_with(" leases") && !k.starts_with("WATCH "))
            .map(|(_, v)| v)
            .sum();
        (work, snapshot.git_requests)
    };
    let started = Instant::now();
    let mut last = Snapshot::take(running, server);
    let mut last_change = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = Snapshot::take(running, server);
        if activity(&now) != activity(&last) {
            last = now;
            last_change = Instant::now();
        } else if last_change.elapsed() >= quiet || started.elapsed() > within {
            return last;
        }
    }
}
