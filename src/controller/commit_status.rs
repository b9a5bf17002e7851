//! The commit statuses of a reconcile: which state each step reaches, the token read as the
//! tenant, and the Events a status that could not be posted leaves. The posting itself
//! ([`crate::commit_status`]) runs in the background and never fails a reconcile.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    runtime::events::{EventType, Recorder},
};

use super::{Context, conditions::Reason, identity::Tenants, report::publish};
use crate::{
    api::{CommitStatusProvider, GitRepository},
    commit_status::{Credentials, Destination, ObjectKey, OnFailure, State, Status, resolve},
};

/// The Warning event of a status the host did not take (after retries).
pub(super) const COMMIT_STATUS_FAILED: &str = "CommitStatusFailed";
/// The Warning event of a status the controller would not send (address, token).
pub(super) const COMMIT_STATUS_REFUSED: &str = "CommitStatusRefused";

/// Posts `state` for `revision`'s commit when the spec asks for statuses and the object's last
/// status of that commit differs; returns at once (the post runs in the background).
pub(super) async fn report_commit_status(
    context: &Context,
    repository: &GitRepository,
    revision: &str,
    state: State,
    description: &str,
) {
    let Some(spec) = &repository.spec.commit_status else {
        return;
    };
    let Some(commit) = commit_of(revision) else {
        return;
    };
    let namespace = repository.namespace().unwrap_or_default();
    let name = repository.name_any();
    let status = Status {
        commit: commit.to_owned(),
        state,
        context: spec
            .context
            .clone()
            .unwrap_or_else(|| format!("driftless/{namespace}/{name}")),
        description: description.to_owned(),
        target_url: spec.target_url.clone(),
    };
    let key = ObjectKey { namespace, name };
    if state == State::Success && shows_applied_and_ready(repository, revision) {
        context.commit_statuses.seed(&key, &status);
    }
    if !context.commit_statuses.is_new(&key, &status) {
        return;
    }
    let provider = spec.provider.name();
    let host = HostAccess {
        provider: spec.provider,
        address: spec.address.as_deref(),
        secret: &spec.secret_ref.name,
        field: "spec.commitStatus.secretRef",
    };
    let destination = match destination_of(context, repository, &host).await {
        Ok(destination) => destination,
        Err(refusal) => {
            context.metrics.count_commit_status(provider, "refused");
            tracing::warn!(namespace = key.namespace, name = key.name, %refusal, "commit status not posted");
            let note = format!(
                "commit status {} for commit {commit} not posted: {refusal}",
                state.name()
            );
            publish(
                &context.recorder,
                repository,
                EventType::Warning,
                COMMIT_STATUS_REFUSED,
                note,
            )
            .await;
            return;
        }
    };
    let on_failure = event_on_failure(context.recorder.clone(), repository.clone(), &status);
    context
        .commit_statuses
        .post(key, destination, status, Some(on_failure));
}

/// Whether the object's status (as read at the start of this reconcile) already shows
/// `revision` applied and Ready: its success was reported when that was recorded.
fn shows_applied_and_ready(repository: &GitRepository, revision: &str) -> bool {
    let Some(status) = &repository.status else {
        return false;
    };
    let ready = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    ready && status.last_applied_revision.as_deref() == Some(revision)
}

/// The commit SHA of a Flux-style revision (`main@sha1:<sha>`, `sha1:<sha>`).
pub(super) fn commit_of(revision: &str) -> Option<&str> {
    let (_, commit) = revision.rsplit_once("sha1:")?;
    (commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit())).then_some(commit)
}

/// Why a status (or a comment) was not even sent.
#[derive(Debug, thiserror::Error)]
pub(super) enum Refusal {
    #[error(transparent)]
    Address(#[from] crate::commit_status::AddressError),
    #[error("{0}")]
    Unreadable(String),
    #[error("Secret {namespace}/{secret} named by {field} has no `token`")]
    NoToken {
        namespace: String,
        secret: String,
        field: String,
    },
}

/// What a spec field says about writing to the Git host: which API, where, with which Secret.
pub(super) struct HostAccess<'a> {
    pub(super) provider: CommitStatusProvider,
    pub(super) address: Option<&'a str>,
    /// The Secret's name in the object's namespace.
    pub(super) secret: &'a str,
    /// The spec field that names the Secret, for messages.
    pub(super) field: &'a str,
}

/// The API and the credentials, read as the account the object acts as: a tenant can only use
/// a token it may read itself, and only on its repository's host (or one the controller
/// allows).
pub(super) async fn destination_of(
    context: &Context,
    repository: &GitRepository,
    host: &HostAccess<'_>,
) -> Result<Destination, Refusal> {
    let resolved = resolve(
        host.provider,
        &repository.spec.url,
        host.address,
        &context.settings.commit_status_allowed_hosts,
    )?;
    let mut data = tenant_secret(context, repository, host.secret, host.field)
        .await
        .map_err(Refusal::Unreadable)?;
    let token = data
        .remove("token")
        .map(|token| token.trim().to_owned())
        .filter(|token| !token.is_empty())
        .ok_or_else(|| Refusal::NoToken {
            namespace: repository.namespace().unwrap_or_default(),
            secret: host.secret.to_owned(),
            field: host.field.to_owned(),
        })?;
    let username = data.remove("username");
    Ok(Destination {
        provider: host.provider,
        api: resolved.api,
        repository: resolved.repository,
        credentials: Credentials { username, token },
    })
}

/// The UTF-8 keys of Secret `secret` of the object's namespace, read as the account the object
/// acts as (a missing Secret has none); `field` names the spec field in the refusal.
pub(super) async fn tenant_secret(
    context: &Context,
    repository: &GitRepository,
    secret: &str,
    field: &str,
) -> Result<BTreeMap<String, String>, String> {
    let namespace = repository.namespace().unwrap_or_default();
    let tenants = Tenants {
        config: &context.config,
        client: &context.client,
        settings: &context.settings,
    };
    let account = tenants
        .account_of(repository)
        .map(|account| format!("ServiceAccount {account}"))
        .unwrap_or_else(|| "the controller".to_owned());
    let unreadable = |message: String| {
        format!(
            "Secret {namespace}/{secret} named by {field} could not be read as {account}: {message}"
        )
    };
    let client = tenants
        .client_for(repository, &namespace, Reason::SecretNotFound)
        .map_err(|failure| unreadable(failure.message))?;
    let secrets: Api<Secret> = Api::namespaced(client, &namespace);
    let found = secrets.get_opt(secret).await.map_err(|error| match error {
        kube::Error::Api(status) => unreadable(status.message),
        other => unreadable(other.to_string()),
    })?;
    Ok(found
        .and_then(|s| s.data)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(key, value)| Some((key, String::from_utf8(value.0).ok()?)))
        .collect())
}

/// A Warning event on the object when the host did not take the status.
fn event_on_failure(recorder: Recorder, repository: GitRepository, status: &Status) -> OnFailure {
    let what = format!(
        "commit status {} for commit {}",
        status.state.name(),
        status.commit
    );
    Box::new(move |error| {
        Box::pin(async move {
            let note = format!("{what} not posted: {error}");
            tracing::warn!(
                namespace = repository.namespace().unwrap_or_default(),
                name = repository.name_any(),
                %note,
                "commit status failed"
            );
            publish(
                &recorder,
                &repository,
                EventType::Warning,
                COMMIT_STATUS_FAILED,
                note,
            )
            .await;
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_is_read_from_every_revision_form() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(commit_of(&format!("main@sha1:{sha}")), Some(sha));
        assert_eq!(commit_of(&format!("sha1:{sha}")), Some(sha));
        assert_eq!(commit_of(&format!("release/v1@sha1:{sha}")), Some(sha));
        assert_eq!(commit_of("main@sha1:abc"), None);
        assert_eq!(commit_of(sha), None);
    }
}
