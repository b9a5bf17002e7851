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

impl Applier {
    /// Polls `objects` until every one is healthy, a rule says one failed, or `timeout` passes;
    /// the error lists each object that is not healthy and why.
    pub async fn wait_healthy(
        &self,
        objects: &[ObjectRef],
        timeout: Duration,
    ) -> Result<(), ApplyError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let unhealthy = self.unhealthy(objects).await;
            let failed = unhealthy
                .iter()
                .any(|(_, health)| matches!(health, Health::Failed(_)));
            if unhealthy.is_empty() {
                return Ok(());
            }
            if failed || tokio::time::Instant::now() >= deadline {
                let failures = unhealthy
                    .into_iter()
                    .map(|(object, health)| ObjectFailure {
                        origin: "health check".into(),
                        reason: health.message().unwrap_or("not healthy").to_owned(),
                        object,
                    })
                    .collect();
                return Err(ApplyError::Unhealthy { failures, timeout });
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
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
            Err(reason) => return Health::InProgress(reason),
        };
        match api.get_opt(&key.name).await {
            Ok(Some(live)) => health_of(&live),
            Ok(None) => Health::InProgress("not found".into()),
            Err(error) => Health::InProgress(reason_of(&error)),
        }
    }
}
