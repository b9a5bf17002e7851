//! Sends alerts in the background, each event once per revision: a table of what each object
//! already announced for its current revision, and one bounded queue drained by one task, so a
//! slow endpoint never holds a reconcile.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
};

use tokio::sync::mpsc;

use super::message::{Alert, Endpoint, alert_request};
use crate::{
    api::AlertEvent, commit_status::StatusClient, sync::lock, telemetry::metrics::Metrics,
};

/// Alerts waiting before new ones are dropped.
const QUEUE_DEPTH: usize = 512;

/// The events an object announced for one revision.
#[derive(Default)]
struct Announced {
    revision: String,
    events: HashSet<AlertEvent>,
}

/// The alert queue; cheap to clone.
#[derive(Clone)]
pub struct Alerts {
    announced: Arc<Mutex<HashMap<(String, String), Announced>>>,
    queue: mpsc::Sender<(Endpoint, Alert)>,
    metrics: Metrics,
}

impl Alerts {
    /// Starts the queue's task on the current runtime; it ends when every clone is dropped.
    pub fn start(client: StatusClient, metrics: Metrics) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(drain(jobs, client, metrics.clone()));
        Self {
            announced: Arc::default(),
            queue,
            metrics,
        }
    }

    /// Whether `event` at `revision` is news for the object (and records it as announced).
    /// A new revision starts over: each event is sent once per (revision, event).
    pub fn first_time(
        &self,
        namespace: &str,
        name: &str,
        revision: &str,
        event: AlertEvent,
    ) -> bool {
        let mut announced = lock(&self.announced);
        let entry = announced
            .entry((namespace.to_owned(), name.to_owned()))
            .or_default();
        if entry.revision != revision {
            entry.revision = revision.to_owned();
            entry.events.clear();
        }
        entry.events.insert(event)
    }

    /// Queues `alert` for `endpoint`; a full queue drops it (counted).
    pub fn send(&self, endpoint: Endpoint, alert: Alert) {
        let kind = endpoint.kind.name();
        if self.queue.try_send((endpoint, alert)).is_err() {
            self.metrics.count_alert(kind, "dropped");
        }
    }

    /// Forgets a deleted object.
    pub fn forget(&self, namespace: &str, name: &str) {
        lock(&self.announced).remove(&(namespace.to_owned(), name.to_owned()));
    }
}

async fn drain(
    mut jobs: mpsc::Receiver<(Endpoint, Alert)>,
    client: StatusClient,
    metrics: Metrics,
) {
    while let Some((endpoint, alert)) = jobs.recv().await {
        let kind = endpoint.kind.name();
        match client.post(&alert_request(&endpoint, &alert)).await {
            Ok(()) => metrics.count_alert(kind, "sent"),
            Err(error) => {
                metrics.count_alert(kind, "failed");
                tracing::warn!(
                    namespace = alert.namespace,
                    name = alert.name,
                    event = alert.event.name(),
                    kind,
                    %error,
                    "alert not sent"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_event_is_announced_once_per_revision() {
        let alerts = Alerts::start(StatusClient::new(Default::default()), Metrics::default());
        assert!(alerts.first_time("a", "app", "main@sha1:1", AlertEvent::Applied));
        assert!(!alerts.first_time("a", "app", "main@sha1:1", AlertEvent::Applied));
        assert!(alerts.first_time("a", "app", "main@sha1:1", AlertEvent::DriftCorrected));
        assert!(!alerts.first_time("a", "app", "main@sha1:1", AlertEvent::DriftCorrected));
        assert!(alerts.first_time("a", "other", "main@sha1:1", AlertEvent::Applied));
        assert!(alerts.first_time("a", "app", "main@sha1:2", AlertEvent::Applied));
        alerts.forget("a", "app");
        assert!(alerts.first_time("a", "app", "main@sha1:2", AlertEvent::Applied));
    }
}
