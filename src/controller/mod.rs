//! The reconcile loop over `GitRepository` objects. It composes [`crate::source`] (fetch),
//! [`crate::manifests`] (read and validate) and [`crate::apply`] (server-side apply); none of
//! those modules knows about this one.

mod alerts;
mod artifact;
mod commit_status;
pub mod conditions;
mod converged;
mod decision;
mod deletion_order;
mod dependencies;
mod dependency_watches;
mod expressions;
mod failure;
mod finalizer;
mod health;
mod hooks;
mod identity;
mod leader;
mod preview;
mod priority;
mod prune;
mod pushes;
mod reconcile;
mod render;
mod report;
mod schedule;
mod spec;
mod status;
mod unchanged;
mod waves;
mod webhook_token;
mod webhooks;

pub use crate::webhook::WebhookTls;
pub use leader::{LeaderElectionSettings, process_identity};
pub use webhooks::WebhookSettings;

use std::{path::PathBuf, sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{
    Api, Client, ResourceExt,
    core::PartialObjectMeta,
    runtime::{
        Controller, WatchStreamExt,
        controller::{Action, Error as ControllerError},
        events::Recorder,
        predicates,
        reflector::{self, ObjectRef, Store},
        utils::{Predicate, PredicateConfig},
        watcher,
    },
};
use tokio::sync::watch;
use tracing::{info, warn};

pub use crate::api::RECONCILE_REQUESTED_AT;
pub use schedule::{backoff, jittered};

use schedule::FailureCounts;

use leader::Leadership;

use crate::{
    api::{FINALIZER, GitRepository},
    apply::Applier,
    render::{InputLimits, RenderSettings, Renderer},
    source::{Limits, SourceEngine},
    telemetry::metrics::Metrics,
};

/// Settings of a controller process, filled from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How many GitRepositories are reconciled at the same time.
    pub concurrency: u16,
    /// How many objects of one revision are applied at the same time.
    pub apply_concurrency: usize,
    /// Polling interval for objects that do not set `spec.interval`.
    pub default_interval: Duration,
    /// Directory of the persistent repository cache.
    pub git_cache_dir: PathBuf,
    /// Longest a git server may stay silent.
    pub git_stall_timeout: Duration,
    /// What one fetch and one revision may bring in.
    pub source_limits: Limits,
    /// Watch GitRepositories (and Secrets and ConfigMaps) of this namespace only; all
    /// namespaces when `None`.
    pub namespace: Option<String>,
    /// The namespace the controller runs in; never pruned.
    pub controller_namespace: Option<String>,
    /// Leader election among replicas; `None` runs as the only replica.
    pub leader_election: Option<LeaderElectionSettings>,
    /// The push webhook receiver; `None` disables it.
    pub webhook: Option<WebhookSettings>,
    /// ServiceAccount (in each GitRepository's own namespace) that applies a GitRepository
    /// without `spec.serviceAccountName`; `None` applies those with the controller's identity,
    /// unless `require_service_account` refuses them.
    pub default_service_account: Option<String>,
    /// Never apply with the controller's own identity (the chart's restricted RBAC mode): a
    /// GitRepository without `spec.serviceAccountName`, when no default is set, is Stalled.
    pub require_service_account: bool,
    /// Rendering kustomizations (the input limits come from `source_limits`).
    pub render: RenderSettings,
    /// Hosts besides the repository's own that `spec.commitStatus.address` may name (the
    /// token is sent there).
    pub commit_status_allowed_hosts: Vec<String>,
    /// How hard a commit status is tried.
    pub commit_status_retry: crate::commit_status::RetryPolicy,
    /// Let `spec.dependsOn` name another namespace although `require_service_account` is set
    /// (without it, such dependencies are always allowed).
    pub allow_cross_namespace_dependencies: bool,
    /// Leave Argo CD's `argocd.argoproj.io/sync-wave` annotation unread (it is read as
    /// `driftless.dev/apply-wave` otherwise).
    pub ignore_argocd_annotations: bool,
    /// How many pull request previews run at the same time.
    pub preview_concurrency: usize,
    /// How many previews one repository starts per minute (0: no limit); more wait.
    pub preview_rate_limit: u32,
}

/// Errors that end one reconcile before its outcome could be recorded; the object is retried.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("cleaning up on deletion, attempt {attempt} of {attempts}: {source}")]
    Cleanup {
        attempt: u32,
        attempts: u32,
        #[source]
        source: finalizer::CleanupError,
    },
    #[error("{action} the finalizer {FINALIZER}: {source}")]
    Finalizer {
        /// `adding` or `removing`.
        action: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("the finalizer {FINALIZER} cannot be used on this object: {0}")]
    FinalizerUnusable(String),
    #[error("cannot start the webhook receiver: {0}")]
    WebhookStartup(#[source] std::io::Error),
    #[error("cannot start leader election: {0}")]
    LeaderElection(#[from] leader::SettingsError),
    #[error(
        "leadership was lost; in-flight reconciles were cancelled so that a new leader takes over alone"
    )]
    LostLeadership,
}

impl Error {
    /// The `error` label of `driftless_reconcile_errors_total`: a fixed set.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Cleanup { .. } => "cleanup",
            Error::Finalizer { .. } | Error::FinalizerUnusable(_) => "finalizer",
            Error::WebhookStartup(_) | Error::LeaderElection(_) => "startup",
            Error::LostLeadership => "lost_leadership",
        }
    }
}

/// What every reconcile shares.
pub struct Context {
    /// The controller's own connection settings, the base of impersonating clients.
    config: kube::Config,
    client: Client,
    source: SourceEngine,
    applier: Applier,
    renderer: Renderer,
    settings: Settings,
    metrics: Metrics,
    recorder: Recorder,
    failures: FailureCounts,
    /// Consecutive failed clean-ups on deletion, which bound how long a finalizer is kept.
    cleanup_failures: FailureCounts,
    /// Revisions applied and waiting to become healthy, checked again at each requeue.
    health_waits: health::HealthWaits,
    /// Pushes this replica received, for the reconciles they start.
    pushes: Arc<pushes::Pushes>,
    /// What the last full reconcile of each object applied.
    applied: unchanged::AppliedDigests,
    /// The objects of manifest files already read, by blob id (bounded; see its module).
    parsed: crate::manifests::ParsedCache,
    /// The commit statuses posted in the background, each state once.
    commit_statuses: crate::commit_status::Notifier,
    /// The alerts sent in the background, each event once per revision.
    alerts: crate::alerts::Alerts,
    /// Every GitRepository watched, for the dependency graph.
    repositories: Store<GitRepository>,
    /// Watches of the kinds other than GitRepository that `dependsOn` entries wait for.
    dependency_watches: dependency_watches::DependencyWatches,
}

/// Runs the controller until SIGTERM or Ctrl-C.
pub async fn run(config: kube::Config, settings: Settings, metrics: Metrics) -> Result<(), Error> {
    let client = Client::try_from(config.clone())?;
    let (repositories, secrets, configmaps): (
        Api<GitRepository>,
        Api<PartialObjectMeta<Secret>>,
        Api<PartialObjectMeta<ConfigMap>>,
    ) = match &settings.namespace {
        Some(namespace) => (
            Api::namespaced(client.clone(), namespace),
            Api::namespaced(client.clone(), namespace),
            Api::namespaced(client.clone(), namespace),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    // Every replica receives webhooks; only the leader reconciles.
    let (pushes, queued_pushes) = pushes::Pushes::new();
    let pushes = Arc::new(pushes);
    let (previews, preview_jobs) = preview::Previews::new();
    if let Some(webhook) = settings.webhook.clone() {
        let tokens = webhooks::TokenReader {
            config: config.clone(),
            client: client.clone(),
            settings: settings.clone(),
        };
        webhooks::start(
            tokens,
            repositories.clone(),
            webhook,
            pushes.clone(),
            Arc::new(previews),
            metrics.clone(),
        )
        .map_err(Error::WebhookStartup)?;
    }
    let leadership = match settings.leader_election.clone() {
        Some(election) => Some(Arc::new(Leadership::new(client.clone(), election)?)),
        None => None,
    };
    let renewal = match &leadership {
        Some(leadership) => {
            let renewed = leadership.acquire().await;
            Some(leadership.clone().keep_renewing(renewed))
        }
        None => None,
    };
    let (store, writer) = reflector::store();
    let (dependency_watches, woken_dependents) = dependency_watches::DependencyWatches::new(
        client.clone(),
        settings.namespace.clone(),
        store.clone(),
    );
    let context = Arc::new(Context {
        config,
        source: SourceEngine::new(
            &settings.git_cache_dir,
            settings.source_limits,
            settings.git_stall_timeout,
        ),
        applier: Applier::new(client.clone()),
        renderer: Renderer::new(render_settings(&settings), metrics.clone()).await,
        recorder: Recorder::new(client.clone(), "driftless".into()),
        failures: FailureCounts::default(),
        cleanup_failures: FailureCounts::default(),
        health_waits: health::HealthWaits::default(),
        pushes: pushes.clone(),
        applied: unchanged::AppliedDigests::default(),
        parsed: crate::manifests::ParsedCache::default(),
        commit_statuses: crate::commit_status::Notifier::start(
            crate::commit_status::StatusClient::new(settings.commit_status_retry),
            metrics.clone(),
        ),
        alerts: crate::alerts::Alerts::start(
            crate::commit_status::StatusClient::new(settings.commit_status_retry),
            metrics.clone(),
        ),
        repositories: store.clone(),
        dependency_watches,
        client,
        settings: settings.clone(),
        metrics,
    });
    // Stops with the controller; in tests several controllers share one process.
    let _eviction = tokio_util::task::AbortOnDropHandle::new(tokio::spawn({
        let context = context.clone();
        async move { context.source.keep_evicting().await }
    }));
    let _previews = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(preview::run_previews(
        context.clone(),
        preview_jobs,
    )));
    // The dependents of a GitRepository are reconciled as soon as its readiness changes: a
    // watch of its own, filtered to those changes, so no status write of another kind wakes
    // anything.
    let readiness_changes = watcher(repositories.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .predicate_filter(dependencies::readiness_hash, PredicateConfig::default());
    let deletions = deletion_order::deletions(repositories.clone());
    let changes = watcher(repositories, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(wants_reconcile, PredicateConfig::default());
    let controller = Controller::for_stream(changes, store.clone());
    let reconciling = controller
        .with_config(kube::runtime::controller::Config::default().concurrency(settings.concurrency))
        // A changed Secret or ConfigMap re-runs the GitRepositories that use it, so a Secret
        // created after its GitRepository unblocks it at once, a rotated webhook token shows
        // in the status at once, and changed variables or values are applied without a push.
        // Metadata-only watches: the controller never holds every Secret's data in memory; a
        // reconcile reads the few it uses.
        .watches_stream(metadata_changes(secrets), {
            let store = store.clone();
            move |secret| users_of(&store, "Secret", &secret)
        })
        .watches_stream(metadata_changes(configmaps), {
            let store = store.clone();
            move |configmap| users_of(&store, "ConfigMap", &configmap)
        })
        .watches_stream(readiness_changes, {
            let store = store.clone();
            move |dependency| dependencies::dependents_of(&store, &dependency)
        })
        // A dependency deleted with its dependents prunes once they are gone: their deletion
        // wakes it.
        .watches_stream(deletions, {
            let store = store.clone();
            move |dependent| deletion_order::dependencies_being_deleted(&store, &dependent)
        })
        .reconcile_on(woken_dependents)
        .reconcile_on(priority::in_order(
            queued_pushes,
            context.clone(),
            store.clone(),
        ))
        .graceful_shutdown_on(termination_signal())
        .run(reconcile_with_finalizer, error_policy, context);
    // From here this replica leads (or there is no election): pushes go to its queue.
    pushes.start_leading();
    let reconciling = reconciling.for_each(|result| async move {
        match result {
            Ok(_) => {}
            // The watch restarts by itself (e.g. after "too old resource version").
            Err(ControllerError::QueueError(error)) => {
                info!(%error, "GitRepository watch interrupted; resuming")
            }
            Err(ControllerError::ObjectNotFound(object)) => {
                info!(%object, "skipped a reconcile of a deleted GitRepository")
            }
            // Logged with its object by `error_policy`.
            Err(ControllerError::ReconcilerFailed(..)) => {}
            Err(error) => warn!(%error, "reconcile failed"),
        }
    });
    // Losing the Lease drops every in-flight reconcile at once, applies included: a graceful
    // drain would keep writing while another replica may already lead.
    tokio::select! {
        _ = reconciling => {}
        _ = leadership_lost(renewal.as_ref().map(|r| r.leading.clone())) => {
            warn!("leadership lost: in-flight reconciles cancelled");
            return Err(Error::LostLeadership);
        }
    }
    if let (Some(leadership), Some(renewal)) = (leadership, renewal) {
        renewal.stop();
        leadership.release().await;
    }
    Ok(())
}

/// Every change (resource version) of the objects `api` lists; an `Api` of
/// `PartialObjectMeta` lists and watches metadata only.
fn metadata_changes<K>(
    api: Api<PartialObjectMeta<K>>,
) -> impl futures::Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send
where
    PartialObjectMeta<K>:
        kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    watcher(api, watcher::Config::default())
        .default_backoff()
        .touched_objects()
}

/// The GitRepositories of `object`'s namespace that read it (`kind` `Secret` or `ConfigMap`).
fn users_of(
    store: &Store<GitRepository>,
    kind: &str,
    object: &impl kube::Resource,
) -> Vec<ObjectRef<GitRepository>> {
    let namespace = object.namespace();
    let name = object.name_any();
    store
        .state()
        .into_iter()
        .filter(|repository| {
            repository.namespace() == namespace
                && ((kind == "Secret" && uses_secret(repository, &name))
                    || render::renders_from(&repository.spec, kind, &name))
        })
        .map(|repository| ObjectRef::from_obj(&*repository))
        .collect()
}

/// Whether `repository` reads Secret `name` of its namespace: its git credentials, or its
/// webhook token (whose rotation changes `status.webhookPath`).
fn uses_secret(repository: &GitRepository, name: &str) -> bool {
    let credentials = repository.spec.secret_ref.as_ref();
    let webhook = repository.spec.webhook.as_ref().map(|w| &w.secret_ref);
    credentials.is_some_and(|r| r.name == name) || webhook.is_some_and(|r| r.name == name)
}

/// The render settings, bounded by the same tree limits as the manifest files.
fn render_settings(settings: &Settings) -> RenderSettings {
    let tree = settings.source_limits.tree;
    RenderSettings {
        input_limits: InputLimits {
            max_file_bytes: tree.max_file_bytes,
            max_total_bytes: tree.max_total_bytes,
            max_files: tree.max_files,
            ..settings.render.input_limits
        },
        ..settings.render.clone()
    }
}

/// What, in a GitRepository's change, asks for a reconcile: the spec (generation), the
/// reconcile-requested annotation, the start of deletion, the finalizers. Status
/// writes, the controller's own included, are left out: reacting to them would re-run every
/// reconcile once more, possibly on a cache that has not seen the write yet.
fn wants_reconcile(repository: &GitRepository) -> Option<u64> {
    let requested = |r: &GitRepository| {
        let value = r.annotations().get(RECONCILE_REQUESTED_AT);
        Some(predicate_hash(&(
            value,
            r.metadata.deletion_timestamp.is_some(),
        )))
    };
    predicates::generation
        .combine(requested)
        .combine(predicates::finalizers)
        .hash_property(repository)
}

pub(super) fn predicate_hash(value: &impl std::hash::Hash) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(value)
}

/// Completes when `leading` turns false (or its renewal loop is gone); never without leader
/// election.
async fn leadership_lost(leading: Option<watch::Receiver<bool>>) {
    match leading {
        Some(mut leading) => {
            let _ = leading.wait_for(|leading| !leading).await;
        }
        None => std::future::pending().await,
    }
}

/// Completes on SIGTERM or Ctrl-C; in-flight reconciles then finish before the controller
/// stops.
async fn termination_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM can be watched");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    info!("shutting down on signal");
}

/// Adds the finalizer before the first apply, and runs the clean-up when the object is deleted.
async fn reconcile_with_finalizer(
    repository: Arc<GitRepository>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    use kube::runtime::finalizer::{Error as FinalizerError, Event, finalizer};
    let namespace = repository.namespace().unwrap_or_default();
    let api: Api<GitRepository> = Api::namespaced(context.client.clone(), &namespace);
    if let Some(waiting) = deletion_order::wait_for_dependents(&repository, &context).await? {
        return Ok(waiting);
    }
    finalizer(&api, FINALIZER, repository, |event| async {
        match event {
            Event::Apply(repository) => {
                reconcile::reconcile_repository(repository, context.clone()).await
            }
            Event::Cleanup(repository) => finalizer::cleanup(&repository, &context).await,
        }
    })
    .await
    .map_err(|error| match error {
        // The reconcile's and the clean-up's own errors pass through, so that each is counted
        // and logged as what it is.
        FinalizerError::ApplyFailed(error) | FinalizerError::CleanupFailed(error) => error,
        FinalizerError::AddFinalizer(source) => Error::Finalizer {
            action: "adding",
            source,
        },
        FinalizerError::RemoveFinalizer(source) => Error::Finalizer {
            action: "removing",
            source,
        },
        other => Error::FinalizerUnusable(other.to_string()),
    })
}

/// An error ended the reconcile before its outcome reached the status: counted, logged with
/// the object, and retried soon.
fn error_policy(repository: Arc<GitRepository>, error: &Error, context: Arc<Context>) -> Action {
    let namespace = repository.namespace().unwrap_or_default();
    let name = repository.name_any();
    context.metrics.count_reconcile_error(error.kind());
    warn!(namespace, name, %error, kind = error.kind(), "reconcile error; retrying");
    Action::requeue(jittered(
        context
            .settings
            .default_interval
            .min(Duration::from_secs(30)),
    ))
}
