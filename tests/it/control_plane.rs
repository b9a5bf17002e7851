//! Proof that the test cluster is a real control plane, not a mock: the controller-manager,
//! scheduler and kwok make a Deployment Available, the apiserver validates objects, and RBAC
//! is enforced for a ServiceAccount token.

use crate::support;

use std::time::Duration;

use k8s_openapi::api::{
    apps::v1::Deployment,
    authentication::v1::TokenRequest,
    core::v1::{ConfigMap, Secret, ServiceAccount},
};
use kube::{
    Api, Client,
    api::{ListParams, PostParams},
    config::AuthInfo,
    runtime::wait::await_condition,
};
use serde_json::json;
use support::cluster::{TestNamespace, admin_config};

fn deployment(name: &str, replicas: i32, template_app: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": { "name": name },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": template_app } },
                "spec": { "containers": [{ "name": "app", "image": "example.invalid/app:1" }] }
            }
        }
    }))
    .expect("a valid Deployment literal")
}

fn is_available(deployment: Option<&Deployment>) -> bool {
    let status = deployment.and_then(|d| d.status.as_ref());
    let available = status
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Available" && c.status == "True")
        });
    available && status.and_then(|s| s.available_replicas) == Some(2)
}

#[tokio::test]
async fn deployment_with_two_replicas_becomes_available_on_simulated_nodes() {
    let namespace = TestNamespace::create("deployment-available").await;
    let deployments: Api<Deployment> = namespace.api();
    deployments
        .create(&PostParams::default(), &deployment("web", 2, "web"))
        .await
        .expect("the apiserver stores the Deployment");

    let available = tokio::time::timeout(
        Duration::from_secs(120),
        await_condition(deployments.clone(), "web", is_available),
    )
    .await;
    assert!(
        matches!(available, Ok(Ok(Some(_)))),
        "Deployment web in {} did not become Available with 2 replicas: {available:?}",
        namespace.name
    );
    let pods = namespace
        .api::<k8s_openapi::api::core::v1::Pod>()
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap();
    let nodes: Vec<_> = pods
        .items
        .iter()
        .filter_map(|p| p.spec.as_ref()?.node_name.clone())
        .collect();
    eprintln!("pods scheduled by kube-scheduler onto kwok nodes: {nodes:?}");
    assert_eq!(nodes.len(), 2, "both pods are bound to a node");
}

#[tokio::test]
async fn apiserver_rejects_invalid_objects() {
    let namespace = TestNamespace::create("schema-validation").await;
    let deployments: Api<Deployment> = namespace.api();

    let mismatched = deployments
        .create(&PostParams::default(), &deployment("broken", 1, "other"))
        .await
        .expect_err("a selector that does not match the template is invalid");
    let kube::Error::Api(status) = mismatched else {
        panic!("expected an API error, got {mismatched:?}")
    };
    assert_eq!(status.code, 422, "{status:?}");
    assert_eq!(status.reason, "Invalid", "{status:?}");
    assert!(
        status.message.contains("spec.template.metadata.labels"),
        "{status:?}"
    );

    let configmaps: Api<kube::api::DynamicObject> = Api::namespaced_with(
        namespace.client.clone(),
        &namespace.name,
        &kube::api::ApiResource::erase::<ConfigMap>(&()),
    );
    let unknown_field: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": "strict" },
        "dataa": { "typo": "yes" }
    }))
    .unwrap();
    let strict = kube::api::PatchParams::apply("driftless-test").validation_strict();
    let rejected = configmaps
        .patch("strict", &strict, &kube::api::Patch::Apply(&unknown_field))
        .await
        .expect_err("server-side apply rejects fields the schema does not declare");
    assert!(
        rejected
            .to_string()
            .contains("field not declared in schema"),
        "{rejected}"
    );
}

#[tokio::test]
async fn rbac_denies_a_service_account_what_its_role_does_not_grant() {
    let namespace = TestNamespace::create("rbac").await;
    let reader = grant_configmap_reader(&namespace).await;

    let configmaps: Api<ConfigMap> = Api::namespaced(reader.clone(), &namespace.name);
    configmaps
        .list(&ListParams::default())
        .await
        .expect("the Role grants listing ConfigMaps");

    let created = configmaps
        .create(&PostParams::default(), &ConfigMap::default())
        .await
        .expect_err("the Role does not grant creating ConfigMaps");
    assert_forbidden(created);
    let secrets: Api<Secret> = Api::namespaced(reader, &namespace.name);
    let listed = secrets
        .list(&ListParams::default())
        .await
        .expect_err("the Role does not grant reading Secrets");
    assert_forbidden(listed);
}

fn assert_forbidden(error: kube::Error) {
    match error {
        kube::Error::Api(status) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
}

/// Creates a ServiceAccount allowed only to get and list ConfigMaps, and returns a client that
/// authenticates with a token issued for it.
async fn grant_configmap_reader(namespace: &TestNamespace) -> Client {
    namespace
        .grant_service_account("reader", &["configmaps"], &["get", "list"])
        .await;
    let accounts = namespace.api::<ServiceAccount>();
    let post = PostParams::default();

    let request: TokenRequest =
        serde_json::from_value(json!({ "spec": { "audiences": [], "expirationSeconds": 600 } }))
            .unwrap();
    let token = accounts
        .create_token_request("reader", &post, &request)
        .await
        .expect("the apiserver issues ServiceAccount tokens")
        .status
        .expect("a TokenRequest answer has a status")
        .token;

    let mut config = admin_config().await;
    config.auth_info = AuthInfo {
        token: Some(token.into()),
        ..Default::default()
    };
    Client::try_from(config).unwrap()
}
