use std::process::ExitCode;

use crate::manifests::ManifestErrors;

/// Why a client command could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("reading kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("no cluster configuration found (set --kubeconfig, KUBECONFIG or ~/.kube/config): {0}")]
    NoConfig(#[from] kube::config::InferConfigError),
    #[error("connecting to the cluster: {0}")]
    Client(#[source] kube::Error),
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("GitRepository {namespace}/{name} not found")]
    NotFound { namespace: String, name: String },
    #[error("timed out after {0:?} waiting for the reconcile")]
    TimedOut(std::time::Duration),
    #[error("revision {revision:?}: {reason}")]
    Revision { revision: String, reason: String },
    #[error("{spec_file}: {reason}")]
    SpecFile { spec_file: String, reason: String },
    #[error(
        "not followed (symlinks and submodules are never read): {0}; remove them, or list them \
         in spec.ignore or .driftlessignore"
    )]
    SkippedPaths(String),
    #[error("{0}")]
    Manifests(#[from] ManifestErrors),
    #[error("{0}")]
    Render(String),
    #[error("writing the output: {0}")]
    Output(String),
}

impl CliError {
    pub(super) fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> CliError {
        let what = what.into();
        move |source| CliError::Api { what, source }
    }

    /// kubectl's convention: 1 for "the answer is no", 2 for "could not answer".
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Manifests(_)
            | CliError::SkippedPaths(_)
            | CliError::Render(_)
            | CliError::Revision { .. } => ExitCode::from(1),
            _ => ExitCode::from(2),
        }
    }
}
