//! `spec.dependsOn` in a reconcile: the refusals (a cycle, another namespace in restricted
//! mode), the dependencies' readiness read from the cluster, and the trigger that reconciles
//! the dependents of a GitRepository as soon as its readiness changes. The decisions
//! themselves are [`crate::ordering`]'s.

use std::time::Duration;

use kube::{
    Api,
    runtime::reflector::{ObjectRef as StoreRef, Store},
};

use super::{Context, conditions::Reason, failure::Failure, identity::applier_for};
use crate::{
    api::{DependenciesReady, Dependency, GitRepository},
    apply::{HealthCheck, ObjectRef},
    ordering::{
        Gate, Node, Readiness, cross_namespace_refused, cycle_through, decide, dependencies_of,
        describe_cycle, git_repository_readiness, is_dependent_of, needs_check,
    },
};

/// How often a dependent blocked by an object that is not a GitRepository looks again: those
/// kinds are not watched, GitRepositories are.
pub(super) const OTHER_KINDS_LOOKED_AT_EVERY: Duration = Duration::from_secs(2);

/// What the dependencies allow.
pub(super) enum DependencyCheck {
    /// Apply; record `ready` with the applied revision.
    Open { ready: Option<DependenciesReady> },
    /// Wait: `message` names each blocker; `look_again_in` is set when a blocker is of a kind
    /// no watch reports on.
    Blocked {
        message: String,
        look_again_in: Option<Duration>,
    },
}

/// Whether `repository` may apply `revision` now.
pub(super) async fn check_dependencies(
    repository: &GitRepository,
    context: &Context,
    namespace: &str,
    revision: &str,
) -> Result<DependencyCheck, Failure> {
    let dependencies = &repository.spec.depends_on;
    if dependencies.is_empty() {
        return Ok(DependencyCheck::Open { ready: None });
    }
    let settings = &context.settings;
    let allowed = !settings.require_service_account || settings.allow_cross_namespace_dependencies;
    if let Some(refused) = cross_namespace_refused(namespace, dependencies, allowed) {
        return Err(Failure::new(
            Reason::CrossNamespaceDependency,
            format!(
                "spec.dependsOn names {} {}/{} in another namespace, which this controller \
                 refuses in restricted mode (--require-service-account) unless started with \
                 --allow-cross-namespace-dependencies",
                refused.kind(),
                refused.namespace_or(namespace),
                refused.name
            ),
        )
        .stalled());
    }
    if let Some(cycle) = cycle_of(repository, &context.repositories) {
        return Err(Failure::new(
            Reason::DependencyCycle,
            format!(
                "spec.dependsOn makes a cycle: {}; no GitRepository of it can apply until one \
                 of them leaves it",
                describe_cycle(&cycle)
            ),
        )
        .stalled());
    }
    let generation = repository.metadata.generation.unwrap_or_default();
    let record = repository
        .status
        .as_ref()
        .and_then(|s| s.dependencies_ready.as_ref());
    let mut looked_at = Vec::new();
    let mut other_kinds_block = false;
    for dependency in dependencies {
        if !needs_check(dependency, record, revision, generation) {
            continue;
        }
        let readiness = readiness_of(repository, context, namespace, dependency).await?;
        other_kinds_block |= readiness != Readiness::Ready && !dependency.is_git_repository();
        looked_at.push((describe(dependency, namespace), readiness));
    }
    let ready = DependenciesReady {
        revision: revision.to_owned(),
        generation,
    };
    match decide(looked_at) {
        Gate::Open => Ok(DependencyCheck::Open { ready: Some(ready) }),
        blocked => Ok(DependencyCheck::Blocked {
            message: blocked.message().unwrap_or_default(),
            look_again_in: other_kinds_block.then_some(OTHER_KINDS_LOOKED_AT_EVERY),
        }),
    }
}

/// `GitRepository team-a/crds`, `apiextensions.k8s.io/v1 CustomResourceDefinition widgets.x`.
fn describe(dependency: &Dependency, namespace: &str) -> String {
    let namespace = dependency.namespace_or(namespace);
    if dependency.is_git_repository() {
        format!("GitRepository {namespace}/{}", dependency.name)
    } else {
        format!(
            "{} {} {namespace}/{}",
            dependency.api_version(),
            dependency.kind(),
            dependency.name
        )
    }
}

/// A cycle through `repository`, walking the other GitRepositories' `dependsOn` as the
/// controller's cache holds them.
pub(super) fn cycle_of(
    repository: &GitRepository,
    store: &Store<GitRepository>,
) -> Option<Vec<Node>> {
    let start = Node::of(repository);
    cycle_through(&start, |node| {
        if node == &start {
            return dependencies_of(repository);
        }
        let key = StoreRef::new(&node.name).within(&node.namespace);
        store
            .get(&key)
            .map(|other| dependencies_of(&other))
            .unwrap_or_default()
    })
}

/// Reads one dependency: a GitRepository from the API (never the cache, which may lag the
/// event that started this reconcile), any other kind as the tenant, by its kstatus health.
async fn readiness_of(
    repository: &GitRepository,
    context: &Context,
    namespace: &str,
    dependency: &Dependency,
) -> Result<Readiness, Failure> {
    let dependency_namespace = dependency.namespace_or(namespace);
    if dependency.is_git_repository() {
        let api: Api<GitRepository> = Api::namespaced(context.client.clone(), dependency_namespace);
        return match api.get_opt(&dependency.name).await {
            Ok(Some(found)) => Ok(git_repository_readiness(&found)),
            Ok(None) => Ok(Readiness::Missing),
            Err(error) => Ok(Readiness::NotReady(format!("cannot be read: {error}"))),
        };
    }
    let applier = applier_for(repository, namespace, context)?;
    let object = ObjectRef {
        api_version: dependency.api_version().to_owned(),
        kind: dependency.kind().to_owned(),
        namespace: Some(dependency_namespace.to_owned()),
        name: dependency.name.clone(),
    };
    // One look, never "out of time": a dependency has no deadline of its own.
    let looked = applier
        .check_health(&[object], Duration::from_secs(1), false)
        .await;
    Ok(match looked {
        HealthCheck::Healthy => Readiness::Ready,
        HealthCheck::Progressing(why) if why.ends_with(": not found") => Readiness::Missing,
        HealthCheck::Progressing(why) => Readiness::NotReady(why),
        HealthCheck::Failed(error) => Readiness::NotReady(error.to_string()),
    })
}

/// The GitRepositories to reconcile when `dependency` changed in a way its dependents care
/// about (see [`crate::ordering::readiness_key`]).
pub(super) fn dependents_of(
    store: &Store<GitRepository>,
    dependency: &GitRepository,
) -> Vec<StoreRef<GitRepository>> {
    let node = Node::of(dependency);
    store
        .state()
        .into_iter()
        .filter(|dependent| is_dependent_of(dependent, &node))
        .map(|dependent| StoreRef::from_obj(&*dependent))
        .collect()
}

/// The hash of what, in a GitRepository, its dependents react to.
pub(super) fn readiness_hash(repository: &GitRepository) -> Option<u64> {
    Some(super::predicate_hash(&crate::ordering::readiness_key(
        repository,
    )))
}
