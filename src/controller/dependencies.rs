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
    expressions::ReadyExpr,
    ordering::{
        Gate, Node, Readiness, cross_namespace_refused, cycle_through, decide, dependencies_of,
        describe_cycle, git_repository_readiness, is_dependent_of, needs_check,
    },
};

/// How often a dependent blocked by an object that is not a GitRepository (or has a
/// `readyExpr`) looks again while the watch of its kind is not live yet (or may not be).
pub(super) const OTHER_KINDS_LOOKED_AT_EVERY: Duration = Duration::from_secs(2);

/// How often it looks again once that watch is live: only to close the short window in which
/// a change lands before the dependent's own `DependencyNotReady` is in the cache the watch
/// consults.
pub(super) const WATCHED_KINDS_LOOKED_AT_EVERY: Duration = Duration::from_secs(30);

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
    ready_exprs: &[Option<ReadyExpr>],
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
    let mut look_again_in: Option<Duration> = None;
    for (index, dependency) in dependencies.iter().enumerate() {
        if !needs_check(dependency, record, revision, generation) {
            continue;
        }
        let ready_expr = ready_exprs.get(index).and_then(Option::as_ref);
        let readiness = match ready_expr {
            Some(expression) => {
                readiness_by_expression(repository, context, namespace, dependency, expression)
                    .await?
            }
            None => readiness_of(repository, context, namespace, dependency).await?,
        };
        // A readyExpr may read what the readiness watch on GitRepositories does not react to:
        // such a dependency is watched by its kind, as other kinds are.
        let by_kind = !dependency.is_git_repository() || ready_expr.is_some();
        if readiness != Readiness::Ready && by_kind {
            let watches = &context.dependency_watches;
            let again = if watches.watch(dependency.api_version(), dependency.kind()) {
                WATCHED_KINDS_LOOKED_AT_EVERY
            } else {
                OTHER_KINDS_LOOKED_AT_EVERY
            };
            look_again_in = Some(look_again_in.map_or(again, |sooner| sooner.min(again)));
        }
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
            look_again_in,
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

/// Reads one dependency and asks its `readyExpr` (over `dep`, the dependency, and `self`, the
/// dependent) whether it is ready, in place of the built-in check: a GitRepository as the
/// controller, any other kind as the tenant.
async fn readiness_by_expression(
    repository: &GitRepository,
    context: &Context,
    namespace: &str,
    dependency: &Dependency,
    expression: &ReadyExpr,
) -> Result<Readiness, Failure> {
    let dependency_namespace = dependency.namespace_or(namespace);
    let read = if dependency.is_git_repository() {
        let api: Api<GitRepository> = Api::namespaced(context.client.clone(), dependency_namespace);
        match api.get_opt(&dependency.name).await {
            Ok(found) => found
                .map(|found| serde_json::to_value(found).map_err(|e| e.to_string()))
                .transpose(),
            Err(error) => Err(error.to_string()),
        }
    } else {
        let applier = applier_for(repository, namespace, context)?;
        let object = ObjectRef {
            api_version: dependency.api_version().to_owned(),
            kind: dependency.kind().to_owned(),
            namespace: Some(dependency_namespace.to_owned()),
            name: dependency.name.clone(),
        };
        applier.read(&object).await
    };
    let found = match read {
        Ok(Some(found)) => found,
        Ok(None) => return Ok(Readiness::Missing),
        Err(error) => return Ok(Readiness::NotReady(format!("cannot be read: {error}"))),
    };
    let dependent = serde_json::to_value(repository).unwrap_or_default();
    let source = expression.source();
    Ok(match expression.is_ready(found, dependent).await {
        Ok(true) => Readiness::Ready,
        Ok(false) => Readiness::NotReady(format!("readyExpr `{source}` is false")),
        Err(error) => {
            Readiness::NotReady(format!("readyExpr `{source}` cannot be evaluated: {error}"))
        }
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
