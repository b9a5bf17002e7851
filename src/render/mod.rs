//! Rendering a commit's directories into manifests: Kustomize and Helm, each the pinned
//! upstream binary as a sandboxed child process, through the same machinery.
//!
//! The pieces every renderer shares:
//! - [`tree`]: a read-only view of the commit (the module knows nothing of git),
//! - [`sandbox`]: a private work directory of regular files, a process with an empty
//!   environment, rlimits, a timeout that kills its process group and bounded output,
//! - [`cache`]: one run per distinct input, shared by every GitRepository asking for it,
//! - the [`Renderer`]'s semaphore, which bounds how many renders run at once.
//!
//! - [`binary`]: finding a renderer's binary, its version, and one run's errors.
//!
//! Kustomize-specific: [`layout`] (which directories are units), [`kustomization`] (the
//! sandbox rules checked in Rust before anything runs, and the files a build may read) and
//! [`kustomize`] (the binary and its command line). Helm-specific: [`helm`] (the chart's rules,
//! the binary, its command line and the hook rule).

mod binary;
pub mod cache;
mod error;
pub mod helm;
pub mod kustomization;
pub mod kustomize;
pub mod layout;
pub mod sandbox;
pub mod substitute;
pub mod tree;

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

pub use error::{Refusal, RenderError};
pub use helm::{Capabilities, ChartRequest, Helm, ValuesDocument};
pub use kustomization::{InputLimits, KustomizationEdits};
pub use kustomize::Kustomize;
pub use layout::Layout;
pub use tree::{Entry, EntryName, RepoPath, RepositoryTree, TreeSource};

use crate::telemetry::metrics::Metrics;
use cache::{RenderCache, RenderResult};
use kustomization::Inputs;
use sandbox::{ProcessLimits, WorkDir};

/// How renders run; filled from the command line.
#[derive(Clone, Debug)]
pub struct RenderSettings {
    /// The kustomize binary; `None` looks for `kustomize` on `PATH`.
    pub kustomize_binary: Option<PathBuf>,
    /// The helm binary; `None` looks for `helm` on `PATH`.
    pub helm_binary: Option<PathBuf>,
    /// Most renders running at once, over all GitRepositories.
    pub concurrency: usize,
    pub timeout: Duration,
    /// Writable memory of one render process.
    pub memory_bytes: u64,
    /// Largest output of one render.
    pub max_output_bytes: usize,
    /// Bytes of rendered output kept for reuse.
    pub cache_bytes: usize,
    /// Where private work directories are created (default: the system's temporary directory).
    pub work_dir: Option<PathBuf>,
    /// What one render may materialize (the source engine's tree limits).
    pub input_limits: InputLimits,
}

impl Default for RenderSettings {
    fn default() -> Self {
        Self {
            kustomize_binary: None,
            helm_binary: None,
            concurrency: 2,
            timeout: Duration::from_secs(30),
            // Typical builds take 50-100 MiB; two at the chart's 1 GiB container limit still
            // leave room for the controller.
            memory_bytes: 512 * 1024 * 1024,
            max_output_bytes: 16 * 1024 * 1024,
            cache_bytes: 256 * 1024 * 1024,
            work_dir: None,
            input_limits: InputLimits::default(),
        }
    }
}

/// Options that change a render's output; part of the cache key.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RenderOptions {
    /// Written into the kustomization at the path, or into one generated for it.
    pub kustomization: KustomizationEdits,
}

/// The rendered units under a path.
#[derive(Clone, Debug, Default)]
pub struct Rendered {
    pub layout: Layout,
    /// One per unit of the layout, in its order.
    pub units: Vec<RenderedUnit>,
}

#[derive(Clone, Debug)]
pub struct RenderedUnit {
    /// The unit's directory from the repository root (`""` for the root).
    pub dir: String,
    /// `kustomize build` output: a YAML stream.
    pub output: Arc<[u8]>,
}

/// Every unit that failed to render, all reported at once.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", list(.0))]
pub struct RenderErrors(pub Vec<RenderError>);

impl RenderErrors {
    /// Whether only a new commit can fix every one of them.
    pub fn need_new_commit(&self) -> bool {
        self.0.iter().all(RenderError::needs_new_commit)
    }
}

fn list(errors: &[RenderError]) -> String {
    match errors {
        [one] => one.to_string(),
        many => {
            let mut text = format!("{} render errors:", many.len());
            for error in many {
                text.push_str("\n  ");
                text.push_str(&error.to_string());
            }
            text
        }
    }
}

/// The render engine a controller shares between all its reconciles.
pub struct Renderer {
    kustomize: Result<Kustomize, RenderError>,
    helm: Result<Helm, RenderError>,
    settings: RenderSettings,
    permits: Semaphore,
    cache: RenderCache,
    metrics: Metrics,
    runs: AtomicU64,
}

impl Renderer {
    /// Finds and checks the renderer binaries once; without one, only paths that do not need it
    /// work.
    pub async fn new(settings: RenderSettings, metrics: Metrics) -> Self {
        let helm = Helm::locate(
            settings.helm_binary.as_deref(),
            settings.work_dir.as_deref(),
        )
        .await;
        match &helm {
            Ok(found) if found.version != helm::PINNED_VERSION => tracing::warn!(
                binary = %found.binary.display(),
                version = found.version,
                pinned = helm::PINNED_VERSION,
                "helm is not the pinned version; output may differ from the tested one"
            ),
            Ok(found) => tracing::info!(
                binary = %found.binary.display(),
                version = found.version,
                "helm found"
            ),
            Err(error) => tracing::warn!(%error, "Helm charts cannot be rendered"),
        }
        let kustomize = Kustomize::locate(
            settings.kustomize_binary.as_deref(),
            settings.work_dir.as_deref(),
        )
        .await;
        match &kustomize {
            Ok(found) if found.version != kustomize::PINNED_VERSION => tracing::warn!(
                binary = %found.binary.display(),
                version = found.version,
                pinned = kustomize::PINNED_VERSION,
                "kustomize is not the pinned version; output may differ from the tested one"
            ),
            Ok(found) => tracing::info!(
                binary = %found.binary.display(),
                version = found.version,
                "kustomize found"
            ),
            Err(error) => tracing::warn!(%error, "kustomizations cannot be rendered"),
        }
        let landlock_abi = sandbox::landlock_abi();
        if !sandbox::files_confined_by_kernel() {
            tracing::warn!(
                "the kernel has no Landlock: renderers can read every file the controller's \
                 user can, its ServiceAccount token included, should kustomize or helm be \
                 subverted; see docs/security.md"
            );
        } else {
            tracing::info!(
                landlock_abi,
                "renderers are confined to their work directory by Landlock"
            );
        }
        if !sandbox::network_denied_by_kernel() {
            tracing::warn!(
                landlock_abi,
                "the kernel has no Landlock network rules: renderers are kept off the network \
                 by a closed proxy and the pre-checks only"
            );
        }
        Self {
            kustomize,
            helm,
            permits: Semaphore::new(settings.concurrency.max(1)),
            cache: RenderCache::new(settings.cache_bytes),
            settings,
            metrics,
            runs: AtomicU64::new(0),
        }
    }

    /// The kustomize in use, or why there is none.
    pub fn kustomize(&self) -> Result<&Kustomize, &RenderError> {
        self.kustomize.as_ref()
    }

    /// The helm in use, or why there is none.
    pub fn helm(&self) -> Result<&Helm, &RenderError> {
        self.helm.as_ref()
    }

    /// Renders one chart (from the cache when the same input was rendered before).
    pub async fn render_chart(
        &self,
        source: Arc<dyn TreeSource>,
        request: &ChartRequest,
    ) -> Result<RenderedUnit, RenderErrors> {
        let one = |error: RenderError| RenderErrors(vec![error]);
        let helm = match &self.helm {
            Ok(helm) => helm,
            Err(error) => {
                self.count(helm::RENDERER, "unavailable", None);
                return Err(one(error.clone()));
            }
        };
        let request_key = digest_of(&[&serde_json::to_string(request).unwrap_or_default()]);
        let root_id = blocking(source.clone(), |tree| Ok(tree.root_id()))
            .await
            .map_err(one)?;
        let tree_key = digest_of(&[helm::RENDERER, &helm.version, &root_id, &request_key]);
        let collect = {
            let request = request.clone();
            let limits = self.settings.input_limits;
            move |tree: &dyn RepositoryTree| helm::collect_chart_inputs(tree, &request, limits)
        };
        // Boxed: the render's future is large, and callers poll it on their own stack.
        let output =
            Box::pin(self.render_cached(&tree_key, Job::Helm(helm, request), source, collect))
                .await
                .map_err(one)?;
        Ok(RenderedUnit {
            dir: request.chart.clone(),
            output,
        })
    }

    /// How many renderer processes ran (cache hits run none).
    pub fn renders_run(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// Finds the units under `path` and renders each (from the cache when its input was
    /// rendered before).
    pub async fn render(
        &self,
        source: Arc<dyn TreeSource>,
        path: &str,
        options: &RenderOptions,
    ) -> Result<Rendered, RenderErrors> {
        let path = RepoPath::parse(path).map_err(|escape| {
            RenderErrors(vec![RenderError::Refused {
                file: "spec".into(),
                field: "path".into(),
                entry: path.to_owned(),
                reason: kustomization::refusal_of(escape),
            }])
        })?;
        let edits = !options.kustomization.is_empty();
        let max_units = self.settings.input_limits.max_kustomizations;
        let (root_id, layout) = blocking(source.clone(), move |tree| {
            let mut layout = layout::layout(tree, &path, max_units)?;
            if edits {
                // The edits apply to the path's kustomization: a generated one when the path
                // has none, which then covers every file and unit below it (as in Flux).
                layout.units = vec![path];
            }
            Ok((tree.root_id(), layout))
        })
        .await
        .map_err(|e| RenderErrors(vec![e]))?;
        if layout.units.is_empty() {
            return Ok(Rendered {
                layout,
                units: Vec::new(),
            });
        }
        let kustomize = match &self.kustomize {
            Ok(kustomize) => kustomize,
            Err(error) => {
                self.count(kustomize::RENDERER, "unavailable", None);
                return Err(RenderErrors(vec![error.clone()]));
            }
        };
        let root_id = root_id.as_str();
        let renders = layout.units.iter().map(|unit| {
            let source = source.clone();
            async move {
                self.render_unit(kustomize, source, root_id, unit, options)
                    .await
                    .map(|output| RenderedUnit {
                        dir: unit.as_str().to_owned(),
                        output,
                    })
            }
        });
        let mut units = Vec::new();
        let mut errors = Vec::new();
        for result in futures::future::join_all(renders).await {
            match result {
                Ok(unit) => units.push(unit),
                Err(error) => errors.push(error),
            }
        }
        if errors.is_empty() {
            Ok(Rendered { layout, units })
        } else {
            Err(RenderErrors(errors))
        }
    }

    async fn render_unit(
        &self,
        kustomize: &Kustomize,
        source: Arc<dyn TreeSource>,
        root_id: &str,
        unit: &RepoPath,
        options: &RenderOptions,
    ) -> RenderResult {
        let tree_key = digest_of(&[
            kustomize::RENDERER,
            &kustomize.version,
            root_id,
            unit.as_str(),
            &options_key(options),
        ]);
        let limits = self.settings.input_limits;
        let collect = {
            let unit = unit.clone();
            let edits = options.kustomization.clone();
            move |tree: &dyn RepositoryTree| {
                kustomization::collect_inputs(tree, &unit, &edits, limits)
            }
        };
        let job = Job::Kustomize {
            kustomize,
            unit,
            options,
        };
        self.render_cached(&tree_key, job, source, collect).await
    }

    /// The output of `job` on the tree `tree_key` names: remembered, shared with a caller
    /// rendering the same input, or rendered now from the inputs `collect` finds.
    async fn render_cached(
        &self,
        tree_key: &str,
        job: Job<'_>,
        source: Arc<dyn TreeSource>,
        collect: impl FnOnce(&dyn RepositoryTree) -> Result<Inputs, RenderError> + Send + 'static,
    ) -> RenderResult {
        let renderer = job.renderer();
        if let Some(digest) = self.cache.digest_of(tree_key) {
            if let Some(result) = self.cache.finished(&digest) {
                self.count(renderer, "cached", None);
                return result;
            }
        }
        let inputs = blocking(source.clone(), collect)
            .await
            .inspect_err(|error| self.count(renderer, error.outcome(), None))?;
        let digest = input_digest(&job.key(), &inputs);
        self.cache
            .remember_digest(tree_key.to_owned(), digest.clone());
        // Boxed: a render's future is large, and callers poll it on their own stack.
        let build = Box::pin(self.run_build(&job, source, inputs));
        let (result, ran) = self.cache.get_or_render(&digest, build).await;
        if !ran {
            self.count(renderer, "cached", None);
        }
        result
    }

    /// Materializes the inputs and runs the job, holding one of the render permits.
    async fn run_build(
        &self,
        job: &Job<'_>,
        source: Arc<dyn TreeSource>,
        inputs: Inputs,
    ) -> RenderResult {
        let renderer = job.renderer();
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| RenderError::Sandbox("the renderer is shutting down".into()))?;
        let work_parent = self.settings.work_dir.clone();
        let work = blocking(source, move |tree| materialize(tree, &inputs, work_parent))
            .await
            .inspect_err(|error| self.count(renderer, error.outcome(), None))?;
        let started = Instant::now();
        self.runs.fetch_add(1, Ordering::Relaxed);
        let limits = ProcessLimits {
            timeout: self.settings.timeout,
            memory_bytes: self.settings.memory_bytes,
            max_stdout_bytes: self.settings.max_output_bytes,
            max_stderr_bytes: 64 * 1024,
        };
        let result = match job {
            Job::Kustomize {
                kustomize, unit, ..
            } => kustomize.build(unit.as_str(), &work, &limits).await,
            Job::Helm(helm, request) => helm.template(request, &work, &limits).await,
        };
        let outcome = match &result {
            Ok(_) => "success",
            Err(error) => error.outcome(),
        };
        self.count(renderer, outcome, Some(started.elapsed()));
        drop(work);
        result.map(Arc::from)
    }

    fn count(&self, renderer: &str, outcome: &str, took: Option<Duration>) {
        self.metrics.observe_render(renderer, outcome, took);
    }
}

/// One render process's worth of work.
enum Job<'a> {
    Kustomize {
        kustomize: &'a Kustomize,
        unit: &'a RepoPath,
        options: &'a RenderOptions,
    },
    Helm(&'a Helm, &'a ChartRequest),
}

impl Job<'_> {
    fn renderer(&self) -> &'static str {
        match self {
            Job::Kustomize { .. } => kustomize::RENDERER,
            Job::Helm(..) => helm::RENDERER,
        }
    }

    /// Everything but the files that the output depends on: the renderer, its version and
    /// the options.
    fn key(&self) -> Vec<String> {
        match self {
            Job::Kustomize {
                kustomize,
                unit,
                options,
            } => vec![
                kustomize::RENDERER.into(),
                kustomize.version.clone(),
                unit.as_str().to_owned(),
                options_key(options),
            ],
            Job::Helm(helm, request) => vec![
                helm::RENDERER.into(),
                helm.version.clone(),
                serde_json::to_string(request).unwrap_or_default(),
            ],
        }
    }
}

/// Writes the inputs into a fresh private work directory, reading each blob once.
fn materialize(
    tree: &dyn RepositoryTree,
    inputs: &Inputs,
    parent: Option<PathBuf>,
) -> Result<WorkDir, RenderError> {
    let sandbox_error = |e: std::io::Error| RenderError::Sandbox(format!("work directory: {e}"));
    let work = WorkDir::create(parent.as_deref()).map_err(sandbox_error)?;
    let edited = inputs.edited.as_ref();
    for path in inputs.files.keys() {
        if edited.is_some_and(|(edited, _)| edited == path) {
            continue;
        }
        let contents = tree.read(path)?;
        work.write_file(path, &contents).map_err(sandbox_error)?;
    }
    if let Some((path, contents)) = edited {
        work.write_file(path, contents).map_err(sandbox_error)?;
    }
    for (name, contents) in &inputs.generated {
        work.write_generated(name, contents)
            .map_err(sandbox_error)?;
    }
    Ok(work)
}

/// What a render's result depends on: the job's key (renderer, version, options) and every
/// file it may read (by content address), generated ones by content.
fn input_digest(key: &[String], inputs: &Inputs) -> String {
    let mut hasher = Sha256::new();
    for part in key {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    for (path, id) in &inputs.files {
        hasher.update(path.as_str().as_bytes());
        hasher.update([0]);
        hasher.update(id.as_bytes());
        hasher.update([0]);
    }
    if let Some((path, contents)) = &inputs.edited {
        hasher.update(path.as_str().as_bytes());
        hasher.update([0]);
        hasher.update(contents);
    }
    for (name, contents) in &inputs.generated {
        hasher.update([1]);
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(contents);
    }
    hex(&hasher.finalize())
}

fn digest_of(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hex(&hasher.finalize())
}

fn options_key(options: &RenderOptions) -> String {
    serde_json::to_string(options).unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs tree work on tokio's blocking pool (tree views read git objects synchronously).
async fn blocking<T: Send + 'static>(
    source: Arc<dyn TreeSource>,
    work: impl FnOnce(&dyn RepositoryTree) -> Result<T, RenderError> + Send + 'static,
) -> Result<T, RenderError> {
    tokio::task::spawn_blocking(move || {
        let tree = source.open()?;
        work(tree.as_ref())
    })
    .await
    .unwrap_or_else(|e| Err(RenderError::Tree(format!("render worker failed: {e}"))))
}
