//! The token of a per-object webhook, read from its Secret: by the receiver to register the
//! hook, and by the reconcile to publish the hook's path in the status.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};

use crate::api::GitRepository;

/// The `token` key of a webhook Secret: `Ok(None)` when the Secret or its key is absent, an
/// error when the API could not say.
pub(super) async fn read_webhook_token(
    client: &Client,
    namespace: &str,
    secret: &str,
) -> Result<Option<Vec<u8>>, kube::Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let token = secrets
        .get_opt(secret)
        .await?
        .and_then(|secret| secret.data?.remove("token"))
        .map(|token| token.0)
        .filter(|token| !token.is_empty());
    Ok(token)
}

/// The unguessable path of the per-object receiver, published in the status so users can
/// configure their git host; `None` without `spec.webhook` or its token.
pub(super) async fn webhook_path_of(
    repository: &GitRepository,
    client: &Client,
    namespace: &str,
) -> Option<String> {
    let secret = &repository.spec.webhook.as_ref()?.secret_ref.name;
    let token = read_webhook_token(client, namespace, secret)
        .await
        .ok()
        .flatten()?;
    Some(crate::webhook::object_hook_path(
        &token,
        namespace,
        &repository.name_any(),
    ))
}
