//! Delivery of a verified push after its answer: every matched object is triggered, a bounded
//! number at a time, each retried with a doubling backoff, and the delivery is recorded on it.
//! When a trigger still fails, the delivery id is forgotten so that a redelivery is processed,
//! and polling at the interval remains the safety net.

use std::time::Duration;

use futures::future::BoxFuture;
use futures::{StreamExt, stream};
use tokio::sync::OwnedSemaphorePermit;

use super::replay::DeliveryKey;
use super::server::{Delivery, TriggerError, Triggers, WebhookState};

/// How many triggers run at once for one delivery, so a push to a repository with hundreds of
/// objects does not flood the API server.
const MAX_CONCURRENT_TRIGGERS: usize = 16;

/// Upper bound for one attempt of one trigger.
const TRIGGER_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a trigger that failed is tried again after the answer was sent.
#[derive(Clone, Copy, Debug)]
pub struct TriggerRetry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Wait before the second attempt; doubled before each further one.
    pub first_backoff: Duration,
}

impl Default for TriggerRetry {
    /// 5 attempts over about 7.5 s: covers an API server restart or a leader change without
    /// holding work for long.
    fn default() -> Self {
        Self {
            attempts: 5,
            first_backoff: Duration::from_millis(500),
        }
    }
}

/// Triggers every matched object (with retries) and records the delivery on it; when a trigger
/// still fails, forgets the delivery id so that a redelivery is processed.
pub(super) async fn deliver(
    state: WebhookState,
    replay_key: DeliveryKey,
    matched: Triggers,
    delivery: Delivery,
    _slot: OwnedSemaphorePermit,
) {
    let failed = trigger_all(&state, matched, &delivery).await;
    if failed.is_empty() {
        return;
    }
    if let Some(metrics) = &state.metrics {
        metrics.count_webhook_trigger_failures(failed.len());
    }
    state.replay.forget(replay_key);
}

/// Runs the triggers concurrently (bounded), each retried, and records the delivery on every
/// matched object alongside. Returns the objects whose trigger failed.
async fn trigger_all(state: &WebhookState, matched: Triggers, delivery: &Delivery) -> Vec<String> {
    let trigger = &state.trigger;
    let retry = state.retry;
    let results: Vec<(String, Result<(), TriggerError>)> = stream::iter(matched)
        .map(|((namespace, name), commit)| {
            let record = trigger.record_delivery(&namespace, &name, delivery);
            async move {
                let object = format!("{namespace}/{name}");
                let request = || trigger.trigger(&namespace, &name, commit.as_deref());
                let (result, recorded) =
                    futures::join!(with_retries(request, retry), within_timeout(record));
                if let Err(error) = recorded {
                    tracing::warn!(%object, %error, "could not record the webhook delivery");
                }
                (object, result)
            }
        })
        .buffer_unordered(MAX_CONCURRENT_TRIGGERS)
        .collect()
        .await;
    let mut triggered = Vec::new();
    let mut failed = Vec::new();
    for (object, result) in results {
        match result {
            Ok(()) => triggered.push(object),
            Err(error) => {
                tracing::warn!(%object, %error, "could not request a reconcile; polling will catch up");
                failed.push(object);
            }
        }
    }
    triggered.sort();
    failed.sort();
    tracing::info!(?triggered, ?failed, "webhook delivery handled");
    failed
}

/// Calls `attempt` until it succeeds or `retry.attempts` calls failed, doubling the wait.
async fn with_retries(
    attempt: impl Fn() -> BoxFuture<'static, Result<(), TriggerError>>,
    retry: TriggerRetry,
) -> Result<(), TriggerError> {
    let mut backoff = retry.first_backoff;
    let mut tries = 1;
    loop {
        match within_timeout(attempt()).await {
            Err(error) if tries < retry.attempts.max(1) => {
                tracing::debug!(%error, tries, "trigger failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                tries += 1;
            }
            result => return result,
        }
    }
}

async fn within_timeout(
    call: BoxFuture<'static, Result<(), TriggerError>>,
) -> Result<(), TriggerError> {
    match tokio::time::timeout(TRIGGER_TIMEOUT, call).await {
        Ok(result) => result,
        Err(_) => Err(TriggerError::TimedOut(TRIGGER_TIMEOUT)),
    }
}
