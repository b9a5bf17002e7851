//! Hooks (`driftless.dev/hook`, and Argo CD's `argocd.argoproj.io/hook` unless
//! `--ignore-argocd-annotations`): objects of a revision run as phases around its apply, once
//! per new revision or spec change. A `PreApply` hook is applied and must be healthy (a Job
//! complete) before anything else is written; `PostApply` hooks run after every object is
//! applied and healthy; `ApplyFailed` hooks when the apply, a wave or a hook fails. Hooks are
//! not in the inventory and never pruned; their delete policy removes them.

use std::time::{Duration, Instant};

use kube::ResourceExt;

use super::{
    conditions::Reason,
    failure::{Failure, annotation_problem, refuse_annotations},
};
use crate::{
    apply::{Applier, ApplyOptions, DesiredObject, ObjectRef},
    ordering::{Phase, Role, delete_policy_of, hook_weight, role_of},
};

/// A revision's hooks by phase, in manifest order.
#[derive(Default)]
pub(super) struct Hooks {
    pre_apply: Vec<DesiredObject>,
    post_apply: Vec<DesiredObject>,
    apply_failed: Vec<DesiredObject>,
    /// Argo CD's delete-policy annotation is read too.
    argocd: bool,
}

impl Hooks {
    pub(super) fn has_post_apply(&self) -> bool {
        !self.post_apply.is_empty()
    }
}

/// The revision's ordinary objects and its hooks (skipped objects are left out), or every
/// object whose hook annotations are not understood.
pub(super) fn split_hooks(
    objects: Vec<DesiredObject>,
    argocd: bool,
    revision: &str,
) -> Result<(Vec<DesiredObject>, Hooks), Failure> {
    let mut ordinary = Vec::new();
    let mut hooks = Hooks {
        argocd,
        ..Hooks::default()
    };
    let mut invalid = Vec::new();
    for object in objects {
        let annotations = object.object.metadata.annotations.as_ref();
        let role = role_of(annotations, argocd).and_then(|role| {
            delete_policy_of(annotations, argocd)?;
            Ok(role)
        });
        match role {
            Ok(Role::Ordinary) => ordinary.push(object),
            Ok(Role::Skipped) => {}
            Ok(Role::Hook(Phase::PreApply)) => hooks.pre_apply.push(object),
            Ok(Role::Hook(Phase::PostApply)) => hooks.post_apply.push(object),
            Ok(Role::Hook(Phase::ApplyFailed)) => hooks.apply_failed.push(object),
            Err(error) => invalid.push(annotation_problem(&object, error)),
        }
    }
    refuse_annotations(revision, &invalid)?;
    for phase in [
        &mut hooks.pre_apply,
        &mut hooks.post_apply,
        &mut hooks.apply_failed,
    ] {
        // Stable: hooks of one weight keep their manifest order.
        phase.sort_by_key(|hook| hook_weight(hook.object.metadata.annotations.as_ref()));
    }
    Ok((ordinary, hooks))
}

/// Runs the hooks of `phase` one after another; the first that fails ends the phase.
pub(super) async fn run_phase(
    applier: &Applier,
    hooks: &Hooks,
    phase: Phase,
    options: &ApplyOptions,
    deadline: Instant,
    revision: &str,
) -> Result<(), Failure> {
    let objects = match phase {
        Phase::PreApply => &hooks.pre_apply,
        Phase::PostApply => &hooks.post_apply,
        Phase::ApplyFailed => &hooks.apply_failed,
    };
    for hook in objects {
        run_one(
            applier,
            hook.clone(),
            phase,
            options,
            deadline,
            hooks.argocd,
        )
        .await
        .map_err(|message| {
            Failure::new(
                Reason::HookFailed,
                format!("revision {revision}: {message}"),
            )
            .at(revision)
        })?;
    }
    Ok(())
}

/// Applies one hook (after deleting the previous run's object, by its policy), waits for it to
/// be healthy, and deletes it as its policy says; the error says which hook failed and why.
async fn run_one(
    applier: &Applier,
    hook: DesiredObject,
    phase: Phase,
    options: &ApplyOptions,
    deadline: Instant,
    argocd: bool,
) -> Result<(), String> {
    let annotations = hook.object.metadata.annotations.as_ref();
    // `split_hooks` refused every policy that is not understood.
    let policy = delete_policy_of(annotations, argocd).map_err(|error| error.to_string())?;
    let name = format!(
        "{phase:?} hook {} {}",
        kind_of(&hook),
        hook.object.name_any()
    );
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut reference = ObjectRef::of(&hook.object);
    if reference.namespace.is_none() {
        reference.namespace = Some(options.default_namespace.clone());
    }
    if policy.before_creation {
        applier
            .delete_and_wait(&reference, left())
            .await
            .map_err(|error| format!("{name}: deleting the previous run: {error}"))?;
    }
    let report = applier
        .apply(vec![hook], options)
        .await
        .map_err(|error| format!("{name}: {error}"))?;
    let applied: Vec<ObjectRef> = [
        report.created,
        report.configured,
        report.drift_corrected,
        report.unchanged,
    ]
    .into_iter()
    .flatten()
    .collect();
    let healthy = applier.wait_healthy(&applied, left()).await;
    let delete = match &healthy {
        Ok(()) => policy.on_success,
        Err(_) => policy.on_failure,
    };
    if delete {
        for object in &applied {
            applier
                .delete_and_wait(object, left())
                .await
                .map_err(|error| format!("{name}: deleting it by its policy: {error}"))?;
        }
    }
    healthy.map_err(|error| format!("{name} failed: {error}"))
}

fn kind_of(hook: &DesiredObject) -> String {
    hook.object
        .types
        .as_ref()
        .map(|types| types.kind.clone())
        .unwrap_or_default()
}
