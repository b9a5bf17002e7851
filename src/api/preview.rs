//! `spec.preview`: what merging a pull request would change in the cluster, posted on the pull
//! request as one comment and a commit status.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::{CommitStatusProvider, LocalObjectReference};

/// How the plan is shown on the pull request.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum PreviewCommentMode {
    /// One comment, created on the first push and edited in place on each later one.
    #[default]
    Upsert,
    /// No comment: the commit status alone.
    None,
}

/// Previews of pull requests: on each push to a pull request that targets one of `branches`,
/// its head commit is rendered as an apply would render it, dry-run on the server as the
/// object's ServiceAccount (never written), and the plan is posted on the pull request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PreviewSpec {
    /// Preview pull requests. Default false.
    #[serde(default)]
    pub enabled: bool,
    /// The host's API, as `spec.commitStatus.provider`.
    pub provider: CommitStatusProvider,
    /// Base URL of the host's API, as `spec.commitStatus.address` (same host rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("size(self) <= 2048 && (self.startsWith('https://') || self.startsWith('http://'))").message("address must be an http:// or https:// URL of at most 2048 characters"))]
    pub address: Option<String>,
    /// Secret in this namespace whose `token` (and, for `bitbucket`, `username`) posts the
    /// comment and the status; read as the GitRepository's ServiceAccount.
    pub secret_ref: LocalObjectReference,
    /// The target branches whose pull requests are previewed. Default: the branch this object
    /// follows (`spec.ref.branch`, else the repository's default branch).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub branches: Vec<String>,
    /// Preview pull requests from forks too. Default false: a fork's author is anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_forks: Option<bool>,
    /// `upsert` (default): one comment, edited in place; `none`: the commit status only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment_mode: Option<PreviewCommentMode>,
    /// The commit status's name. Default `driftless/plan/<namespace>/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("size(self) >= 1 && size(self) <= 255 && !self.matches('[\\\\x00-\\\\x1f]')").message("statusContext must be 1 to 255 characters without control characters"))]
    pub status_context: Option<String>,
}

impl PreviewSpec {
    pub fn allows_forks(&self) -> bool {
        self.allow_forks.unwrap_or(false)
    }

    pub fn comment_mode(&self) -> PreviewCommentMode {
        self.comment_mode.unwrap_or_default()
    }

    /// The status context of the object `namespace/name`.
    pub fn status_context(&self, namespace: &str, name: &str) -> String {
        self.status_context
            .clone()
            .unwrap_or_else(|| format!("driftless/plan/{namespace}/{name}"))
    }
}
