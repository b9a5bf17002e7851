//! The objects a client command shows: a revision read from a local repository or fetched from
//! a remote one, then rendered and read by [`crate::revision`], as the controller does.

use std::{collections::BTreeMap, path::Path, time::Duration};

use clap::Args;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use super::CliError;
use crate::{
    api::GitRepositorySpec,
    manifests::{self, Manifest},
    render::{RenderSettings, Renderer},
    revision::{self, ChartContext},
    source::{Artifact, ArtifactRequest, Credentials, Limits, SourceEngine},
    telemetry::metrics::Metrics,
};

/// How kustomizations are rendered, as the controller's flag of the same name.
#[derive(Args, Debug, Clone, Default)]
pub struct RenderArgs {
    /// The kustomize binary (default: `kustomize` on PATH); needed only for kustomizations.
    #[arg(long, env = "DRIFTLESS_KUSTOMIZE_BINARY")]
    pub kustomize_binary: Option<std::path::PathBuf>,
    /// The helm binary (default: `helm` on PATH); needed only for `spec.helm`.
    #[arg(long, env = "DRIFTLESS_HELM_BINARY")]
    pub helm_binary: Option<std::path::PathBuf>,
}

impl RenderArgs {
    pub async fn renderer(&self) -> Renderer {
        let settings = RenderSettings {
            kustomize_binary: self.kustomize_binary.clone(),
            helm_binary: self.helm_binary.clone(),
            ..RenderSettings::default()
        };
        Renderer::new(settings, Metrics::default()).await
    }
}

/// A commit of the repository holding `dir`, by the controller's tree rules.
pub fn local_revision(
    dir: &Path,
    revision: &str,
    spec: &GitRepositorySpec,
) -> Result<Artifact, CliError> {
    let path = spec.path.clone().unwrap_or_default();
    let artifact = crate::source::read_local_revision(
        dir,
        revision,
        &path,
        &spec.ignore,
        Limits::default().tree,
    )
    .map_err(|e| CliError::Revision {
        revision: format!("{revision} of {}", dir.display()),
        reason: e.to_string(),
    })?;
    refuse_skipped_paths(&artifact)?;
    Ok(artifact)
}

/// A fetched revision and the cache of this run that its snapshot reads from (removed on drop).
pub struct Fetched {
    pub artifact: Artifact,
    _cache: tempfile::TempDir,
}

/// The revision `spec` follows, fetched as the controller fetches it, into a cache of this run.
/// `credentials` come from the spec's Secret, read with the caller's rights.
pub async fn fetched_revision(
    spec: &GitRepositorySpec,
    owner: &str,
    credentials: Option<Credentials>,
) -> Result<Fetched, CliError> {
    let cache =
        tempfile::tempdir().map_err(|e| CliError::Output(format!("a temporary git cache: {e}")))?;
    let engine = SourceEngine::new(cache.path(), Limits::default(), Duration::from_secs(30));
    let request = ArtifactRequest {
        owner: owner.to_owned(),
        url: spec.url.clone(),
        reference: spec.reference.clone(),
        path: spec.path.clone().unwrap_or_default(),
        ignore: spec.ignore.clone(),
        credentials,
        timeout: Duration::from_secs(120),
        listed_after: None,
    };
    let artifact = engine
        .artifact(&request)
        .await
        .map_err(|e| CliError::Output(e.to_string()))?;
    refuse_skipped_paths(&artifact)?;
    Ok(Fetched {
        artifact,
        _cache: cache,
    })
}

/// As the controller: a link or submodule that may stand for manifests fails the revision
/// rather than silently dropping (and then pruning) what it held.
fn refuse_skipped_paths(artifact: &Artifact) -> Result<(), CliError> {
    if artifact.skipped.is_empty() {
        Ok(())
    } else {
        Err(CliError::SkippedPaths(artifact.skipped.join(", ")))
    }
}

/// The revision's objects: chart or units rendered, `variables` substituted, manifests read
/// with the controller's checks, `commonMetadata` set.
pub async fn objects_of(
    artifact: &Artifact,
    spec: &GitRepositorySpec,
    renderer: &Renderer,
    chart: &ChartContext,
    variables: Option<&BTreeMap<String, String>>,
) -> Result<Vec<Manifest>, CliError> {
    let mut inputs = revision::manifest_inputs(renderer, artifact, spec, chart)
        .await
        .map_err(|errors| CliError::Render(format!("revision {}: {errors}", artifact.revision)))?;
    let budget = manifests::Budget::default();
    if let Some(variables) = variables {
        inputs.substitute(variables, &budget).map_err(|message| {
            CliError::Render(format!("revision {}: {message}", artifact.revision))
        })?;
    }
    let mut objects = manifests::read_manifests(inputs.files(), &budget)?;
    revision::apply_common_metadata(&mut objects, spec);
    Ok(objects)
}

pub async fn read_credentials(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<Credentials, CliError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = secrets
        .get(name)
        .await
        .map_err(CliError::api(format!("reading Secret {namespace}/{name}")))?;
    Credentials::from_secret(secret)
        .map_err(|e| CliError::Output(format!("Secret {namespace}/{name}: {e}")))
}
