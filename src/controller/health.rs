//! Waiting for health (`spec.wait`): the applied revision is looked at again at each requeue,
//! so a waiting object holds no worker between looks, until it is healthy, a rule fails it,
//! or its timeout passes.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use kube::{Api, ResourceExt};

use super::{
    Context, Error,
    conditions::{Outcome, Reason},
    converged::Converged,
    expressions::judging_by,
    failure::Failure,
    identity::applier_for,
    status::{is_new_work, write_status},
};
use crate::{
    api::{GitRepository, LastWebhook, RECONCILE_REQUESTED_AT},
    apply::{Applier, HealthCheck, ObjectRef},
    expressions::HealthRules,
    sync::lock,
};

/// How often a revision waiting for health is looked at again.
const HEALTH_RECHECK_EVERY: Duration = Duration::from_secs(2);

/// Where one reconcile got to.
pub(super) enum Step {
    /// The revision is applied (and healthy when asked to wait); `started` is when its
    /// reconcile began, before any health wait.
    Converged {
        converged: Converged,
        started: Instant,
    },
    /// The revision is applied and its objects are not healthy yet.
    Waiting(HealthWait),
}

/// A revision applied and waiting for its objects to become healthy.
pub(super) struct HealthWait {
    pub(super) converged: Converged,
    objects: Vec<ObjectRef>,
    deadline: Instant,
    timeout: Duration,
    /// When the reconcile that applied the revision began.
    started: Instant,
    /// The spec and reconcile request the wait belongs to; a change of either starts over.
    generation: Option<i64>,
    requested_at: Option<String>,
    /// What is still progressing, from the last look.
    progress: String,
    /// `spec.healthCheckExprs` as compiled when the revision was applied.
    rules: Arc<HealthRules>,
}

impl HealthWait {
    /// A wait of up to `timeout` from `started` for `objects` (what `converged` applied and
    /// `spec.healthChecks` names), judged by `rules` where they cover an object.
    pub(super) fn new(
        repository: &GitRepository,
        converged: Converged,
        objects: Vec<ObjectRef>,
        started: Instant,
        timeout: Duration,
        rules: Arc<HealthRules>,
    ) -> HealthWait {
        HealthWait {
            deadline: started.checked_add(timeout).unwrap_or(started),
            timeout,
            objects,
            started,
            generation: repository.metadata.generation,
            requested_at: requested_at(repository),
            progress: String::new(),
            converged,
            rules,
        }
    }

    /// When to look again: before the deadline, at most [`HEALTH_RECHECK_EVERY`] from now.
    pub(super) fn look_again_in(&self) -> Duration {
        self.deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(100), HEALTH_RECHECK_EVERY)
    }
}

/// Health waits by `namespace/name`.
#[derive(Default)]
pub(super) struct HealthWaits(Mutex<HashMap<String, HealthWait>>);

impl HealthWaits {
    pub(super) fn insert(&self, namespace: &str, name: &str, wait: HealthWait) {
        lock(&self.0).insert(format!("{namespace}/{name}"), wait);
    }

    pub(super) fn forget(&self, namespace: &str, name: &str) {
        lock(&self.0).remove(&format!("{namespace}/{name}"));
    }

    /// The wait of `repository`, unless its spec changed or a reconcile was requested since.
    pub(super) fn take(&self, repository: &GitRepository) -> Option<HealthWait> {
        let key = format!(
            "{}/{}",
            repository.namespace().unwrap_or_default(),
            repository.name_any()
        );
        let wait = lock(&self.0).remove(&key)?;
        let current = wait.generation == repository.metadata.generation
            && wait.requested_at == requested_at(repository);
        current.then_some(wait)
    }
}

fn requested_at(repository: &GitRepository) -> Option<String> {
    repository
        .annotations()
        .get(RECONCILE_REQUESTED_AT)
        .cloned()
}

/// What the health wait of a revision waits for: with `spec.wait`, every object it `applied`;
/// and every object `spec.healthChecks` names (in this GitRepository's namespace unless it
/// names one). `None`: no wait at all.
pub(super) fn objects_to_wait_for(
    repository: &GitRepository,
    namespace: &str,
    applied: Vec<ObjectRef>,
) -> Option<Vec<ObjectRef>> {
    let checks = &repository.spec.health_checks;
    let wait = repository.spec.wait == Some(true);
    if !wait && checks.is_empty() {
        return None;
    }
    let mut objects = if wait { applied } else { Vec::new() };
    for check in checks {
        let object = ObjectRef {
            api_version: check.api_version.clone(),
            kind: check.kind.clone(),
            namespace: Some(check.namespace_or(namespace).to_owned()),
            name: check.name.clone(),
        };
        if !objects.contains(&object) {
            objects.push(object);
        }
    }
    Some(objects)
}

/// Looks at the health of a waiting revision again, as the account that applied it.
pub(super) async fn recheck_health(
    repository: &GitRepository,
    context: &Context,
    namespace: &str,
    wait: HealthWait,
) -> Result<Step, Failure> {
    let applier = judging_by(applier_for(repository, namespace, context)?, &wait.rules);
    look_at_health(&applier, wait).await
}

/// One look at the waiting objects: converged, still waiting, or failed (a rule says so, or
/// the timeout has passed).
pub(super) async fn look_at_health(
    applier: &Applier,
    mut wait: HealthWait,
) -> Result<Step, Failure> {
    let out_of_time = Instant::now() >= wait.deadline;
    match applier
        .check_health(&wait.objects, wait.timeout, out_of_time)
        .await
    {
        HealthCheck::Healthy => Ok(Step::Converged {
            converged: wait.converged,
            started: wait.started,
        }),
        HealthCheck::Progressing(progress) => {
            wait.progress = progress;
            Ok(Step::Waiting(wait))
        }
        HealthCheck::Failed(error) => {
            let revision = &wait.converged.revision;
            Err(Failure::new(
                Reason::HealthCheckFailed,
                format!("revision {revision}: {error}"),
            )
            .at(revision)
            .keeping(wait.converged.inventory))
        }
    }
}

/// While a new revision waits for health, the status says so and records what was applied;
/// a resync of the applied revision that waits writes nothing.
pub(super) async fn record_waiting(
    api: &Api<GitRepository>,
    repository: &GitRepository,
    wait: &HealthWait,
    webhook_path: &Option<String>,
    delivery: Option<LastWebhook>,
) -> Result<(), Error> {
    let revision = &wait.converged.revision;
    if !is_new_work(repository, revision) {
        return Ok(());
    }
    let message = format!(
        "Applied revision {revision}; waiting up to {:?} for health: {}",
        wait.timeout, wait.progress
    );
    write_status(
        api,
        repository,
        &Outcome::Reconciling { message },
        |status| {
            status.last_fetched_revision = Some(revision.clone());
            status.last_attempted_revision = Some(revision.clone());
            status.inventory = wait.converged.inventory.clone();
            status.webhook_path = webhook_path.clone();
            if delivery.is_some() {
                status.last_webhook = delivery;
            }
        },
    )
    .await?;
    Ok(())
}
