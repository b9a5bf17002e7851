//! Who a GitRepository's reconcile acts as: its ServiceAccount (impersonated), the controller's
//! default one, or, unless `--require-service-account` forbids it, the controller itself.

use kube::ResourceExt;

use super::{Context, Settings, conditions::Reason, failure::Failure};
use crate::{api::GitRepository, apply::Applier};

/// The ServiceAccount to apply as: the spec's, else the controller's default; `None` means the
/// controller's own identity, which `--require-service-account` forbids.
pub(super) fn service_account_of(
    repository: &GitRepository,
    settings: &Settings,
) -> Result<Option<String>, Failure> {
    let account = repository
        .spec
        .service_account_name
        .clone()
        .or_else(|| settings.default_service_account.clone());
    if account.is_none() && settings.require_service_account {
        let namespace = repository.namespace().unwrap_or_default();
        return Err(Failure::new(
            Reason::ServiceAccountRequired,
            format!(
                "spec.serviceAccountName is not set, and this controller applies nothing with \
                 its own identity (--require-service-account, the chart's restricted RBAC \
                 mode) and has no --default-service-account: set spec.serviceAccountName to a \
                 ServiceAccount of namespace {namespace} allowed to apply this repository"
            ),
        )
        .stalled());
    }
    Ok(account)
}

/// The controller's applier, or one that impersonates the ServiceAccount to act as (see
/// [`service_account_of`]) for every call, so a tenant can change only what its account may.
pub(super) fn applier_for(
    repository: &GitRepository,
    namespace: &str,
    context: &Context,
) -> Result<Applier, Failure> {
    let client = client_for(repository, namespace, context, Reason::ApplyFailed)?;
    Ok(context.applier.with_client(client))
}

/// The controller's client, or one impersonating the ServiceAccount to act as (see
/// [`service_account_of`]); `reason` names the step that needed it, should building it fail.
pub(super) fn client_for(
    repository: &GitRepository,
    namespace: &str,
    context: &Context,
    reason: Reason,
) -> Result<kube::Client, Failure> {
    let tenants = Tenants {
        config: &context.config,
        client: &context.client,
        settings: &context.settings,
    };
    tenants.client_for(repository, namespace, reason)
}

/// What working out a tenant's identity needs, without a reconcile's context: the webhook
/// receiver, which runs on every replica, reads token Secrets through it as well.
#[derive(Clone, Copy)]
pub(super) struct Tenants<'a> {
    /// The controller's own connection settings, the base of impersonating clients.
    pub(super) config: &'a kube::Config,
    pub(super) client: &'a kube::Client,
    pub(super) settings: &'a Settings,
}

impl Tenants<'_> {
    /// See [`client_for`].
    pub(super) fn client_for(
        &self,
        repository: &GitRepository,
        namespace: &str,
        reason: Reason,
    ) -> Result<kube::Client, Failure> {
        let Some(account) = service_account_of(repository, self.settings)? else {
            return Ok(self.client.clone());
        };
        crate::apply::client_as(self.config, namespace, &account).map_err(|error| {
            Failure::new(
                reason,
                format!("impersonating ServiceAccount {account}: {error}"),
            )
        })
    }

    /// The ServiceAccount [`Tenants::client_for`] impersonates; `None` for the controller's own
    /// identity or when there is none to act as.
    pub(super) fn account_of(&self, repository: &GitRepository) -> Option<String> {
        service_account_of(repository, self.settings).ok().flatten()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    pub(in super::super) fn settings() -> Settings {
        Settings {
            concurrency: 1,
            apply_concurrency: 1,
            default_interval: Duration::from_secs(300),
            git_cache_dir: "/nonexistent".into(),
            git_stall_timeout: Duration::from_secs(30),
            source_limits: crate::source::Limits::default(),
            namespace: None,
            controller_namespace: None,
            leader_election: None,
            webhook: None,
            default_service_account: None,
            require_service_account: false,
            render: Default::default(),
            commit_status_allowed_hosts: Vec::new(),
            commit_status_retry: Default::default(),
            allow_cross_namespace_dependencies: false,
            ignore_argocd_annotations: false,
            preview_concurrency: 2,
            preview_rate_limit: crate::preview::rate_limit::DEFAULT_PER_MINUTE,
        }
    }

    /// GitRepository `team-a/app` of `https://example.com/r.git` with `spec` added.
    pub(in super::super) fn repository(spec: serde_json::Value) -> GitRepository {
        let mut full = json!({ "url": "https://example.com/r.git" });
        full.as_object_mut()
            .unwrap()
            .extend(spec.as_object().unwrap().clone());
        serde_json::from_value(json!({
            "apiVersion": "driftless.dev/v1alpha1", "kind": "GitRepository",
            "metadata": { "name": "app", "namespace": "team-a" }, "spec": full,
        }))
        .unwrap()
    }

    #[test]
    fn restricted_mode_applies_as_a_service_account_or_not_at_all() {
        let restricted = Settings {
            require_service_account: true,
            ..settings()
        };
        let without = repository(json!({}));
        let refused = service_account_of(&without, &restricted).unwrap_err();
        assert_eq!(refused.reason, Reason::ServiceAccountRequired);
        assert!(refused.stalled);
        assert!(refused.message.contains("team-a"), "{}", refused.message);
        assert_eq!(service_account_of(&without, &settings()).ok(), Some(None));
        let with_default = Settings {
            default_service_account: Some("deployer".into()),
            ..restricted
        };
        assert_eq!(
            service_account_of(&without, &with_default).ok(),
            Some(Some("deployer".into()))
        );
        let named = repository(json!({ "serviceAccountName": "own" }));
        assert_eq!(
            service_account_of(&named, &with_default).ok(),
            Some(Some("own".into()))
        );
    }
}
