//! Writing the status: only when it changed, with exactly the fields the reconciler owns, and
//! `Reconciling` before work worth announcing.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, ResourceExt};
use serde_json::json;

use super::{
    Error,
    conditions::{Outcome, READY, conditions_for},
};
use crate::{
    api::{GitRepository, GitRepositoryStatus, RECONCILE_REQUESTED_AT},
    apply::FIELD_MANAGER,
};

/// Writes the status only when it changed, so a steady state costs no writes; returns the
/// object as written, or `None` when nothing needed writing.
pub(super) async fn write_status(
    api: &Api<GitRepository>,
    repository: &GitRepository,
    outcome: &Outcome,
    update: impl FnOnce(&mut GitRepositoryStatus),
) -> Result<Option<GitRepository>, Error> {
    let previous = repository.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    let generation = repository.metadata.generation.unwrap_or_default();
    let now = Time(jiff::Timestamp::now());
    status.conditions = conditions_for(outcome, &previous.conditions, generation, now);
    status.observed_generation = Some(generation);
    status.last_handled_reconcile_at = repository
        .annotations()
        .get(RECONCILE_REQUESTED_AT)
        .cloned();
    update(&mut status);
    if status == previous {
        return Ok(None);
    }
    let written = api
        .patch_status(
            &repository.name_any(),
            &kube::api::PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..Default::default()
            },
            &kube::api::Patch::Merge(status_patch(status, &previous)),
        )
        .await?;
    Ok(Some(written))
}

/// A new revision or a changed spec: work worth announcing with `Reconciling`. A resync of
/// the applied revision is not announced, so a steady state writes no status.
pub(super) fn is_new_work(repository: &GitRepository, revision: &str) -> bool {
    let observed = repository
        .status
        .as_ref()
        .and_then(|s| s.observed_generation);
    repository.applied_revision() != Some(revision) || observed != repository.metadata.generation
}

/// Sets `Reconciling=True` (and `Ready=Unknown`) before applying, and returns the object as
/// written so the final status write compares against what the server now holds.
pub(super) async fn mark_reconciling(
    api: &Api<GitRepository>,
    repository: Arc<GitRepository>,
    revision: &str,
) -> Result<Arc<GitRepository>, Error> {
    let message = format!("Applying revision {revision}");
    let written = write_status(
        api,
        &repository,
        &Outcome::Reconciling { message },
        |status| {
            status.last_fetched_revision = Some(revision.to_owned());
        },
    )
    .await?;
    Ok(written.map(Arc::new).unwrap_or(repository))
}

/// The message of the `Ready=True` condition already recorded, if any.
pub(super) fn ready_message(status: Option<&GitRepositoryStatus>) -> Option<String> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == READY && c.status == "True")
        .map(|c| c.message.clone())
}

/// The status fields the reconciler owns. A merge patch leaves out what serialization skips
/// (an emptied inventory, a removed webhook path), and leaving a key out keeps the old value:
/// each of these that is absent is sent as `null`, which deletes it.
const RECONCILER_STATUS_FIELDS: [&str; 12] = [
    "observedGeneration",
    "conditions",
    "lastFetchedRevision",
    "lastAttemptedRevision",
    "lastAppliedRevision",
    "lastAppliedCommitTime",
    "lastHandledReconcileAt",
    "inventory",
    "lastApply",
    "webhookPath",
    "lastAppliedRenderer",
    "dependenciesReady",
];

/// The merge patch of a status write. `lastWebhook` is written by a replica that received a
/// push and does not lead, which may have recorded a newer delivery than the copy read here:
/// left out unless this write records a delivery itself, a merge patch keeps it.
fn status_patch(
    mut status: GitRepositoryStatus,
    previous: &GitRepositoryStatus,
) -> serde_json::Value {
    if status.last_webhook == previous.last_webhook {
        status.last_webhook = None;
    }
    let mut fields = match serde_json::to_value(status) {
        Ok(serde_json::Value::Object(fields)) => fields,
        _ => serde_json::Map::new(),
    };
    for field in RECONCILER_STATUS_FIELDS {
        fields.entry(field).or_insert(serde_json::Value::Null);
    }
    json!({ "status": fields })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{ApplyCounts, InventoryEntry};

    fn delivery(id: &str) -> crate::api::LastWebhook {
        crate::api::LastWebhook {
            received_at: "2025-01-02T03:04:05Z".into(),
            delivery_id: Some(id.into()),
            provider: "github".into(),
        }
    }

    #[test]
    fn status_writes_mention_the_last_webhook_only_to_record_a_delivery() {
        let read = GitRepositoryStatus {
            last_webhook: Some(delivery("d-1")),
            ..GitRepositoryStatus::default()
        };
        let status = GitRepositoryStatus {
            last_applied_revision: Some("main@sha1:0123".into()),
            ..read.clone()
        };
        let patch = status_patch(status.clone(), &read);
        assert!(patch["status"].get("lastWebhook").is_none(), "{patch}");
        assert_eq!(patch["status"]["lastAppliedRevision"], "main@sha1:0123");

        let recording = GitRepositoryStatus {
            last_webhook: Some(delivery("d-2")),
            ..status
        };
        let patch = status_patch(recording, &read);
        assert_eq!(
            patch["status"]["lastWebhook"]["deliveryId"], "d-2",
            "{patch}"
        );
    }

    #[test]
    fn status_writes_clear_what_the_reconciler_emptied() {
        let empty = GitRepositoryStatus::default();
        let patch = status_patch(empty.clone(), &empty);
        assert_eq!(patch["status"]["inventory"], serde_json::Value::Null);
        assert_eq!(patch["status"]["webhookPath"], serde_json::Value::Null);
        assert!(patch["status"].get("lastWebhook").is_none());
    }

    #[test]
    fn every_status_field_but_the_last_webhook_is_owned_by_the_reconciler() {
        let entry = InventoryEntry {
            id: "a".into(),
            version: "v1".into(),
        };
        let full = GitRepositoryStatus {
            observed_generation: Some(1),
            conditions: conditions_for(&Outcome::Suspended, &[], 1, Time(jiff::Timestamp::now())),
            last_fetched_revision: Some("r".into()),
            last_attempted_revision: Some("r".into()),
            last_applied_revision: Some("r".into()),
            last_applied_commit_time: Some("t".into()),
            last_handled_reconcile_at: Some("n".into()),
            inventory: vec![entry],
            last_apply: Some(ApplyCounts::default()),
            webhook_path: Some("/hooks/x".into()),
            last_webhook: None,
            last_applied_renderer: Some("kustomize v5.8.2".into()),
            dependencies_ready: Some(crate::api::DependenciesReady::default()),
        };
        let serde_json::Value::Object(fields) = serde_json::to_value(full).unwrap() else {
            panic!("a status serializes to an object");
        };
        let mut keys: Vec<&str> = fields.keys().map(String::as_str).collect();
        let mut owned = RECONCILER_STATUS_FIELDS.to_vec();
        keys.sort_unstable();
        owned.sort_unstable();
        assert_eq!(
            keys, owned,
            "a new status field needs a place in RECONCILER_STATUS_FIELDS"
        );
    }
}
