//! Waiting until applied objects are healthy by kstatus-style rules (see [`super::health`]).

use std::time::Duration;

use futures::future::BoxFuture;
use kube::api::DynamicObject;

use super::{
    Applier,
    error::{ApplyError, ObjectFailure, reason_of},
    health::{Health, health_of},
    inventory::ObjectKey,
    object::ObjectRef,
};

const POLL_EVERY: Duration = Duration::from_millis(500);

/// Decides the health of some objects in place of the kstatus rules (a tenant's expressions for
/// its custom resources); `None` leaves an object to the kstatus rules.
pub trait HealthOverride: Send + Sync {
    fn health<'a>(&'a self, object: &'a serde_json::Value) -> BoxFuture<'a, Option<Health>>;
}

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
            Ok(Some(live)) => self.health_of_live(&live).await,
            Ok(None) => Health::InProgress("not found".into()),
            Err(error) => Health::InProgress(reason_of(&error)),
        }
    }

    /// The override's verdict when it has one, else the kstatus rules'.
    async fn health_of_live(&self, live: &DynamicObject) -> Health {
        let Some(decider) = &self.health_override else {
            return health_of(live);
        };
        let value = match serde_json::to_value(live) {
            Ok(value) => value,
            Err(error) => return Health::InProgress(format!("cannot read the object: {error}")),
        };
        match decider.health(&value).await {
            Some(health) => health,
            None => health_of(live),
        }
    }

    /// The object `object` names as the API returns it, read as this applier's account;
    /// `None` when it does not exist or its kind is not served.
    pub async fn read(&self, object: &ObjectRef) -> Result<Option<serde_json::Value>, String> {
        let key = ObjectKey::from(object);
        let Some(api) = self.api_for(&key).await.map_err(|e| reason_of(&e))? else {
            return Ok(None);
        };
        let live = api.get_opt(&key.name).await.map_err(|e| reason_of(&e))?;
        live.map(|live| serde_json::to_value(live).map_err(|e| e.to_string()))
            .transpose()
    }
}

/// A deadline that never comes, for a timeout too long to add to the clock.
fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}
