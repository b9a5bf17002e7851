//! The finalizer: on deletion of a GitRepository, prune what it applied (unless `spec.prune`
//! is false or it is suspended), and release the finalizer when done, or after
//! [`CLEANUP_ATTEMPTS`] failed attempts.

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, ResourceExt,
    runtime::{controller::Action, events::EventType},
};
use tracing::{info, warn};

use super::{
    Context, Error,
    identity::applier_for,
    prune::{previous_inventory, protected_namespaces},
    report,
};
use crate::{
    api::GitRepository,
    apply::{
        ApplyError,
        inventory::{PruneGuards, plan_prune},
    },
};

/// Why pruning on deletion failed.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error(transparent)]
    Prune(#[from] ApplyError),
    /// No client to prune with (e.g. impersonation could not be set up).
    #[error("{0}")]
    Identity(String),
}

/// How many failed clean-ups on deletion keep the finalizer; after that the GitRepository is
/// released and what it applied stays, so that a ServiceAccount that lost its rights cannot
/// leave it Terminating forever.
pub(super) const CLEANUP_ATTEMPTS: u32 = 5;

/// On deletion: with `prune` (the default) delete everything in the inventory; otherwise, or
/// while suspended, leave it all in place. The finalizer stays until that has succeeded, or
/// until [`CLEANUP_ATTEMPTS`] attempts have failed.
pub(super) async fn cleanup(
    repository: &GitRepository,
    context: &Context,
) -> Result<Action, Error> {
    let namespace = repository.namespace().unwrap_or_default();
    let name = repository.name_any();
    context.metrics.forget(&namespace, &name);
    context.health_waits.forget(&namespace, &name);
    context.applied.forget(&namespace, &name);
    context
        .commit_statuses
        .forget(&crate::commit_status::ObjectKey {
            namespace: namespace.clone(),
            name: name.clone(),
        });
    context.alerts.forget(&namespace, &name);
    // A GitRepository created again under this name starts without the old one's backoff.
    context.failures.clear(&namespace, &name);
    let inventory = previous_inventory(repository);
    if leaves_objects_in_place(repository, context).await {
        info!(
            namespace,
            name,
            objects = inventory.len(),
            "deleted; leaving applied objects in place"
        );
        return Ok(Action::await_change());
    }
    let guards = PruneGuards {
        allow_empty_revision: true,
        protected_namespaces: protected_namespaces(&namespace, context),
    };
    let plan = plan_prune(inventory, &[], &guards);
    let pruned = match applier_for(repository, &namespace, context) {
        Ok(applier) => applier
            .prune(&plan.delete, &name, &namespace)
            .await
            .map_err(CleanupError::Prune),
        Err(failure) => Err(CleanupError::Identity(failure.message)),
    };
    match pruned {
        Ok(pruned) => {
            context.cleanup_failures.clear(&namespace, &name);
            context
                .metrics
                .objects_pruned
                .inc_by(pruned.deleted.len() as u64);
            info!(
                namespace,
                name,
                deleted = pruned.deleted.len(),
                "deleted with its objects"
            );
            Ok(Action::await_change())
        }
        Err(reason) => give_up_after_attempts(repository, context, reason).await,
    }
}

/// Whether deleting `repository` leaves what it applied in place: pruning off, suspended,
/// nothing applied, or its namespace going away with everything in it.
pub(super) async fn leaves_objects_in_place(repository: &GitRepository, context: &Context) -> bool {
    repository.spec.prune == Some(false)
        || repository.spec.suspend == Some(true)
        || previous_inventory(repository).is_empty()
        || namespace_is_terminating(context, &repository.namespace().unwrap_or_default()).await
}

/// A failed clean-up is retried (the error requeues it) until [`CLEANUP_ATTEMPTS`] have
/// failed; then the finalizer is released, objects left in place, and a Warning says so.
async fn give_up_after_attempts(
    repository: &GitRepository,
    context: &Context,
    reason: CleanupError,
) -> Result<Action, Error> {
    let namespace = repository.namespace().unwrap_or_default();
    let name = repository.name_any();
    let attempts = context.cleanup_failures.record(&namespace, &name);
    if attempts < CLEANUP_ATTEMPTS {
        return Err(Error::Cleanup {
            attempt: attempts,
            attempts: CLEANUP_ATTEMPTS,
            source: reason,
        });
    }
    context.cleanup_failures.clear(&namespace, &name);
    let note = format!(
        "Pruning on deletion failed {attempts} times; releasing the finalizer and leaving the \
         remaining objects in place: {reason}"
    );
    warn!(namespace, name, %reason, "clean-up abandoned");
    report::publish(
        &context.recorder,
        repository,
        EventType::Warning,
        "CleanupAbandoned",
        note,
    )
    .await;
    Ok(Action::await_change())
}

/// When the GitRepository's own namespace is being deleted, Kubernetes removes its objects;
/// objects elsewhere are still pruned through the normal path only if the namespace lives.
async fn namespace_is_terminating(context: &Context, namespace: &str) -> bool {
    let namespaces: Api<Namespace> = Api::all(context.client.clone());
    matches!(namespaces.get_opt(namespace).await, Ok(Some(ns)) if ns.metadata.deletion_timestamp.is_some())
}
