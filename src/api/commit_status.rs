//! `spec.commitStatus`: where the outcome of each commit is written back on the Git host.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::LocalObjectReference;

/// The API a commit status is posted with.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CommitStatusProvider {
    Github,
    Gitlab,
    Gitea,
    Forgejo,
    /// Bitbucket Cloud.
    Bitbucket,
    /// Bitbucket Server and Data Center.
    Bitbucketserver,
}

impl CommitStatusProvider {
    pub fn name(self) -> &'static str {
        match self {
            CommitStatusProvider::Github => "github",
            CommitStatusProvider::Gitlab => "gitlab",
            CommitStatusProvider::Gitea => "gitea",
            CommitStatusProvider::Forgejo => "forgejo",
            CommitStatusProvider::Bitbucket => "bitbucket",
            CommitStatusProvider::Bitbucketserver => "bitbucketserver",
        }
    }
}

/// Posting each commit's outcome to the Git host: `pending` when a new commit is applied,
/// `success` once it is applied and healthy, `failure` with the reason when it is not.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommitStatusSpec {
    /// `github`, `gitlab`, `gitea`, `forgejo`, `bitbucket` (Cloud) or `bitbucketserver`.
    pub provider: CommitStatusProvider,
    /// Base URL of the host's API, e.g. `https://gitea.example.com` or
    /// `https://github.example.com/api/v3`. Default: derived from `spec.url` (the host's
    /// public API for github.com, gitlab.com and bitbucket.org). Its host must be the host of
    /// `spec.url` unless the controller allows others (`--commit-status-allowed-hosts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("size(self) <= 2048 && (self.startsWith('https://') || self.startsWith('http://'))").message("address must be an http:// or https:// URL of at most 2048 characters"))]
    pub address: Option<String>,
    /// Secret in this namespace whose `token` authenticates the posts; read as the
    /// GitRepository's ServiceAccount. For `bitbucket`, `username` and `token` (an app
    /// password) are sent as basic auth.
    pub secret_ref: LocalObjectReference,
    /// The status's name on the host (GitHub's context, GitLab's name, Bitbucket's key).
    /// Default `driftless/<namespace>/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("size(self) >= 1 && size(self) <= 255 && !self.matches('[\\\\x00-\\\\x1f]')").message("context must be 1 to 255 characters without control characters"))]
    pub context: Option<String>,
    /// The link of each status (e.g. a dashboard). Default: none (Bitbucket, which requires
    /// one, gets the repository's address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("size(self) <= 2048 && (self.startsWith('https://') || self.startsWith('http://'))").message("targetURL must be an http:// or https:// URL of at most 2048 characters"))]
    #[serde(rename = "targetURL")]
    pub target_url: Option<String>,
}
