//! Kubernetes Events (events.k8s.io) on the GitRepository, for `kubectl describe` and event
//! collectors. Only changes are announced: a steady resync emits nothing, and repeats of one
//! event are folded into one series instead of flooding.
//!
//! kube's recorder folds every event of the same type, reason and action into one series and
//! keeps the first note: a second revision's `NewRevision` would only bump the count of the
//! first one's, and `kubectl get events` would go on showing the first revision. The action
//! therefore carries a digest of the note, so only events that say the same thing are folded.

use kube::{
    Resource,
    runtime::events::{Event, EventType, Recorder},
};
use tracing::debug;

use crate::api::GitRepository;

/// Publishes one event; a failure to publish is logged, never fatal to the reconcile.
pub async fn publish(
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
