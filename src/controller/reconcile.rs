//! One reconcile of one GitRepository: check the spec, fetch, render and read, apply, prune,
//! wait for health, then record and report the outcome. Each step's failure becomes a
//! [`Failure`] the status, the events and the metrics report.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use kube::{Api, ResourceExt, runtime::controller::Action};

use super::{
    Context, Error,
    alerts::{announce_failure, announce_success},
    artifact::artifact_of,
    commit_status::report_commit_status,
    conditions::{Outcome, Reason},
    converged::Converged,
    decision::{self, Decision},
    dependencies::{DependencyCheck, check_dependencies},
    expressions::{SpecExpressions, judging_by},
    failure::{
        Failure, manifest_failure, refuse_skipped_paths, render_failure, substitution_failure,
    },
    health::{
        HealthWait, Step, look_at_health, objects_to_wait_for, recheck_health, record_waiting,
    },
    hooks::{Hooks, run_phase, split_hooks},
    identity::{Tenants, applier_for, client_for},
    prune::prune_stale,
    report::{publish, report_failure, report_success},
    schedule::{jittered, retry_after},
    spec::{SpecDurations, check_spec},
    status::{is_new_work, mark_reconciling, write_status},
    waves::{WavePlan, apply_in_waves},
    webhook_token::{TokenError, webhook_path_of},
};
use crate::{
    api::{DependenciesReady, GitRepository},
    apply::{ApplyOptions, DesiredObject, ObjectRef, digest_of},
    commit_status::State,
    expressions::HealthRules,
    manifests,
    ordering::Phase,
    revision,
    source::Artifact,
};

/// Makes the cluster match the GitRepository's revision and reports how that went.
pub(super) async fn reconcile_repository(
    repository: Arc<GitRepository>,
    context: Arc<Context>,
) -> Result<Action, Error> {
    let namespace = repository.namespace().unwrap_or_default();
    let name = repository.name_any();
    let api: Api<GitRepository> = Api::namespaced(context.client.clone(), &namespace);
    let started = Instant::now();
    let push = context.pushes.take(&namespace, &name);
    if repository.spec.suspend == Some(true) {
        context.health_waits.forget(&namespace, &name);
        context.applied.forget(&namespace, &name);
        write_status(&api, &repository, &Outcome::Suspended, |_| {}).await?;
        return Ok(Action::await_change());
    }
    let checked = check_spec(&repository, &context.settings);
    let interval = checked
        .as_ref()
        .map(|durations| durations.interval)
        .unwrap_or(context.settings.default_interval);
    let retry_interval = checked.as_ref().ok().and_then(|d| d.retry_interval);
    let pushed = push.as_ref().map(|push| push.queued_at);
    let worked = match checked {
        Ok(durations) => work(&api, repository, &context, &namespace, &durations, pushed).await?,
        Err(failure) => Work::Done(repository, Err(failure)),
    };
    let (repository, result) = match worked {
        Work::Done(repository, result) => (repository, result),
        Work::Blocked {
            repository,
            revision,
            message,
            look_again_in,
        } => {
            record_blocked(&context, &api, &repository, &revision, message).await?;
            context
                .metrics
                .observe_reconcile(Reason::DependencyNotReady.as_str(), started.elapsed());
            return Ok(Action::requeue(
                look_again_in.unwrap_or_else(|| jittered(interval)),
            ));
        }
        Work::Unchanged {
            drift_check_in,
            repository,
            revision,
        } => {
            context
                .metrics
                .observe_reconcile("unchanged", started.elapsed());
            // The cluster already holds (healthy) exactly this commit's objects.
            let note = "applied: the same objects as the commit applied before";
            report_commit_status(&context, &repository, &revision, State::Success, note).await;
            tracing::debug!(
                namespace,
                name,
                "the pushed commit applies the same objects"
            );
            return Ok(Action::requeue(drift_check_in));
        }
    };
    let webhook_path = published_webhook_path(&context, &repository).await;
    let delivery = push.and_then(|push| push.delivery);
    match result {
        Ok(Step::Waiting(wait)) => {
            record_waiting(&api, &repository, &wait, &webhook_path, delivery).await?;
            let again = wait.look_again_in();
            context.health_waits.insert(&namespace, &name, wait);
            Ok(Action::requeue(again))
        }
        Ok(Step::Converged { converged, started }) => {
            report_success(&context, &repository, &converged, started.elapsed()).await;
            // Only now: with spec.wait, after the objects became healthy.
            let healthy = if repository.spec.wait == Some(true) {
                "applied and healthy"
            } else {
                "applied"
            };
            let revision = &converged.revision;
            report_commit_status(&context, &repository, revision, State::Success, healthy).await;
            announce_success(&context, &repository, &converged).await;
            let previous = repository.status.as_ref();
            let decided = decision::after_success(previous, &converged, webhook_path, delivery);
            let recording = Instant::now();
            record(&api, &repository, &decided).await?;
            context.metrics.observe_stage("record", recording.elapsed());
            let checked_at = converged.compared_at.unwrap_or_else(Instant::now);
            context.applied.remember(
                &repository,
                &converged.digest,
                &converged.report.in_place,
                checked_at,
            );
            context.failures.clear(&namespace, &name);
            Ok(Action::requeue(next_look(interval, checked_at)))
        }
        Err(failure) => {
            report_failure(&context, &repository, &failure, started.elapsed()).await;
            if let Some(revision) = &failure.revision {
                let message = format!("{}: {}", failure.reason.as_str(), failure.message);
                report_commit_status(&context, &repository, revision, State::Failure, &message)
                    .await;
            }
            announce_failure(&context, &repository, &failure).await;
            record(
                &api,
                &repository,
                &decision::after_failure(&failure, webhook_path, delivery),
            )
            .await?;
            let failures = context.failures.record(&namespace, &name);
            Ok(Action::requeue(retry_after(
                failures,
                interval,
                retry_interval,
            )))
        }
    }
}

/// The next reconcile: after the interval, or sooner when a push left some objects unread and
/// the drift check that compares every object is due earlier.
fn next_look(interval: Duration, checked_at: Instant) -> Duration {
    let due_in = interval.saturating_sub(checked_at.elapsed());
    jittered(interval).min(due_in.max(MIN_REQUEUE))
}

/// The soonest a drift check is scheduled, so that a late one does not spin.
const MIN_REQUEUE: Duration = Duration::from_secs(1);

/// The per-object webhook's path for the status, read as the tenant. A Secret the tenant's
/// account may not read gets no path, and a Warning event saying why (the receiver serves no
/// hook for it either).
async fn published_webhook_path(context: &Context, repository: &GitRepository) -> Option<String> {
    let tenants = Tenants {
        config: &context.config,
        client: &context.client,
        settings: &context.settings,
    };
    match webhook_path_of(tenants, repository).await {
        Ok(path) => path,
        // Without an identity the reconcile itself failed and says so.
        Err(TokenError::NoIdentity(_)) => None,
        Err(error @ TokenError::Forbidden { .. }) => {
            tracing::warn!(
                namespace = repository.namespace().unwrap_or_default(),
                name = repository.name_any(),
                %error,
                "per-object webhook not served"
            );
            let note = error.to_string();
            publish(
                &context.recorder,
                repository,
                kube::runtime::events::EventType::Warning,
                WEBHOOK_SECRET_UNREADABLE,
                note,
            )
            .await;
            None
        }
        Err(error) => {
            tracing::debug!(%error, "webhook token not read; no path published this time");
            None
        }
    }
}

/// The reason of the Warning event for a webhook Secret the tenant may not read.
pub(super) const WEBHOOK_SECRET_UNREADABLE: &str = "WebhookSecretUnreadable";

async fn record(
    api: &Api<GitRepository>,
    repository: &GitRepository,
    decided: &Decision,
) -> Result<(), Error> {
    write_status(api, repository, &decided.outcome, |status| {
        decided.apply_to(status)
    })
    .await?;
    Ok(())
}

/// A dependent waits for its dependencies: `Ready=False, reason=DependencyNotReady` naming
/// each blocker, and an event saying so once. Not a failure: no Warning, no backoff; the
/// dependencies' readiness changes reconcile it again (see `super::dependencies`).
async fn record_blocked(
    context: &Context,
    api: &Api<GitRepository>,
    repository: &GitRepository,
    revision: &str,
    message: String,
) -> Result<(), Error> {
    let namespace = repository.namespace().unwrap_or_default();
    context
        .metrics
        .set_ready(&namespace, &repository.name_any(), false);
    let message = format!("revision {revision} waits: {message}");
    let outcome = Outcome::Failed {
        reason: Reason::DependencyNotReady,
        message: message.clone(),
    };
    let written = write_status(api, repository, &outcome, |status| {
        status.last_fetched_revision = Some(revision.to_owned());
    })
    .await?;
    if written.is_some() {
        publish(
            &context.recorder,
            repository,
            kube::runtime::events::EventType::Normal,
            Reason::DependencyNotReady.as_str(),
            message,
        )
        .await;
    }
    Ok(())
}

/// How far a reconcile's work went.
// Returned once per reconcile and matched at once, never stored: boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Work {
    /// A push brought a commit (`revision`) that applies the same objects as the last full
    /// reconcile: nothing was asked of the API; the next drift check is due in
    /// `drift_check_in`.
    Unchanged {
        drift_check_in: Duration,
        repository: Arc<GitRepository>,
        revision: String,
    },
    /// The object as last written, and where its work ended.
    Done(Arc<GitRepository>, Result<Step, Failure>),
    /// `revision` waits for the dependencies `message` names; nothing was applied.
    Blocked {
        repository: Arc<GitRepository>,
        revision: String,
        message: String,
        look_again_in: Option<Duration>,
    },
}

/// Fetches, renders and applies; or, while the applied revision waits for health, only looks
/// at its health again, so a waiting object holds no worker between looks. A push whose commit
/// leaves the objects to apply as they were ends before any API request.
async fn work(
    api: &Api<GitRepository>,
    repository: Arc<GitRepository>,
    context: &Context,
    namespace: &str,
    durations: &SpecDurations,
    pushed: Option<Instant>,
) -> Result<Work, Error> {
    // A push ends a health wait at once: the pushed commit is fetched and applied now (often
    // the fix for the rollout that waits), not after the old revision's timeout.
    if pushed.is_some() {
        context
            .health_waits
            .forget(namespace, &repository.name_any());
    } else if let Some(wait) = context.health_waits.take(&repository) {
        let step = recheck_health(&repository, context, namespace, wait).await;
        return Ok(Work::Done(repository, step));
    }
    let expressions = match SpecExpressions::compile(&repository) {
        Ok(expressions) => expressions,
        Err(failure) => return Ok(Work::Done(repository, Err(failure))),
    };
    let mut options =
        ApplyOptions::for_repository(&repository, namespace, context.settings.apply_concurrency);
    let fetching = Instant::now();
    let fetched = artifact_of(&repository, context, namespace, durations.timeout, pushed).await;
    context.metrics.observe_stage("fetch", fetching.elapsed());
    let desired = match fetched {
        Ok(artifact) => desired_state(&repository, context, namespace, &options, artifact).await,
        Err(failure) => Err(failure),
    };
    let desired = match desired {
        Ok(desired) => desired,
        Err(failure) => return Ok(Work::Done(repository, Err(failure))),
    };
    let applied = &context.applied;
    let unchanged =
        pushed.and_then(|_| applied.unchanged(&repository, &desired.digest, durations.interval));
    if let Some(drift_check_in) = unchanged {
        return Ok(Work::Unchanged {
            drift_check_in,
            repository,
            revision: desired.revision,
        });
    }
    // Only a push trusts what the last apply left in place; the interval reconcile and one
    // asked for by hand compare every object, which is what finds drift.
    let trusted = pushed.and_then(|_| applied.trusted(&repository, durations.interval));
    let compared_at = trusted.as_ref().map(|trusted| trusted.checked_at);
    if let Some(trusted) = trusted {
        options.trusted = trusted.hashes;
    }
    let dependencies_ready = match check_dependencies(
        &repository,
        context,
        namespace,
        &desired.revision,
        &expressions.ready,
    )
    .await
    {
        Ok(DependencyCheck::Open { ready }) => ready,
        Ok(DependencyCheck::Blocked {
            message,
            look_again_in,
        }) => {
            return Ok(Work::Blocked {
                repository,
                revision: desired.revision,
                message,
                look_again_in,
            });
        }
        Err(failure) => {
            let failure = failure.at(&desired.revision);
            return Ok(Work::Done(repository, Err(failure)));
        }
    };
    // Remembered again once everything is applied: until then the cluster may hold part of
    // another set of objects.
    context.applied.forget(namespace, &repository.name_any());
    // Hooks run once per new revision or spec change, not at every resync.
    let new_work = is_new_work(&repository, &desired.revision);
    let marking = Instant::now();
    let repository = if new_work {
        let revision = &desired.revision;
        report_commit_status(context, &repository, revision, State::Pending, "applying").await;
        mark_reconciling(api, repository, revision).await?
    } else {
        repository
    };
    context.metrics.observe_stage("status", marking.elapsed());
    let desired = DesiredState {
        compared_at,
        ..desired
    };
    let step = converge(
        &repository,
        context,
        namespace,
        &options,
        desired,
        durations,
        Admitted {
            dependencies_ready,
            new_work,
            health_rules: expressions.health,
        },
    )
    .await;
    Ok(Work::Done(repository, step))
}

/// What the checks before an apply decided.
struct Admitted {
    /// The revision and generation every dependency was found ready for.
    dependencies_ready: Option<DependenciesReady>,
    /// A new revision or spec: hooks run.
    new_work: bool,
    /// `spec.healthCheckExprs`, compiled.
    health_rules: Arc<HealthRules>,
}

/// The revision's hooks around its apply (when `hooks` is given: new work), and the apply
/// itself in waves; an `ApplyFailed` hook runs when the apply or a hook failed.
async fn apply_with_hooks(
    applier: &crate::apply::Applier,
    objects: Vec<DesiredObject>,
    options: &ApplyOptions,
    plan: &WavePlan<'_>,
    hooks: Option<&Hooks>,
) -> Result<crate::apply::ApplyReport, Failure> {
    let Some(hooks) = hooks else {
        return apply_in_waves(applier, objects, options, plan).await;
    };
    let (deadline, revision) = (plan.deadline, plan.revision);
    let phase = |phase| run_phase(applier, hooks, phase, options, deadline, revision);
    let applied = async {
        phase(Phase::PreApply).await?;
        let report = apply_in_waves(applier, objects, options, plan).await?;
        if hooks.has_post_apply() {
            let left = deadline.saturating_duration_since(Instant::now());
            let applied: Vec<ObjectRef> = report.objects().cloned().collect();
            applier
                .wait_healthy(&applied, left.max(Duration::from_millis(1)))
                .await
                .map_err(|error| {
                    Failure::new(
                        Reason::HealthCheckFailed,
                        format!("revision {revision}: before the PostApply hooks: {error}"),
                    )
                    .at(revision)
                    .keeping(crate::apply::inventory_of(&report))
                })?;
            phase(Phase::PostApply).await?;
        }
        Ok(report)
    }
    .await;
    if applied.is_err() {
        // The failure to report is the apply's; a failing ApplyFailed hook only adds a log line.
        if let Err(hook) = phase(Phase::ApplyFailed).await {
            tracing::warn!(
                revision,
                failure = hook.message,
                "an ApplyFailed hook failed"
            );
        }
    }
    applied
}

/// A revision's objects as they are to be applied: rendered, read, substituted and labelled.
pub(super) struct DesiredState {
    pub(super) revision: String,
    commit_time: String,
    pub(super) objects: Vec<DesiredObject>,
    /// `kustomize <version>` or `helm <version>` when anything was rendered.
    renderer: Option<String>,
    /// See [`crate::apply::digest_of`].
    digest: String,
    /// When every object was last compared with the cluster, if this apply trusts some of them
    /// to be in place since; `None` when it compares all.
    compared_at: Option<Instant>,
}

/// Renders and reads the revision's files into the objects to apply.
pub(super) async fn desired_state(
    repository: &GitRepository,
    context: &Context,
    namespace: &str,
    options: &ApplyOptions,
    artifact: Artifact,
) -> Result<DesiredState, Failure> {
    let revision = artifact.revision.clone();
    refuse_skipped_paths(&revision, &artifact.skipped)?;
    // Variables and values are read as the same account that applies, so a tenant cannot
    // publish what it may not read.
    let reader = client_for(repository, namespace, context, Reason::BuildFailed)?;
    let chart = super::render::chart_context(
        repository,
        &options.default_namespace,
        &context.applier,
        &reader,
    )
    .await
    .map_err(|message| {
        Failure::new(
            Reason::BuildFailed,
            format!("revision {revision}: {message}"),
        )
        .at(&revision)
    })?;
    let rendering = Instant::now();
    let mut inputs =
        revision::manifest_inputs(&context.renderer, &artifact, &repository.spec, &chart)
            .await
            .map_err(|errors| render_failure(&artifact, &errors))?;
    super::render::substitute(&mut inputs, &repository.spec, namespace, &reader)
        .await
        .map_err(|error| substitution_failure(&revision, error))?;
    let metrics = &context.metrics;
    metrics.observe_stage("render", rendering.elapsed());
    let parsing = Instant::now();
    let budget = manifests::Budget::default();
    let read = manifests::read_manifests_cached(inputs.sources(), &budget, Some(&context.parsed))
        .map_err(|errors| manifest_failure(&revision, errors))?;
    metrics.count_manifest_files(read.parsed_files, read.cached_files);
    metrics.observe_stage("parse", parsing.elapsed());
    let preparing = Instant::now();
    let mut manifests = read.manifests;
    let renderer = inputs.renderer();
    revision::apply_common_metadata(&mut manifests, &repository.spec);
    let objects = revision::desired_objects(manifests);
    let digest = digest_of(&objects);
    metrics.observe_stage("prepare", preparing.elapsed());
    Ok(DesiredState {
        digest,
        revision,
        commit_time: artifact.commit_time,
        objects,
        renderer,
        compared_at: None,
    })
}

/// Applies and prunes the revision's objects; then, with `spec.wait`, takes a first look at
/// their health.
async fn converge(
    repository: &GitRepository,
    context: &Context,
    namespace: &str,
    options: &ApplyOptions,
    desired: DesiredState,
    durations: &SpecDurations,
    admitted: Admitted,
) -> Result<Step, Failure> {
    let Admitted {
        dependencies_ready,
        new_work,
        health_rules,
    } = admitted;
    let started = Instant::now();
    let revision = desired.revision;
    let applier = judging_by(applier_for(repository, namespace, context)?, &health_rules);
    let inventory = repository
        .status
        .as_ref()
        .map(|status| status.inventory.as_slice())
        .unwrap_or_default();
    let argocd = !context.settings.ignore_argocd_annotations;
    let deadline = started.checked_add(durations.timeout).unwrap_or(started);
    let plan = WavePlan {
        revision: &revision,
        argocd,
        deadline,
        inventory,
    };
    let (objects, hooks) = split_hooks(desired.objects, argocd, &revision)?;
    let hooks = new_work.then_some(hooks);
    let report = apply_with_hooks(&applier, objects, options, &plan, hooks.as_ref()).await?;
    let metrics = &context.metrics;
    let timings = &report.timings;
    metrics.observe_stage("apply_list", timings.list);
    metrics.observe_stage("apply_plan", timings.plan);
    metrics.observe_stage("apply_write", timings.write);
    metrics.observe_stage("apply_established", timings.established);
    let pruning = Instant::now();
    let (inventory, pruned) = prune_stale(repository, namespace, context, &applier, &report)
        .await
        .map_err(|failure| failure.at(&revision))?;
    metrics.observe_stage("prune", pruning.elapsed());
    let applied: Vec<ObjectRef> = report.objects().cloned().collect();
    let converged = Converged {
        revision,
        commit_time: desired.commit_time,
        report,
        pruned,
        inventory,
        renderer: desired.renderer,
        digest: desired.digest,
        compared_at: desired.compared_at,
        dependencies_ready,
    };
    let Some(objects) = objects_to_wait_for(repository, namespace, applied) else {
        return Ok(Step::Converged { converged, started });
    };
    let timeout = durations.timeout;
    let wait = HealthWait::new(
        repository,
        converged,
        objects,
        started,
        timeout,
        health_rules,
    );
    look_at_health(&applier, wait).await
}
