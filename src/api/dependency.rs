//! `spec.dependsOn`: what must be ready before a GitRepository applies, and the status record
//! that lets a dependency's later flap leave an applied revision alone.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// The kind a dependency names when it names none.
pub const GIT_REPOSITORY_KIND: &str = "GitRepository";
/// The API version of [`GIT_REPOSITORY_KIND`].
pub const GIT_REPOSITORY_API_VERSION: &str = "driftless.dev/v1alpha1";

/// One object that must be ready before this GitRepository applies.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.apiVersion) == has(self.kind)")
    .message("apiVersion and kind are set together (both unset name a GitRepository)"))]
pub struct Dependency {
    /// Name of the object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Its namespace. Default: this GitRepository's namespace. Another namespace is refused
    /// when the controller runs with `--require-service-account`, unless it also runs with
    /// `--allow-cross-namespace-dependencies`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("namespace must be a DNS-1123 label"))]
    pub namespace: Option<String>,
    /// API version of the object, e.g. `helm.toolkit.fluxcd.io/v2`. Default: a driftless
    /// GitRepository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub api_version: Option<String>,
    /// Kind of the object; any kind whose status follows kstatus (a `Ready` condition, an
    /// observed generation) or that driftless knows the health of (Deployments, CRDs, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub kind: Option<String>,
    /// `UntilReady` (default): once the dependency was ready for this GitRepository's current
    /// revision and spec, a later flap of the dependency does not block it. `Always`: checked
    /// before every apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<DependencyPolicy>,
    /// A CEL expression over `dep` (the dependency as read from the cluster) and `self` (this
    /// GitRepository) that decides whether the dependency is ready, instead of the built-in
    /// check (Flux's `readyExpr`), e.g. `dep.status.lastAppliedRevision.startsWith('main@')`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub ready_expr: Option<String>,
}

/// When a dependency is checked.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum DependencyPolicy {
    /// Until it was ready once for the dependent's current revision and generation.
    #[default]
    UntilReady,
    /// Before every apply.
    Always,
}

/// The revision and spec generation for which every dependency was found ready, recorded
/// when they are applied.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DependenciesReady {
    pub revision: String,
    pub generation: i64,
}

impl Dependency {
    /// The kind named, [`GIT_REPOSITORY_KIND`] by default.
    pub fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or(GIT_REPOSITORY_KIND)
    }

    /// The API version named, [`GIT_REPOSITORY_API_VERSION`] by default.
    pub fn api_version(&self) -> &str {
        self.api_version
            .as_deref()
            .unwrap_or(GIT_REPOSITORY_API_VERSION)
    }

    /// Whether it names a driftless GitRepository.
    pub fn is_git_repository(&self) -> bool {
        self.kind() == GIT_REPOSITORY_KIND && self.api_version().starts_with("driftless.dev/")
    }

    /// Its namespace, the dependent's (`own`) by default.
    pub fn namespace_or<'a>(&'a self, own: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(own)
    }

    pub fn policy(&self) -> DependencyPolicy {
        self.policy.unwrap_or_default()
    }
}
