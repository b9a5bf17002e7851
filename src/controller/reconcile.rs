//! One reconcile of one GitRepository: credentials, fetch, read, apply, status. Each step's
//! failure becomes a condition with a reason and a message the user can act on.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::Time};
use kube::{Api, ResourceExt, runtime::controller::Action};
use serde_json::json;
use tracing::{info, warn};

use kube::runtime::events::EventType;

use super::{
    Context, Error, Settings,
    conditions::{Outcome, Reason, conditions_for},
    events, prune,
};
use crate::{
    api::{
        ApplyCounts, GitRepository, GitRepositoryStatus, InventoryEntry, MAX_INTERVAL, MAX_TIMEOUT,
        parse_bounded_duration,
    },
    apply::{
        Applier, ApplyError, ApplyOptions, ApplyReport, FIELD_MANAGER, HealthCheck, ObjectRef,
        PruneReport,
    },
    manifests, revision,
    source::{Artifact, Credentials, FetchRequest, SourceErrorKind},
};

pub use crate::api::RECONCILE_REQUESTED_AT;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a revision waiting for health is looked at again.
const HEALTH_RECHECK_EVERY: Duration = Duration::from_secs(2);

/// Makes the cluster match the GitRepository's revision and reports how that went.
pub async fn reconcile_repository(
    repository: Arc<GitRepository>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = repository.namespace().unwrap_or_default();
    let name = repository.name_any();
    let api: Api<GitRepository> = Api::namespaced(context.client.clone(), &namespace);
    let started = Instant::now();
    if repository.spec.suspend == Some(true) {
        context.health_waits.forget(&namespace, &name);
        write_status(&api, &repository, &Outcome::Suspended, |_| {}).await?;
        return Ok(Action::await_change());
    }
    let checked = check_spec(&repository, &context.settings);
    let interval = checked
        .as_ref()
        .map(|durations| durations.interval)
        .unwrap_or(context.settings.default_interval);
    let retry_interval = checked.as_ref().ok().and_then(|d| d.retry_interval);
    let (repository, result) = match checked {
        Ok(durations) => work(&api, repository, &context, &namespace, &durations).await?,
        Err(failure) => (repository, Err(failure)),
    };
    let webhook_path = webhook_path_of(&repository, &context, &namespace).await;
    match result {
        Ok(Step::Waiting(wait)) => {
            record_waiting(&api, &repository, &wait, &webhook_path).await?;
            let again = wait
                .deadline
                .saturating_duration_since(Instant::now())
                .clamp(Duration::from_millis(100), HEALTH_RECHECK_EVERY);
            context.health_waits.insert(&namespace, &name, wait);
            Ok(Action::requeue(again))
        }
        Ok(Step::Converged { converged, started }) => {
            record_metrics(&context, &repository, Ok(&converged), started.elapsed());
            let summary = converged.summary();
            info!(
                namespace,
                name,
                revision = converged.artifact.revision,
                summary,
                "applied"
            );
            announce_success(&context, &repository, &converged).await;
            let revision_before = repository
                .status
                .as_ref()
                .and_then(|s| s.last_applied_revision.clone());
            // A resync that found nothing to do keeps the message and counts of the last apply
            // that did something: a message saying "N unchanged" would rewrite every status at
            // the first poll after each apply (1,000 writes when 1,000 objects restart).
            let resync = !converged.changed_anything()
                && revision_before.as_deref() == Some(converged.artifact.revision.as_str());
            let message = resync
                .then(|| ready_message(&repository))
                .flatten()
                .unwrap_or(summary);
            write_status(&api, &repository, &Outcome::Ready { message }, |status| {
                let revision = Some(converged.artifact.revision.clone());
                status.last_fetched_revision = revision.clone();
                status.last_attempted_revision = revision.clone();
                status.last_applied_revision = revision;
                status.last_applied_commit_time = Some(converged.artifact.commit_time.clone());
                status.inventory = converged.inventory.clone();
                status.last_applied_renderer = converged.renderer.clone();
                status.webhook_path = webhook_path.clone();
                if !resync {
                    status.last_apply = Some(converged.counts());
                }
            })
            .await?;
            context.failures.clear(&namespace, &name);
            Ok(Action::requeue(jittered(interval)))
        }
        Err(failure) => {
            record_metrics(&context, &repository, Err(&failure), started.elapsed());
            warn!(
                namespace,
                name,
                reason = failure.reason.as_str(),
                detail = failure.message,
                "reconcile failed"
            );
            events::publish(
                &context.recorder,
                &repository,
                EventType::Warning,
                failure.reason.as_str(),
                failure.message.clone(),
            )
            .await;
            let outcome = if failure.stalled {
                Outcome::Stalled {
                    reason: failure.reason,
                    message: failure.message,
                }
            } else {
                Outcome::Failed {
                    reason: failure.reason,
                    message: failure.message,
                }
            };
            write_status(&api, &repository, &outcome, |status| {
                status.webhook_path = webhook_path.clone();
                if let Some(inventory) = &failure.inventory {
                    status.inventory = inventory.clone();
                }
                if let Some(revision) = &failure.revision {
                    status.last_fetched_revision = Some(revision.clone());
                    status.last_attempted_revision = Some(revision.clone());
                }
            })
            .await?;
            let failures = context.failures.record(&namespace, &name);
            Ok(Action::requeue(
                retry_interval.unwrap_or_else(|| backoff(failures, interval)),
            ))
        }
    }
}

/// Where one reconcile got to.
enum Step {
    /// The revision is applied (and healthy when asked to wait); `started` is when its
    /// reconcile began, before any health wait.
    Converged {
        converged: Converged,
        started: Instant,
    },
    /// The revision is applied and its objects are not healthy yet.
    Waiting(HealthWait),
}

/// Fetches and applies; or, while the applied revision waits for health, only looks at its
/// health again, so a waiting object holds no worker between looks.
async fn work(
    api: &Api<GitRepository>,
    repository: Arc<GitRepository>,
    context: &Context,
    namespace: &str,
    durations: &SpecDurations,
) -> Result<(Arc<GitRepository>, Result<Step, Failure>), Error> {
    if let Some(wait) = context.health_waits.take(&repository) {
        let step = recheck_health(&repository, context, namespace, wait).await;
        return Ok((repository, step));
    }
    let fetched = fetch(&repository, context, namespace, durations.timeout).await;
    let repository = match &fetched {
        Ok(artifact) if is_new_work(&repository, artifact) => {
            mark_reconciling(api, repository, artifact).await?
        }
        _ => repository,
    };
    let step = match fetched {
        Ok(artifact) => converge(&repository, context, namespace, artifact, durations).await,
        Err(failure) => Err(failure),
    };
    Ok((repository, step))
}

/// The durations of the spec, each within its bound.
pub(super) struct SpecDurations {
    interval: Duration,
    retry_interval: Option<Duration>,
    timeout: Duration,
}

/// Refuses, as Stalled, a spec the controller will not act on: a duration out of range (the
/// CRD bounds them, but an object stored before that bound keeps its value), or no identity
/// to apply with.
fn check_spec(repository: &GitRepository, settings: &Settings) -> Result<SpecDurations, Failure> {
    let spec = &repository.spec;
    let read = |field: &str, text: Option<&str>, maximum: Duration| {
        text.map(|text| parse_bounded_duration(text, maximum))
            .transpose()
            .map_err(|error| {
                Failure::new(Reason::InvalidSpec, format!("spec.{field}: {error}")).stalled()
            })
    };
    let durations = SpecDurations {
        interval: read("interval", spec.interval.as_deref(), MAX_INTERVAL)?
            .unwrap_or(settings.default_interval),
        retry_interval: read(
            "retryInterval",
            spec.retry_interval.as_deref(),
            MAX_INTERVAL,
        )?,
        timeout: read("timeout", spec.timeout.as_deref(), MAX_TIMEOUT)?.unwrap_or(DEFAULT_TIMEOUT),
    };
    service_account_of(repository, settings)?;
    Ok(durations)
}

/// The ServiceAccount to apply as: the spec's, else the controller's default; `None` means the
/// controller's own identity, which `--require-service-account` forbids.
pub(super) fn service_account_of(
    repository: &GitRepository,
    settings: &Settings,
) -> Result<Option<String>, Failure> {
    let account = repository
        .spec
        .service_account_name
        .clone()
        .or_else(|| settings.default_service_account.clone());
    if account.is_none() && settings.require_service_account {
        let namespace = repository.namespace().unwrap_or_default();
        return Err(Failure::new(
            Reason::ServiceAccountRequired,
            format!(
                "spec.serviceAccountName is not set, and this controller applies nothing with \
                 its own identity (--require-service-account, the chart's restricted RBAC \
                 mode) and has no --default-service-account: set spec.serviceAccountName to a \
                 ServiceAccount of namespace {namespace} allowed to apply this repository"
            ),
        )
        .stalled());
    }
    Ok(account)
}

/// The message of the `Ready=True` condition already recorded, if any.
fn ready_message(repository: &GitRepository) -> Option<String> {
    let conditions = &repository.status.as_ref()?.conditions;
    conditions
        .iter()
        .find(|c| c.type_ == super::conditions::READY && c.status == "True")
        .map(|c| c.message.clone())
}

/// The unguessable path of the per-object receiver, published in the status so users can
/// configure their git host; `None` without `spec.webhook` or its token.
async fn webhook_path_of(
    repository: &GitRepository,
    context: &Context,
    namespace: &str,
) -> Option<String> {
    let secret = &repository.spec.webhook.as_ref()?.secret_ref.name;
    let token = super::webhooks::webhook_token(&context.client, namespace, secret).await?;
    Some(crate::webhook::object_hook_path(
        &token,
        namespace,
        &repository.name_any(),
    ))
}

/// Events for what changed: a new revision, objects written, drift corrected.
async fn announce_success(context: &Context, repository: &GitRepository, converged: &Converged) {
    let report = &converged.report;
    let previous = repository
        .status
        .as_ref()
        .and_then(|s| s.last_applied_revision.as_deref());
    let recorder = &context.recorder;
    if previous != Some(converged.artifact.revision.as_str()) {
        let note = format!("New revision {}", converged.artifact.revision);
        events::publish(recorder, repository, EventType::Normal, "NewRevision", note).await;
    }
    if !report.created.is_empty() || !report.configured.is_empty() {
        events::publish(
            recorder,
            repository,
            EventType::Normal,
            "Applied",
            converged.summary(),
        )
        .await;
    }
    if !report.drift_corrected.is_empty() {
        let objects: Vec<String> = report
            .drift_corrected
            .iter()
            .map(ToString::to_string)
            .collect();
        let note = format!("Reverted changes made outside Git: {}", objects.join(", "));
        events::publish(
            recorder,
            repository,
            EventType::Warning,
            "DriftCorrected",
            note,
        )
        .await;
    }
}

fn record_metrics(
    context: &Context,
    repository: &GitRepository,
    result: Result<&Converged, &Failure>,
    took: Duration,
) {
    let metrics = &context.metrics;
    let namespace = repository.namespace().unwrap_or_default();
    let name = repository.name_any();
    match result {
        Ok(converged) => {
            let report = &converged.report;
            metrics.observe_reconcile("success", took);
            metrics.set_ready(&namespace, &name, true);
            metrics
                .objects_applied
                .inc_by((report.created.len() + report.configured.len()) as u64);
            metrics
                .objects_drift_corrected
                .inc_by(report.drift_corrected.len() as u64);
            let previous = repository
                .status
                .as_ref()
                .and_then(|s| s.last_applied_revision.as_deref());
            // A new revision that this reconcile wrote: a stale cache replaying it counts nothing.
            let new_revision = previous != Some(converged.artifact.revision.as_str());
            if new_revision && converged.changed_anything() {
                if let Some(lead_time) = seconds_since(&converged.artifact.commit_time) {
                    metrics.lead_time.observe(lead_time);
                }
            }
        }
        Err(failure) => {
            metrics.observe_reconcile(failure.reason.as_str(), took);
            metrics.set_ready(&namespace, &name, false);
        }
    }
}

/// Seconds from an RFC 3339 time to now (lead time: commit to applied).
fn seconds_since(time: &str) -> Option<f64> {
    let then: jiff::Timestamp = time.parse().ok()?;
    let elapsed = jiff::Timestamp::now().duration_since(then);
    Some(elapsed.as_secs_f64().max(0.0))
}

/// What a successful reconcile did.
struct Converged {
    artifact: Artifact,
    report: ApplyReport,
    pruned: PruneReport,
    inventory: Vec<InventoryEntry>,
    /// `kustomize <version>` when the revision had kustomizations.
    renderer: Option<String>,
}

impl Converged {
    fn changed_anything(&self) -> bool {
        let r = &self.report;
        r.writes > 0 || !self.pruned.deleted.is_empty()
    }

    fn counts(&self) -> ApplyCounts {
        let r = &self.report;
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        ApplyCounts {
            applied: count(r.created.len() + r.configured.len()),
            drift_corrected: count(r.drift_corrected.len()),
            pruned: count(self.pruned.deleted.len()),
            total: count(self.inventory.len()),
        }
    }

    fn summary(&self) -> String {
        let r = &self.report;
        format!(
            "Applied revision {}: {} created, {} configured, {} drift corrected, {} unchanged, {} pruned",
            self.artifact.revision,
            r.created.len(),
            r.configured.len(),
            r.drift_corrected.len(),
            r.unchanged.len(),
            self.pruned.deleted.len()
        )
    }
}

/// Why a reconcile stopped, in the words of its `Ready` condition.
pub(super) struct Failure {
    pub(super) reason: Reason,
    pub(super) message: String,
    /// True when only a change by the user can help.
    stalled: bool,
    revision: Option<String>,
    /// The inventory to record although the reconcile failed (objects were applied).
    pub(super) inventory: Option<Vec<InventoryEntry>>,
}

impl Failure {
    pub(super) fn new(reason: Reason, message: impl ToString) -> Self {
        Self {
            reason,
            message: message.to_string(),
            stalled: false,
            revision: None,
            inventory: None,
        }
    }

    fn stalled(mut self) -> Self {
        self.stalled = true;
        self
    }

    fn at(mut self, revision: &str) -> Self {
        self.revision = Some(revision.to_owned());
        self
    }

    /// Records `inventory` although the reconcile failed: objects were applied.
    pub(super) fn keeping(mut self, inventory: Vec<InventoryEntry>) -> Self {
        self.inventory = Some(inventory);
        self
    }
}

/// Resolves the ref and fetches its files (from the cache when the commit is known).
async fn fetch(
    repository: &GitRepository,
    context: &Context,
    namespace: &str,
    timeout: Duration,
) -> Result<Artifact, Failure> {
    let credentials = read_credentials(repository, context, namespace).await?;
    let request = fetch_request(repository, namespace, credentials, timeout);
    let fetch_started = Instant::now();
    let fetched = context.source.fetch(&request).await;
    context
        .metrics
        .fetch_duration
        .observe(fetch_started.elapsed().as_secs_f64());
    fetched.map_err(|error| {
        let stalled = needs_user_change(&error.kind);
        let failure = Failure::new(Reason::GitOperationFailed, &error);
        if stalled { failure.stalled() } else { failure }
    })
}

/// A new revision or a changed spec: work worth announcing with `Reconciling`. A resync of
/// the applied revision is not announced, so a steady state writes no status.
fn is_new_work(repository: &GitRepository, artifact: &Artifact) -> bool {
    let status = repository.status.as_ref();
    let applied = status.and_then(|s| s.last_applied_revision.as_deref());
    let observed = status.and_then(|s| s.observed_generation);
    applied != Some(artifact.revision.as_str()) || observed != repository.metadata.generation
}

/// Sets `Reconciling=True` (and `Ready=Unknown`) before applying, and returns the object as
/// written so the final status write compares against what the server now holds.
async fn mark_reconciling(
    api: &Api<GitRepository>,
    repository: Arc<GitRepository>,
    artifact: &Artifact,
) -> Result<Arc<GitRepository>, Error> {
    let message = format!("Applying revision {}", artifact.revision);
    let written = write_status(
        api,
        &repository,
        &Outcome::Reconciling { message },
        |status| {
            status.last_fetched_revision = Some(artifact.revision.clone());
        },
    )
    .await?;
    Ok(written.map(Arc::new).unwrap_or(repository))
}

async fn converge(
    repository: &GitRepository,
    context: &Context,
    namespace: &str,
    artifact: Artifact,
    durations: &SpecDurations,
) -> Result<Step, Failure> {
    let started = Instant::now();
    refuse_skipped_paths(&artifact.revision, &artifact.skipped)?;
    // Variables and values are read as the same account that applies, so a tenant cannot
    // publish what it may not read.
    let reader = client_for(repository, namespace, context, Reason::BuildFailed)?;
    let target = apply_options(repository, namespace, context).default_namespace;
    let chart = super::render::chart_context(repository, &target, &context.applier, &reader)
        .await
        .map_err(|message| {
            let message = format!("revision {}: {message}", artifact.revision);
            Failure::new(Reason::BuildFailed, message).at(&artifact.revision)
        })?;
    let mut inputs =
        revision::manifest_inputs(&context.renderer, &artifact, &repository.spec, &chart)
            .await
            .map_err(|errors| render_failure(&artifact, &errors))?;
    super::render::substitute(&mut inputs, &repository.spec, namespace, &reader)
        .await
        .map_err(|message| {
            let message = format!("revision {}: {message}", artifact.revision);
            Failure::new(Reason::BuildFailed, message).at(&artifact.revision)
        })?;
    let mut manifests = manifests::read_manifests(inputs.files(), &manifests::Budget::default())
        .map_err(|errors| {
            Failure::new(
                Reason::ManifestInvalid,
                format!("revision {}: {errors}", artifact.revision),
            )
            .at(&artifact.revision)
        })?;
    let renderer = inputs.renderer();
    revision::apply_common_metadata(&mut manifests, &repository.spec);
    let options = apply_options(repository, namespace, context);
    let applier = applier_for(repository, namespace, context)?;
    let report = applier
        .apply(revision::desired_objects(manifests), &options)
        .await
        .map_err(|error| {
            let reason = match error {
                ApplyError::Validation(_) => Reason::ValidationFailed,
                _ => Reason::ApplyFailed,
            };
            Failure::new(reason, format!("revision {}: {error}", artifact.revision))
                .at(&artifact.revision)
        })?;
    let (inventory, pruned) = prune::prune_stale(repository, namespace, context, &applier, &report)
        .await
        .map_err(|failure| failure.at(&artifact.revision))?;
    let objects: Vec<ObjectRef> = [
        &report.created,
        &report.configured,
        &report.drift_corrected,
        &report.unchanged,
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect();
    let converged = Converged {
        artifact: Artifact {
            // The files are parsed and applied; a health wait need not keep them in memory.
            files: Vec::new(),
            ..artifact
        },
        report,
        pruned,
        inventory,
        renderer,
    };
    if repository.spec.wait != Some(true) {
        return Ok(Step::Converged { converged, started });
    }
    let wait = HealthWait {
        deadline: started.checked_add(durations.timeout).unwrap_or(started),
        timeout: durations.timeout,
        objects,
        started,
        generation: repository.metadata.generation,
        requested_at: requested_at(repository),
        progress: String::new(),
        converged,
    };
    look_at_health(&applier, wait).await
}

/// A symlink or submodule is not followed; reading on without it would prune what it held
/// while reporting success, so the revision fails unless the path is ignored explicitly.
fn refuse_skipped_paths(revision: &str, skipped: &[String]) -> Result<(), Failure> {
    if skipped.is_empty() {
        return Ok(());
    }
    Err(Failure::new(
        Reason::ManifestInvalid,
        format!(
            "revision {}: {} not followed (symlinks and submodules are never read): {}; \
             nothing was applied or pruned. Remove them, or list them in spec.ignore or \
             .driftlessignore",
            revision,
            if skipped.len() == 1 { "path" } else { "paths" },
            skipped.join(", ")
        ),
    )
    .at(revision))
}

/// A revision applied and waiting for its objects to become healthy.
pub(super) struct HealthWait {
    converged: Converged,
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
}

/// Health waits by `namespace/name`.
#[derive(Default)]
pub(super) struct HealthWaits(std::sync::Mutex<HashMap<String, HealthWait>>);

impl HealthWaits {
    fn insert(&self, namespace: &str, name: &str, wait: HealthWait) {
        let mut waits = self.0.lock().expect("health waits are never poisoned");
        waits.insert(format!("{namespace}/{name}"), wait);
    }

    pub(super) fn forget(&self, namespace: &str, name: &str) {
        let mut waits = self.0.lock().expect("health waits are never poisoned");
        waits.remove(&format!("{namespace}/{name}"));
    }

    /// The wait of `repository`, unless its spec changed or a reconcile was requested since.
    fn take(&self, repository: &GitRepository) -> Option<HealthWait> {
        let key = format!(
            "{}/{}",
            repository.namespace().unwrap_or_default(),
            repository.name_any()
        );
        let mut waits = self.0.lock().expect("health waits are never poisoned");
        let wait = waits.remove(&key)?;
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

async fn recheck_health(
    repository: &GitRepository,
    context: &Context,
    namespace: &str,
    wait: HealthWait,
) -> Result<Step, Failure> {
    let applier = applier_for(repository, namespace, context)?;
    look_at_health(&applier, wait).await
}

/// One look at the waiting objects: converged, still waiting, or failed (a rule says so, or
/// the timeout has passed).
async fn look_at_health(applier: &Applier, mut wait: HealthWait) -> Result<Step, Failure> {
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
            let revision = &wait.converged.artifact.revision;
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
async fn record_waiting(
    api: &Api<GitRepository>,
    repository: &GitRepository,
    wait: &HealthWait,
    webhook_path: &Option<String>,
) -> Result<(), Error> {
    let artifact = &wait.converged.artifact;
    if !is_new_work(repository, artifact) {
        return Ok(());
    }
    let message = format!(
        "Applied revision {}; waiting up to {:?} for health: {}",
        artifact.revision, wait.timeout, wait.progress
    );
    write_status(
        api,
        repository,
        &Outcome::Reconciling { message },
        |status| {
            status.last_fetched_revision = Some(artifact.revision.clone());
            status.last_attempted_revision = Some(artifact.revision.clone());
            status.inventory = wait.converged.inventory.clone();
            status.webhook_path = webhook_path.clone();
        },
    )
    .await?;
    Ok(())
}

/// A unit that did not render: nothing of the revision is applied.
fn render_failure(artifact: &Artifact, errors: &crate::render::RenderErrors) -> Failure {
    let failure = Failure::new(
        Reason::BuildFailed,
        format!("revision {}: {errors}", artifact.revision),
    )
    .at(&artifact.revision);
    if errors.need_new_commit() {
        failure.stalled()
    } else {
        failure
    }
}

/// The controller's applier, or one that impersonates the ServiceAccount to act as (see
/// [`service_account_of`]) for every call, so a tenant can change only what its account may.
pub(super) fn applier_for(
    repository: &GitRepository,
    namespace: &str,
    context: &Context,
) -> Result<Applier, Failure> {
    let client = client_for(repository, namespace, context, Reason::ApplyFailed)?;
    Ok(context.applier.with_client(client))
}

/// The controller's client, or one impersonating the ServiceAccount to act as (see
/// [`service_account_of`]); `reason` names the step that needed it, should building it fail.
fn client_for(
    repository: &GitRepository,
    namespace: &str,
    context: &Context,
    reason: Reason,
) -> Result<kube::Client, Failure> {
    let Some(account) = service_account_of(repository, &context.settings)? else {
        return Ok(context.client.clone());
    };
    crate::apply::client_as(&context.config, namespace, &account).map_err(|error| {
        Failure::new(
            reason,
            format!("impersonating ServiceAccount {account}: {error}"),
        )
    })
}

/// Errors that a retry cannot fix: the spec or the Secret must change.
fn needs_user_change(kind: &SourceErrorKind) -> bool {
    matches!(
        kind,
        SourceErrorKind::InvalidUrl(_)
            | SourceErrorKind::Credentials(_)
            | SourceErrorKind::CredentialsRequired
            | SourceErrorKind::KnownHostsRequired
            | SourceErrorKind::HostKey(_)
    )
}

async fn read_credentials(
    repository: &GitRepository,
    context: &Context,
    namespace: &str,
) -> Result<Option<Credentials>, Failure> {
    let Some(reference) = &repository.spec.secret_ref else {
        return Ok(None);
    };
    // Read as the tenant: otherwise a tenant could name a Secret its ServiceAccount may not
    // read and have the controller send its credentials to a server the tenant controls.
    let client = client_for(repository, namespace, context, Reason::SecretNotFound)?;
    let account = service_account_of(repository, &context.settings)
        .ok()
        .flatten();
    let secrets: Api<Secret> = Api::namespaced(client, namespace);
    let missing = |why: String| {
        Failure::new(
            Reason::SecretNotFound,
            format!("Secret {namespace}/{}: {why}", reference.name),
        )
        .stalled()
    };
    let secret = secrets
        .get_opt(&reference.name)
        .await
        .map_err(|error| match (&error, &account) {
            (kube::Error::Api(status), Some(account)) if status.is_forbidden() => missing(format!(
                "forbidden: ServiceAccount {account} may not read it ({})",
                status.message
            )),
            _ => missing(error.to_string()),
        })?
        .ok_or_else(|| missing("not found".into()))?;
    Credentials::from_secret(secret)
        .map(Some)
        .map_err(|error| missing(error.to_string()))
}

fn fetch_request(
    repository: &GitRepository,
    namespace: &str,
    credentials: Option<Credentials>,
    timeout: Duration,
) -> FetchRequest {
    let spec = &repository.spec;
    FetchRequest {
        owner: format!("{namespace}/{}", repository.name_any()),
        url: spec.url.clone(),
        reference: spec.reference.clone(),
        path: spec.path.clone().unwrap_or_default(),
        ignore: spec.ignore.clone(),
        credentials,
        timeout,
    }
}

fn apply_options(repository: &GitRepository, namespace: &str, context: &Context) -> ApplyOptions {
    ApplyOptions::for_repository(repository, namespace, context.settings.apply_concurrency)
}

/// Retries after consecutive failures: 5 s, 10 s, 20 s ... up to the interval, so a transient
/// failure heals fast and a persistent one does not hammer the git server or the apiserver.
pub fn backoff(consecutive_failures: u32, interval: Duration) -> Duration {
    let exponent = consecutive_failures.saturating_sub(1).min(16);
    Duration::from_secs(5)
        .saturating_mul(1 << exponent)
        .min(interval)
}

/// Spreads polls of many GitRepositories over time instead of letting them all fire at once:
/// up to 10% earlier or later.
pub fn jittered(interval: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let factor = 0.9 + f64::from(nanos % 1000) / 1000.0 * 0.2;
    // `mul_f64` panics when the product does not fit; an interval that long needs no jitter.
    Duration::try_from_secs_f64(interval.as_secs_f64() * factor).unwrap_or(interval)
}

/// Writes the status only when it changed, so a steady state costs no writes; returns the
/// object as written, or `None` when nothing needed writing.
async fn write_status(
    api: &Api<GitRepository>,
    repository: &GitRepository,
    outcome: &Outcome,
    update: impl FnOnce(&mut GitRepositoryStatus),
) -> Result<Option<GitRepository>, Error> {
    let previous = repository.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    let generation = repository.metadata.generation.unwrap_or_default();
    let now = Time(jiff::Timestamp::now());
    status.conditions = conditions_for(outcome, &previous.conditions, generation, now);
    status.observed_generation = Some(generation);
    status.last_handled_reconcile_at = repository
        .annotations()
        .get(RECONCILE_REQUESTED_AT)
        .cloned();
    update(&mut status);
    if status == previous {
        return Ok(None);
    }
    let written = api
        .patch_status(
            &repository.name_any(),
            &kube::api::PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..Default::default()
            },
            &kube::api::Patch::Merge(status_patch(status)),
        )
        .await?;
    Ok(Some(written))
}

/// The status fields the reconciler owns. A merge patch leaves out what serialization skips
/// (an emptied inventory, a removed webhook path), and leaving a key out keeps the old value:
/// each of these that is absent is sent as `null`, which deletes it.
const RECONCILER_STATUS_FIELDS: [&str; 11] = [
    "observedGeneration",
    "conditions",
    "lastFetchedRevision",
    "lastAttemptedRevision",
    "lastAppliedRevision",
    "lastAppliedCommitTime",
    "lastHandledReconcileAt",
    "inventory",
    "lastApply",
    "webhookPath",
    "lastAppliedRenderer",
];

/// The merge patch of a status write. `lastWebhook` belongs to the webhook receiver, which may
/// have recorded a newer delivery than the copy read here: left out, a merge patch keeps it.
fn status_patch(mut status: GitRepositoryStatus) -> serde_json::Value {
    status.last_webhook = None;
    let mut fields = match serde_json::to_value(status) {
        Ok(serde_json::Value::Object(fields)) => fields,
        _ => serde_json::Map::new(),
    };
    for field in RECONCILER_STATUS_FIELDS {
        fields.entry(field).or_insert(serde_json::Value::Null);
    }
    json!({ "status": fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_the_interval() {
        let interval = Duration::from_secs(300);
        let delays: Vec<u64> = (1..=8).map(|n| backoff(n, interval).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff(1000, interval), interval);
    }

    #[test]
    fn status_writes_never_mention_the_last_webhook() {
        let status = GitRepositoryStatus {
            last_applied_revision: Some("main@sha1:0123".into()),
            last_webhook: Some(crate::api::LastWebhook {
                received_at: "2025-01-02T03:04:05Z".into(),
                delivery_id: Some("d-1".into()),
                provider: "github".into(),
            }),
            ..GitRepositoryStatus::default()
        };
        let patch = status_patch(status);
        assert!(patch["status"].get("lastWebhook").is_none(), "{patch}");
        assert_eq!(patch["status"]["lastAppliedRevision"], "main@sha1:0123");
    }

    #[test]
    fn status_writes_clear_what_the_reconciler_emptied() {
        let patch = status_patch(GitRepositoryStatus::default());
        assert_eq!(patch["status"]["inventory"], serde_json::Value::Null);
        assert_eq!(patch["status"]["webhookPath"], serde_json::Value::Null);
        assert!(patch["status"].get("lastWebhook").is_none());
    }

    #[test]
    fn every_status_field_but_the_last_webhook_is_owned_by_the_reconciler() {
        let entry = InventoryEntry {
            id: "a".into(),
            version: "v1".into(),
        };
        let full = GitRepositoryStatus {
            observed_generation: Some(1),
            conditions: conditions_for(&Outcome::Suspended, &[], 1, Time(jiff::Timestamp::now())),
            last_fetched_revision: Some("r".into()),
            last_attempted_revision: Some("r".into()),
            last_applied_revision: Some("r".into()),
            last_applied_commit_time: Some("t".into()),
            last_handled_reconcile_at: Some("n".into()),
            inventory: vec![entry],
            last_apply: Some(ApplyCounts::default()),
            webhook_path: Some("/hooks/x".into()),
            last_webhook: None,
            last_applied_renderer: Some("kustomize v5.8.2".into()),
        };
        let serde_json::Value::Object(fields) = serde_json::to_value(full).unwrap() else {
            panic!("a status serializes to an object");
        };
        let mut keys: Vec<&str> = fields.keys().map(String::as_str).collect();
        let mut owned = RECONCILER_STATUS_FIELDS.to_vec();
        keys.sort_unstable();
        owned.sort_unstable();
        assert_eq!(
            keys, owned,
            "a new status field needs a place in RECONCILER_STATUS_FIELDS"
        );
    }

    fn settings() -> Settings {
        Settings {
            concurrency: 1,
            apply_concurrency: 1,
            default_interval: Duration::from_secs(300),
            git_cache_dir: "/nonexistent".into(),
            git_stall_timeout: Duration::from_secs(30),
            source_limits: crate::source::Limits::default(),
            namespace: None,
            controller_namespace: None,
            leader_election: None,
            webhook: None,
            default_service_account: None,
            require_service_account: false,
            render: Default::default(),
        }
    }

    fn repository(spec: serde_json::Value) -> GitRepository {
        let mut full = json!({ "url": "https://example.com/r.git" });
        full.as_object_mut()
            .unwrap()
            .extend(spec.as_object().unwrap().clone());
        serde_json::from_value(json!({
            "apiVersion": "driftless.dev/v1alpha1", "kind": "GitRepository",
            "metadata": { "name": "app", "namespace": "team-a" }, "spec": full,
        }))
        .unwrap()
    }

    #[test]
    fn durations_out_of_range_stall_with_the_field_named() {
        for (spec, field) in [
            (
                json!({ "interval": "99999999999999999999h" }),
                "spec.interval",
            ),
            (json!({ "retryInterval": "721h" }), "spec.retryInterval"),
            (json!({ "timeout": "2h" }), "spec.timeout"),
            (json!({ "timeout": "5d" }), "spec.timeout"),
        ] {
            let failure = check_spec(&repository(spec.clone()), &settings())
                .err()
                .unwrap_or_else(|| panic!("{spec} is refused"));
            assert_eq!(failure.reason, Reason::InvalidSpec);
            assert!(failure.stalled, "{spec}");
            assert!(failure.message.starts_with(field), "{}", failure.message);
        }
        let read = check_spec(
            &repository(json!({ "interval": "720h", "timeout": "1h" })),
            &settings(),
        )
        .unwrap_or_else(|f| panic!("{}", f.message));
        assert_eq!((read.interval, read.timeout), (MAX_INTERVAL, MAX_TIMEOUT));
        assert_eq!(read.retry_interval, None);
    }

    #[test]
    fn restricted_mode_applies_as_a_service_account_or_not_at_all() {
        let restricted = Settings {
            require_service_account: true,
            ..settings()
        };
        let without = repository(json!({}));
        let refused = service_account_of(&without, &restricted).unwrap_err();
        assert_eq!(refused.reason, Reason::ServiceAccountRequired);
        assert!(refused.stalled);
        assert!(refused.message.contains("team-a"), "{}", refused.message);
        assert_eq!(service_account_of(&without, &settings()).ok(), Some(None));
        let with_default = Settings {
            default_service_account: Some("deployer".into()),
            ..restricted
        };
        assert_eq!(
            service_account_of(&without, &with_default).ok(),
            Some(Some("deployer".into()))
        );
        let named = repository(json!({ "serviceAccountName": "own" }));
        assert_eq!(
            service_account_of(&named, &with_default).ok(),
            Some(Some("own".into()))
        );
    }

    #[test]
    fn a_skipped_path_fails_the_revision_naming_it() {
        let skipped = vec!["deploy/link.yaml".to_owned()];
        let failure = refuse_skipped_paths("main@sha1:0123", &skipped).unwrap_err();
        assert_eq!(failure.reason, Reason::ManifestInvalid);
        assert!(
            failure.message.contains("deploy/link.yaml"),
            "{}",
            failure.message
        );
        assert!(
            failure.message.contains("spec.ignore"),
            "{}",
            failure.message
        );
        assert!(refuse_skipped_paths("main@sha1:0123", &[]).is_ok());
    }

    #[test]
    fn jitter_of_an_enormous_interval_does_not_panic() {
        assert!(jittered(Duration::MAX) >= Duration::from_secs(u64::MAX / 2));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let interval = Duration::from_secs(100);
        for _ in 0..100 {
            let jittered = jittered(interval).as_secs_f64();
            assert!((90.0..=110.0).contains(&jittered), "{jittered}");
        }
    }
}
