//! `spec.postBuild` variables read from the cluster for the controller's reconciles; rendering
//! and reading a revision is [`crate::revision`]'s.

use kube::Client;

use crate::{
    api::GitRepositorySpec,
    revision::{self, ManifestInputs},
};

/// `spec.postBuild`: reads the variables with `client` (the account the revision is applied
/// as) and substitutes them in every stream.
pub(super) async fn substitute(
    inputs: &mut ManifestInputs<'_>,
    spec: &GitRepositorySpec,
    namespace: &str,
    client: &Client,
) -> Result<(), String> {
    let Some(post_build) = &spec.post_build else {
        return Ok(());
    };
    let variables = revision::read_variables(client, namespace, post_build).await?;
    inputs.substitute(&variables)
}

/// Whether `spec.postBuild.substituteFrom` reads Secret `name` (its change then re-runs the
/// GitRepository).
pub(super) fn substitutes_from_secret(spec: &GitRepositorySpec, name: &str) -> bool {
    spec.post_build.as_ref().is_some_and(|post_build| {
        post_build
            .substitute_from
            .iter()
            .any(|source| source.kind == "Secret" && source.name == name)
    })
}
