//! Hooks: objects of a revision that run as phases around its apply instead of being applied
//! with it, and when they are deleted.

use std::collections::BTreeMap;

use crate::api::{
    ARGOCD_HOOK_ANNOTATION, ARGOCD_HOOK_DELETE_POLICY_ANNOTATION, HOOK_ANNOTATION,
    HOOK_DELETE_POLICY_ANNOTATION,
};

/// Helm's hook annotation; its install and upgrade hooks run in driftless's phases, as Argo CD
/// maps them (`pre-*` before, `post-*` after; no difference between install and upgrade).
const HELM_HOOK_ANNOTATION: &str = "helm.sh/hook";
const HELM_HOOK_DELETE_POLICY_ANNOTATION: &str = "helm.sh/hook-delete-policy";
const HELM_HOOK_WEIGHT_ANNOTATION: &str = "helm.sh/hook-weight";

/// When a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Before anything else of the revision is written.
    PreApply,
    /// After every object of the revision is applied and healthy.
    PostApply,
    /// When the apply, a health wait or a hook fails.
    ApplyFailed,
}

/// What an object of a revision is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Applied with the revision, in the inventory.
    Ordinary,
    Hook(Phase),
    /// Never applied.
    Skipped,
}

/// An annotation value driftless does not know.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("annotation {annotation}: {value:?} is not one of {expected}")]
pub struct InvalidHook {
    pub annotation: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// The role of an object with `annotations`: [`HOOK_ANNOTATION`], else (with `argocd`)
/// Argo CD's hook annotation, else ordinary. Argo CD's `PreDelete` and `PostDelete` hooks run
/// on deletion, which driftless does not do: they are skipped rather than applied.
pub fn role_of(
    annotations: Option<&BTreeMap<String, String>>,
    argocd: bool,
) -> Result<Role, InvalidHook> {
    let get = |key: &str| annotations.and_then(|a| a.get(key));
    if let Some(value) = get(HOOK_ANNOTATION) {
        return match value.trim() {
            "PreApply" => Ok(Role::Hook(Phase::PreApply)),
            "PostApply" => Ok(Role::Hook(Phase::PostApply)),
            "ApplyFailed" => Ok(Role::Hook(Phase::ApplyFailed)),
            "Skip" => Ok(Role::Skipped),
            _ => Err(InvalidHook {
                annotation: HOOK_ANNOTATION,
                value: value.clone(),
                expected: "PreApply, PostApply, ApplyFailed, Skip",
            }),
        };
    }
    let Some(value) = get(ARGOCD_HOOK_ANNOTATION).filter(|_| argocd) else {
        return Ok(get(HELM_HOOK_ANNOTATION).map_or(Role::Ordinary, |value| helm_role(value)));
    };
    // Argo CD allows several hooks in one value ("PreSync,PostSync"); the first is used.
    match value.split(',').next().unwrap_or_default().trim() {
        "PreSync" => Ok(Role::Hook(Phase::PreApply)),
        "Sync" => Ok(Role::Ordinary),
        "PostSync" => Ok(Role::Hook(Phase::PostApply)),
        "SyncFail" => Ok(Role::Hook(Phase::ApplyFailed)),
        "Skip" | "PreDelete" | "PostDelete" => Ok(Role::Skipped),
        _ => Err(InvalidHook {
            annotation: ARGOCD_HOOK_ANNOTATION,
            value: value.clone(),
            expected: "PreSync, Sync, PostSync, SyncFail, Skip, PreDelete, PostDelete",
        }),
    }
}

/// The phase of a Helm hook. The renderer already left out the hooks that are never applied
/// (tests, deletion, rollback); Helm 2's `crd-install` is an ordinary object.
fn helm_role(value: &str) -> Role {
    let hooks: Vec<&str> = value.split(',').map(str::trim).collect();
    if hooks
        .iter()
        .any(|h| matches!(*h, "pre-install" | "pre-upgrade"))
    {
        Role::Hook(Phase::PreApply)
    } else if hooks
        .iter()
        .any(|h| matches!(*h, "post-install" | "post-upgrade"))
    {
        Role::Hook(Phase::PostApply)
    } else {
        Role::Ordinary
    }
}

/// The order of a hook within its phase, lowest first: `helm.sh/hook-weight` (default 0);
/// hooks of the same weight keep their manifest order.
pub fn hook_weight(annotations: Option<&BTreeMap<String, String>>) -> i64 {
    annotations
        .and_then(|a| a.get(HELM_HOOK_WEIGHT_ANNOTATION))
        .and_then(|weight| weight.trim().parse().ok())
        .unwrap_or(0)
}

/// When a hook object is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeletePolicy {
    /// Delete the previous run's object before creating it again (so a Job runs anew).
    pub before_creation: bool,
    pub on_success: bool,
    pub on_failure: bool,
}

/// The delete policy of a hook with `annotations`; `BeforeHookCreation` when none is given.
pub fn delete_policy_of(
    annotations: Option<&BTreeMap<String, String>>,
    argocd: bool,
) -> Result<DeletePolicy, InvalidHook> {
    let get = |key: &str| annotations.and_then(|a| a.get(key));
    if let Some(value) = get(HOOK_DELETE_POLICY_ANNOTATION) {
        return parse_delete_policy(HOOK_DELETE_POLICY_ANNOTATION, value, ARGOCD_SPELLING);
    }
    if let Some(value) = get(ARGOCD_HOOK_DELETE_POLICY_ANNOTATION).filter(|_| argocd) {
        return parse_delete_policy(ARGOCD_HOOK_DELETE_POLICY_ANNOTATION, value, ARGOCD_SPELLING);
    }
    if let Some(value) = get(HELM_HOOK_DELETE_POLICY_ANNOTATION) {
        return parse_delete_policy(HELM_HOOK_DELETE_POLICY_ANNOTATION, value, HELM_SPELLING);
    }
    Ok(DeletePolicy {
        before_creation: true,
        on_success: false,
        on_failure: false,
    })
}

/// How an annotation names the three policies (before creation, on success, on failure).
struct Spelling {
    names: [&'static str; 3],
    /// The names as an error message lists them.
    listed: &'static str,
}

/// Argo CD's spelling, which driftless's own annotation shares.
const ARGOCD_SPELLING: Spelling = Spelling {
    names: ["BeforeHookCreation", "HookSucceeded", "HookFailed"],
    listed: "BeforeHookCreation, HookSucceeded, HookFailed",
};
const HELM_SPELLING: Spelling = Spelling {
    names: ["before-hook-creation", "hook-succeeded", "hook-failed"],
    listed: "before-hook-creation, hook-succeeded, hook-failed",
};

fn parse_delete_policy(
    annotation: &'static str,
    value: &str,
    spelling: Spelling,
) -> Result<DeletePolicy, InvalidHook> {
    let [before, succeeded, failed] = spelling.names;
    let mut policy = DeletePolicy {
        before_creation: false,
        on_success: false,
        on_failure: false,
    };
    for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if part == before {
            policy.before_creation = true;
        } else if part == succeeded {
            policy.on_success = true;
        } else if part == failed {
            policy.on_failure = true;
        } else {
            return Err(InvalidHook {
                annotation,
                value: value.to_owned(),
                expected: spelling.listed,
            });
        }
    }
    Ok(policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ordering::test_annotations as annotations;

    #[test]
    fn driftless_and_argo_cd_hooks_map_to_the_same_phases() {
        let role = |pairs: &[(&str, &str)], argocd| role_of(Some(&annotations(pairs)), argocd);
        assert_eq!(
            role(&[(HOOK_ANNOTATION, "PreApply")], true),
            Ok(Role::Hook(Phase::PreApply))
        );
        assert_eq!(
            role(&[(ARGOCD_HOOK_ANNOTATION, "PreSync")], true),
            Ok(Role::Hook(Phase::PreApply))
        );
        assert_eq!(
            role(&[(ARGOCD_HOOK_ANNOTATION, "PostSync")], true),
            Ok(Role::Hook(Phase::PostApply))
        );
        assert_eq!(
            role(&[(ARGOCD_HOOK_ANNOTATION, "SyncFail")], true),
            Ok(Role::Hook(Phase::ApplyFailed))
        );
        assert_eq!(
            role(&[(ARGOCD_HOOK_ANNOTATION, "Sync")], true),
            Ok(Role::Ordinary)
        );
        assert_eq!(
            role(&[(ARGOCD_HOOK_ANNOTATION, "Skip")], true),
            Ok(Role::Skipped)
        );
        assert_eq!(
            role(&[(ARGOCD_HOOK_ANNOTATION, "PreDelete")], true),
            Ok(Role::Skipped)
        );
        assert_eq!(
            role(&[(ARGOCD_HOOK_ANNOTATION, "PreSync")], false),
            Ok(Role::Ordinary),
            "Argo CD compatibility off"
        );
        assert_eq!(role_of(None, true), Ok(Role::Ordinary));
        assert!(role(&[(HOOK_ANNOTATION, "Before")], true).is_err());
    }

    #[test]
    fn helm_install_and_upgrade_hooks_run_in_the_same_phases_ordered_by_weight() {
        let role = |value: &str| role_of(Some(&annotations(&[("helm.sh/hook", value)])), true);
        assert_eq!(
            role("pre-install,pre-upgrade"),
            Ok(Role::Hook(Phase::PreApply))
        );
        assert_eq!(role("pre-upgrade"), Ok(Role::Hook(Phase::PreApply)));
        assert_eq!(role("post-install"), Ok(Role::Hook(Phase::PostApply)));
        assert_eq!(role("crd-install"), Ok(Role::Ordinary));
        assert_eq!(
            hook_weight(Some(&annotations(&[("helm.sh/hook-weight", "-5")]))),
            -5
        );
        assert_eq!(hook_weight(None), 0);
        let policy = delete_policy_of(
            Some(&annotations(&[(
                "helm.sh/hook-delete-policy",
                "before-hook-creation,hook-succeeded",
            )])),
            true,
        );
        assert_eq!(
            policy,
            Ok(DeletePolicy {
                before_creation: true,
                on_success: true,
                on_failure: false
            })
        );
    }

    #[test]
    fn delete_policies_default_to_before_hook_creation() {
        let policy = |pairs: &[(&str, &str)]| delete_policy_of(Some(&annotations(pairs)), true);
        assert_eq!(
            policy(&[]),
            Ok(DeletePolicy {
                before_creation: true,
                on_success: false,
                on_failure: false
            })
        );
        assert_eq!(
            policy(&[(ARGOCD_HOOK_DELETE_POLICY_ANNOTATION, "HookSucceeded")]),
            Ok(DeletePolicy {
                before_creation: false,
                on_success: true,
                on_failure: false
            })
        );
        assert_eq!(
            policy(&[(
                HOOK_DELETE_POLICY_ANNOTATION,
                "BeforeHookCreation, HookFailed"
            )]),
            Ok(DeletePolicy {
                before_creation: true,
                on_success: false,
                on_failure: true
            })
        );
        assert!(policy(&[(HOOK_DELETE_POLICY_ANNOTATION, "Never")]).is_err());
    }
}
