//! `spec.healthChecks` and `spec.healthCheckExprs`: objects outside the inventory that the
//! health wait also waits for, and CEL expressions that decide the health of custom resources
//! instead of the kstatus rules. Field names and semantics are Flux Kustomization's, so its
//! published expressions paste in unchanged.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// The longest CEL expression accepted (`current`, `inProgress`, `failed`, `readyExpr`).
/// Expressions are written by tenants and run in the controller: the length bounds what one
/// can ask of it (see docs/ordering.md).
pub const MAX_EXPRESSION_LENGTH: usize = 1024;
/// The most `spec.healthCheckExprs` entries.
pub const MAX_HEALTH_CHECK_EXPRS: usize = 32;
/// The most `spec.healthChecks` entries.
pub const MAX_HEALTH_CHECKS: usize = 64;

/// An object whose health is part of the health wait although this GitRepository did not
/// apply it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckReference {
    /// API version of the object, e.g. `apps/v1` or `helm.toolkit.fluxcd.io/v2`.
    #[schemars(length(min = 1, max = 253))]
    pub api_version: String,
    /// Kind of the object, e.g. `Deployment`.
    #[schemars(length(min = 1, max = 63))]
    pub kind: String,
    /// Name of the object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Its namespace. Default: this GitRepository's namespace (ignored for cluster-scoped
    /// kinds). It is read as `spec.serviceAccountName`, so in restricted mode only what that
    /// account may read can be waited for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
}

/// CEL expressions that decide the health of every object of one kind in the health wait,
/// instead of the kstatus rules. Each is evaluated with the object's top-level fields
/// (`metadata`, `spec`, `status`, ...) as variables, in the order `inProgress`, `failed`,
/// `current`; the first that is true decides, and when none is, the object is in progress.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckExpr {
    /// API version of the kind, e.g. `cert-manager.io/v1`.
    #[schemars(length(min = 1, max = 253))]
    pub api_version: String,
    /// The kind, e.g. `Certificate`.
    #[schemars(length(min = 1, max = 63))]
    pub kind: String,
    /// True when the object is healthy (kstatus `Current`).
    #[schemars(length(min = 1, max = 1024))]
    pub current: String,
    /// True while the object is still getting there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub in_progress: Option<String>,
    /// True when the object failed: the health wait fails at once, naming this expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024))]
    pub failed: Option<String>,
}

impl HealthCheckReference {
    /// Its namespace, the GitRepository's (`own`) by default.
    pub fn namespace_or<'a>(&'a self, own: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(own)
    }
}

impl HealthCheckExpr {
    /// The expressions set, each with its field name, in evaluation order.
    pub fn expressions(&self) -> Vec<(&'static str, &str)> {
        let mut named = Vec::with_capacity(3);
        if let Some(in_progress) = &self.in_progress {
            named.push(("inProgress", in_progress.as_str()));
        }
        if let Some(failed) = &self.failed {
            named.push(("failed", failed.as_str()));
        }
        named.push(("current", self.current.as_str()));
        named
    }
}
