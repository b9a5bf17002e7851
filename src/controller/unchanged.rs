//! A push whose commit leaves a GitRepository's objects as they were ends before any API
//! request: no status write, no listing, no apply, no event. In a monorepo that 1,000
//! GitRepositories follow, a commit to one path then costs the other 999 one shared fetch and
//! a read of their files from the cache.
//!
//! "As they were" is decided on what would be applied (the digest of the desired objects
//! after rendering and substitution), not on file paths, so a change to a Kustomize base or a
//! chart dependency outside the path is never missed. Drift is not looked for on this path:
//! the interval reconcile that does so is kept on its schedule.
//!
//! A push that does change some objects applies only those: the objects whose content hash is
//! one the last apply left in place are trusted to be there (see
//! [`crate::apply::ApplyOptions::trusted`]) and cost no read, comparison or dry run. The time
//! of the last full comparison is carried over, so the drift check that looks at every object
//! again stays on its schedule however often pushes come.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use kube::ResourceExt;

use crate::{api::GitRepository, api::RECONCILE_REQUESTED_AT, sync::lock};

/// What the last full reconcile of each GitRepository applied, kept in memory: after a restart
/// the first reconcile of each is full again.
#[derive(Default)]
pub(super) struct AppliedDigests {
    applied: Mutex<HashMap<(String, String), Applied>>,
}

#[derive(Clone, Debug)]
struct Applied {
    uid: Option<String>,
    generation: Option<i64>,
    /// Digest of the desired objects (see [`crate::apply::digest_of`]).
    digest: String,
    /// When every object was last compared with the cluster.
    checked_at: Instant,
    /// Content hashes of the objects the last apply left in place.
    in_place: Arc<HashSet<String>>,
}

/// What a push may take as in place, and since when nothing was compared.
pub(super) struct Trusted {
    pub(super) hashes: Arc<HashSet<String>>,
    pub(super) checked_at: Instant,
}

impl AppliedDigests {
    /// Remembers what a reconcile applied: `digest` of its objects, the content hashes it left
    /// in place, and when every object was last compared with the cluster (now after a full
    /// comparison; the earlier time when a push trusted some objects).
    pub(super) fn remember(
        &self,
        repository: &GitRepository,
        digest: &str,
        in_place: &[String],
        checked_at: Instant,
    ) {
        let applied = Applied {
            uid: repository.uid(),
            generation: repository.metadata.generation,
            digest: digest.to_owned(),
            checked_at,
            in_place: Arc::new(in_place.iter().cloned().collect()),
        };
        lock(&self.applied).insert(key_of(repository), applied);
    }

    /// The objects a push may leave unread because the last apply put them in place, while
    /// the drift check is not due; `None` when everything must be compared.
    pub(super) fn trusted(
        &self,
        repository: &GitRepository,
        interval: Duration,
    ) -> Option<Trusted> {
        let applied = lock(&self.applied).get(&key_of(repository))?.clone();
        may_trust(&applied, repository, interval, Instant::now())?;
        Some(Trusted {
            hashes: applied.in_place,
            checked_at: applied.checked_at,
        })
    }

    pub(super) fn forget(&self, namespace: &str, name: &str) {
        lock(&self.applied).remove(&(namespace.to_owned(), name.to_owned()));
    }

    /// How long until the next drift check, when a push that wants `digest` applied may end
    /// here; `None` when it must apply.
    pub(super) fn unchanged(
        &self,
        repository: &GitRepository,
        digest: &str,
        interval: Duration,
    ) -> Option<Duration> {
        let applied = lock(&self.applied).get(&key_of(repository))?.clone();
        ends_early(&applied, repository, digest, interval, Instant::now())
    }
}

fn key_of(repository: &GitRepository) -> (String, String) {
    (
        repository.namespace().unwrap_or_default(),
        repository.name_any(),
    )
}

/// The rule: the same object at the same spec, the same desired objects, no reconcile asked
/// for by hand since, and the drift check not due yet.
fn ends_early(
    applied: &Applied,
    repository: &GitRepository,
    digest: &str,
    interval: Duration,
    now: Instant,
) -> Option<Duration> {
    if applied.digest != digest {
        return None;
    }
    may_trust(applied, repository, interval, now)
}

/// The rule without the digest: the same object at the same spec, no reconcile asked for by
/// hand since, and the drift check not due yet; how long until it is.
fn may_trust(
    applied: &Applied,
    repository: &GitRepository,
    interval: Duration,
    now: Instant,
) -> Option<Duration> {
    let same_object = applied.uid == repository.uid();
    let same_spec = applied.generation == repository.metadata.generation;
    let requested = repository.annotations().get(RECONCILE_REQUESTED_AT);
    let handled = repository
        .status
        .as_ref()
        .and_then(|status| status.last_handled_reconcile_at.as_ref());
    let asked_by_hand = requested.is_some() && requested != handled;
    if !same_object || !same_spec || asked_by_hand {
        return None;
    }
    let since = now.saturating_duration_since(applied.checked_at);
    interval.checked_sub(since).filter(|left| !left.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::GitRepositoryStatus;

    const INTERVAL: Duration = Duration::from_secs(600);

    fn repository() -> GitRepository {
        let mut repository: GitRepository = serde_json::from_value(serde_json::json!({
            "apiVersion": "driftless.dev/v1alpha1", "kind": "GitRepository",
            "metadata": { "name": "app", "namespace": "team-a", "uid": "u-1", "generation": 2 },
            "spec": { "url": "https://example.invalid/repo.git" },
        }))
        .unwrap();
        repository.status = Some(GitRepositoryStatus::default());
        repository
    }

    fn applied(checked_at: Instant) -> Applied {
        Applied {
            uid: Some("u-1".into()),
            generation: Some(2),
            digest: "d-1".into(),
            checked_at,
            in_place: Arc::default(),
        }
    }

    #[test]
    fn the_same_objects_end_early_until_the_drift_check_is_due() {
        let now = Instant::now();
        let checked = applied(now - Duration::from_secs(60));
        let left = ends_early(&checked, &repository(), "d-1", INTERVAL, now);
        assert_eq!(left, Some(Duration::from_secs(540)));
        let due = applied(now - INTERVAL);
        assert_eq!(ends_early(&due, &repository(), "d-1", INTERVAL, now), None);
    }

    #[test]
    fn other_objects_a_new_spec_or_a_recreated_object_apply() {
        let now = Instant::now();
        let checked = applied(now);
        assert_eq!(
            ends_early(&checked, &repository(), "d-2", INTERVAL, now),
            None
        );
        let mut edited = repository();
        edited.metadata.generation = Some(3);
        assert_eq!(ends_early(&checked, &edited, "d-1", INTERVAL, now), None);
        let mut recreated = repository();
        recreated.metadata.uid = Some("u-2".into());
        assert_eq!(ends_early(&checked, &recreated, "d-1", INTERVAL, now), None);
    }

    #[test]
    fn a_reconcile_asked_for_by_hand_applies() {
        let now = Instant::now();
        let checked = applied(now);
        let mut asked = repository();
        asked
            .annotations_mut()
            .insert(RECONCILE_REQUESTED_AT.into(), "2026-12-02T01:00:00Z".into());
        assert_eq!(ends_early(&checked, &asked, "d-1", INTERVAL, now), None);
        asked.status.as_mut().unwrap().last_handled_reconcile_at =
            Some("2026-12-02T01:00:00Z".into());
        assert!(ends_early(&checked, &asked, "d-1", INTERVAL, now).is_some());
    }

    #[test]
    fn a_push_trusts_what_the_last_apply_left_until_the_drift_check_is_due() {
        let digests = AppliedDigests::default();
        let repository = repository();
        let minute_ago = Instant::now() - Duration::from_secs(60);
        digests.remember(&repository, "d-1", &["h-1".into()], minute_ago);
        let trusted = digests.trusted(&repository, INTERVAL).unwrap();
        assert!(trusted.hashes.contains("h-1"));
        assert_eq!(trusted.checked_at, minute_ago, "the last full comparison");
        digests.remember(
            &repository,
            "d-2",
            &["h-1".into()],
            Instant::now() - INTERVAL,
        );
        assert!(
            digests.trusted(&repository, INTERVAL).is_none(),
            "the drift check is due: compare everything"
        );
    }

    #[test]
    fn nothing_is_trusted_for_a_reconcile_asked_for_by_hand_or_a_new_spec() {
        let digests = AppliedDigests::default();
        digests.remember(&repository(), "d-1", &["h-1".into()], Instant::now());
        let mut asked = repository();
        asked
            .annotations_mut()
            .insert(RECONCILE_REQUESTED_AT.into(), "2026-12-02T01:00:00Z".into());
        assert!(digests.trusted(&asked, INTERVAL).is_none());
        let mut edited = repository();
        edited.metadata.generation = Some(3);
        assert!(digests.trusted(&edited, INTERVAL).is_none());
        digests.forget("team-a", "app");
        assert!(digests.trusted(&repository(), INTERVAL).is_none());
    }
}
