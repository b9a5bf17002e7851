//! Pushes received by the leading replica go straight into its reconcile queue: no API write
//! per matched object, so a push to a repository that 1,000 GitRepositories follow costs the
//! API nothing until a reconcile finds work. A replica that does not lead still asks through
//! the annotation, which reaches the leader wherever it runs.
//!
//! The reconcile a push started knows it (see [`Pushes::take`]): such a reconcile may end
//! early when the pushed commit leaves the objects to apply as they were (see
//! [`super::unchanged`]), and it records the delivery in `status.lastWebhook` with its own
//! status write.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc;

use crate::{api::GitRepository, api::LastWebhook, sync::lock};

/// The queue between the webhook receiver and the reconcile loop of this process.
pub(super) struct Pushes {
    leading: AtomicBool,
    queue: mpsc::UnboundedSender<ObjectRef<GitRepository>>,
    pending: Mutex<HashMap<(String, String), Pending>>,
}

#[derive(Default)]
struct Pending {
    delivery: Option<LastWebhook>,
    /// When the last push not yet taken was queued: a listing after it shows every one.
    queued_at: Option<Instant>,
}

/// A push that asked for the reconcile now running.
#[derive(Debug, PartialEq)]
pub(super) struct Push {
    /// The delivery to record in `status.lastWebhook`.
    pub(super) delivery: Option<LastWebhook>,
    /// When it was queued: a ref listing after this shows the pushed commit.
    pub(super) queued_at: Instant,
}

/// Why a push could not be queued.
#[derive(Debug, thiserror::Error)]
pub(super) enum QueueError {
    #[error("this replica does not lead")]
    NotLeading,
    #[error("the reconcile loop has stopped")]
    Stopped,
}

pub(super) type Queued = mpsc::UnboundedReceiver<ObjectRef<GitRepository>>;

impl Pushes {
    /// The queue, and the stream of objects to reconcile that the reconcile loop consumes.
    pub(super) fn new() -> (Self, Queued) {
        let (queue, queued) = mpsc::unbounded_channel();
        let pushes = Self {
            leading: AtomicBool::new(false),
            queue,
            pending: Mutex::default(),
        };
        (pushes, queued)
    }

    /// Set once this replica's reconcile loop runs (it leads, or there is no election).
    pub(super) fn start_leading(&self) {
        self.leading.store(true, Ordering::Release);
    }

    pub(super) fn is_leading(&self) -> bool {
        self.leading.load(Ordering::Acquire)
    }

    /// Keeps the delivery for the reconcile it may start; a delivery that starts none is
    /// replaced by the next one and never written.
    pub(super) fn record(&self, namespace: &str, name: &str, delivery: LastWebhook) {
        let mut pending = lock(&self.pending);
        let entry = pending.entry((namespace.to_owned(), name.to_owned()));
        entry.or_default().delivery = Some(delivery);
    }

    /// Queues a reconcile of `namespace/name` started by a push.
    pub(super) fn trigger(&self, namespace: &str, name: &str) -> Result<(), QueueError> {
        if !self.is_leading() {
            return Err(QueueError::NotLeading);
        }
        let key = (namespace.to_owned(), name.to_owned());
        lock(&self.pending).entry(key).or_default().queued_at = Some(Instant::now());
        self.queue
            .send(ObjectRef::new(name).within(namespace))
            .map_err(|_| QueueError::Stopped)
    }

    /// When the push not yet taken for `namespace/name` was queued.
    pub(super) fn queued_at(&self, namespace: &str, name: &str) -> Option<Instant> {
        let key = (namespace.to_owned(), name.to_owned());
        lock(&self.pending).get(&key)?.queued_at
    }

    /// The push that asked for this reconcile, if one did since the last one began.
    pub(super) fn take(&self, namespace: &str, name: &str) -> Option<Push> {
        let key = (namespace.to_owned(), name.to_owned());
        let pending = lock(&self.pending).remove(&key)?;
        Some(Push {
            delivery: pending.delivery,
            queued_at: pending.queued_at?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(id: &str) -> LastWebhook {
        LastWebhook {
            received_at: "2026-12-02T00:00:00Z".into(),
            delivery_id: Some(id.into()),
            provider: "github".into(),
        }
    }

    #[test]
    fn a_replica_that_does_not_lead_queues_nothing() {
        let (pushes, mut queued) = Pushes::new();
        assert!(matches!(
            pushes.trigger("team-a", "app"),
            Err(QueueError::NotLeading)
        ));
        assert!(queued.try_recv().is_err());
        assert_eq!(pushes.take("team-a", "app"), None);
    }

    #[test]
    fn a_queued_push_reaches_its_reconcile_once_with_its_delivery() {
        let (pushes, mut queued) = Pushes::new();
        pushes.start_leading();
        pushes.record("team-a", "app", delivery("d-1"));
        pushes.trigger("team-a", "app").unwrap();
        assert_eq!(
            queued.try_recv().unwrap(),
            ObjectRef::new("app").within("team-a")
        );
        let push = pushes.take("team-a", "app").unwrap();
        assert_eq!(push.delivery, Some(delivery("d-1")));
        assert_eq!(pushes.take("team-a", "app"), None, "taken once");
    }

    #[test]
    fn a_delivery_that_started_no_reconcile_is_not_handed_on() {
        let (pushes, _queued) = Pushes::new();
        pushes.start_leading();
        pushes.record("team-a", "app", delivery("already-applied"));
        assert_eq!(
            pushes.take("team-a", "app"),
            None,
            "an interval reconcile is not a push, and does not record the delivery"
        );
        pushes.record("team-a", "app", delivery("d-2"));
        pushes.trigger("team-a", "app").unwrap();
        let push = pushes.take("team-a", "app").unwrap();
        assert_eq!(push.delivery, Some(delivery("d-2")));
    }
}
