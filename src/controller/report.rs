//! What a reconcile tells the people and systems watching: Kubernetes Events (events.k8s.io)
//! on the GitRepository, for `kubectl describe` and event collectors, the log, and the
//! metrics. Only changes are announced: a steady resync emits no event, and repeats of one
//! event are folded into one series instead of flooding.
//!
//! kube's recorder folds every event of the same type, reason and action into one series and
//! keeps the first note: a second revision's `NewRevision` would only bump the count of the
//! first one's, and `kubectl get events` would go on showing the first revision. The action
//! therefore carries a digest of the note, so only events that say the same thing are folded.

use std::time::Duration;

use kube::{
    Resource, ResourceExt,
    runtime::events::{Event, EventType, Recorder},
};
use tracing::{debug, info, warn};

use super::{Context, converged::Converged, failure::Failure};
use crate::api::GitRepository;

/// Events, a log line and metrics for a revision applied (and healthy when asked to wait).
pub(super) async fn report_success(
    context: &Context,
    repository: &GitRepository,
    converged: &Converged,
    took: Duration,
) {
    record_success_metrics(context, repository, converged, took);
    info!(
        namespace = repository.namespace().unwrap_or_default(),
        name = repository.name_any(),
        revision = converged.revision,
        summary = converged.summary(),
        "applied"
    );
    announce_success(context, repository, converged).await;
}

/// A Warning event, a log line and metrics for a reconcile that failed.
pub(super) async fn report_failure(
    context: &Context,
    repository: &GitRepository,
    failure: &Failure,
    took: Duration,
) {
    let namespace = repository.namespace().unwrap_or_default();
    let name = repository.name_any();
    let metrics = &context.metrics;
    metrics.observe_reconcile(failure.reason.as_str(), took);
    metrics.set_ready(&namespace, &name, false);
    warn!(
        namespace,
        name,
        reason = failure.reason.as_str(),
        detail = failure.message,
        "reconcile failed"
    );
    publish(
        &context.recorder,
        repository,
        EventType::Warning,
        failure.reason.as_str(),
        failure.message.clone(),
    )
    .await;
}

/// Events for what changed: a new revision, objects written, drift corrected.
async fn announce_success(context: &Context, repository: &GitRepository, converged: &Converged) {
    let report = &converged.report;
    let recorder = &context.recorder;
    if repository.applied_revision() != Some(converged.revision.as_str()) {
        let note = format!("New revision {}", converged.revision);
        publish(recorder, repository, EventType::Normal, "NewRevision", note).await;
    }
    if !report.created.is_empty() || !report.configured.is_empty() {
        let summary = converged.summary();
        publish(recorder, repository, EventType::Normal, "Applied", summary).await;
    }
    if !report.drift_corrected.is_empty() {
        let objects: Vec<String> = report
            .drift_corrected
            .iter()
            .map(ToString::to_string)
            .collect();
        let note = format!("Reverted changes made outside Git: {}", objects.join(", "));
        publish(
            recorder,
            repository,
            EventType::Warning,
            "DriftCorrected",
            note,
        )
        .await;
    }
}

fn record_success_metrics(
    context: &Context,
    repository: &GitRepository,
    converged: &Converged,
    took: Duration,
) {
    let metrics = &context.metrics;
    let report = &converged.report;
    metrics.observe_reconcile("success", took);
    metrics.set_ready(
        &repository.namespace().unwrap_or_default(),
        &repository.name_any(),
        true,
    );
    metrics
        .objects_applied
        .inc_by((report.created.len() + report.configured.len()) as u64);
    metrics
        .objects_drift_corrected
        .inc_by(report.drift_corrected.len() as u64);
    metrics
        .objects_pruned
        .inc_by(converged.pruned.deleted.len() as u64);
    // A new revision that this reconcile wrote: a stale cache replaying it counts nothing.
    let new_revision = repository.applied_revision() != Some(converged.revision.as_str());
    if new_revision && converged.changed_anything() {
        if let Some(lead_time) = seconds_since(&converged.commit_time) {
            metrics.lead_time.observe(lead_time);
        }
    }
}

/// Seconds from an RFC 3339 time to now (lead time: commit to applied).
fn seconds_since(time: &str) -> Option<f64> {
    let then: jiff::Timestamp = time.parse().ok()?;
    let elapsed = jiff::Timestamp::now().duration_since(then);
    Some(elapsed.as_secs_f64().max(0.0))
}

/// Publishes one event; a failure to publish is logged, never fatal to the reconcile.
pub(super) async fn publish(
    recorder: &Recorder,
    repository: &GitRepository,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let note = truncate(note, 1000);
    let event = Event {
        type_,
        reason: reason.to_owned(),
        action: action_for(&note),
        note: Some(note),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, &repository.object_ref(&())).await {
        debug!(%error, reason, "could not publish event");
    }
}

/// `Reconcile/<digest of the note>`: one series per distinct note (see the module comment).
fn action_for(note: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(note.as_bytes());
    let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("Reconcile/{short}")
}

/// Event notes are limited to 1 kB by the API.
fn truncate(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let mut cut = limit - 3;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_notes_are_cut_at_a_character_boundary() {
        assert_eq!(truncate("short".into(), 1000), "short");
        let long = "é".repeat(600);
        let cut = truncate(long, 1000);
        assert!(cut.len() <= 1000 && cut.ends_with("..."));
    }

    #[test]
    fn only_events_with_the_same_note_share_a_series() {
        let first = action_for("New revision main@sha1:0123");
        assert_eq!(first, action_for("New revision main@sha1:0123"));
        assert_ne!(first, action_for("New revision main@sha1:4567"));
        assert!(
            first.starts_with("Reconcile/") && first.len() <= 128,
            "{first}"
        );
    }
}
