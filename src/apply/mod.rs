//! The apply engine: server-side apply of one revision's objects, validated by a dry run before
//! anything is written, skipping objects that are already as desired.
//!
//! An apply runs in two stages. Stage 1 holds CustomResourceDefinitions and Namespaces, which
//! other objects need to exist before the server can even dry-run them; stage 2 holds the rest.
//! Within a stage every object is dry-run first, and if any fails nothing of that stage is
//! written.
//!
//! Live objects are read with one LIST per resource and namespace (by the owner's labels). An
//! object last applied from the same content (its [`APPLIED_HASH_ANNOTATION`]) that still holds
//! every desired field is left alone without a dry run, so a no-change resync costs a few
//! LISTs. Every other object is dry-run, and the dry run doubles as drift detection: when the
//! object the server would store equals the live one, nothing is written, so re-applying an
//! unchanged revision issues no write at all.
//! A write is reported as drift correction when the live object carries the content hash
//! ([`APPLIED_HASH_ANNOTATION`]) of the very object being applied, i.e. Git did not change but
//! the cluster did; otherwise as "configured".

mod compare;
mod error;
pub mod health;
pub mod inventory;
mod kinds;
mod live;
mod object;
mod preview;
mod prune;
mod remove;
mod report;
mod stage;
mod wait;

use std::{
    collections::{HashMap, hash_map::Entry},
    time::{Duration, Instant},
};

use futures::future::join_all;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use std::sync::Arc;

use kube::{
    Api, Client,
    discovery::Discovery,
    runtime::wait::{await_condition, conditions},
};

pub use error::{ApplyError, ObjectFailure};
pub use object::{DesiredObject, ObjectRef, digest_of};
pub use preview::{Change, Previewed};
pub use prune::{PruneReport, inventory_of};
pub use report::{ApplyOptions, ApplyReport, ApplyTimings};
pub use wait::{HealthCheck, HealthOverride};

use kinds::{DefinedKinds, KindCache, ResolvedKind, discovered, is_crd, is_namespace};
use object::{PreparedObject, declared_gvk, prepare};

/// A client that acts as ServiceAccount `account` of `namespace` for every request, so a
/// tenant's revision can do only what that account may (impersonation; the controller needs
/// `impersonate` on serviceaccounts).
pub fn client_as(
    config: &kube::Config,
    namespace: &str,
    account: &str,
) -> Result<Client, kube::Error> {
    let mut config = config.clone();
    config.auth_info.impersonate = Some(format!("system:serviceaccount:{namespace}:{account}"));
    Client::try_from(config)
}

/// The field manager driftless applies as; its field ownership is what server-side apply
/// tracks across revisions.
pub const FIELD_MANAGER: &str = "driftless";

/// What the cluster serves, by version strings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedApis {
    /// e.g. `v1.35.4`.
    pub server_version: String,
    /// Sorted; `v1` and `v1/Pod` for the core group.
    pub api_versions: Vec<String>,
}

/// Applies revisions to one cluster, remembering API discovery between applies.
pub struct Applier {
    client: Client,
    kinds: Arc<KindCache>,
    /// Decides the health of the objects it covers instead of the kstatus rules.
    health_override: Option<Arc<dyn HealthOverride>>,
}

impl Applier {
    pub fn new(client: Client) -> Self {
        Self {
            kinds: Arc::new(KindCache::new(client.clone())),
            client,
            health_override: None,
        }
    }

    /// This applier, with `decider` judging the health of the objects it covers in every
    /// health check and wait.
    pub fn with_health_override(self, decider: Arc<dyn HealthOverride>) -> Self {
        Self {
            health_override: Some(decider),
            ..self
        }
    }

    /// An applier whose every call (dry run, apply, reads) goes through `client`, e.g. one that
    /// impersonates a tenant's ServiceAccount, so the tenant can change only what it may. API
    /// discovery stays shared: which kinds exist is not a tenant's secret.
    pub fn with_client(&self, client: Client) -> Self {
        Self {
            client,
            kinds: self.kinds.clone(),
            health_override: self.health_override.clone(),
        }
    }

    /// The cluster as a chart's `.Capabilities` sees it: the server's version and every served
    /// `group/version` and `group/version/Kind`, from the cached discovery.
    pub async fn served_apis(&self) -> Result<ServedApis, ApplyError> {
        let discovery = self.kinds.current().await.map_err(ApplyError::Discovery)?;
        let server_version = self
            .kinds
            .server_version()
            .await
            .map_err(ApplyError::Discovery)?;
        let mut api_versions = std::collections::BTreeSet::new();
        for group in discovery.groups() {
            for version in group.versions() {
                for (resource, _) in group.versioned_resources(version) {
                    api_versions.insert(resource.api_version.clone());
                    api_versions.insert(format!("{}/{}", resource.api_version, resource.kind));
                }
            }
        }
        Ok(ServedApis {
            server_version,
            api_versions: api_versions.into_iter().collect(),
        })
    }

    /// Applies `objects`: checks all of them, then stage 1 (CRDs, Namespaces), then the rest.
    ///
    /// Unknown kinds, namespace/scope mistakes and duplicates are reported before anything is
    /// written. A stage-2 validation failure leaves stage 1 applied: its namespaces and CRDs
    /// are what made the stage-2 dry run possible.
    pub async fn apply(
        &self,
        objects: Vec<DesiredObject>,
        options: &ApplyOptions,
    ) -> Result<ApplyReport, ApplyError> {
        let prepared = self.prepare_all(objects, options).await?;
        let (foundation, rest): (Vec<_>, Vec<_>) = prepared
            .into_iter()
            .partition(|p| is_crd(&p.object) || is_namespace(&p.object));
        let mut report = stage::apply_stage(
            &self.client,
            foundation,
            &options.owner_labels,
            options.concurrency,
            &options.trusted,
        )
        .await?;
        let started = Instant::now();
        // A CRD the stage left as it was is served already (it was applied and waited for
        // before): waiting for it again and refreshing discovery would cost a watch per CRD and
        // a full discovery on every push of a repository that carries CRDs.
        let written = written_crds(&report);
        if !written.is_empty() {
            self.await_established(written, options.crd_established_timeout)
                .await?;
        }
        if !written_crds(&report).is_empty() || !self.serves_all(&rest).await? {
            self.kinds.refresh().await.map_err(ApplyError::Discovery)?;
        }
        report.timings.established = started.elapsed();
        report.merge(
            stage::apply_stage(
                &self.client,
                rest,
                &options.owner_labels,
                options.concurrency,
                &options.trusted,
            )
            .await?,
        );
        Ok(report)
    }

    /// Whether the cached discovery serves the kind of every object (a CRD applied by
    /// another owner or by hand may have appeared since it was read).
    async fn serves_all(&self, objects: &[PreparedObject]) -> Result<bool, ApplyError> {
        let discovery = self.kinds.current().await.map_err(ApplyError::Discovery)?;
        Ok(objects.iter().all(|prepared| {
            declared_gvk(&prepared.object)
                .ok()
                .and_then(|gvk| discovered(&discovery, &gvk))
                .is_some()
        }))
    }

    /// What [`Applier::apply`] would do to each object, found by the same preparation and dry
    /// run, writing nothing.
    pub async fn preview(
        &self,
        objects: Vec<DesiredObject>,
        options: &ApplyOptions,
    ) -> Result<Vec<Previewed>, ApplyError> {
        let prepared = self.prepare_all(objects, options).await?;
        preview::preview_all(&self.client, prepared, options.concurrency).await
    }

    /// Resolves every object's kind and prepares it, reporting all failures together.
    async fn prepare_all(
        &self,
        objects: Vec<DesiredObject>,
        options: &ApplyOptions,
    ) -> Result<Vec<PreparedObject>, ApplyError> {
        let defined = DefinedKinds::from_objects(objects.iter().map(|d| &d.object));
        let mut discovery = self.kinds.current().await.map_err(ApplyError::Discovery)?;
        let unknown = |d: &Discovery, o: &DesiredObject| resolve(d, &defined, o).is_err();
        if objects.iter().any(|o| unknown(&discovery, o)) {
            discovery = self.kinds.refresh().await.map_err(ApplyError::Discovery)?;
        }
        let mut prepared = Vec::new();
        let mut failures = Vec::new();
        for desired in objects {
            let origin = desired.origin.clone();
            let object = ObjectRef::of(&desired.object);
            match prepare_one(desired, &discovery, &defined, options) {
                Ok(ready) => prepared.push(ready),
                Err(reason) => failures.push(ObjectFailure {
                    origin,
                    object,
                    reason,
                }),
            }
        }
        failures.extend(duplicates(&prepared));
        if failures.is_empty() {
            Ok(prepared)
        } else {
            Err(ApplyError::Validation(failures))
        }
    }

    /// Waits until the applied CRDs serve their kinds, so stage 2 can dry-run custom resources.
    async fn await_established(
        &self,
        names: Vec<String>,
        timeout: Duration,
    ) -> Result<(), ApplyError> {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        let waits = names.iter().map(|name| {
            let established = await_condition(api.clone(), name, conditions::is_crd_established());
            tokio::time::timeout(timeout, established)
        });
        let results = join_all(waits).await;
        let late: Vec<String> = names
            .into_iter()
            .zip(results)
            .filter(|(_, result)| !matches!(result, Ok(Ok(Some(_)))))
            .map(|(name, _)| name)
            .collect();
        if late.is_empty() {
            Ok(())
        } else {
            Err(ApplyError::CrdNotEstablished {
                names: late,
                timeout,
            })
        }
    }
}

/// The kind of an object, from discovery or from a CRD applied alongside it.
fn resolve(
    discovery: &Discovery,
    defined: &DefinedKinds,
    desired: &DesiredObject,
) -> Result<ResolvedKind, String> {
    let gvk = declared_gvk(&desired.object)?;
    discovered(discovery, &gvk)
        .or_else(|| defined.find(&gvk))
        .ok_or_else(|| {
            format!(
                "unknown kind {} ({}): the cluster does not serve it and no CustomResourceDefinition in this revision defines it",
                gvk.kind,
                gvk.api_version()
            )
        })
}

fn prepare_one(
    desired: DesiredObject,
    discovery: &Discovery,
    defined: &DefinedKinds,
    options: &ApplyOptions,
) -> Result<PreparedObject, String> {
    let (resource, scope) = resolve(discovery, defined, &desired)?;
    prepare(
        desired,
        resource,
        &scope,
        &options.default_namespace,
        &options.owner_labels,
    )
}

/// A second object with the same identity would race the first one within its stage.
fn duplicates(prepared: &[PreparedObject]) -> Vec<ObjectFailure> {
    let mut first_seen = HashMap::new();
    let mut failures = Vec::new();
    for object in prepared {
        let reference = &object.reference;
        let identity = (
            &object.resource.group,
            &object.resource.kind,
            &reference.namespace,
            &reference.name,
        );
        match first_seen.entry(identity) {
            Entry::Vacant(entry) => {
                entry.insert(&object.origin);
            }
            Entry::Occupied(entry) => failures.push(ObjectFailure {
                origin: object.origin.clone(),
                object: reference.clone(),
                reason: format!("the same object is also defined in {}", entry.get()),
            }),
        }
    }
    failures
}

/// The CRDs a stage created or wrote.
fn written_crds(report: &ApplyReport) -> Vec<String> {
    [&report.created, &report.configured, &report.drift_corrected]
        .into_iter()
        .flatten()
        .filter(|reference| {
            reference.kind == "CustomResourceDefinition"
                && reference.api_version.starts_with("apiextensions.k8s.io/")
        })
        .map(|reference| reference.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The controller runs applies on a multi-threaded runtime, so the future must be `Send`.
    #[allow(dead_code)]
    fn apply_future_is_send(applier: &Applier, options: &ApplyOptions) {
        fn assert_send<T: Send>(_: T) {}
        assert_send(applier.apply(Vec::new(), options));
    }

    #[allow(dead_code)]
    fn applier_is_shareable() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Applier>();
    }
}
