//! The objects tests put in git and in the cluster: ConfigMap manifests and the commits that
//! carry them, GitRepository objects, and what the cluster reports about them.

use driftless::api::GitRepository;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::json;

use super::{cluster::TestNamespace, git::TestRepo};

/// A ConfigMap `app` whose `data.value` is `value`.
pub fn manifest(value: &str) -> String {
    manifest_named("app", value)
}

/// A ConfigMap `name` whose `data.value` is `value`.
pub fn manifest_named(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: \"{value}\"\n"
    )
}

/// Commits [`manifest`] with `value` as `deploy/app.yaml`; returns the commit id.
pub fn commit(repo: &TestRepo, value: &str) -> String {
    commit_configmap(repo, "app", value)
}

/// Commits [`manifest_named`] `configmap` with `value` as `deploy/app.yaml`.
pub fn commit_configmap(repo: &TestRepo, configmap: &str, value: &str) -> String {
    repo.commit(
        value,
        &[("deploy/app.yaml", manifest_named(configmap, value).as_str())],
    )
}

/// Creates GitRepository `app` following the default branch of `url`, path `deploy`.
pub async fn create_repository(namespace: &TestNamespace, url: &str, interval: &str) {
    create_repository_named(namespace, "app", url, interval).await;
}

/// Creates GitRepository `name` following the default branch of `url`, path `deploy`.
pub async fn create_repository_named(
    namespace: &TestNamespace,
    name: &str,
    url: &str,
    interval: &str,
) {
    namespace
        .create_git_repository(
            name,
            json!({ "url": url, "path": "deploy", "interval": interval }),
        )
        .await;
}

/// `status.lastAppliedRevision` of GitRepository `name`, empty before the first apply.
pub async fn applied_revision(namespace: &TestNamespace, name: &str) -> String {
    let repository = namespace.api::<GitRepository>().get(name).await.unwrap();
    repository
        .status
        .and_then(|s| s.last_applied_revision)
        .unwrap_or_default()
}

/// `data.value` of ConfigMap `name`, as the cluster has it now.
pub async fn configmap_value(namespace: &TestNamespace, name: &str) -> Option<String> {
    let configmap = namespace.api::<ConfigMap>().get_opt(name).await.unwrap()?;
    configmap.data?.remove("value")
}

/// Status, reason and message of the condition `type_`.
pub fn condition(repository: &GitRepository, type_: &str) -> Option<(String, String, String)> {
    let status = repository.status.as_ref()?;
    let condition = status.conditions.iter().find(|c| c.type_ == type_)?;
    Some((
        condition.status.clone(),
        condition.reason.clone(),
        condition.message.clone(),
    ))
}

/// Whether `status.lastAppliedRevision` is `commit` (on whatever branch).
pub fn applied_at(repository: &GitRepository, commit: &str) -> bool {
    repository
        .status
        .as_ref()
        .and_then(|s| s.last_applied_revision.as_deref())
        .is_some_and(|r| r.ends_with(commit))
}

/// A namespaced `Widget` CRD in `group` (a group of the test's own, so tests never share it);
/// `with_status`: a status subresource the test writes, as an operator would.
pub fn widget_crd(group: &str, with_status: bool) -> String {
    let (subresources, status) = if with_status {
        (
            "    subresources: {status: {}}\n",
            "          status: {type: object, x-kubernetes-preserve-unknown-fields: true}\n",
        )
    } else {
        ("", "")
    };
    format!(
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.{group}
spec:
  group: {group}
  names: {{kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
{subresources}    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {{type: object, x-kubernetes-preserve-unknown-fields: true}}
{status}"
    )
}

/// The Deployment of the Widgets' (simulated) operator, the CRD layer's workload.
pub const WIDGET_OPERATOR: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: widget-operator
spec:
  replicas: 1
  selector:
    matchLabels: {app: widget-operator}
  template:
    metadata:
      labels: {app: widget-operator}
    spec:
      containers:
      - name: operator
        image: example.invalid/widget-operator:1
";

/// The Widget `name` of `group`.
pub fn widget_named(group: &str, name: &str) -> String {
    format!("apiVersion: {group}/v1\nkind: Widget\nmetadata:\n  name: {name}\nspec:\n  teeth: 12\n")
}
