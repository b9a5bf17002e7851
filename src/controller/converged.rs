//! What a successful reconcile did, as the status, the events and the metrics report it.

use crate::{
    api::{ApplyCounts, DependenciesReady, InventoryEntry},
    apply::{ApplyReport, PruneReport},
};

/// What a successful reconcile did. The revision's files are not kept: they are parsed and
/// applied, and a health wait need not hold them in memory.
pub(super) struct Converged {
    /// `main@sha1:<40 hex>`.
    pub(super) revision: String,
    /// The commit's committer time, RFC 3339.
    pub(super) commit_time: String,
    pub(super) report: ApplyReport,
    pub(super) pruned: PruneReport,
    pub(super) inventory: Vec<InventoryEntry>,
    /// `kustomize <version>` when the revision had kustomizations.
    pub(super) renderer: Option<String>,
    /// Digest of the objects applied (see [`crate::apply::digest_of`]).
    pub(super) digest: String,
    /// When every object was last compared with the cluster, when this apply trusted some to
    /// be in place (a push); `None`: it compared all of them now.
    pub(super) compared_at: Option<std::time::Instant>,
    /// The revision and generation every `spec.dependsOn` entry was found ready for.
    pub(super) dependencies_ready: Option<DependenciesReady>,
}

impl Converged {
    pub(super) fn changed_anything(&self) -> bool {
        let r = &self.report;
        r.writes > 0 || !self.pruned.deleted.is_empty()
    }

    pub(super) fn counts(&self) -> ApplyCounts {
        let r = &self.report;
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        ApplyCounts {
            applied: count(r.created.len() + r.configured.len()),
            drift_corrected: count(r.drift_corrected.len()),
            pruned: count(self.pruned.deleted.len()),
            total: count(self.inventory.len()),
        }
    }

    pub(super) fn summary(&self) -> String {
        let r = &self.report;
        format!(
            "Applied revision {}: {} created, {} configured, {} drift corrected, {} unchanged, {} pruned",
            self.revision,
            r.created.len(),
            r.configured.len(),
            r.drift_corrected.len(),
            r.unchanged.len(),
            self.pruned.deleted.len()
        )
    }
}
