//! One reconcile of one GitRepository: credentials, fetch, read, apply, status. Each step's
//! failure becomes a condition with a reason and a message the user can act on.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::Time};
use kube::{Api, ResourceExt, runtime::controller::Action};
use serde_json::json;
use tracing::{info, warn};

use kube::runtime::events::EventType;

use super::{
    Context, Error,
    conditions::{Outcome, Reason, conditions_for},
    events, prune,
};
use crate::{
    api::{ApplyCounts, GitRepository, GitRepositoryStatus, InventoryEntry, parse_duration},
    apply::{
        Applier, ApplyError, ApplyOptions, ApplyReport, DesiredObject, FIELD_MANAGER, PruneReport,
        inventory::{OWNER_NAME_LABEL, OWNER_NAMESPACE_LABEL},
    },
    manifests::{self, Manifest},
    source::{Artifact, Credentials, FetchRequest, SourceErrorKind},
};

/// Annotation whose new value asks for an immediate reconcile (the webhook sets it too).
pub const RECONCILE_REQUESTED_AT: &str = "driftless.dev/reconcile-requested-at";

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Makes the cluster match the GitRepository's revision and reports how that went.
pub async fn reconcile_repository(
    repository: Arc<GitRepository>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = repository.namespace().unwrap_or_default();
    let api: Api<GitRepository> = Api::namespaced(context.client.clone(), &namespace);
    let interval = interval_of(&repository, &context);
    let started = std::time::Instant::now();
    if repository.spec.suspend == Some(true) {
        write_status(&api, &repository, &Outcome::Suspended, |_| {}).await?;
        return Ok(Action::await_change());
    }
    let fetched = fetch(&repository, &context, &namespace).await;
    let repository = match &fetched {
        Ok(artifact) if is_new_work(&repository, artifact) => {
            mark_reconciling(&api, repository, artifact).await?
        }
        _ => repository,
    };
    let result = match fetched {
        Ok(artifact) => converge(&repository, &context, &namespace, artifact).await,
        Err(failure) => Err(failure),
    };
    let webhook_path = webhook_path_of(&repository, &context, &namespace).await;
    record_metrics(&context, &repository, &result, started.elapsed());
    match result {
        Ok(converged) => {
            let summary = converged.summary();
            info!(
                namespace,
                name = repository.name_any(),
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
            context.failures.clear(&namespace, &repository.name_any());
            Ok(Action::requeue(jittered(interval)))
        }
        Err(failure) => {
            warn!(
                namespace,
                name = repository.name_any(),
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
            let failures = context.failures.record(&namespace, &repository.name_any());
            Ok(Action::requeue(
                retry_interval_of(&repository).unwrap_or_else(|| backoff(failures, interval)),
            ))
        }
    }
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
    result: &Result<Converged, Failure>,
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
) -> Result<Artifact, Failure> {
    let credentials = read_credentials(repository, context, namespace).await?;
    let request = fetch_request(repository, namespace, credentials);
    let fetch_started = std::time::Instant::now();
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
) -> Result<Converged, Failure> {
    let mut inputs = super::render::manifest_inputs(&context.renderer, &artifact, &repository.spec)
        .await
        .map_err(|errors| render_failure(&artifact, &errors))?;
    super::render::substitute(&mut inputs, &repository.spec, namespace, context)
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
    super::render::apply_common_metadata(&mut manifests, &repository.spec);
    let options = apply_options(repository, namespace, context);
    let applier = applier_for(repository, namespace, context)?;
    let report = applier
        .apply(desired_objects(manifests), &options)
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
    if repository.spec.wait == Some(true) {
        let applied = [
            &report.created,
            &report.configured,
            &report.drift_corrected,
            &report.unchanged,
        ];
        let objects: Vec<_> = applied.into_iter().flatten().cloned().collect();
        applier
            .wait_healthy(&objects, request_timeout(repository))
            .await
            .map_err(|error| {
                Failure::new(
                    Reason::HealthCheckFailed,
                    format!("revision {}: {error}", artifact.revision),
                )
                .at(&artifact.revision)
                .keeping(inventory.clone())
            })?;
    }
    Ok(Converged {
        artifact,
        report,
        pruned,
        inventory,
        renderer,
    })
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

/// The controller's applier, or, with `spec.serviceAccountName`, one that impersonates that
/// ServiceAccount for every call so a tenant can change only what its account may.
pub(super) fn applier_for(
    repository: &GitRepository,
    namespace: &str,
    context: &Context,
) -> Result<Applier, Failure> {
    let Some(account) = &repository.spec.service_account_name else {
        return Ok(context.applier.with_client(context.client.clone()));
    };
    let mut config = context.config.clone();
    config.auth_info.impersonate = Some(format!("system:serviceaccount:{namespace}:{account}"));
    let client = kube::Client::try_from(config).map_err(|error| {
        Failure::new(
            Reason::ApplyFailed,
            format!("impersonating ServiceAccount {account}: {error}"),
        )
    })?;
    Ok(context.applier.with_client(client))
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
    let secrets: Api<Secret> = Api::namespaced(context.client.clone(), namespace);
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
        .map_err(|error| missing(error.to_string()))?
        .ok_or_else(|| missing("not found".into()))?;
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    Credentials::from_secret_data(&data)
        .map(Some)
        .map_err(|error| missing(error.to_string()))
}

fn fetch_request(
    repository: &GitRepository,
    namespace: &str,
    credentials: Option<Credentials>,
) -> FetchRequest {
    let spec = &repository.spec;
    FetchRequest {
        owner: format!("{namespace}/{}", repository.name_any()),
        url: spec.url.clone(),
        reference: spec.reference.clone(),
        path: spec.path.clone().unwrap_or_default(),
        ignore: spec.ignore.clone(),
        credentials,
        timeout: request_timeout(repository),
    }
}

fn apply_options(repository: &GitRepository, namespace: &str, context: &Context) -> ApplyOptions {
    let owner_labels = BTreeMap::from([
        (OWNER_NAME_LABEL.to_owned(), repository.name_any()),
        (OWNER_NAMESPACE_LABEL.to_owned(), namespace.to_owned()),
    ]);
    ApplyOptions {
        default_namespace: repository
            .spec
            .target_namespace
            .clone()
            .unwrap_or_else(|| namespace.to_owned()),
        owner_labels,
        concurrency: context.settings.apply_concurrency,
        ..ApplyOptions::default()
    }
}

fn desired_objects(manifests: Vec<Manifest>) -> Vec<DesiredObject> {
    manifests
        .into_iter()
        .map(|m| DesiredObject {
            origin: format!("{}: {}", m.file, m.position),
            object: m.object,
        })
        .collect()
}

/// `spec.timeout`: bounds git work, and waiting for health.
fn request_timeout(repository: &GitRepository) -> Duration {
    repository
        .spec
        .timeout
        .as_deref()
        .and_then(|t| parse_duration(t).ok())
        .unwrap_or(DEFAULT_TIMEOUT)
}

/// Retries after consecutive failures: 5 s, 10 s, 20 s ... up to the interval, so a transient
/// failure heals fast and a persistent one does not hammer the git server or the apiserver.
pub fn backoff(consecutive_failures: u32, interval: Duration) -> Duration {
    let exponent = consecutive_failures.saturating_sub(1).min(16);
    Duration::from_secs(5)
        .saturating_mul(1 << exponent)
        .min(interval)
}

fn interval_of(repository: &GitRepository, context: &Context) -> Duration {
    repository
        .spec
        .interval
        .as_deref()
        .and_then(|text| parse_duration(text).ok())
        .unwrap_or(context.settings.default_interval)
}

fn retry_interval_of(repository: &GitRepository) -> Option<Duration> {
    repository
        .spec
        .retry_interval
        .as_deref()
        .and_then(|text| parse_duration(text).ok())
}

/// Spreads polls of many GitRepositories over time instead of letting them all fire at once:
/// up to 10% earlier or later.
pub fn jittered(interval: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let factor = 0.9 + f64::from(nanos % 1000) / 1000.0 * 0.2;
    interval.mul_f64(factor)
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

/// The merge patch of a status write. `lastWebhook` belongs to the webhook receiver, which may
/// have recorded a newer delivery than the copy read here: left out, a merge patch keeps it.
fn status_patch(mut status: GitRepositoryStatus) -> serde_json::Value {
    status.last_webhook = None;
    json!({ "status": status })
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
        assert_eq!(
            patch,
            json!({ "status": { "lastAppliedRevision": "main@sha1:0123" } })
        );
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
