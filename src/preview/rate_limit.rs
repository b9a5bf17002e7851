//! How many previews one repository may start: a token bucket per repository, the webhook
//! receivers' own ([`crate::webhook::rate_limit`]), keyed by the normalized repository URL so
//! that every spelling of a repository (and every GitRepository tracking it) shares one
//! budget. A pull request pushed to in a loop, or many GitRepositories on one busy
//! repository, cannot keep the cluster's API server busy with dry runs.
//!
//! A preview over the limit is delayed, not dropped: the controller waits the time the bucket
//! names and says so; a newer push to the same pull request replaces the waiting one.

use std::time::{Duration, Instant};

use crate::{
    source::url::RepositoryUrl,
    webhook::rate_limit::{RateLimit, RateLimiter},
};

/// Previews each repository may start per minute, in a burst after a quiet period too.
pub const DEFAULT_PER_MINUTE: u32 = 30;

/// The per-repository budget of preview starts.
#[derive(Debug)]
pub struct PreviewRateLimit {
    per_minute: u32,
    buckets: RateLimiter<String>,
}

impl PreviewRateLimit {
    /// At most `per_minute` previews started per repository in any minute (as a burst, then
    /// one every `60 / per_minute` seconds); 0 disables the limit.
    pub fn per_minute(per_minute: u32) -> PreviewRateLimit {
        let limit = if per_minute == 0 {
            RateLimit::DISABLED
        } else {
            RateLimit {
                per_second: f64::from(per_minute) / 60.0,
                burst: per_minute,
            }
        };
        PreviewRateLimit {
            per_minute,
            buckets: RateLimiter::new(limit),
        }
    }

    /// The configured previews per minute (0: unlimited).
    pub fn limit_per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Admits one preview of `repository_url`, or says how long until one may start.
    pub fn check(&self, repository_url: &str) -> Result<(), Duration> {
        self.check_at(repository_url, Instant::now())
    }

    /// [`Self::check`] at a given time, for tests.
    pub fn check_at(&self, repository_url: &str, now: Instant) -> Result<(), Duration> {
        self.buckets.check_at(&repository_key(repository_url), now)
    }
}

impl Default for PreviewRateLimit {
    fn default() -> Self {
        PreviewRateLimit::per_minute(DEFAULT_PER_MINUTE)
    }
}

/// The key a repository's budget is kept under: the source engine's normalized URL, or the URL
/// as written when it does not parse (such an object fails its fetch anyway).
fn repository_key(url: &str) -> String {
    RepositoryUrl::parse(url)
        .map(|url| url.cache_key())
        .unwrap_or_else(|_| url.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "https://git.example.com/org/app.git";

    #[test]
    fn a_burst_of_n_starts_then_one_every_60_over_n_seconds() {
        let limit = PreviewRateLimit::per_minute(3);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limit.check_at(APP, start), Ok(()));
        }
        assert_eq!(limit.check_at(APP, start), Err(Duration::from_secs(20)));
        let later = start + Duration::from_secs(20);
        assert_eq!(limit.check_at(APP, later), Ok(()));
        assert!(limit.check_at(APP, later).is_err());
    }

    #[test]
    fn every_spelling_of_a_repository_shares_one_budget() {
        let limit = PreviewRateLimit::per_minute(2);
        let now = Instant::now();
        assert!(limit.check_at(APP, now).is_ok());
        assert!(
            limit
                .check_at("https://GIT.example.com/org/app/", now)
                .is_ok()
        );
        assert!(
            limit
                .check_at("ssh://git@git.example.com/org/app", now)
                .is_err()
        );
    }

    #[test]
    fn repositories_have_separate_budgets() {
        let limit = PreviewRateLimit::per_minute(1);
        let now = Instant::now();
        assert!(limit.check_at(APP, now).is_ok());
        assert!(limit.check_at(APP, now).is_err());
        assert!(
            limit
                .check_at("https://git.example.com/org/other.git", now)
                .is_ok()
        );
        assert!(limit.check_at("not a url", now).is_ok());
        assert!(limit.check_at("not a url", now).is_err());
    }

    #[test]
    fn zero_disables_the_limit() {
        let limit = PreviewRateLimit::per_minute(0);
        let now = Instant::now();
        for _ in 0..1_000 {
            assert!(limit.check_at(APP, now).is_ok());
        }
        assert_eq!(limit.buckets.bucket_count(), 0);
    }
}
