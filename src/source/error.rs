//! Errors of the source engine. Each names the GitRepository, the repository URL (credentials
//! never printed) and the cause, so that it can stand as the `Ready` condition's message.

use super::{credentials::CredentialsError, select::SelectError, tree::TreeError, url::UrlError};

/// A failure to produce the manifests of a revision.
#[derive(Debug, thiserror::Error)]
#[error("GitRepository {owner}: {url}: {kind}")]
pub struct SourceError {
    /// `namespace/name` of the GitRepository the work was for.
    pub owner: String,
    /// The repository URL with any credentials redacted.
    pub url: String,
    pub kind: SourceErrorKind,
}

/// Why the source engine failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceErrorKind {
    #[error("invalid url: {0}")]
    InvalidUrl(#[from] UrlError),
    #[error("secret: {0}")]
    Credentials(#[from] CredentialsError),
    #[error("authentication failed: the server rejected the credentials")]
    AuthenticationFailed,
    #[error("the server asks for credentials, but spec.secretRef provides none it accepts")]
    CredentialsRequired,
    #[error("SSH needs known_hosts in the Secret named by spec.secretRef to verify the server")]
    KnownHostsRequired,
    #[error("host key verification failed: {0}")]
    HostKey(String),
    #[error("TLS certificate verification failed: {0}")]
    Certificate(String),
    #[error("git operation timed out")]
    TimedOut,
    #[error("git operation cancelled")]
    Cancelled,
    #[error("fetched pack exceeds the limit of {limit} bytes")]
    PackTooLarge { limit: u64 },
    #[error("{0}")]
    Select(#[from] SelectError),
    #[error("commit {0} was not found in the repository")]
    CommitNotFound(String),
    #[error("the repository is empty: it has no branches or tags")]
    EmptyRepository,
    #[error("{0}")]
    Tree(#[from] TreeError),
    #[error("git: {0}")]
    Git(String),
    #[error("cache: {0}")]
    Cache(String),
}

impl From<git2::Error> for SourceErrorKind {
    fn from(error: git2::Error) -> Self {
        SourceErrorKind::Git(error.message().to_owned())
    }
}
