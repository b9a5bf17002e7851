//! Pruning after a successful apply, and on deletion of the GitRepository (the finalizer).

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, ResourceExt,
    runtime::{controller::Action, events::EventType},
};
use tracing::{info, warn};

use super::{
    Context, Error,
    conditions::Reason,
    events,
    reconcile::{Failure, applier_for},
};
use crate::{
    api::{GitRepository, InventoryEntry},
    apply::{
        Applier, ApplyReport, PruneReport,
        inventory::{PruneGuards, plan_prune},
        inventory_of,
    },
};

pub use crate::api::FINALIZER;

/// Deletes the objects of the previous inventory that the new revision no longer has, when
/// `spec.prune` allows, and returns the inventory to record.
pub(super) async fn prune_stale(
    repository: &GitRepository,
    namespace: &str,
    context: &Context,
    applier: &Applier,
    report: &ApplyReport,
) -> Result<(Vec<InventoryEntry>, PruneReport), Failure> {
    let applied = inventory_of(report);
    let previous = previous_inventory(repository);
    if repository.spec.prune == Some(false) {
        return Ok((applied, PruneReport::default()));
    }
    let guards = PruneGuards {
        allow_empty_revision: repository.spec.prune_empty == Some(true),
        protected_namespaces: protected_namespaces(namespace, context),
    };
    let plan = plan_prune(previous, &applied, &guards);
    if let Some(refusal) = plan.refused {
        let failure = Failure::new(Reason::PruneFailed, format!("prune refused: {refusal}"));
        return Err(failure.keeping(previous.to_vec()));
    }
    let pruned = applier
        .prune(&plan.delete, &repository.name_any(), namespace)
        .await
        .map_err(|error| {
            // Keep the old entries so the next reconcile retries what could not be deleted.
            let mut retry = applied.clone();
            retry.extend(
                previous
                    .iter()
                    .filter(|e| !applied.iter().any(|a| a.id == e.id))
                    .cloned(),
            );
            Failure::new(Reason::PruneFailed, error).keeping(retry)
        })?;
    Ok((applied, pruned))
}

fn previous_inventory(repository: &GitRepository) -> &[InventoryEntry] {
    repository
        .status
        .as_ref()
        .map(|s| s.inventory.as_slice())
        .unwrap_or_default()
}

/// Namespaces never pruned: the GitRepository's own and the controller's.
fn protected_namespaces(namespace: &str, context: &Context) -> Vec<String> {
    let mut protected = vec![namespace.to_owned()];
    protected.extend(context.settings.controller_namespace.clone());
    protected
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
    // A GitRepository created again under this name starts without the old one's backoff.
    context.failures.clear(&namespace, &name);
    let inventory = previous_inventory(repository);
    if repository.spec.prune == Some(false)
        || repository.spec.suspend == Some(true)
        || inventory.is_empty()
        || namespace_is_terminating(context, &namespace).await
    {
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
            .map_err(|error| error.to_string()),
        Err(failure) => Err(failure.message),
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

/// A failed clean-up is retried (the error requeues it) until [`CLEANUP_ATTEMPTS`] have
/// failed; then the finalizer is released, objects left in place, and a Warning says so.
async fn give_up_after_attempts(
    repository: &GitRepository,
    context: &Context,
    reason: String,
) -> Result<Action, Error> {
    let namespace = repository.namespace().unwrap_or_default();
    let name = repository.name_any();
    let attempts = context.cleanup_failures.record(&namespace, &name);
    if attempts < CLEANUP_ATTEMPTS {
        return Err(Error::Cleanup(format!(
            "attempt {attempts} of {CLEANUP_ATTEMPTS}: {reason}"
        )));
    }
    context.cleanup_failures.clear(&namespace, &name);
    let note = format!(
        "Pruning on deletion failed {attempts} times; releasing the finalizer and leaving the \
         remaining objects in place: {reason}"
    );
    warn!(namespace, name, reason, "clean-up abandoned");
    events::publish(
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
