//! When a GitRepository is looked at again: the interval with jitter after a success, an
//! exponential backoff (or `spec.retryInterval`) after consecutive failures.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use crate::sync::lock;

/// Retries after consecutive failures: 5 s, 10 s, 20 s ... up to the interval, so a transient
/// failure heals fast and a persistent one does not hammer the git server or the apiserver.
pub fn backoff(consecutive_failures: u32, interval: Duration) -> Duration {
    let exponent = consecutive_failures.saturating_sub(1).min(16);
    Duration::from_secs(5)
        .saturating_mul(1 << exponent)
        .min(interval)
}

/// The wait before retrying a failed reconcile: `spec.retryInterval` when set, else
/// [`backoff`].
pub fn retry_after(
    consecutive_failures: u32,
    interval: Duration,
    retry_interval: Option<Duration>,
) -> Duration {
    retry_interval.unwrap_or_else(|| backoff(consecutive_failures, interval))
}

/// Spreads polls of many GitRepositories over time instead of letting them all fire at once:
/// up to 10% earlier or later.
pub fn jittered(interval: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    let factor = 0.9 + f64::from(nanos % 1000) / 1000.0 * 0.2;
    // `mul_f64` panics when the product does not fit; an interval that long needs no jitter.
    Duration::try_from_secs_f64(interval.as_secs_f64() * factor).unwrap_or(interval)
}

/// Consecutive failures per GitRepository (`namespace/name`): of reconciles, which set the
/// retry backoff, or of clean-ups on deletion, which bound how long a finalizer is kept.
#[derive(Default)]
pub(super) struct FailureCounts(Mutex<HashMap<String, u32>>);

impl FailureCounts {
    /// Counts one more failure and returns how many in a row there have been.
    pub(super) fn record(&self, namespace: &str, name: &str) -> u32 {
        let mut counts = lock(&self.0);
        let count = counts.entry(format!("{namespace}/{name}")).or_default();
        *count = count.saturating_add(1);
        *count
    }

    pub(super) fn clear(&self, namespace: &str, name: &str) {
        lock(&self.0).remove(&format!("{namespace}/{name}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_exponentially_up_to_the_interval() {
        let interval = Duration::from_secs(300);
        let delays: Vec<u64> = (1..=8).map(|n| backoff(n, interval).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff(1000, interval), interval);
    }

    #[test]
    fn a_retry_interval_replaces_the_backoff() {
        let interval = Duration::from_secs(300);
        let fixed = Some(Duration::from_secs(7));
        assert_eq!(retry_after(1, interval, None), Duration::from_secs(5));
        assert_eq!(retry_after(6, interval, fixed), Duration::from_secs(7));
    }

    #[test]
    fn failure_counts_grow_until_cleared() {
        let counts = FailureCounts::default();
        assert_eq!(counts.record("a", "x"), 1);
        assert_eq!(counts.record("a", "x"), 2);
        assert_eq!(counts.record("a", "y"), 1);
        counts.clear("a", "x");
        assert_eq!(counts.record("a", "x"), 1);
    }

    #[test]
    fn jitter_of_an_enormous_interval_does_not_panic() {
        assert!(jittered(Duration::MAX) >= Duration::from_secs(u64::MAX / 2));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let interval = Duration::from_secs(100);
        for _ in 0..100 {
            let jittered = jittered(interval).as_secs_f64();
            assert!((90.0..=110.0).contains(&jittered), "{jittered}");
        }
    }
}
