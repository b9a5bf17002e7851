//! Per-receiver token buckets. Checked before the body is read or a signature computed, so a
//! flood at one receiver costs a hash lookup per request and is answered with 429.
//!
//! Each receiver has its own bucket (a shared receiver per provider, a per-object hook per id):
//! a flood at `/hooks/github` does not use up the budget of a GitLab or per-object receiver. It
//! does share the budget of honest GitHub deliveries, because before verification nothing tells
//! a forged request from a real one; polling remains the fallback for a delivery refused then.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::provider::Provider;

/// Beyond this many buckets, full ones are dropped before a new one is made: a full bucket
/// behaves exactly like a missing one, so memory stays bounded by the receivers in use.
const PRUNE_ABOVE: usize = 1_024;

/// Sustained requests per second and burst size of every receiver.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second; 0 (or less) disables rate limiting.
    pub per_second: f64,
    /// Bucket size: how many requests may arrive at once after a quiet period (at least 1).
    pub burst: u32,
}

impl RateLimit {
    /// 10 requests per second with bursts of 50: far above what one Git host sends for a
    /// repository, far below what costs the receiver anything.
    pub const DEFAULT: RateLimit = RateLimit {
        per_second: 10.0,
        burst: 50,
    };

    /// No limit at all.
    pub const DISABLED: RateLimit = RateLimit {
        per_second: 0.0,
        burst: 0,
    };

    fn enabled(self) -> bool {
        self.per_second > 0.0 && self.per_second.is_finite()
    }

    fn capacity(self) -> f64 {
        f64::from(self.burst.max(1))
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::DEFAULT
    }
}

/// Which bucket a request draws from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReceiverKey {
    /// `POST /hooks/{provider}`.
    Shared(Provider),
    /// `POST /hooks/{id}` of a registered per-object hook.
    Object(String),
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn full(limit: RateLimit, now: Instant) -> Bucket {
        Bucket {
            tokens: limit.capacity(),
            updated: now,
        }
    }

    fn refill(&mut self, limit: RateLimit, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limit.per_second).min(limit.capacity());
        self.updated = now;
    }

    /// Takes a token, or says how long until one is there.
    fn take(&mut self, limit: RateLimit, now: Instant) -> Result<(), Duration> {
        self.refill(limit, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64(
            (1.0 - self.tokens) / limit.per_second,
        ))
    }

    fn is_full(&mut self, limit: RateLimit, now: Instant) -> bool {
        self.refill(limit, now);
        self.tokens >= limit.capacity()
    }
}

/// The buckets of every receiver (or of every `K`), shared by all requests.
#[derive(Debug)]
pub struct RateLimiter<K = ReceiverKey> {
    limit: RateLimit,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K> Default for RateLimiter<K> {
    fn default() -> Self {
        RateLimiter {
            limit: RateLimit::default(),
            buckets: Mutex::default(),
        }
    }
}

impl<K: Clone + Eq + Hash> RateLimiter<K> {
    /// Buckets of `limit.burst` tokens refilled at `limit.per_second`.
    pub fn new(limit: RateLimit) -> RateLimiter<K> {
        RateLimiter {
            limit,
            buckets: Mutex::default(),
        }
    }

    /// The limit every receiver gets.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Admits one request to `receiver`, or returns how long the sender should wait.
    pub fn check(&self, receiver: &K) -> Result<(), Duration> {
        self.check_at(receiver, Instant::now())
    }

    /// [`Self::check`] at a given time, for tests.
    pub fn check_at(&self, receiver: &K, now: Instant) -> Result<(), Duration> {
        let limit = self.limit;
        if !limit.enabled() {
            return Ok(());
        }
        let mut buckets = crate::sync::lock(&self.buckets);
        if buckets.len() >= PRUNE_ABOVE && !buckets.contains_key(receiver) {
            buckets.retain(|_, bucket| !bucket.is_full(limit, now));
        }
        buckets
            .entry(receiver.clone())
            .or_insert_with(|| Bucket::full(limit, now))
            .take(limit, now)
    }

    #[cfg(test)]
    pub(crate) fn bucket_count(&self) -> usize {
        crate::sync::lock(&self.buckets).len()
    }
}

/// Whole seconds for a `Retry-After` header, rounded up and at least 1.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const GITHUB: ReceiverKey = ReceiverKey::Shared(Provider::GitHub);

    fn limiter(per_second: f64, burst: u32) -> RateLimiter<ReceiverKey> {
        RateLimiter::new(RateLimit { per_second, burst })
    }

    #[test]
    fn a_burst_is_admitted_then_refused_until_refilled() {
        let limiter = limiter(2.0, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check_at(&GITHUB, start), Ok(()));
        }
        let wait = limiter.check_at(&GITHUB, start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        let later = start + Duration::from_millis(500);
        assert_eq!(limiter.check_at(&GITHUB, later), Ok(()));
        assert!(limiter.check_at(&GITHUB, later).is_err());
    }

    #[test]
    fn receivers_have_separate_buckets() {
        let limiter = limiter(1.0, 1);
        let now = Instant::now();
        assert!(limiter.check_at(&GITHUB, now).is_ok());
        assert!(limiter.check_at(&GITHUB, now).is_err());
        let gitlab = ReceiverKey::Shared(Provider::GitLab);
        assert!(limiter.check_at(&gitlab, now).is_ok());
        let object = ReceiverKey::Object("a".repeat(64));
        assert!(limiter.check_at(&object, now).is_ok());
    }

    #[test]
    fn refill_never_exceeds_the_burst() {
        let limiter = limiter(100.0, 2);
        let start = Instant::now();
        assert!(limiter.check_at(&GITHUB, start).is_ok());
        let much_later = start + Duration::from_secs(3600);
        for _ in 0..2 {
            assert!(limiter.check_at(&GITHUB, much_later).is_ok());
        }
        assert!(limiter.check_at(&GITHUB, much_later).is_err());
    }

    #[test]
    fn a_zero_rate_disables_the_limit() {
        let limiter = RateLimiter::<ReceiverKey>::new(RateLimit::DISABLED);
        let now = Instant::now();
        for _ in 0..10_000 {
            assert!(limiter.check_at(&GITHUB, now).is_ok());
        }
        assert_eq!(limiter.bucket_count(), 0);
    }

    #[test]
    fn idle_buckets_are_dropped_so_memory_stays_bounded() {
        let limiter = limiter(1000.0, 1);
        let start = Instant::now();
        for id in 0..PRUNE_ABOVE * 3 {
            let now = start + Duration::from_millis(id as u64);
            assert!(
                limiter
                    .check_at(&ReceiverKey::Object(id.to_string()), now)
                    .is_ok()
            );
        }
        assert!(
            limiter.bucket_count() <= PRUNE_ABOVE,
            "{}",
            limiter.bucket_count()
        );
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_seconds(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
    }
}
