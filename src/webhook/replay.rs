//! Drops deliveries whose id was seen recently, so that a redelivery (Git hosts retry on
//! timeouts, and users press "Redeliver") does not trigger a second reconcile.
//!
//! Bounded in time and size: ids expire after a TTL and the oldest are evicted beyond a
//! capacity, so a flood of distinct ids costs at most `capacity` entries of memory.
//!
//! For GitHub, Gitea, GitLab tokens and Bitbucket the delivery id header is not covered by the
//! signature, so this de-duplicates honest redeliveries but cannot stop an attacker who replays
//! a captured body under a fresh id. Standard Webhooks signs id and timestamp, so there it is
//! real replay protection. The worst a replay can do either way is one extra reconcile.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::provider::Provider;

/// How long a delivery id is remembered. Longer than any provider's retry schedule that
/// matters, short enough to keep the set small.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10 * 60);

/// How many ids are remembered at most; beyond this the oldest are forgotten first.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// Ids are namespaced by provider: two hosts may well use the same id scheme.
type DeliveryKey = (Provider, String);

/// A bounded, expiring set of recently seen delivery ids. Shared by all requests.
#[derive(Debug)]
pub struct ReplayCache {
    ttl: Duration,
    capacity: usize,
    state: Mutex<SeenDeliveries>,
}

#[derive(Debug, Default)]
struct SeenDeliveries {
    ids: HashSet<DeliveryKey>,
    /// Insertion order with time, oldest first, for expiry and eviction without scanning.
    order: VecDeque<(Instant, DeliveryKey)>,
}

impl Default for ReplayCache {
    fn default() -> Self {
        ReplayCache::new(DEFAULT_TTL, DEFAULT_CAPACITY)
    }
}

impl ReplayCache {
    /// A cache remembering ids for `ttl`, at most `capacity` of them (at least one).
    pub fn new(ttl: Duration, capacity: usize) -> ReplayCache {
        ReplayCache {
            ttl,
            capacity: capacity.max(1),
            state: Mutex::new(SeenDeliveries::default()),
        }
    }

    /// Records the id and returns true if it was not seen within the TTL; false for a repeat.
    pub fn first_delivery(&self, provider: Provider, delivery_id: &str) -> bool {
        self.first_delivery_at(provider, delivery_id, Instant::now())
    }

    /// [`Self::first_delivery`] at a given time, for tests. Times must not go backwards.
    pub fn first_delivery_at(&self, provider: Provider, delivery_id: &str, now: Instant) -> bool {
        let mut state = self.lock();
        state.expire(now, self.ttl);
        let key = (provider, delivery_id.to_string());
        if state.ids.contains(&key) {
            return false;
        }
        state.ids.insert(key.clone());
        state.order.push_back((now, key));
        state.evict_beyond(self.capacity);
        true
    }

    /// Forgets an id, so that a redelivery is processed again. Used when triggering failed and
    /// the sender should retry.
    pub fn forget(&self, provider: Provider, delivery_id: &str) {
        let mut state = self.lock();
        let key = (provider, delivery_id.to_string());
        if state.ids.remove(&key) {
            state.order.retain(|(_, queued)| *queued != key);
        }
    }

    /// How many ids are remembered now (expired ones may still count until the next insert).
    pub fn len(&self) -> usize {
        self.lock().ids.len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A panic while holding the lock leaves the set consistent enough to keep using.
    fn lock(&self) -> std::sync::MutexGuard<'_, SeenDeliveries> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl SeenDeliveries {
    fn expire(&mut self, now: Instant, ttl: Duration) {
        while let Some((seen, _)) = self.order.front() {
            if now.saturating_duration_since(*seen) < ttl {
                break;
            }
            self.pop_oldest();
        }
    }

    fn evict_beyond(&mut self, capacity: usize) {
        while self.order.len() > capacity {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some((_, key)) = self.order.pop_front() {
            self.ids.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_id_is_rejected_within_ttl() {
        let cache = ReplayCache::new(Duration::from_secs(600), 10);
        let start = Instant::now();
        assert!(cache.first_delivery_at(Provider::GitHub, "a", start));
        assert!(!cache.first_delivery_at(Provider::GitHub, "a", start + Duration::from_secs(599)));
    }

    #[test]
    fn ids_expire_after_ttl() {
        let cache = ReplayCache::new(Duration::from_secs(600), 10);
        let start = Instant::now();
        assert!(cache.first_delivery_at(Provider::GitHub, "a", start));
        assert!(cache.first_delivery_at(Provider::GitHub, "a", start + Duration::from_secs(600)));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn ids_are_separate_per_provider() {
        let cache = ReplayCache::default();
        assert!(cache.first_delivery(Provider::GitHub, "same"));
        assert!(cache.first_delivery(Provider::Gitea, "same"));
        assert!(!cache.first_delivery(Provider::Gitea, "same"));
    }

    #[test]
    fn oldest_ids_are_evicted_beyond_capacity() {
        let cache = ReplayCache::new(Duration::from_secs(600), 3);
        let now = Instant::now();
        for id in ["a", "b", "c", "d"] {
            assert!(cache.first_delivery_at(Provider::GitLab, id, now));
        }
        assert_eq!(cache.len(), 3);
        assert!(
            cache.first_delivery_at(Provider::GitLab, "a", now),
            "a was evicted"
        );
        assert!(
            !cache.first_delivery_at(Provider::GitLab, "d", now),
            "d is kept"
        );
    }

    #[test]
    fn forgotten_ids_are_accepted_again() {
        let cache = ReplayCache::default();
        assert!(cache.first_delivery(Provider::Bitbucket, "x"));
        cache.forget(Provider::Bitbucket, "x");
        assert!(cache.is_empty());
        assert!(cache.first_delivery(Provider::Bitbucket, "x"));
    }

    #[test]
    fn default_capacity_holds_ten_thousand() {
        let cache = ReplayCache::default();
        let now = Instant::now();
        for n in 0..DEFAULT_CAPACITY + 5 {
            cache.first_delivery_at(Provider::GitHub, &n.to_string(), now);
        }
        assert_eq!(cache.len(), DEFAULT_CAPACITY);
        assert!(!cache.first_delivery_at(Provider::GitHub, "10004", now));
        assert!(cache.first_delivery_at(Provider::GitHub, "0", now));
    }
}
