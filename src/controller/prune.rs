//! Pruning after a successful apply, and on deletion of the GitRepository (the finalizer).

use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, ResourceExt, runtime::controller::Action};
use tracing::info;

use super::{
    Context, Error,
    conditions::Reason,
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

/// On deletion: with `prune` (the default) delete everything in the inventory; otherwise
/// leave it all in place. The finalizer stays until that has succeeded.
pub(super) async fn cleanup(
    repository: &GitRepository,
    context: &Context,
) -> Result<Action, Error> {
    let namespace = repository.namespace().unwrap_or_default();
    let name = repository.name_any();
    context.metrics.forget(&namespace, &name);
    let inventory = previous_inventory(repository);
    if repository.spec.prune == Some(false)
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
    let applier =
        applier_for(repository, &namespace, context).map_err(|f| Error::Cleanup(f.message))?;
    let pruned = applier
        .prune(&plan.delete, &name, &namespace)
        .await
        .map_err(|error| Error::Cleanup(error.to_string()))?;
    info!(
        namespace,
        name,
        deleted = pruned.deleted.len(),
        "deleted with its objects"
    );
    Ok(Action::await_change())
}

/// When the GitRepository's own namespace is being deleted, Kubernetes removes its objects;
/// objects elsewhere are still pruned through the normal path only if the namespace lives.
async fn namespace_is_terminating(context: &Context, namespace: &str) -> bool {
    let namespaces: Api<Namespace> = Api::all(context.client.clone());
    matches!(namespaces.get_opt(namespace).await, Ok(Some(ns)) if ns.metadata.deletion_timestamp.is_some())
}
