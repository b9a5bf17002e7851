//! When a dependency counts as ready.

use crate::api::GitRepository;

/// Where one dependency stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// It exists and is not ready; the text says why, in the dependency's own words.
    NotReady(String),
    /// It does not exist (yet).
    Missing,
}

/// A GitRepository is ready for its dependents when its `Ready` condition is `True` for its
/// current spec (the condition's observed generation is the object's generation) and it has
/// applied the revision it last fetched: a new commit it is still applying keeps its
/// dependents waiting, so they never run ahead of it.
pub fn git_repository_readiness(dependency: &GitRepository) -> Readiness {
    let Some(status) = dependency.status.as_ref() else {
        return Readiness::NotReady("it has not been reconciled yet".into());
    };
    let Some(ready) = status.conditions.iter().find(|c| c.type_ == "Ready") else {
        return Readiness::NotReady("it has no Ready condition yet".into());
    };
    if ready.status != "True" {
        return Readiness::NotReady(format!(
            "Ready={} ({}): {}",
            ready.status, ready.reason, ready.message
        ));
    }
    let generation = dependency.metadata.generation;
    if ready.observed_generation != generation {
        return Readiness::NotReady(format!(
            "its spec (generation {}) is not reconciled yet",
            generation.unwrap_or_default()
        ));
    }
    match (&status.last_applied_revision, &status.last_fetched_revision) {
        (Some(applied), Some(fetched)) if applied == fetched => Readiness::Ready,
        (applied, fetched) => Readiness::NotReady(format!(
            "it fetched {} and has applied {}",
            fetched.as_deref().unwrap_or("nothing"),
            applied.as_deref().unwrap_or("nothing")
        )),
    }
}

/// What, in a GitRepository's change, matters to its dependents: whether it is ready, and at
/// which revision. A dependent is looked at again when this changes, not at every status
/// write.
pub fn readiness_key(dependency: &GitRepository) -> (bool, Option<String>) {
    let applied = dependency.applied_revision().map(str::to_owned);
    (
        git_repository_readiness(dependency) == Readiness::Ready,
        applied,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn repository(generation: i64, status: serde_json::Value) -> GitRepository {
        serde_json::from_value(json!({
            "apiVersion": "driftless.dev/v1alpha1", "kind": "GitRepository",
            "metadata": { "name": "crds", "namespace": "ns", "generation": generation },
            "spec": { "url": "https://example.com/r.git" },
            "status": status,
        }))
        .unwrap()
    }

    fn ready(observed: i64) -> serde_json::Value {
        json!([{ "type": "Ready", "status": "True", "reason": "Succeeded", "message": "ok",
                 "observedGeneration": observed, "lastTransitionTime": "2026-12-07T00:00:00Z" }])
    }

    #[test]
    fn ready_at_the_current_generation_with_the_fetched_revision_applied() {
        let dependency = repository(
            2,
            json!({ "conditions": ready(2), "lastFetchedRevision": "main@sha1:1",
                    "lastAppliedRevision": "main@sha1:1" }),
        );
        assert_eq!(git_repository_readiness(&dependency), Readiness::Ready);
    }

    #[test]
    fn a_new_spec_not_yet_reconciled_is_not_ready() {
        let dependency = repository(
            3,
            json!({ "conditions": ready(2), "lastFetchedRevision": "main@sha1:1",
                    "lastAppliedRevision": "main@sha1:1" }),
        );
        assert!(matches!(
            git_repository_readiness(&dependency),
            Readiness::NotReady(why) if why.contains("generation 3")
        ));
    }

    #[test]
    fn a_fetched_revision_not_yet_applied_is_not_ready() {
        let dependency = repository(
            2,
            json!({ "conditions": ready(2), "lastFetchedRevision": "main@sha1:2",
                    "lastAppliedRevision": "main@sha1:1" }),
        );
        assert!(matches!(
            git_repository_readiness(&dependency),
            Readiness::NotReady(why) if why.contains("fetched main@sha1:2")
        ));
    }

    #[test]
    fn the_ready_condition_s_reason_explains_a_dependency_that_is_not_ready() {
        let dependency = repository(
            1,
            json!({ "conditions": [{ "type": "Ready", "status": "False",
                "reason": "HealthCheckFailed", "message": "Deployment web: 0 of 1 available",
                "observedGeneration": 1, "lastTransitionTime": "2026-12-07T00:00:00Z" }] }),
        );
        assert_eq!(
            git_repository_readiness(&dependency),
            Readiness::NotReady(
                "Ready=False (HealthCheckFailed): Deployment web: 0 of 1 available".into()
            )
        );
        let fresh = repository(1, serde_json::Value::Null);
        assert!(matches!(
            git_repository_readiness(&fresh),
            Readiness::NotReady(_)
        ));
    }
}
