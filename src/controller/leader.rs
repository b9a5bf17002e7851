//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several replicas exactly one
//! reconciles. The rules follow client-go's: the holder renews the Lease well within its
//! duration; a candidate takes it over only after the holder let it expire; every write carries
//! the resourceVersion it read, so two candidates can never both win.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};
use tokio::sync::watch;
use tracing::{info, warn};

/// Where the Lease lives and how long leadership lasts without renewal.
#[derive(Clone, Debug)]
pub struct LeaderElectionSettings {
    pub namespace: String,
    pub lease_name: String,
    /// This process, as written into the Lease (pod name plus a random suffix).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_period: Duration,
}

/// What one attempt on the Lease found.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Leading,
    Following { holder: String },
}

/// Holds a Lease on behalf of this process.
pub struct Leadership {
    api: Api<Lease>,
    settings: LeaderElectionSettings,
}

impl Leadership {
    pub fn new(client: Client, settings: LeaderElectionSettings) -> Self {
        Self {
            api: Api::namespaced(client, &settings.namespace),
            settings,
        }
    }

    /// Waits until this process holds the Lease.
    pub async fn acquire(&self) {
        let mut last_holder = None;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Leading) => {
                    info!(
                        identity = self.settings.identity,
                        lease = self.settings.lease_name,
                        "became leader"
                    );
                    return;
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

    /// Renews the Lease until renewal has failed for a whole lease duration; then reports the
    /// loss through the returned channel (true while leading).
    pub fn keep_renewing(self: std::sync::Arc<Self>) -> watch::Receiver<bool> {
        let (sender, receiver) = watch::channel(true);
        tokio::spawn(async move {
            let mut last_renewal = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(self.settings.renew_period).await;
                match self.try_acquire_or_renew().await {
                    Ok(Attempt::Leading) => last_renewal = tokio::time::Instant::now(),
                    Ok(Attempt::Following { holder }) => {
                        warn!(%holder, "lost leadership to another replica");
                        let _ = sender.send(false);
                        return;
                    }
                    Err(error) => {
                        warn!(%error, "could not renew the leader Lease");
                        if last_renewal.elapsed() >= self.settings.lease_duration {
                            let _ = sender.send(false);
                            return;
                        }
                    }
                }
            }
        });
        receiver
    }

    /// Gives the Lease up on a clean shutdown so another replica takes over at once instead of
    /// waiting for it to expire.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.settings.lease_name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        match self
            .api
            .replace(&self.settings.lease_name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => info!(lease = self.settings.lease_name, "released leadership"),
            Err(error) => warn!(%error, "could not release the leader Lease"),
        }
    }

    async fn try_acquire_or_renew(&self) -> Result<Attempt, kube::Error> {
        let now = jiff::Timestamp::now();
        let Some(mut lease) = self.api.get_opt(&self.settings.lease_name).await? else {
            let lease = self.new_lease(now);
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Leading),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(self.someone_else()),
                Err(error) => Err(error),
            };
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let ours = holder == self.settings.identity;
        if !ours && !holder.is_empty() && !expired(spec, now) {
            return Ok(Attempt::Following { holder });
        }
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
            Ok(_) => Ok(Attempt::Leading),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(self.someone_else()),
            Err(error) => Err(error),
        }
    }

    fn someone_else(&self) -> Attempt {
        Attempt::Following {
            holder: "another replica".into(),
        }
    }

    fn lease_seconds(&self) -> i32 {
        i32::try_from(self.settings.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
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

/// Whether the holder let the Lease lapse: no renewal within its duration.
fn expired(spec: &LeaseSpec, now: jiff::Timestamp) -> bool {
    let Some(MicroTime(renewed)) = spec.renew_time else {
        return true;
    };
    let duration =
        jiff::SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    renewed
        .checked_add(duration)
        .map(|deadline| deadline < now)
        .unwrap_or(true)
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

    fn spec(renewed_secs_ago: i64, duration: i32) -> LeaseSpec {
        let renewed = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(renewed_secs_ago);
        LeaseSpec {
            renew_time: Some(MicroTime(renewed)),
            lease_duration_seconds: Some(duration),
            ..Default::default()
        }
    }

    #[test]
    fn a_lease_expires_only_after_its_duration_without_renewal() {
        let now = jiff::Timestamp::now();
        assert!(!expired(&spec(5, 15), now));
        assert!(expired(&spec(20, 15), now));
        assert!(expired(&LeaseSpec::default(), now), "never renewed");
    }
}
