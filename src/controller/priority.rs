//! A push's changed paths first. One push to a monorepo that 1,000 GitRepositories follow queues
//! 1,000 reconciles; most of them end early (their objects did not change), but in arrival
//! order the one path that did change can wait behind hundreds of them. The pushes queued
//! together are therefore ordered before they reach the reconcile loop: first the
//! GitRepositories whose path changed between their applied commit and the pushed one, then
//! those that render (a kustomization or chart may read a base outside the path, which only
//! the render tells), then the rest; arrival order within each.
//!
//! Knowing what changed takes the pushed commit: the first GitRepository of the URL fetches it
//! here (the fetch its reconciles would make, which they then share), and paths are compared
//! by tree id, reading nothing below them. When that fails the arrival order stands.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use futures::Stream;
use kube::{
    ResourceExt,
    runtime::reflector::{ObjectRef, Store},
};

use super::{Context, artifact::artifact_of, pushes::Queued, spec::check_spec};
use crate::api::GitRepository;

/// How soon a GitRepository reached by a push is reconciled, most urgent first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Rank {
    /// Files under its path changed.
    PathChanged,
    /// Its path did not change, but what it renders may read outside it; or nothing is known.
    MayHaveChanged,
    /// Plain manifests under a path that did not change.
    Unchanged,
}

/// `items` by rank; equal ranks keep their order.
pub(super) fn changed_first<T>(items: Vec<(T, Rank)>) -> Vec<T> {
    let mut items = items;
    items.sort_by_key(|(_, rank)| *rank);
    items.into_iter().map(|(item, _)| item).collect()
}

/// How long the queue keeps collecting the pushes of one delivery once a second one came:
/// the receiver hands them over a few at a time.
const GATHER: Duration = Duration::from_millis(2);

/// How long the queue waits before handing on a less urgent group. kube-runtime's scheduler
/// stamps each request with the time it received it and, once its workers are busy, keeps the
/// due ones in a set with no order: only requests received a little later are sure to start
/// later. The pause also lets the reconcile loop start the urgent group before the rest lands.
const RANK_GAP: Duration = Duration::from_millis(5);

/// The pushes of the queue, each batch that arrived together in [`Rank`] order, each less
/// urgent group [`RANK_GAP`] after the one before.
pub(super) fn in_order(
    queued: Queued,
    context: Arc<Context>,
    store: Store<GitRepository>,
) -> impl Stream<Item = ObjectRef<GitRepository>> + Send {
    let state = (queued, VecDeque::new(), None, context, store);
    futures::stream::unfold(
        state,
        |(mut queued, mut ready, mut last, context, store)| async move {
            loop {
                if let Some((next, rank)) = ready.pop_front() {
                    if last.is_some_and(|last: Rank| rank > last) {
                        tokio::time::sleep(RANK_GAP).await;
                    }
                    let last = Some(rank);
                    return Some((next, (queued, ready, last, context, store)));
                }
                last = None;
                let mut batch = vec![queued.recv().await?];
                while let Ok(more) = queued.try_recv() {
                    batch.push(more);
                }
                if batch.len() > 1 {
                    loop {
                        tokio::time::sleep(GATHER).await;
                        let before = batch.len();
                        while let Ok(more) = queued.try_recv() {
                            batch.push(more);
                        }
                        if batch.len() == before {
                            break;
                        }
                    }
                }
                ready = ordered(batch, &context, &store).await.into();
            }
        },
    )
}

/// Orders one batch: each URL's GitRepositories by [`Rank`], URLs in order of arrival.
async fn ordered(
    batch: Vec<ObjectRef<GitRepository>>,
    context: &Context,
    store: &Store<GitRepository>,
) -> Vec<(ObjectRef<GitRepository>, Rank)> {
    if batch.len() < 2 {
        return unranked(batch);
    }
    let mut by_url: Vec<(String, Vec<ObjectRef<GitRepository>>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for reference in batch {
        let url = store
            .get(&reference)
            .map(|repository| repository.spec.url.clone())
            .unwrap_or_default();
        let slot = *index.entry(url.clone()).or_insert_with(|| {
            by_url.push((url, Vec::new()));
            by_url.len() - 1
        });
        by_url[slot].1.push(reference);
    }
    let mut out = Vec::new();
    for (_, references) in by_url {
        out.extend(ranked(references, context, store).await);
    }
    out
}

/// Everything at one rank: the arrival order stands, with no pause.
fn unranked(references: Vec<ObjectRef<GitRepository>>) -> Vec<(ObjectRef<GitRepository>, Rank)> {
    references
        .into_iter()
        .map(|reference| (reference, Rank::MayHaveChanged))
        .collect()
}

/// One URL's GitRepositories by rank, or as they came when the pushed commit cannot be read.
async fn ranked(
    references: Vec<ObjectRef<GitRepository>>,
    context: &Context,
    store: &Store<GitRepository>,
) -> Vec<(ObjectRef<GitRepository>, Rank)> {
    let repositories: Vec<Option<Arc<GitRepository>>> =
        references.iter().map(|r| store.get(r)).collect();
    let Some(first) = repositories.iter().flatten().next().cloned() else {
        return unranked(references);
    };
    if references.len() < 2 {
        return unranked(references);
    }
    let Ok(durations) = check_spec(&first, &context.settings) else {
        return unranked(references);
    };
    let namespace = first.namespace().unwrap_or_default();
    let pushed = context
        .pushes
        .queued_at(&namespace, &first.name_any())
        .unwrap_or_else(Instant::now);
    let started = Instant::now();
    let fetched = artifact_of(&first, context, &namespace, durations.timeout, Some(pushed)).await;
    let Ok(artifact) = fetched else {
        return unranked(references);
    };
    let snapshot = artifact.snapshot;
    let ranks = tokio::task::spawn_blocking(move || {
        repositories
            .iter()
            .map(|repository| {
                repository
                    .as_deref()
                    .map_or(Rank::MayHaveChanged, |r| rank_of(&snapshot, r))
            })
            .collect::<Vec<_>>()
    })
    .await;
    let Ok(ranks) = ranks else {
        return unranked(references);
    };
    context
        .metrics
        .observe_stage("push_order", started.elapsed());
    tracing::debug!(
        ?ranks,
        "pushes of one repository ordered, changed paths first"
    );
    let ranked = references.into_iter().zip(ranks);
    changed_first(ranked.map(|pair| (pair.clone(), pair.1)).collect())
}

/// Where `repository` goes, from its applied commit and its path in the pushed commit.
fn rank_of(pushed: &crate::source::Snapshot, repository: &GitRepository) -> Rank {
    let renders = repository.spec.helm.is_some()
        || repository
            .status
            .as_ref()
            .is_some_and(|status| status.last_applied_renderer.is_some());
    let applied = repository
        .applied_revision()
        .and_then(|revision| revision.rsplit(':').next())
        .map(str::to_owned);
    let path = repository.spec.path.clone().unwrap_or_default();
    let changed =
        applied.and_then(|commit| pushed.path_changed_since(&commit, &path).ok().flatten());
    match changed {
        Some(true) => Rank::PathChanged,
        Some(false) if !renders => Rank::Unchanged,
        _ => Rank::MayHaveChanged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_paths_come_first_then_renderers_then_the_rest_in_arrival_order() {
        let items = vec![
            ("a", Rank::Unchanged),
            ("b", Rank::MayHaveChanged),
            ("c", Rank::Unchanged),
            ("d", Rank::PathChanged),
            ("e", Rank::MayHaveChanged),
            ("f", Rank::PathChanged),
        ];
        assert_eq!(changed_first(items), ["d", "f", "b", "e", "a", "c"]);
    }

    #[test]
    fn one_changed_path_among_a_thousand_goes_first() {
        let items: Vec<_> = (0..1000)
            .map(|i| {
                (
                    i,
                    if i == 817 {
                        Rank::PathChanged
                    } else {
                        Rank::Unchanged
                    },
                )
            })
            .collect();
        let order = changed_first(items);
        assert_eq!(order[0], 817);
        assert_eq!(order[1..5], [0, 1, 2, 3]);
    }
}
