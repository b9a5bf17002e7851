//! What a finished reconcile records, decided from the previous status alone: pure, so each
//! rule has a unit test.
//!
//! - A resync that found nothing to do keeps the message and counts of the last apply that did
//!   something: a message saying "N unchanged" would rewrite every status at the first poll
//!   after each apply (1,000 writes when 1,000 objects restart).
//! - A failure only the user can fix is Stalled; any other is Failed, and retried.
//! - A failure after objects were applied (a prune that failed, a health check) records the
//!   inventory it carries, so the next reconcile still knows, and retries, what it owns.

use super::{conditions::Outcome, converged::Converged, failure::Failure, status::ready_message};
use crate::api::{
    ApplyCounts, DependenciesReady, GitRepositoryStatus, InventoryEntry, LastWebhook,
};

/// The status a finished reconcile writes: its conditions and the fields it sets.
#[derive(Debug, PartialEq)]
pub(super) struct Decision {
    pub(super) outcome: Outcome,
    /// Recorded as fetched and attempted.
    attempted: Option<String>,
    applied: Option<Applied>,
    inventory: Option<Vec<InventoryEntry>>,
    /// `None` keeps the counts of the last apply that did something.
    last_apply: Option<ApplyCounts>,
    webhook_path: Option<String>,
    /// The push delivery that started this reconcile, recorded with its status.
    delivery: Option<LastWebhook>,
    /// `None` keeps the record as it was.
    dependencies_ready: Option<DependenciesReady>,
}

#[derive(Debug, PartialEq)]
struct Applied {
    revision: String,
    commit_time: String,
    renderer: Option<String>,
}

/// The status after `converged`, given the status before it.
pub(super) fn after_success(
    previous: Option<&GitRepositoryStatus>,
    converged: &Converged,
    webhook_path: Option<String>,
    delivery: Option<LastWebhook>,
) -> Decision {
    let revision = &converged.revision;
    let applied_before = previous.and_then(|s| s.last_applied_revision.as_deref());
    let resync = !converged.changed_anything() && applied_before == Some(revision.as_str());
    let message = resync
        .then(|| ready_message(previous))
        .flatten()
        .unwrap_or_else(|| converged.summary());
    Decision {
        outcome: Outcome::Ready { message },
        attempted: Some(revision.clone()),
        applied: Some(Applied {
            revision: revision.clone(),
            commit_time: converged.commit_time.clone(),
            renderer: converged.renderer.clone(),
        }),
        inventory: Some(converged.inventory.clone()),
        last_apply: (!resync).then(|| converged.counts()),
        webhook_path,
        delivery,
        dependencies_ready: converged.dependencies_ready.clone(),
    }
}

/// The status after `failure`: the last applied revision stays as it was.
pub(super) fn after_failure(
    failure: &Failure,
    webhook_path: Option<String>,
    delivery: Option<LastWebhook>,
) -> Decision {
    let (reason, message) = (failure.reason, failure.message.clone());
    let outcome = if failure.stalled {
        Outcome::Stalled { reason, message }
    } else {
        Outcome::Failed { reason, message }
    };
    Decision {
        outcome,
        attempted: failure.revision.clone(),
        applied: None,
        inventory: failure.inventory.clone(),
        last_apply: None,
        webhook_path,
        delivery,
        dependencies_ready: None,
    }
}

impl Decision {
    /// Sets the fields this decision owns; the conditions come from [`Decision::outcome`].
    pub(super) fn apply_to(&self, status: &mut GitRepositoryStatus) {
        status.webhook_path = self.webhook_path.clone();
        if let Some(revision) = &self.attempted {
            status.last_fetched_revision = Some(revision.clone());
            status.last_attempted_revision = Some(revision.clone());
        }
        if let Some(applied) = &self.applied {
            status.last_applied_revision = Some(applied.revision.clone());
            status.last_applied_commit_time = Some(applied.commit_time.clone());
            status.last_applied_renderer = applied.renderer.clone();
        }
        if let Some(inventory) = &self.inventory {
            status.inventory = inventory.clone();
        }
        if let Some(counts) = &self.last_apply {
            status.last_apply = Some(counts.clone());
        }
        if let Some(delivery) = &self.delivery {
            status.last_webhook = Some(delivery.clone());
        }
        if let Some(ready) = &self.dependencies_ready {
            status.dependencies_ready = Some(ready.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::{
        apply::{ApplyReport, ObjectRef, PruneReport},
        controller::conditions::{Reason, conditions_for},
    };

    const REVISION: &str = "main@sha1:0123";

    fn entry(id: &str) -> InventoryEntry {
        InventoryEntry {
            id: id.into(),
            version: "v1".into(),
        }
    }

    fn object() -> ObjectRef {
        ObjectRef {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("a".into()),
            name: "app".into(),
        }
    }

    fn converged(writes: usize, pruned: usize) -> Converged {
        let report = ApplyReport {
            writes,
            configured: vec![object(); writes],
            unchanged: vec![object(); 3 - writes.min(3)],
            ..ApplyReport::default()
        };
        Converged {
            revision: REVISION.into(),
            commit_time: "2025-01-02T03:04:05Z".into(),
            report,
            pruned: PruneReport {
                deleted: vec![object(); pruned],
                ..PruneReport::default()
            },
            inventory: vec![entry("a")],
            renderer: None,
            digest: "d".into(),
            compared_at: None,
            dependencies_ready: None,
        }
    }

    /// A status after an apply of [`REVISION`] that said `message`.
    fn applied_before(message: &str) -> GitRepositoryStatus {
        let ready = Outcome::Ready {
            message: message.into(),
        };
        GitRepositoryStatus {
            conditions: conditions_for(&ready, &[], 1, Time(jiff::Timestamp::now())),
            last_applied_revision: Some(REVISION.into()),
            last_apply: Some(ApplyCounts {
                applied: 2,
                ..ApplyCounts::default()
            }),
            ..GitRepositoryStatus::default()
        }
    }

    #[test]
    fn a_resync_that_changed_nothing_keeps_the_message_and_counts() {
        let previous = applied_before("Applied revision main@sha1:0123: 2 configured");
        let decision = after_success(Some(&previous), &converged(0, 0), None, None);
        assert_eq!(
            decision.outcome,
            Outcome::Ready {
                message: "Applied revision main@sha1:0123: 2 configured".into()
            }
        );
        let mut status = previous.clone();
        decision.apply_to(&mut status);
        assert_eq!(status.last_apply, previous.last_apply);
    }

    #[test]
    fn an_apply_that_wrote_or_pruned_reports_its_own_summary_and_counts() {
        let previous = applied_before("an older message");
        for (writes, pruned) in [(1, 0), (0, 1)] {
            let done = converged(writes, pruned);
            let decision = after_success(Some(&previous), &done, None, None);
            assert_eq!(
                decision.outcome,
                Outcome::Ready {
                    message: done.summary()
                }
            );
            let mut status = previous.clone();
            decision.apply_to(&mut status);
            assert_eq!(status.last_apply, Some(done.counts()));
        }
    }

    #[test]
    fn a_new_revision_that_changed_nothing_still_reports_its_summary() {
        let mut previous = applied_before("old");
        previous.last_applied_revision = Some("main@sha1:ffff".into());
        let done = converged(0, 0);
        let decision = after_success(Some(&previous), &done, Some("/hooks/x".into()), None);
        let mut status = previous;
        decision.apply_to(&mut status);
        assert_eq!(status.last_applied_revision.as_deref(), Some(REVISION));
        assert_eq!(status.last_attempted_revision.as_deref(), Some(REVISION));
        assert_eq!(status.last_apply, Some(done.counts()));
        assert_eq!(status.webhook_path.as_deref(), Some("/hooks/x"));
    }

    #[test]
    fn only_a_failure_the_user_must_fix_stalls() {
        let failed = Failure::new(Reason::GitOperationFailed, "timed out");
        assert!(matches!(
            after_failure(&failed, None, None).outcome,
            Outcome::Failed {
                reason: Reason::GitOperationFailed,
                ..
            }
        ));
        let stalled = Failure::new(Reason::SecretNotFound, "no Secret").stalled();
        assert!(matches!(
            after_failure(&stalled, None, None).outcome,
            Outcome::Stalled {
                reason: Reason::SecretNotFound,
                ..
            }
        ));
    }

    #[test]
    fn a_failure_keeps_the_applied_revision_and_records_only_what_it_carries() {
        let previous = applied_before("ok");
        let bare = Failure::new(Reason::GitOperationFailed, "unreachable");
        let mut status = GitRepositoryStatus {
            inventory: vec![entry("old")],
            ..previous.clone()
        };
        after_failure(&bare, None, None).apply_to(&mut status);
        assert_eq!(status.inventory, vec![entry("old")]);
        assert_eq!(status.last_applied_revision.as_deref(), Some(REVISION));
        assert_eq!(status.last_attempted_revision, None);

        let prune_failed = Failure::new(Reason::PruneFailed, "forbidden")
            .at("main@sha1:4567")
            .keeping(vec![entry("new"), entry("old")]);
        after_failure(&prune_failed, None, None).apply_to(&mut status);
        assert_eq!(status.inventory, vec![entry("new"), entry("old")]);
        assert_eq!(
            status.last_attempted_revision.as_deref(),
            Some("main@sha1:4567")
        );
        assert_eq!(status.last_applied_revision.as_deref(), Some(REVISION));
    }
}
