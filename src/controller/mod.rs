//! The reconcile loop over `GitRepository` objects. It composes [`crate::source`],
//! [`crate::manifests`] and [`crate::apply`]; the controller issue fills in the steps.

pub mod conditions;

use std::{path::PathBuf, sync::Arc, time::Duration};

use futures::StreamExt;
use kube::{
    Api, Client, ResourceExt,
    runtime::{Controller, controller::Action, watcher},
};
use tracing::{info, warn};

use crate::{api::GitRepository, source::Limits};

/// Settings of a controller process, filled from the command line.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How many GitRepositories are reconciled at the same time.
    pub concurrency: u16,
    /// Polling interval for objects that do not set `spec.interval`.
    pub default_interval: Duration,
    /// Directory of the persistent repository cache.
    pub git_cache_dir: PathBuf,
    /// Longest a git server may stay silent.
    pub git_stall_timeout: Duration,
    /// What one fetch and one revision may bring in.
    pub source_limits: Limits,
}

/// Errors that end one reconcile; they are reported and the object is retried.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
}

struct Context {
    settings: Settings,
}

/// Runs the controller until SIGTERM or Ctrl-C.
pub async fn run(client: Client, settings: Settings) {
    let repositories: Api<GitRepository> = Api::all(client);
    let config = kube::runtime::controller::Config::default().concurrency(settings.concurrency);
    let context = Arc::new(Context { settings });
    Controller::new(repositories, watcher::Config::default())
        .with_config(config)
        .shutdown_on_signal()
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            if let Err(error) = result {
                warn!(%error, "reconcile failed");
            }
        })
        .await;
}

async fn reconcile(repository: Arc<GitRepository>, context: Arc<Context>) -> Result<Action, Error> {
    info!(
        namespace = repository.namespace().unwrap_or_default(),
        name = repository.name_any(),
        url = repository.spec.url,
        "observed GitRepository"
    );
    Ok(Action::requeue(context.settings.default_interval))
}

fn error_policy(_: Arc<GitRepository>, _: &Error, context: Arc<Context>) -> Action {
    Action::requeue(context.settings.default_interval)
}
