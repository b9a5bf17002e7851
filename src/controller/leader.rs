//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas exactly one
//! reconciles. The rules follow client-go's:
//! - the holder renews every renew period, and gives leadership up when it could not renew
//!   within the renew deadline, which is shorter than the lease duration: it stops writing while
//!   the Lease it last wrote is still valid, before any candidate may take over;
//! - every renewal attempt is bounded by that deadline, so a Lease write that hangs cannot hold
//!   the leader past it;
//! - a candidate judges another holder's Lease by its own monotonic clock: the Lease counts as
//!   expired once this candidate has seen the same record, unchanged, for the lease duration.
//!   The holder's `renewTime` is written for people to read, never compared with the local
//!   clock, so a skewed clock on either side cannot shorten a lease;
//! - every write carries the resourceVersion it read, so two candidates can never both win.

use std::{sync::Mutex, time::Duration};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use tokio::{sync::watch, task::JoinHandle, time::Instant};
use tracing::{info, warn};

/// Where the Lease lives and how long leadership lasts without renewal.
#[derive(Clone, Debug)]
pub struct LeaderElectionSettings {
    pub namespace: String,
    pub lease_name: String,
    /// This process, as written into the Lease (pod name plus a random suffix).
    pub identity: String,
    /// How long a candidate waits, after it last saw the Lease change, before it takes over.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops leading; shorter than
    /// `lease_duration`, so that it stops before any candidate may take over.
    pub renew_deadline: Duration,
    /// How often the leader renews, and candidates retry.
    pub renew_period: Duration,
}

/// Settings that would let two replicas lead at once, or never renew in time.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error(
        "the leader election renew deadline ({deadline:?}) must be shorter than the lease duration ({lease:?}), so that a leader stops before its Lease can expire"
    )]
    DeadlineNotBeforeExpiry { deadline: Duration, lease: Duration },
    #[error(
        "the leader election renew period ({period:?}) must be shorter than the renew deadline ({deadline:?}), so that a renewal is tried before the deadline"
    )]
    PeriodNotBeforeDeadline {
        period: Duration,
        deadline: Duration,
    },
    #[error("the leader election renew period must be longer than zero")]
    ZeroPeriod,
}

impl LeaderElectionSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        if self.renew_period.is_zero() {
            return Err(SettingsError::ZeroPeriod);
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(SettingsError::DeadlineNotBeforeExpiry {
                deadline: self.renew_deadline,
                lease: self.lease_duration,
            });
        }
        if self.renew_period >= self.renew_deadline {
            return Err(SettingsError::PeriodNotBeforeDeadline {
                period: self.renew_period,
                deadline: self.renew_deadline,
            });
        }
        Ok(())
    }
}

/// What one attempt on the Lease found.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Leading,
    Following { holder: String },
}

/// The part of a Lease that changes whenever its holder renews or someone takes it over.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LeaseRecord {
    holder: String,
    renew_time: Option<MicroTime>,
    acquire_time: Option<MicroTime>,
    lease_duration_seconds: Option<i32>,
    transitions: Option<i32>,
}

impl LeaseRecord {
    fn of(spec: &LeaseSpec) -> Self {
        Self {
            holder: spec.holder_identity.clone().unwrap_or_default(),
            renew_time: spec.renew_time.clone(),
            acquire_time: spec.acquire_time.clone(),
            lease_duration_seconds: spec.lease_duration_seconds,
            transitions: spec.lease_transitions,
        }
    }
}

/// The Lease record as this process last saw it, and when (by the local monotonic clock) it
/// first saw it so.
#[derive(Clone, Debug)]
struct Observation {
    record: LeaseRecord,
    since: Instant,
}

impl Observation {
    /// Records `record` as seen at `now`; the clock restarts only when the record changed, since
    /// an unchanged record means the holder did not renew.
    fn update(previous: Option<Observation>, record: LeaseRecord, now: Instant) -> Observation {
        match previous {
            Some(previous) if previous.record == record => previous,
            _ => Observation { record, since: now },
        }
    }

    /// Whether the holder has let the Lease lapse: unchanged for the duration it declares
    /// (`fallback` when it declares none).
    fn expired(&self, now: Instant, fallback: Duration) -> bool {
        let declared = self
            .record
            .lease_duration_seconds
            .and_then(|seconds| u64::try_from(seconds).ok())
            .filter(|&seconds| seconds > 0)
            .map(Duration::from_secs)
            .unwrap_or(fallback);
        now.saturating_duration_since(self.since) >= declared
    }
}

/// The renewal loop of a leader: `leading` turns false once leadership is lost.
pub struct Renewal {
    pub leading: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Renewal {
    /// Stops renewing (before a release, which a later renewal would undo).
    pub fn stop(&self) {
        self.task.abort();
    }
}

/// Holds a Lease on behalf of this process.
pub struct Leadership {
    api: Api<Lease>,
    settings: LeaderElectionSettings,
    observed: Mutex<Option<Observation>>,
}

impl Leadership {
    pub fn new(client: Client, settings: LeaderElectionSettings) -> Result<Self, SettingsError> {
        settings.validate()?;
        Ok(Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
            observed: Mutex::new(None),
        })
    }

    /// Waits until this process holds the Lease; returns when the winning attempt started,
    /// the instant the renew deadline counts from.
    pub async fn acquire(&self) -> Instant {
        let mut last_holder = None;
        loop {
            let started = Instant::now();
            match self.bounded_attempt(self.settings.renew_deadline).await {
                Ok(Attempt::Leading) => {
                    info!(
                        identity = self.settings.identity,
                        lease = self.settings.lease_name,
                        "became leader"
                    );
                    return started;
                }
                Ok(Attempt::Following { holder }) => {
                    if last_holder.as_ref() != Some(&holder) {
                        info!(%holder, "waiting for leadership");
                        last_holder = Some(holder);
                    }
                }
                Err(error) => warn!(%error, "leader election attempt failed"),
            }
            tokio::time::sleep(self.settings.renew_period).await;
        }
    }

    /// Renews the Lease every renew period. Leadership is lost (and `leading` turns false) when
    /// another replica holds the Lease, or when no renewal succeeded within the renew deadline
    /// of the last successful one: a renewal still in flight then is abandoned.
    pub fn keep_renewing(self: std::sync::Arc<Self>, renewed: Instant) -> Renewal {
        let (sender, leading) = watch::channel(true);
        let task = tokio::spawn(async move {
            let why = self.renew_until_lost(renewed).await;
            warn!(why, "lost leadership");
            let _ = sender.send(false);
        });
        Renewal { leading, task }
    }

    async fn renew_until_lost(&self, mut renewed: Instant) -> String {
        loop {
            let deadline = renewed + self.settings.renew_deadline;
            tokio::time::sleep_until(deadline.min(Instant::now() + self.settings.renew_period))
                .await;
            let started = Instant::now();
            if started >= deadline {
                return format!(
                    "no renewal succeeded within the renew deadline of {:?}",
                    self.settings.renew_deadline
                );
            }
            let per_attempt = (self.settings.renew_deadline / 2).min(deadline - started);
            match self.bounded_attempt(per_attempt).await {
                Ok(Attempt::Leading) => renewed = started,
                Ok(Attempt::Following { holder }) => {
                    return format!("{holder} holds the Lease now");
                }
                Err(error) => warn!(%error, "could not renew the leader Lease"),
            }
        }
    }

    /// One attempt, abandoned after `limit`: a request that hangs must not outlive the time
    /// this process may still consider itself the leader.
    async fn bounded_attempt(&self, limit: Duration) -> Result<Attempt, AttemptError> {
        tokio::time::timeout(limit, self.try_acquire_or_renew())
            .await
            .map_err(|_| AttemptError::TimedOut(limit))?
            .map_err(AttemptError::Kube)
    }

    /// Gives the Lease up on a clean shutdown so another replica takes over at once instead of
    /// waiting for it to expire.
    pub async fn release(&self) {
        let attempt = tokio::time::timeout(self.settings.renew_deadline, self.clear_holder());
        match attempt.await {
            Ok(Ok(true)) => info!(lease = self.settings.lease_name, "released leadership"),
            Ok(Ok(false)) => {}
            Ok(Err(error)) => warn!(%error, "could not release the leader Lease"),
            Err(_) => warn!("could not release the leader Lease: the API server did not answer"),
        }
    }

    /// Empties the holder if it is this process; `Ok(false)` when it was not.
    async fn clear_holder(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.settings.lease_name).await? else {
            return Ok(false);
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        self.api
            .replace(&self.settings.lease_name, &PostParams::default(), &lease)
            .await?;
        Ok(true)
    }

    async fn try_acquire_or_renew(&self) -> Result<Attempt, kube::Error> {
        let now = jiff::Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.settings.lease_name).await? else {
            let lease = self.new_lease(now);
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(&created);
                    Ok(Attempt::Leading)
                }
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(self.someone_else()),
                Err(error) => Err(error),
            };
        };
        let observation = self.observe(&lease);
        let holder = observation.record.holder.clone();
        let ours = holder == self.settings.identity;
        if !ours
            && !holder.is_empty()
            && !observation.expired(Instant::now(), self.settings.lease_duration)
        {
            return Ok(Attempt::Following { holder });
        }
        let spec = lease.spec.get_or_insert_with(Default::default);
        if !ours {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or_default() + 1);
        }
        spec.holder_identity = Some(self.settings.identity.clone());
        spec.lease_duration_seconds = Some(self.lease_seconds());
        spec.renew_time = Some(MicroTime(now));
        // The replace carries the resourceVersion we read: a concurrent winner makes it fail.
        match self
            .api
            .replace(&self.settings.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.observe(&written);
                Ok(Attempt::Leading)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(self.someone_else()),
            Err(error) => Err(error),
        }
    }

    /// Records the Lease as seen now and returns the observation.
    fn observe(&self, lease: &Lease) -> Observation {
        let record = LeaseRecord::of(&lease.spec.clone().unwrap_or_default());
        let mut observed = crate::sync::lock(&self.observed);
        let observation = Observation::update(observed.take(), record, Instant::now());
        *observed = Some(observation.clone());
        observation
    }

    fn someone_else(&self) -> Attempt {
        Attempt::Following {
            holder: "another replica".into(),
        }
    }

    fn lease_seconds(&self) -> i32 {
        // Rounded up: a shorter declared duration would let candidates take over early.
        let seconds = self.settings.lease_duration.as_secs_f64().ceil().max(1.0);
        i32::try_from(seconds as u64).unwrap_or(i32::MAX)
    }

    fn new_lease(&self, now: jiff::Timestamp) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(self.settings.lease_name.clone()),
                namespace: Some(self.settings.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.settings.identity.clone()),
                lease_duration_seconds: Some(self.lease_seconds()),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        }
    }
}

/// Why one attempt on the Lease did not get an answer.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("{0}")]
    Kube(kube::Error),
    #[error("the API server did not answer within {0:?}")]
    TimedOut(Duration),
}

/// A name unique to this process: the pod name (HOSTNAME in Kubernetes) plus a random suffix,
/// so a restarted pod with the same name does not inherit a Lease it never renewed.
pub fn process_identity() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "driftless".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos();
    format!("{host}_{:x}{:x}", std::process::id(), nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holder: &str, renewed: jiff::Timestamp, seconds: i32) -> LeaseRecord {
        LeaseRecord {
            holder: holder.into(),
            renew_time: Some(MicroTime(renewed)),
            acquire_time: None,
            lease_duration_seconds: Some(seconds),
            transitions: Some(0),
        }
    }

    const FALLBACK: Duration = Duration::from_secs(15);

    #[test]
    fn a_lease_expires_only_after_its_duration_unchanged_on_the_local_clock() {
        let start = Instant::now();
        let seen = Observation::update(None, record("a", jiff::Timestamp::now(), 15), start);
        assert!(!seen.expired(start + Duration::from_secs(14), FALLBACK));
        assert!(seen.expired(start + Duration::from_secs(15), FALLBACK));
    }

    #[test]
    fn a_renew_time_far_in_the_past_does_not_shorten_the_lease() {
        // The holder's clock is an hour behind this one: comparing its renewTime with the
        // local clock would call the Lease long expired.
        let skewed = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
        let start = Instant::now();
        let seen = Observation::update(None, record("a", skewed, 15), start);
        assert!(!seen.expired(start + Duration::from_secs(1), FALLBACK));
    }

    #[test]
    fn a_renewal_restarts_the_clock_and_an_unchanged_record_does_not() {
        let start = Instant::now();
        let first = record("a", jiff::Timestamp::now(), 15);
        let seen = Observation::update(None, first.clone(), start);
        let later = start + Duration::from_secs(10);
        let unchanged = Observation::update(Some(seen.clone()), first.clone(), later);
        assert_eq!(unchanged.since, start, "the same record seen again");
        let mut renewed = first;
        renewed.renew_time = Some(MicroTime(
            jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1),
        ));
        let renewed = Observation::update(Some(seen), renewed, later);
        assert_eq!(renewed.since, later);
        assert!(!renewed.expired(start + Duration::from_secs(20), FALLBACK));
    }

    #[test]
    fn a_lease_without_a_duration_uses_ours() {
        let start = Instant::now();
        let mut bare = record("a", jiff::Timestamp::now(), 0);
        bare.lease_duration_seconds = None;
        let seen = Observation::update(None, bare, start);
        assert!(!seen.expired(start + Duration::from_secs(14), FALLBACK));
        assert!(seen.expired(start + FALLBACK, FALLBACK));
    }

    fn settings(lease: u64, deadline: u64, period: u64) -> LeaderElectionSettings {
        LeaderElectionSettings {
            namespace: "ns".into(),
            lease_name: "lease".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(lease),
            renew_deadline: Duration::from_secs(deadline),
            renew_period: Duration::from_secs(period),
        }
    }

    #[test]
    fn the_renew_deadline_must_end_before_the_lease_can_expire() {
        assert_eq!(settings(15, 10, 2).validate(), Ok(()));
        assert!(matches!(
            settings(15, 15, 2).validate(),
            Err(SettingsError::DeadlineNotBeforeExpiry { .. })
        ));
        assert!(matches!(
            settings(15, 10, 10).validate(),
            Err(SettingsError::PeriodNotBeforeDeadline { .. })
        ));
        assert_eq!(
            settings(15, 10, 0).validate(),
            Err(SettingsError::ZeroPeriod)
        );
    }
}
