//! Drops deliveries seen recently, so that a redelivery (Git hosts retry on timeouts, and users
//! press "Redeliver") does not trigger a second reconcile.
//!
//! A delivery is known by its sender's delivery id when it sent one, else by its body: a
//! sender that omits the id cannot make the receiver process the same push twice either.
//! Either way only a fixed-size digest ([`DeliveryKey`]) is kept, so a delivery id of
//! hundreds of kilobytes costs as little memory as a short one.
//!
//! Bounded in time and size: keys expire after a TTL and the oldest are evicted beyond a
//! capacity, so a flood of distinct deliveries costs at most `capacity` entries of memory.
//!
//! For GitHub, Gitea, GitLab tokens and Bitbucket the delivery id header is not covered by the
//! signature, so this de-duplicates honest redeliveries but cannot stop an attacker who replays
//! a captured body under a fresh id. Standard Webhooks signs id and timestamp, so there it is
//! real replay protection. The worst a replay can do either way is one extra reconcile.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::provider::Provider;
use super::verify::encode_hex;

/// How long a delivery is remembered. Longer than any provider's retry schedule that
/// matters, short enough to keep the set small.
pub const DEFAULT_TTL: Duration = Duration::from_secs(10 * 60);

/// How many deliveries are remembered at most; beyond this the oldest are forgotten first.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// Longest delivery id recorded as sent (in `status.lastWebhook`). Real ids are UUIDs or
/// shorter; a longer one is recorded as its digest, so an unsigned header cannot blow up every
/// matched object's status.
pub const MAX_DELIVERY_ID_LEN: usize = 128;

/// A delivery id as it may be shown and stored: as sent when at most
/// [`MAX_DELIVERY_ID_LEN`] bytes, else `sha256:<hex digest>` of it.
pub fn bounded_delivery_id(id: &str) -> String {
    if id.len() <= MAX_DELIVERY_ID_LEN {
        return id.to_string();
    }
    format!("sha256:{}", encode_hex(&Sha256::digest(id.as_bytes())))
}

/// What identifies one delivery to one receiver: a SHA-256 over the provider, the receiver's
/// scope (empty for shared receivers, the hook id for per-object ones) and either the
/// delivery id or the body. Fixed size whatever the sender sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeliveryKey([u8; 32]);

impl DeliveryKey {
    /// The key of a delivery that carries an id.
    pub fn of_id(provider: Provider, scope: &str, id: &str) -> DeliveryKey {
        DeliveryKey::digest(provider, scope, b"id", id.as_bytes())
    }

    /// The key of a delivery without an id: its body stands for it.
    pub fn of_body(provider: Provider, scope: &str, body: &[u8]) -> DeliveryKey {
        DeliveryKey::digest(provider, scope, b"body", body)
    }

    /// The id when the sender gave one, the body otherwise.
    pub fn of_delivery(
        provider: Provider,
        scope: &str,
        id: Option<&str>,
        body: &[u8],
    ) -> DeliveryKey {
        match id {
            Some(id) => DeliveryKey::of_id(provider, scope, id),
            None => DeliveryKey::of_body(provider, scope, body),
        }
    }

    /// Length-prefixed parts, so that no two different inputs hash the same bytes.
    fn digest(provider: Provider, scope: &str, kind: &[u8], value: &[u8]) -> DeliveryKey {
        let mut hasher = Sha256::new();
        for part in [provider.path_segment().as_bytes(), scope.as_bytes(), kind] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        hasher.update(value);
        DeliveryKey(hasher.finalize().into())
    }
}

/// A bounded, expiring set of recently seen deliveries. Shared by all requests.
#[derive(Debug)]
pub struct ReplayCache {
    ttl: Duration,
    capacity: usize,
    state: Mutex<SeenDeliveries>,
}

#[derive(Debug, Default)]
struct SeenDeliveries {
    keys: HashSet<DeliveryKey>,
    /// Insertion order with time, oldest first, for expiry and eviction without scanning.
    order: VecDeque<(Instant, DeliveryKey)>,
}

impl Default for ReplayCache {
    fn default() -> Self {
        ReplayCache::new(DEFAULT_TTL, DEFAULT_CAPACITY)
    }
}

impl ReplayCache {
    /// A cache remembering deliveries for `ttl`, at most `capacity` of them (at least one).
    pub fn new(ttl: Duration, capacity: usize) -> ReplayCache {
        ReplayCache {
            ttl,
            capacity: capacity.max(1),
            state: Mutex::new(SeenDeliveries::default()),
        }
    }

    /// Records the delivery and returns true if it was not seen within the TTL; false for a
    /// repeat.
    pub fn first_delivery(&self, key: DeliveryKey) -> bool {
        self.first_delivery_at(key, Instant::now())
    }

    /// [`Self::first_delivery`] at a given time, for tests. Times must not go backwards.
    pub fn first_delivery_at(&self, key: DeliveryKey, now: Instant) -> bool {
        let mut state = self.lock();
        state.expire(now, self.ttl);
        if !state.keys.insert(key) {
            return false;
        }
        state.order.push_back((now, key));
        state.evict_beyond(self.capacity);
        true
    }

    /// Forgets a delivery, so that a redelivery is processed again. Used when triggering
    /// failed or was refused and the sender should retry.
    pub fn forget(&self, key: DeliveryKey) {
        let mut state = self.lock();
        if state.keys.remove(&key) {
            state.order.retain(|(_, queued)| *queued != key);
        }
    }

    /// How many deliveries are remembered now (expired ones may still count until the next
    /// insert).
    pub fn len(&self) -> usize {
        self.lock().keys.len()
    }

    /// Whether no delivery is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SeenDeliveries> {
        crate::sync::lock(&self.state)
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
            self.keys.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn github(id: &str) -> DeliveryKey {
        DeliveryKey::of_id(Provider::GitHub, "", id)
    }

    #[test]
    fn repeated_id_is_rejected_within_ttl() {
        let cache = ReplayCache::new(Duration::from_secs(600), 10);
        let start = Instant::now();
        assert!(cache.first_delivery_at(github("a"), start));
        assert!(!cache.first_delivery_at(github("a"), start + Duration::from_secs(599)));
    }

    #[test]
    fn ids_expire_after_ttl() {
        let cache = ReplayCache::new(Duration::from_secs(600), 10);
        let start = Instant::now();
        assert!(cache.first_delivery_at(github("a"), start));
        assert!(cache.first_delivery_at(github("a"), start + Duration::from_secs(600)));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn ids_are_separate_per_provider_and_scope() {
        let cache = ReplayCache::default();
        assert!(cache.first_delivery(github("same")));
        assert!(cache.first_delivery(DeliveryKey::of_id(Provider::Gitea, "", "same")));
        assert!(!cache.first_delivery(DeliveryKey::of_id(Provider::Gitea, "", "same")));
        assert!(cache.first_delivery(DeliveryKey::of_id(Provider::GitHub, "hook", "same")));
    }

    #[test]
    fn an_id_and_a_body_with_the_same_bytes_are_different_deliveries() {
        assert_ne!(
            DeliveryKey::of_id(Provider::Generic, "", "x"),
            DeliveryKey::of_body(Provider::Generic, "", b"x")
        );
        assert_ne!(
            DeliveryKey::of_id(Provider::Generic, "ab", "c"),
            DeliveryKey::of_id(Provider::Generic, "a", "bc")
        );
    }

    #[test]
    fn oldest_ids_are_evicted_beyond_capacity() {
        let cache = ReplayCache::new(Duration::from_secs(600), 3);
        let now = Instant::now();
        let gitlab = |id| DeliveryKey::of_id(Provider::GitLab, "", id);
        for id in ["a", "b", "c", "d"] {
            assert!(cache.first_delivery_at(gitlab(id), now));
        }
        assert_eq!(cache.len(), 3);
        assert!(cache.first_delivery_at(gitlab("a"), now), "a was evicted");
        assert!(!cache.first_delivery_at(gitlab("d"), now), "d is kept");
    }

    #[test]
    fn forgotten_ids_are_accepted_again() {
        let cache = ReplayCache::default();
        let key = DeliveryKey::of_id(Provider::Bitbucket, "", "x");
        assert!(cache.first_delivery(key));
        cache.forget(key);
        assert!(cache.is_empty());
        assert!(cache.first_delivery(key));
    }

    #[test]
    fn default_capacity_holds_ten_thousand() {
        let cache = ReplayCache::default();
        let now = Instant::now();
        for n in 0..DEFAULT_CAPACITY + 5 {
            cache.first_delivery_at(github(&n.to_string()), now);
        }
        assert_eq!(cache.len(), DEFAULT_CAPACITY);
        assert!(!cache.first_delivery_at(github("10004"), now));
        assert!(cache.first_delivery_at(github("0"), now));
    }

    #[test]
    fn huge_ids_cost_a_fixed_size_key_and_stay_distinct() {
        assert_eq!(std::mem::size_of::<DeliveryKey>(), 32);
        let cache = ReplayCache::default();
        let huge = "x".repeat(300 * 1024);
        let other = format!("{}y", &huge[1..]);
        assert!(cache.first_delivery(github(&huge)));
        assert!(cache.first_delivery(github(&other)));
        assert!(!cache.first_delivery(github(&huge)));
    }

    #[test]
    fn long_ids_are_recorded_as_a_digest() {
        let short = "0f3c9a4e-1b2d-4c5e-8f90-a1b2c3d4e5f6";
        assert_eq!(bounded_delivery_id(short), short);
        let exact = "a".repeat(MAX_DELIVERY_ID_LEN);
        assert_eq!(bounded_delivery_id(&exact), exact);
        let huge = "a".repeat(300 * 1024);
        let bounded = bounded_delivery_id(&huge);
        assert!(bounded.starts_with("sha256:"), "{bounded}");
        assert!(bounded.len() <= MAX_DELIVERY_ID_LEN, "{}", bounded.len());
        assert_ne!(bounded, bounded_delivery_id(&"b".repeat(300 * 1024)));
    }
}
