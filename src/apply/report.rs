//! Inputs and outputs of an apply besides the objects themselves.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
    time::Duration,
};

use super::object::ObjectRef;

/// How to apply one revision.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// Namespace for namespaced objects whose manifest names none.
    pub default_namespace: String,
    /// Labels added to every object so its owner (e.g. `driftless.dev/name`,
    /// `driftless.dev/namespace`) can find it again.
    pub owner_labels: BTreeMap<String, String>,
    /// How many objects of a stage are in flight at once.
    pub concurrency: usize,
    /// How long applied CustomResourceDefinitions may take to become Established.
    pub crd_established_timeout: Duration,
    /// Content hashes ([`crate::api::APPLIED_HASH_ANNOTATION`]) of objects the caller knows
    /// to be in place as applied (the last apply of the same owner wrote or compared them and
    /// nothing asked to look again): they are reported unchanged without being read, compared
    /// or dry-run. Empty for a full comparison, which is what finds drift.
    pub trusted: Arc<HashSet<String>>,
}

impl ApplyOptions {
    /// The options a GitRepository in `namespace` is applied with: its target namespace (else
    /// its own) for objects naming none, and its owner labels. The controller and `driftless
    /// diff` both use this, so a preview is labelled and defaulted like the apply.
    pub fn for_repository(
        repository: &crate::api::GitRepository,
        namespace: &str,
        concurrency: usize,
    ) -> Self {
        use kube::ResourceExt;
        Self {
            default_namespace: repository
                .spec
                .target_namespace
                .clone()
                .unwrap_or_else(|| namespace.to_owned()),
            owner_labels: super::inventory::owner_labels(&repository.name_any(), namespace),
            concurrency,
            ..Self::default()
        }
    }
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            default_namespace: "default".to_owned(),
            owner_labels: BTreeMap::new(),
            concurrency: 8,
            crd_established_timeout: Duration::from_secs(60),
            trusted: Arc::default(),
        }
    }
}

/// What an apply did to each object, and how many write requests it issued.
///
/// Each list is in apply order: stage 1 before stage 2, and manifest order within a stage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Objects that did not exist.
    pub created: Vec<ObjectRef>,
    /// Objects updated because the desired object changed (or was never applied by driftless).
    pub configured: Vec<ObjectRef>,
    /// Objects updated although the desired object is as last applied: someone changed the live
    /// object by hand.
    pub drift_corrected: Vec<ObjectRef>,
    /// Objects already as desired (or create-only objects that exist); not written.
    pub unchanged: Vec<ObjectRef>,
    /// Write (non-dry-run) requests issued.
    pub writes: usize,
    /// Content hashes of every object the apply left in place as desired (all of them, once
    /// it succeeded): what [`ApplyOptions::trusted`] may name next time.
    pub in_place: Vec<String>,
    /// Where the apply spent its time.
    pub timings: ApplyTimings,
}

/// Time spent in each step of an apply, summed over its stages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyTimings {
    /// Reading the live objects (the LISTs by owner labels).
    pub list: Duration,
    /// Comparing with the live objects, and the dry runs of those that may differ.
    pub plan: Duration,
    /// The writes.
    pub write: Duration,
    /// Waiting for applied CRDs to be Established and refreshing discovery.
    pub established: Duration,
}

impl ApplyReport {
    /// Every object the apply left in place as desired: written or found unchanged.
    pub fn objects(&self) -> impl Iterator<Item = &ObjectRef> {
        [
            &self.created,
            &self.configured,
            &self.drift_corrected,
            &self.unchanged,
        ]
        .into_iter()
        .flatten()
    }

    /// Adds another stage's outcome to this one.
    pub(crate) fn merge(&mut self, other: ApplyReport) {
        self.created.extend(other.created);
        self.configured.extend(other.configured);
        self.drift_corrected.extend(other.drift_corrected);
        self.unchanged.extend(other.unchanged);
        self.writes += other.writes;
        self.in_place.extend(other.in_place);
        self.timings.list += other.timings.list;
        self.timings.plan += other.timings.plan;
        self.timings.write += other.timings.write;
        self.timings.established += other.timings.established;
    }
}
