//! Whether a dependent may apply: which dependencies to look at, and the verdict from what
//! they say.

use std::fmt;

use crate::api::{DependenciesReady, Dependency, DependencyPolicy};

use super::readiness::Readiness;

/// Whether `dependency` must be looked at before applying `revision` at spec `generation`:
/// always with policy `Always`; with `UntilReady`, unless every dependency was already found
/// ready for this very revision and generation (`record`).
pub fn needs_check(
    dependency: &Dependency,
    record: Option<&DependenciesReady>,
    revision: &str,
    generation: i64,
) -> bool {
    let recorded = record.is_some_and(|r| r.revision == revision && r.generation == generation);
    dependency.policy() == DependencyPolicy::Always || !recorded
}

/// A dependency that keeps the dependent from applying.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocker {
    /// `GitRepository team-a/crds`.
    pub dependency: String,
    /// Why, e.g. `it does not exist`.
    pub why: String,
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "dependency {} is not ready: {}",
            self.dependency, self.why
        )
    }
}

/// The verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// Every dependency that is not ready, in `spec.dependsOn` order.
    Blocked(Vec<Blocker>),
}

impl Gate {
    /// The `Ready` condition's message of a blocked dependent.
    pub fn message(&self) -> Option<String> {
        match self {
            Gate::Open => None,
            Gate::Blocked(blockers) => Some(
                blockers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        }
    }
}

/// The verdict over the dependencies looked at, each named (`GitRepository ns/name`) with
/// where it stands.
pub fn decide(looked_at: Vec<(String, Readiness)>) -> Gate {
    let blockers: Vec<Blocker> = looked_at
        .into_iter()
        .filter_map(|(dependency, readiness)| {
            let why = match readiness {
                Readiness::Ready => return None,
                Readiness::NotReady(why) => why,
                Readiness::Missing => "it does not exist; waiting for it to be created".into(),
            };
            Some(Blocker { dependency, why })
        })
        .collect();
    if blockers.is_empty() {
        Gate::Open
    } else {
        Gate::Blocked(blockers)
    }
}

/// The first dependency in another namespace than `own`, unless such dependencies are
/// `allowed`: a tenant must not make its apply wait on (and so learn the readiness of) another
/// tenant's objects.
pub fn cross_namespace_refused<'a>(
    own: &str,
    dependencies: &'a [Dependency],
    allowed: bool,
) -> Option<&'a Dependency> {
    if allowed {
        return None;
    }
    dependencies
        .iter()
        .find(|dependency| dependency.namespace_or(own) != own)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dependency(name: &str, policy: Option<DependencyPolicy>) -> Dependency {
        Dependency {
            name: name.into(),
            policy,
            ..Default::default()
        }
    }

    #[test]
    fn until_ready_is_not_looked_at_again_for_the_recorded_revision_and_spec() {
        let record = DependenciesReady {
            revision: "main@sha1:1".into(),
            generation: 4,
        };
        let until_ready = dependency("crds", None);
        assert!(!needs_check(&until_ready, Some(&record), "main@sha1:1", 4));
        assert!(needs_check(&until_ready, Some(&record), "main@sha1:2", 4));
        assert!(needs_check(&until_ready, Some(&record), "main@sha1:1", 5));
        assert!(needs_check(&until_ready, None, "main@sha1:1", 4));
        let always = dependency("crds", Some(DependencyPolicy::Always));
        assert!(needs_check(&always, Some(&record), "main@sha1:1", 4));
    }

    #[test]
    fn the_verdict_names_every_blocker_and_why() {
        let gate = decide(vec![
            ("GitRepository ns/crds".into(), Readiness::Ready),
            (
                "GitRepository ns/crs".into(),
                Readiness::NotReady("Ready=Unknown (Progressing): applying".into()),
            ),
            ("GitRepository ns/db".into(), Readiness::Missing),
        ]);
        assert_eq!(
            gate.message().unwrap(),
            "dependency GitRepository ns/crs is not ready: Ready=Unknown (Progressing): \
             applying; dependency GitRepository ns/db is not ready: it does not exist; waiting \
             for it to be created"
        );
        assert_eq!(
            decide(vec![("GitRepository ns/crds".into(), Readiness::Ready)]),
            Gate::Open
        );
        assert_eq!(decide(Vec::new()), Gate::Open);
    }

    #[test]
    fn another_namespace_is_refused_unless_allowed() {
        let same = dependency("crds", None);
        let explicit_same = Dependency {
            namespace: Some("team-a".into()),
            ..dependency("crs", None)
        };
        let other = Dependency {
            namespace: Some("platform".into()),
            ..dependency("crds", None)
        };
        let dependencies = vec![same, explicit_same, other.clone()];
        assert_eq!(
            cross_namespace_refused("team-a", &dependencies, false),
            Some(&other)
        );
        assert_eq!(cross_namespace_refused("team-a", &dependencies, true), None);
        assert_eq!(
            cross_namespace_refused("team-a", &dependencies[..2], false),
            None
        );
    }
}
