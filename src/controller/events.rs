//! Kubernetes Events (events.k8s.io) on the GitRepository, for `kubectl describe` and event
//! collectors. Only changes are announced: a steady resync emits nothing, and kube's recorder
//! folds repeated identical events into one series instead of flooding.

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
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(truncate(note, 1000)),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, &repository.object_ref(&())).await {
        debug!(%error, reason, "could not publish event");
    }
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
}
