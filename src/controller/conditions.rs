//! kstatus conditions (`Ready`, `Reconciling`, `Stalled`) as tools such as `kubectl wait` and
//! Flux's `kstatus` read them: `Ready` always present, the other two only while true.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";

/// Why the object is (not) ready; each reason names the step that failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Progressing,
    Succeeded,
    Suspended,
    GitOperationFailed,
    ManifestInvalid,
    /// A kustomization did not render (refused by a sandbox rule, or kustomize failed).
    BuildFailed,
    ValidationFailed,
    ApplyFailed,
    PruneFailed,
    HealthCheckFailed,
    SecretNotFound,
    /// A spec value the controller will not act on, e.g. a duration out of range.
    InvalidSpec,
    /// No ServiceAccount to apply as, and the controller may not use its own identity.
    ServiceAccountRequired,
    /// A `spec.dependsOn` entry is not ready; the message names it and why.
    DependencyNotReady,
    /// `spec.dependsOn` leads back to the object; the message names the cycle.
    DependencyCycle,
    /// `spec.dependsOn` names another namespace, which restricted mode refuses.
    CrossNamespaceDependency,
    /// A hook (`driftless.dev/hook`, Argo CD's `argocd.argoproj.io/hook`) failed.
    HookFailed,
    /// Deleted together with GitRepositories that depend on it: its prune waits until they
    /// have pruned theirs; the message names them.
    DeletionWaitingForDependents,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Progressing => "Progressing",
            Reason::Succeeded => "Succeeded",
            Reason::Suspended => "Suspended",
            Reason::GitOperationFailed => "GitOperationFailed",
            Reason::ManifestInvalid => "ManifestInvalid",
            Reason::BuildFailed => "BuildFailed",
            Reason::ValidationFailed => "ValidationFailed",
            Reason::ApplyFailed => "ApplyFailed",
            Reason::PruneFailed => "PruneFailed",
            Reason::HealthCheckFailed => "HealthCheckFailed",
            Reason::SecretNotFound => "SecretNotFound",
            Reason::InvalidSpec => "InvalidSpec",
            Reason::ServiceAccountRequired => "ServiceAccountRequired",
            Reason::DependencyNotReady => "DependencyNotReady",
            Reason::DependencyCycle => "DependencyCycle",
            Reason::CrossNamespaceDependency => "CrossNamespaceDependency",
            Reason::HookFailed => "HookFailed",
            Reason::DeletionWaitingForDependents => "DeletionWaitingForDependents",
        }
    }
}

/// What the conditions should say after a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Work is under way.
    Reconciling { message: String },
    /// The revision is applied (and healthy when asked to wait).
    Ready { message: String },
    /// A failure that a retry may fix.
    Failed { reason: Reason, message: String },
    /// A failure that needs a user's change; retrying would only repeat it.
    Stalled { reason: Reason, message: String },
    /// `spec.suspend` is true.
    Suspended,
}

/// The conditions for `outcome`, keeping `lastTransitionTime` of conditions whose status did
/// not change so that watchers see transitions, not churn.
pub fn conditions_for(
    outcome: &Outcome,
    previous: &[Condition],
    generation: i64,
    now: Time,
) -> Vec<Condition> {
    let make = |type_: &str, status: &str, reason: Reason, message: &str| {
        let status = status.to_owned();
        let unchanged = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status);
        Condition {
            type_: type_.to_owned(),
            status,
            reason: reason.as_str().to_owned(),
            message: message.to_owned(),
            observed_generation: Some(generation),
            last_transition_time: unchanged
                .map(|c| c.last_transition_time.clone())
                .unwrap_or_else(|| now.clone()),
        }
    };
    match outcome {
        // Unknown, not False, while working: the outcome is not known yet, and alerts on
        // Ready=False should not fire for every new commit (Flux does the same).
        Outcome::Reconciling { message } => vec![
            make(READY, "Unknown", Reason::Progressing, message),
            make(RECONCILING, "True", Reason::Progressing, message),
        ],
        Outcome::Ready { message } => vec![make(READY, "True", Reason::Succeeded, message)],
        Outcome::Failed { reason, message } => vec![make(READY, "False", *reason, message)],
        Outcome::Stalled { reason, message } => vec![
            make(READY, "False", *reason, message),
            make(STALLED, "True", *reason, message),
        ],
        Outcome::Suspended => vec![make(
            READY,
            "False",
            Reason::Suspended,
            "reconciliation is suspended",
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Time {
        Time(jiff::Timestamp::from_second(second).unwrap())
    }

    fn types(conditions: &[Condition]) -> Vec<(&str, &str, &str)> {
        conditions
            .iter()
            .map(|c| (c.type_.as_str(), c.status.as_str(), c.reason.as_str()))
            .collect()
    }

    #[test]
    fn each_outcome_sets_the_kstatus_conditions() {
        let reconciling = Outcome::Reconciling {
            message: "fetching".into(),
        };
        assert_eq!(
            types(&conditions_for(&reconciling, &[], 1, at(0))),
            [
                ("Ready", "Unknown", "Progressing"),
                ("Reconciling", "True", "Progressing")
            ]
        );
        let ready = Outcome::Ready {
            message: "applied".into(),
        };
        assert_eq!(
            types(&conditions_for(&ready, &[], 1, at(0))),
            [("Ready", "True", "Succeeded")]
        );
        let stalled = Outcome::Stalled {
            reason: Reason::SecretNotFound,
            message: "no secret".into(),
        };
        assert_eq!(
            types(&conditions_for(&stalled, &[], 1, at(0))),
            [
                ("Ready", "False", "SecretNotFound"),
                ("Stalled", "True", "SecretNotFound")
            ]
        );
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let failed = Outcome::Failed {
            reason: Reason::ApplyFailed,
            message: "a".into(),
        };
        let first = conditions_for(&failed, &[], 1, at(10));
        let again = conditions_for(&failed, &first, 2, at(20));
        assert_eq!(again[0].last_transition_time, at(10));
        assert_eq!(again[0].observed_generation, Some(2));
        let ready = conditions_for(
            &Outcome::Ready {
                message: "ok".into(),
            },
            &again,
            2,
            at(30),
        );
        assert_eq!(ready[0].last_transition_time, at(30));
    }
}
