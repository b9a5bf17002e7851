//! Waiting until applied objects are healthy by kstatus-style rules (see [`super::health`]).

use std::time::Duration;

use super::{
    Applier,
    error::{ApplyError, ObjectFailure, reason_of},
    health::{Health, health_of},
    inventory::ObjectKey,
    object::ObjectRef,
};

const POLL_EVERY: Duration = Duration::from_millis(500);

/// Where applied objects stand after one look at them.
#[derive(Debug)]
pub enum HealthCheck {
    Healthy,
    /// Some are still progressing; the text names each and why.
    Progressing(String),
    /// A rule says one failed, or time ran out.
    Failed(ApplyError),
}

impl Applier {
    /// Polls `objects` until every one is healthy, a rule says one failed, or `timeout` passes;
    /// the error lists each object that is not healthy and why.
    pub async fn wait_healthy(
        &self,
        objects: &[ObjectRef],
        timeout: Duration,
    ) -> Result<(), ApplyError> {
        let deadline = tokio::time::Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(far_future);
        loop {
            let out_of_time = tokio::time::Instant::now() >= deadline;
            match self.check_health(objects, timeout, out_of_time).await {
                HealthCheck::Healthy => return Ok(()),
                HealthCheck::Failed(error) => return Err(error),
                HealthCheck::Progressing(_) => tokio::time::sleep(POLL_EVERY).await,
            }
        }
    }

    /// Looks at `objects` once, without waiting, so a caller can come back later instead of
    /// holding a worker for the whole `timeout`. With `out_of_time`, objects still progressing
    /// count as failed (not healthy within `timeout`).
    pub async fn check_health(
        &self,
        objects: &[ObjectRef],
        timeout: Duration,
        out_of_time: bool,
    ) -> HealthCheck {
        let unhealthy = self.unhealthy(objects).await;
        if unhealthy.is_empty() {
            return HealthCheck::Healthy;
        }
        let failed = unhealthy
            .iter()
            .any(|(_, health)| matches!(health, Health::Failed(_)));
        let failures: Vec<ObjectFailure> = unhealthy
            .into_iter()
            .map(|(object, health)| ObjectFailure {
                origin: "health check".into(),
                reason: health.message().unwrap_or("not healthy").to_owned(),
                object,
            })
            .collect();
        if failed || out_of_time {
            return HealthCheck::Failed(ApplyError::Unhealthy { failures, timeout });
        }
        let waiting: Vec<String> = failures
            .iter()
            .map(|f| format!("{}: {}", f.object, f.reason))
            .collect();
        HealthCheck::Progressing(waiting.join("; "))
    }

    async fn unhealthy(&self, objects: &[ObjectRef]) -> Vec<(ObjectRef, Health)> {
        let mut unhealthy = Vec::new();
        for object in objects {
            let health = self.health(object).await;
            if !health.is_healthy() {
                unhealthy.push((object.clone(), health));
            }
        }
        unhealthy
    }

    async fn health(&self, object: &ObjectRef) -> Health {
        let key = ObjectKey::from(object);
        let api = match self.api_for(&key).await {
            Ok(Some(api)) => api,
            Ok(None) => return Health::InProgress(format!("{} is not served", key.kind)),
            Err(error) => return Health::InProgress(reason_of(&error)),
        };
        match api.get_opt(&key.name).await {
            Ok(Some(live)) => health_of(&live),
            Ok(None) => Health::InProgress("not found".into()),
            Err(error) => Health::InProgress(reason_of(&error)),
        }
    }
}

/// A deadline that never comes, for a timeout too long to add to the clock.
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}
