//! The token of a per-object webhook, read from its Secret as the tenant (the GitRepository's
//! ServiceAccount), like every other Secret a tenant names: by the receiver to register the
//! hook, and by the reconcile to publish the hook's path in the status. Read with the
//! controller's identity, a tenant could name a Secret of its namespace it may not read and get
//! a hook keyed by it served, and an HMAC keyed by it published in its status (an offline check
//! of guesses at the Secret's value).

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};

use super::{conditions::Reason, failure::Failure, identity::Tenants};
use crate::api::GitRepository;

/// Why no token could be read for a GitRepository that names a webhook Secret.
#[derive(Debug, thiserror::Error)]
pub(super) enum TokenError {
    /// The account the object acts as may not read the Secret: only the tenant can fix it.
    #[error(
        "no per-object webhook is served: ServiceAccount {account} may not read Secret \
         {namespace}/{secret} named by spec.webhook.secretRef ({message}); grant it `get` on \
         that Secret"
    )]
    Forbidden {
        account: String,
        namespace: String,
        secret: String,
        message: String,
    },
    /// There is no identity to read it as (no ServiceAccount where one is required).
    #[error("no per-object webhook is served: {}", .0.message)]
    NoIdentity(Failure),
    /// The API could not say; worth trying again.
    #[error("reading Secret {namespace}/{secret} named by spec.webhook.secretRef: {source}")]
    Api {
        namespace: String,
        secret: String,
        source: kube::Error,
    },
}

impl TokenError {
    /// Whether the tenant has to change something (RBAC, the spec) before a read can succeed.
    pub(super) fn is_refusal(&self) -> bool {
        matches!(
            self,
            TokenError::Forbidden { .. } | TokenError::NoIdentity(_)
        )
    }
}

/// The `token` key of `repository`'s webhook Secret, read as the account it acts as:
/// `Ok(None)` without `spec.webhook`, or when the Secret or its key is absent.
pub(super) async fn read_webhook_token(
    tenants: Tenants<'_>,
    repository: &GitRepository,
) -> Result<Option<Vec<u8>>, TokenError> {
    let Some(webhook) = &repository.spec.webhook else {
        return Ok(None);
    };
    let namespace = repository.namespace().unwrap_or_default();
    let secret = webhook.secret_ref.name.clone();
    let client = tenants
        .client_for(repository, &namespace, Reason::SecretNotFound)
        .map_err(TokenError::NoIdentity)?;
    let secrets: Api<Secret> = Api::namespaced(client, &namespace);
    let found = match secrets.get_opt(&secret).await {
        Ok(found) => found,
        Err(kube::Error::Api(status)) if status.is_forbidden() => {
            return Err(TokenError::Forbidden {
                account: tenants
                    .account_of(repository)
                    .unwrap_or_else(|| "of the controller".to_owned()),
                namespace,
                secret,
                message: status.message,
            });
        }
        Err(source) => {
            return Err(TokenError::Api {
                namespace,
                secret,
                source,
            });
        }
    };
    Ok(found
        .and_then(|secret| secret.data?.remove("token"))
        .map(|token| token.0)
        .filter(|token| !token.is_empty()))
}

/// The unguessable path of the per-object receiver, published in the status so users can
/// configure their git host; `Ok(None)` without `spec.webhook` or its token.
pub(super) async fn webhook_path_of(
    tenants: Tenants<'_>,
    repository: &GitRepository,
) -> Result<Option<String>, TokenError> {
    let token = read_webhook_token(tenants, repository).await?;
    Ok(token.map(|token| {
        crate::webhook::object_hook_path(
            &token,
            &repository.namespace().unwrap_or_default(),
            &repository.name_any(),
        )
    }))
}
