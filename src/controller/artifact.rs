//! The first step of a reconcile: the revision the GitRepository's ref points at, and its
//! files, with the credentials of its Secret read as the tenant.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};

use super::{
    Context,
    conditions::Reason,
    failure::{Failure, source_failure},
    identity::{client_for, service_account_of},
};
use crate::{
    api::GitRepository,
    source::{Artifact, ArtifactRequest, Credentials},
};

/// Resolves the ref and fetches its files (from the cache when the commit is known). After a
/// push, a listing of the URL made since `pushed_at` resolves the ref.
pub(super) async fn artifact_of(
    repository: &GitRepository,
    context: &Context,
    namespace: &str,
    timeout: Duration,
    pushed_at: Option<Instant>,
) -> Result<Artifact, Failure> {
    let credentials = read_credentials(repository, context, namespace).await?;
    let request = ArtifactRequest {
        listed_after: pushed_at,
        ..artifact_request(repository, namespace, credentials, timeout)
    };
    let fetch_started = Instant::now();
    let fetched = context.source.artifact(&request).await;
    context
        .metrics
        .fetch_duration
        .observe(fetch_started.elapsed().as_secs_f64());
    fetched.map_err(|error| source_failure(&error))
}

/// The files of `reference` of the object's repository (a pull request's head), fetched with
/// the object's credentials and cache rules as its own ref is.
pub(super) async fn artifact_at(
    repository: &GitRepository,
    context: &Context,
    namespace: &str,
    timeout: Duration,
    reference: crate::api::GitReference,
) -> Result<Artifact, Failure> {
    let credentials = read_credentials(repository, context, namespace).await?;
    let request = ArtifactRequest {
        reference: Some(reference),
        ..artifact_request(repository, namespace, credentials, timeout)
    };
    context
        .source
        .artifact(&request)
        .await
        .map_err(|error| source_failure(&error))
}

async fn read_credentials(
    repository: &GitRepository,
    context: &Context,
    namespace: &str,
) -> Result<Option<Credentials>, Failure> {
    let Some(reference) = &repository.spec.secret_ref else {
        return Ok(None);
    };
    // Read as the tenant: otherwise a tenant could name a Secret its ServiceAccount may not
    // read and have the controller send its credentials to a server the tenant controls.
    let client = client_for(repository, namespace, context, Reason::SecretNotFound)?;
    let account = service_account_of(repository, &context.settings)
        .ok()
        .flatten();
    let secrets: Api<Secret> = Api::namespaced(client, namespace);
    let missing = |why: String| {
        Failure::new(
            Reason::SecretNotFound,
            format!("Secret {namespace}/{}: {why}", reference.name),
        )
        .stalled()
    };
    let secret = secrets
        .get_opt(&reference.name)
        .await
        .map_err(|error| match (&error, &account) {
            (kube::Error::Api(status), Some(account)) if status.is_forbidden() => missing(format!(
                "forbidden: ServiceAccount {account} may not read it ({})",
                status.message
            )),
            _ => missing(error.to_string()),
        })?
        .ok_or_else(|| missing("not found".into()))?;
    Credentials::from_secret(secret)
        .map(Some)
        .map_err(|error| missing(error.to_string()))
}

fn artifact_request(
    repository: &GitRepository,
    namespace: &str,
    credentials: Option<Credentials>,
    timeout: Duration,
) -> ArtifactRequest {
    let spec = &repository.spec;
    ArtifactRequest {
        owner: format!("{namespace}/{}", repository.name_any()),
        url: spec.url.clone(),
        reference: spec.reference.clone(),
        path: spec.path.clone().unwrap_or_default(),
        ignore: spec.ignore.clone(),
        credentials,
        timeout,
        listed_after: None,
    }
}
