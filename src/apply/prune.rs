//! Deleting what left the repository, in the order the inventory planner chose, and only
//! objects that still carry their owner's labels and have not opted out.

use kube::{
    Api,
    api::{DeleteParams, DynamicObject, GroupVersionKind, Preconditions},
    discovery::Scope,
};

use super::{
    Applier,
    error::{ApplyError, ObjectFailure, reason_of},
    inventory::{InventoryEntry, ObjectKey, may_delete},
    kinds::discovered,
    object::ObjectRef,
    report::ApplyReport,
};

/// What a prune did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub deleted: Vec<ObjectRef>,
    /// Objects left in place, with the reason (opted out, owned by someone else, gone).
    pub skipped: Vec<(ObjectRef, String)>,
}

impl From<&ObjectKey> for ObjectRef {
    fn from(key: &ObjectKey) -> Self {
        let api_version = if key.group.is_empty() {
            key.version.clone()
        } else {
            format!("{}/{}", key.group, key.version)
        };
        ObjectRef {
            api_version,
            kind: key.kind.clone(),
            namespace: key.namespace.clone(),
            name: key.name.clone(),
        }
    }
}

impl From<&ObjectRef> for ObjectKey {
    fn from(reference: &ObjectRef) -> Self {
        let (group, version) = match reference.api_version.split_once('/') {
            Some((group, version)) => (group.to_owned(), version.to_owned()),
            None => (String::new(), reference.api_version.clone()),
        };
        ObjectKey {
            group,
            version,
            kind: reference.kind.clone(),
            namespace: reference.namespace.clone(),
            name: reference.name.clone(),
        }
    }
}

/// The inventory of everything a revision applied (written or found unchanged).
pub fn inventory_of(report: &ApplyReport) -> Vec<InventoryEntry> {
    let mut entries: Vec<InventoryEntry> = report
        .objects()
        .map(|reference| ObjectKey::from(reference).to_entry())
        .collect();
    entries.sort_by(|a, b| a.id.cmp(&b.id));
    entries
}

impl Applier {
    /// An API for the object `key` names, resolved through the discovery cache; `None` when its
    /// kind is not served (any more).
    pub(super) async fn api_for(
        &self,
        key: &ObjectKey,
    ) -> Result<Option<Api<DynamicObject>>, kube::Error> {
        let discovery = self.kinds.current().await?;
        let gvk = GroupVersionKind::gvk(&key.group, &key.version, &key.kind);
        let Some((resource, scope)) = discovered(&discovery, &gvk) else {
            return Ok(None);
        };
        Ok(Some(match (&scope, &key.namespace) {
            (Scope::Namespaced, Some(namespace)) => {
                Api::namespaced_with(self.client.clone(), namespace, &resource)
            }
            _ => Api::all_with(self.client.clone(), &resource),
        }))
    }

    /// Deletes `keys` one after another (the planner's order: namespaced objects before
    /// Namespaces before CRDs), each only if it still carries the owner's labels, not the
    /// `driftless.dev/prune: disabled` annotation, and (for a CRD) `driftless.dev/prune:
    /// enabled`; and only the very object checked (a uid precondition).
    pub async fn prune(
        &self,
        keys: &[ObjectKey],
        owner_name: &str,
        owner_namespace: &str,
    ) -> Result<PruneReport, ApplyError> {
        let mut report = PruneReport::default();
        let mut failures = Vec::new();
        for key in keys {
            let reference = ObjectRef::from(key);
            match self.prune_one(key, owner_name, owner_namespace).await {
                Ok(PruneResult::Deleted) => report.deleted.push(reference),
                Ok(PruneResult::Kept(why)) => report.skipped.push((reference, why.to_string())),
                Err(error) => failures.push(ObjectFailure {
                    origin: "inventory".into(),
                    object: reference,
                    reason: reason_of(&error),
                }),
            }
        }
        if failures.is_empty() {
            Ok(report)
        } else {
            Err(ApplyError::Prune(failures))
        }
    }

    /// Deletes one object unless a guard keeps it; an error is the API's.
    async fn prune_one(
        &self,
        key: &ObjectKey,
        owner_name: &str,
        owner_namespace: &str,
    ) -> Result<PruneResult, kube::Error> {
        let Some(api) = self.api_for(key).await? else {
            return Ok(PruneResult::Kept(KeptBecause::KindNotServed));
        };
        let Some(live) = api.get_opt(&key.name).await? else {
            return Ok(PruneResult::Kept(KeptBecause::AlreadyGone));
        };
        if let Err(why) = may_delete(
            key,
            live.metadata.labels.as_ref().unwrap_or(&Default::default()),
            live.metadata
                .annotations
                .as_ref()
                .unwrap_or(&Default::default()),
            owner_name,
            owner_namespace,
        ) {
            return Ok(PruneResult::Kept(KeptBecause::Guarded(why)));
        }
        match api.delete(&key.name, &delete_only(&live)).await {
            Ok(_) => Ok(PruneResult::Deleted),
            Err(kube::Error::Api(status)) if status.code == 404 => {
                Ok(PruneResult::Kept(KeptBecause::AlreadyGone))
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                Ok(PruneResult::Kept(KeptBecause::Recreated))
            }
            Err(error) => Err(error),
        }
    }
}

/// What pruning did to one object.
enum PruneResult {
    Deleted,
    Kept(KeptBecause),
}

/// Why an object that left the repository is still in the cluster; shown to the user as is.
#[derive(Debug, thiserror::Error)]
enum KeptBecause {
    #[error("its kind is no longer served")]
    KindNotServed,
    #[error("already gone")]
    AlreadyGone,
    #[error(
        "it was deleted and created again after it was checked, so it is not the object \
         driftless applied"
    )]
    Recreated,
    /// Opted out, owned by someone else, or a CRD without its prune opt-in.
    #[error("{0}")]
    Guarded(String),
}

/// A delete of exactly the object `checked`: if the name has since been deleted and created
/// again (by hand, or by another owner), the server refuses with 409 instead of deleting an
/// object the checks never saw.
fn delete_only(checked: &DynamicObject) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions {
            uid: checked.metadata.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    }
}
