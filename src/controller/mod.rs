//! The reconcile loop over `GitRepository` objects. It composes [`crate::source`] (fetch),
//! [`crate::manifests`] (read and validate) and [`crate::apply`] (server-side apply); none of
//! those modules knows about this one.

pub mod conditions;
mod events;
mod prune;
mod reconcile;

use std::{path::PathBuf, sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, Client, ResourceExt,
    runtime::{Controller, controller::Action, events::Recorder, reflector::ObjectRef, watcher},
};
use tracing::warn;

pub use reconcile::{OWNER_NAME_LABEL, OWNER_NAMESPACE_LABEL, RECONCILE_REQUESTED_AT, jittered};

use crate::{
    api::GitRepository,
    apply::Applier,
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
    /// Watch GitRepositories (and Secrets) of this namespace only; all namespaces when `None`.
    pub namespace: Option<String>,
    /// The namespace the controller runs in; never pruned.
    pub controller_namespace: Option<String>,
}

/// Errors that end one reconcile before its outcome could be recorded; the object is retried.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("cleaning up on deletion: {0}")]
    Cleanup(String),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

/// What every reconcile shares.
pub struct Context {
    /// The controller's own connection settings, the base of impersonating clients.
    config: kube::Config,
    client: Client,
    source: SourceEngine,
    applier: Applier,
    settings: Settings,
    metrics: Metrics,
    recorder: Recorder,
}

/// Runs the controller until SIGTERM or Ctrl-C.
pub async fn run(config: kube::Config, settings: Settings, metrics: Metrics) -> Result<(), Error> {
    let client = Client::try_from(config.clone())?;
    let (repositories, secrets): (Api<GitRepository>, Api<Secret>) = match &settings.namespace {
        Some(namespace) => (
            Api::namespaced(client.clone(), namespace),
            Api::namespaced(client.clone(), namespace),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let controller_config =
        kube::runtime::controller::Config::default().concurrency(settings.concurrency);
    let context = Arc::new(Context {
        config,
        source: SourceEngine::new(
            &settings.git_cache_dir,
            settings.source_limits,
            settings.git_stall_timeout,
        ),
        applier: Applier::new(client.clone()),
        recorder: Recorder::new(client.clone(), "driftless".into()),
        client,
        settings,
        metrics,
    });
    let controller = Controller::new(repositories, watcher::Config::default());
    let store = controller.store();
    controller
        .with_config(controller_config)
        // A changed Secret re-runs the GitRepositories that use it, so a Secret created after
        // its GitRepository unblocks it at once.
        .watches(secrets, watcher::Config::default(), move |secret| {
            let namespace = secret.namespace();
            let name = secret.name_any();
            store
                .state()
                .into_iter()
                .filter(|repository| {
                    repository.namespace() == namespace
                        && repository
                            .spec
                            .secret_ref
                            .as_ref()
                            .is_some_and(|r| r.name == name)
                })
                .map(|repository| ObjectRef::from_obj(&*repository))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(reconcile_with_finalizer, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                warn!(%error, "reconcile failed");
            }
        })
        .await;
    Ok(())
}

/// Adds the finalizer before the first apply, and runs the clean-up when the object is deleted.
async fn reconcile_with_finalizer(
    repository: Arc<GitRepository>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    use kube::runtime::finalizer::{Event, finalizer};
    let namespace = repository.namespace().unwrap_or_default();
    let api: Api<GitRepository> = Api::namespaced(context.client.clone(), &namespace);
    finalizer(&api, prune::FINALIZER, repository, |event| async {
        match event {
            Event::Apply(repository) => {
                reconcile::reconcile_repository(repository, context.clone()).await
            }
            Event::Cleanup(repository) => prune::cleanup(&repository, &context).await,
        }
    })
    .await
    .map_err(|error| Error::Finalizer(error.to_string()))
}

fn error_policy(_: Arc<GitRepository>, _: &Error, context: Arc<Context>) -> Action {
    Action::requeue(jittered(
        context
            .settings
            .default_interval
            .min(Duration::from_secs(30)),
    ))
}
