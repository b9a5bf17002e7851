//! What rendering takes from the cluster for the controller's reconciles (`spec.postBuild`
//! variables, `spec.helm`'s values and capabilities), and which ConfigMaps and Secrets a
//! GitRepository reads that way; rendering and reading a revision is [`crate::revision`]'s.

use kube::{Client, ResourceExt};

use crate::{
    api::{GitRepository, GitRepositorySpec},
    apply::Applier,
    render::Capabilities,
    revision::{self, ChartContext, ManifestInputs},
};

/// What `spec.helm` takes from the cluster: `valuesFrom` read with `client` (the account the
/// revision is applied as) and the cluster's version and APIs. Empty without `spec.helm`.
pub(super) async fn chart_context(
    repository: &GitRepository,
    target_namespace: &str,
    applier: &Applier,
    client: &Client,
) -> Result<ChartContext, String> {
    let Some(helm) = &repository.spec.helm else {
        return Ok(ChartContext::default());
    };
    let namespace = repository.namespace().unwrap_or_default();
    let values_from = revision::read_values_from(client, &namespace, &helm.values_from).await?;
    let served = applier
        .served_apis()
        .await
        .map_err(|error| format!("reading the cluster's capabilities for helm: {error}"))?;
    Ok(ChartContext {
        release_name: repository.name_any(),
        namespace: target_namespace.to_owned(),
        values_from,
        capabilities: Some(Capabilities {
            kube_version: served.server_version,
            api_versions: served.api_versions,
        }),
    })
}

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
    inputs.substitute(&variables, &crate::manifests::Budget::default())
}

/// Whether rendering reads `kind` (`ConfigMap` or `Secret`) `name` of the object's namespace:
/// `spec.postBuild.substituteFrom` or `spec.helm.valuesFrom` (its change then re-runs the
/// GitRepository).
pub(super) fn renders_from(spec: &GitRepositorySpec, kind: &str, name: &str) -> bool {
    let substitutes = spec.post_build.as_ref().is_some_and(|post_build| {
        post_build
            .substitute_from
            .iter()
            .any(|source| source.kind == kind && source.name == name)
    });
    let values = spec.helm.as_ref().is_some_and(|helm| {
        helm.values_from
            .iter()
            .any(|source| source.kind == kind && source.name == name)
    });
    substitutes || values
}
