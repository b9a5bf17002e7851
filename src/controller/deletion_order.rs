//! Deletion in reverse order (the rule is [`crate::ordering::deletion_order`]'s): before a
//! GitRepository being deleted prunes, it looks for GitRepositories that depend on it and are
//! being deleted too; while one of them has not pruned, it waits, saying so in its status.
//! Their deletion wakes it (a watch of deletions), with a slow look as a safety net.

use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::{
    Api, ResourceExt,
    runtime::{
        WatchStreamExt,
        controller::Action,
        events::EventType,
        reflector::{ObjectRef as StoreRef, Store},
        watcher,
    },
};

use super::{
    Context, Error,
    conditions::{Outcome, Reason},
    dependencies::cycle_of,
    finalizer::leaves_objects_in_place,
    report::publish,
    status::write_status,
};
use crate::{
    api::{FINALIZER, GitRepository},
    ordering::{DeletionOrder, DependentState, Node, deletion_order, is_dependent_of},
};

/// How often a waiting dependency looks again when no deletion woke it (a watch that
/// restarted may have missed one).
const LOOK_AGAIN_EVERY: Duration = Duration::from_secs(30);

/// The Warning event of a dependency pruned while dependents stay.
pub(super) const DEPENDENTS_REMAIN: &str = "DependentsRemain";

/// For a GitRepository being deleted: `Some(action)` while it must wait for dependents being
/// deleted too (its finalizer stays, its status says why); `None` when it may prune now.
pub(super) async fn wait_for_dependents(
    repository: &GitRepository,
    context: &Context,
) -> Result<Option<Action>, Error> {
    if repository.metadata.deletion_timestamp.is_none()
        || !repository.finalizers().iter().any(|f| f == FINALIZER)
        || leaves_objects_in_place(repository, context).await
        // In a cycle each would wait for the other: prune as before.
        || cycle_of(repository, &context.repositories).is_some()
    {
        return Ok(None);
    }
    let order = deletion_order(dependents(repository, context).await);
    let Some(message) = order.message() else {
        return Ok(None);
    };
    match order {
        DeletionOrder::Wait { .. } => {
            let api: Api<GitRepository> = Api::namespaced(
                context.client.clone(),
                &repository.namespace().unwrap_or_default(),
            );
            let outcome = Outcome::Failed {
                reason: Reason::DeletionWaitingForDependents,
                message: message.clone(),
            };
            let written = write_status(&api, repository, &outcome, |_| {}).await?;
            if written.is_some() {
                let reason = Reason::DeletionWaitingForDependents.as_str();
                publish(
                    &context.recorder,
                    repository,
                    EventType::Normal,
                    reason,
                    message,
                )
                .await;
            }
            Ok(Some(Action::requeue(LOOK_AGAIN_EVERY)))
        }
        DeletionOrder::Proceed { .. } => {
            let warning = EventType::Warning;
            publish(
                &context.recorder,
                repository,
                warning,
                DEPENDENTS_REMAIN,
                message,
            )
            .await;
            Ok(None)
        }
    }
}

/// The dependents of `repository`, found in the controller's cache and each read again from
/// the API (the cache may not have seen a deletion that woke this reconcile yet). A dependent
/// whose own prune is done (its finalizer released) counts as gone.
async fn dependents(repository: &GitRepository, context: &Context) -> Vec<(Node, DependentState)> {
    let dependency = Node::of(repository);
    let mut found = Vec::new();
    for cached in context.repositories.state() {
        if !is_dependent_of(&cached, &dependency) {
            continue;
        }
        let node = Node::of(&cached);
        let api: Api<GitRepository> = Api::namespaced(context.client.clone(), &node.namespace);
        let current = match api.get_opt(&node.name).await {
            Ok(current) => current,
            // Unreadable now: as the cache has it.
            Err(_) => Some((*cached).clone()),
        };
        let Some(current) = current else { continue };
        let state = if current.metadata.deletion_timestamp.is_none() {
            DependentState::Staying
        } else if current.finalizers().iter().any(|f| f == FINALIZER) {
            DependentState::Deleting
        } else {
            continue;
        };
        found.push((node, state));
    }
    found
}

/// The GitRepositories whose deletion (or progress towards it) may let a waiting dependency
/// prune: every change of one being deleted, and its removal.
pub(super) fn deletions(
    api: Api<GitRepository>,
) -> impl Stream<Item = Result<GitRepository, watcher::Error>> {
    watcher(api, watcher::Config::default())
        .default_backoff()
        .filter_map(|event| async move {
            match event {
                Ok(watcher::Event::Delete(gone)) => Some(Ok(gone)),
                Ok(watcher::Event::Apply(changed))
                    if changed.metadata.deletion_timestamp.is_some() =>
                {
                    Some(Ok(changed))
                }
                Ok(_) => None,
                Err(error) => Some(Err(error)),
            }
        })
}

/// The dependencies of `dependent` that are being deleted, to look again at whether they may
/// prune now.
pub(super) fn dependencies_being_deleted(
    store: &Store<GitRepository>,
    dependent: &GitRepository,
) -> Vec<StoreRef<GitRepository>> {
    crate::ordering::dependencies_of(dependent)
        .into_iter()
        .map(|node| StoreRef::new(&node.name).within(&node.namespace))
        .filter(|key| {
            store
                .get(key)
                .is_some_and(|dependency| dependency.metadata.deletion_timestamp.is_some())
        })
        .collect()
}
