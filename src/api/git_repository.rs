//! The `GitRepository` custom resource: where to fetch manifests from and how to apply them.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::duration::{DurationError, MAX_INTERVAL, MAX_TIMEOUT, parse_bounded_duration};

/// Desired state: a Git repository, a revision in it, and a path of manifests to apply.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "driftless.dev",
    version = "v1alpha1",
    kind = "GitRepository",
    namespaced,
    status = "GitRepositoryStatus",
    shortname = "gitrepo",
    shortname = "gr",
    category = "driftless",
    doc = "A Git repository whose manifests driftless applies to the cluster and keeps applied.",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".spec.url"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".status.lastAppliedRevision","priority":0}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].message","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "!has(self.helm) || !(has(self.namePrefix) || has(self.nameSuffix) || has(self.images) || has(self.patches) || has(self.components))"
).message("helm renders a chart; the Kustomize fields (namePrefix, nameSuffix, images, patches, components) cannot be combined with it"))]
pub struct GitRepositorySpec {
    /// URL of the repository: `https://`, `http://`, `ssh://` or scp-like `git@host:org/repo.git`.
    #[x_kube(validation = Rule::new(
        "self.startsWith('https://') || self.startsWith('http://') || self.startsWith('ssh://') || self.matches('^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:[^/].*$')"
    ).message("url must start with https://, http://, ssh:// or be scp-like user@host:path"))]
    pub url: String,

    /// Which revision to follow. Default: the remote's HEAD branch.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<GitReference>,

    /// Directory inside the repository that holds the manifests. Default: the repository root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,

    /// gitignore-style patterns excluded from the manifests, in addition to the repository's
    /// `.driftlessignore` file.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,

    // The duration rules: the size and digit limits come first so that CEL's duration() never
    // overflows. An evaluation error, unlike a false rule, is not ratcheted for an unchanged
    // field, so an object stored with such a value could never be updated again (not even to
    // add or remove the finalizer).
    /// How often to check the repository and correct drift when no webhook arrives (e.g. `5m`).
    /// Jittered. Default `5m`; at most `720h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("size(self) <= 16 && !self.matches('[0-9]{7}') && self.matches('^([0-9]+(\\\\.[0-9]+)?(ms|s|m|h))+$') && duration(self) > duration('0s') && duration(self) <= duration('720h')").message("interval must be a positive Go-style duration such as 30s, 5m or 1h, at most 720h (16 characters, 6 digits per number)"))]
    pub interval: Option<String>,

    /// How long to wait before retrying after a failure. When unset, retries back off
    /// exponentially: 5s after the first failure, doubling after each further one, up to the
    /// interval. At most `720h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("size(self) <= 16 && !self.matches('[0-9]{7}') && self.matches('^([0-9]+(\\\\.[0-9]+)?(ms|s|m|h))+$') && duration(self) > duration('0s') && duration(self) <= duration('720h')").message("retryInterval must be a positive Go-style duration such as 30s or 1m, at most 720h (16 characters, 6 digits per number)"))]
    pub retry_interval: Option<String>,

    /// Time limit for git operations, for applying, and for waiting for health. Default `60s`;
    /// at most `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("size(self) <= 16 && !self.matches('[0-9]{7}') && self.matches('^([0-9]+(\\\\.[0-9]+)?(ms|s|m|h))+$') && duration(self) > duration('0s') && duration(self) <= duration('1h')").message("timeout must be a positive Go-style duration such as 60s, at most 1h (16 characters, 6 digits per number)"))]
    pub timeout: Option<String>,

    /// Secret in the same namespace with credentials: `username` + `password` (HTTPS basic or
    /// token), or `bearerToken`, and/or `ca.crt`; or `identity` (SSH private key) with optional
    /// `passphrase` and `known_hosts` (required for SSH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<LocalObjectReference>,

    /// Delete objects that were applied before and have left the repository. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<bool>,

    /// Namespace given to namespaced objects that do not name one. Default: this object's
    /// namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_namespace: Option<String>,

    /// ServiceAccount in this namespace to impersonate for every apply, prune and health call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,

    /// Wait for applied objects to become healthy before reporting Ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<bool>,

    /// Stop reconciling until set back to false. The cluster keeps what was applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,

    /// Allow a revision that yields no objects at all to prune everything applied before.
    /// Off by default: an empty revision is far more often a mistake (a wrong `path`, a broken
    /// branch) than a wish to delete everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune_empty: Option<bool>,

    /// Per-object push webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSpec>,

    /// Post each commit's outcome to the Git host as a commit status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_status: Option<super::CommitStatusSpec>,

    /// Preview pull requests: the plan of each push to a pull request, posted on it as a
    /// comment and a commit status (see docs/preview.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<super::PreviewSpec>,

    /// Announce outcomes (Applied, Failed, DriftCorrected, Pruned, Stalled) to chat, a signed
    /// webhook or a CloudEvents endpoint; each event once per revision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub alerts: Vec<super::AlertSpec>,

    /// Kustomize: replaces the kustomization's `namePrefix` (as Flux's Kustomization does).
    /// Setting any Kustomize field on a path without a kustomization file makes driftless
    /// generate one for the path (every manifest file, every subdirectory kustomization).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_prefix: Option<String>,

    /// Kustomize: replaces the kustomization's `nameSuffix`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_suffix: Option<String>,

    /// Kustomize: image overrides, merged by name into the kustomization's `images`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<super::ImageOverride>,

    /// Kustomize: patches appended to the kustomization's `patches`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<super::PatchSpec>,

    /// Kustomize: components (directories relative to `path`) appended to the kustomization's
    /// `components`; they follow the same sandbox rules as the repository's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,

    /// Labels and annotations set on every applied object's metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_metadata: Option<super::CommonMetadata>,

    /// Variable substitution (`${var}`, `${var:=default}`) in every manifest after
    /// rendering, as Flux's `postBuild`; strict: an unset variable without a default fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_build: Option<super::PostBuild>,

    /// Helm: render the chart at `helm.chart` (default `path`) with `helm template` and apply
    /// its objects instead of the files under `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<super::HelmSpec>,

    /// Objects that must be ready before this one applies (see docs/ordering.md): other
    /// GitRepositories by default, or any object whose readiness kstatus reads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub depends_on: Vec<super::Dependency>,

    /// Objects this GitRepository did not apply whose health is part of its health wait (see
    /// docs/ordering.md); with any set, the health wait runs even without `wait`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub health_checks: Vec<super::HealthCheckReference>,

    /// CEL expressions that decide the health of custom resources of a kind in the health
    /// wait instead of the kstatus rules (Flux's `healthCheckExprs`; see docs/ordering.md).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub health_check_exprs: Vec<super::HealthCheckExpr>,
}

/// The revision to follow. Exactly one of `branch`, `tag`, `semver`, `commit` — except that
/// `commit` may be combined with `branch`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "[has(self.branch), has(self.tag), has(self.semver), has(self.commit)].filter(x, x).size() <= 1 || (has(self.branch) && has(self.commit) && !has(self.tag) && !has(self.semver))"
).message("ref takes one of branch, tag, semver or commit (commit may be combined with branch)"))]
pub struct GitReference {
    /// Branch to follow, e.g. `main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// Tag to check out, e.g. `v1.2.3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Semver range over the repository's tags, e.g. `>=1.2.0 <2.0.0`; the highest match wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semver: Option<String>,
    /// Full 40-character commit SHA to check out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-f]{40}$')").message("commit must be a full 40-character lowercase hex SHA"))]
    pub commit: Option<String>,
}

/// A reference to an object in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
pub struct LocalObjectReference {
    /// Name of the referenced object.
    pub name: String,
}

/// Configuration of the per-object push webhook.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSpec {
    /// Secret in the same namespace whose `token` signs the deliveries.
    pub secret_ref: LocalObjectReference,
}

/// Observed state, written by the controller.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitRepositoryStatus {
    /// The generation of the spec that the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// kstatus conditions: `Ready`, `Reconciling`, `Stalled`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Last revision fetched, e.g. `main@sha1:<40 hex>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fetched_revision: Option<String>,
    /// Last revision an apply was attempted for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<String>,
    /// Last revision applied successfully.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<String>,
    /// Commit time of the last applied revision (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_commit_time: Option<String>,
    /// The value of the `driftless.dev/reconcile-requested-at` annotation last handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// The objects applied from the last applied revision; what a later revision no longer
    /// contains is pruned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inventory: Vec<InventoryEntry>,
    /// What the last successful reconcile did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_apply: Option<ApplyCounts>,
    /// The renderer that built the last applied revision's kustomizations, e.g.
    /// `kustomize v5.8.2`; absent when the revision was plain YAML only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_renderer: Option<String>,
    /// Path under the webhook receiver that triggers this object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_path: Option<String>,
    /// The last verified push delivery that matched this object, whether or not its commit
    /// was already applied. Written only by the webhook receiver (any replica), with a merge
    /// patch of this one key; the reconciler's status writes leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_webhook: Option<LastWebhook>,
    /// The revision and generation for which every `spec.dependsOn` entry was last found
    /// ready; a dependency with policy `UntilReady` is not checked again for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependencies_ready: Option<super::DependenciesReady>,
}

/// A webhook delivery as recorded in `status.lastWebhook`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastWebhook {
    /// When the receiver got the delivery (RFC 3339).
    pub received_at: String,
    /// The delivery id the Git host sent (e.g. `X-GitHub-Delivery`), if it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
    /// `github`, `gitlab`, `gitea`, `forgejo`, `bitbucket` or `generic`.
    pub provider: String,
}

/// One applied object as recorded in `status.inventory`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct InventoryEntry {
    /// `<namespace>_<name>_<group>_<kind>`; the namespace is empty for cluster-scoped objects
    /// and the group is empty for the core group, e.g. `default_web_apps_Deployment` or
    /// `_team-a__Namespace`.
    pub id: String,
    /// The API version the object was applied as, e.g. `v1`; needed to address it for deletion.
    pub version: String,
}

/// Counts of what one reconcile did to the objects of its revision.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplyCounts {
    /// Objects created or changed because Git changed.
    pub applied: u32,
    /// Objects changed outside Git and written back.
    pub drift_corrected: u32,
    /// Objects deleted because they left the repository.
    pub pruned: u32,
    /// Objects in the revision.
    pub total: u32,
}

/// `spec.timeout` when the spec leaves it out.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// A duration of the spec the controller will not act on; names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("spec.{field}: {error}")]
pub struct SpecDurationError {
    pub field: &'static str,
    #[source]
    pub error: DurationError,
}

impl GitRepository {
    /// `status.lastAppliedRevision`: the revision whose objects are in the cluster.
    pub fn applied_revision(&self) -> Option<&str> {
        self.status.as_ref()?.last_applied_revision.as_deref()
    }

    /// `spec.interval`, or `default` when unset. The CRD bounds it, but an object stored
    /// before that bound keeps its value, so the bound is checked again here.
    pub fn interval(&self, default: Duration) -> Result<Duration, SpecDurationError> {
        let read = spec_duration("interval", self.spec.interval.as_deref(), MAX_INTERVAL)?;
        Ok(read.unwrap_or(default))
    }

    /// `spec.retryInterval`; `None` backs off exponentially instead.
    pub fn retry_interval(&self) -> Result<Option<Duration>, SpecDurationError> {
        spec_duration(
            "retryInterval",
            self.spec.retry_interval.as_deref(),
            MAX_INTERVAL,
        )
    }

    /// `spec.timeout`, or [`DEFAULT_TIMEOUT`] when unset.
    pub fn timeout(&self) -> Result<Duration, SpecDurationError> {
        let read = spec_duration("timeout", self.spec.timeout.as_deref(), MAX_TIMEOUT)?;
        Ok(read.unwrap_or(DEFAULT_TIMEOUT))
    }
}

fn spec_duration(
    field: &'static str,
    text: Option<&str>,
    maximum: Duration,
) -> Result<Option<Duration>, SpecDurationError> {
    text.map(|text| parse_bounded_duration(text, maximum))
        .transpose()
        .map_err(|error| SpecDurationError { field, error })
}
