//! Pruning after a successful apply: the objects of the previous inventory that the new
//! revision no longer has, within the guards (`spec.prune`, protected namespaces, an empty
//! revision).

use kube::ResourceExt;

use super::{Context, conditions::Reason, failure::Failure};
use crate::{
    api::{GitRepository, InventoryEntry},
    apply::{
        Applier, ApplyReport, PruneReport,
        inventory::{PruneGuards, plan_prune},
        inventory_of,
    },
};

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

pub(super) fn previous_inventory(repository: &GitRepository) -> &[InventoryEntry] {
    repository
        .status
        .as_ref()
        .map(|s| s.inventory.as_slice())
        .unwrap_or_default()
}

/// Namespaces never pruned: the GitRepository's own and the controller's.
pub(super) fn protected_namespaces(namespace: &str, context: &Context) -> Vec<String> {
    let mut protected = vec![namespace.to_owned()];
    protected.extend(context.settings.controller_namespace.clone());
    protected
}
