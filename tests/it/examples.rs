//! Every example under `examples/` is valid: each object is created for real (server-side
//! apply, not a dry run) in a fresh namespace of the test cluster, so the apiserver checks it
//! against the CRD's schema and CEL rules, and each GitRepository reads back as the Rust type.
//! The quickstart's application manifests are checked with a server-side dry run.

use crate::support;

use std::path::{Path, PathBuf};

use driftless::api::GitRepository;
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, Patch, PatchParams},
    discovery::{Scope, pinned_kind},
};
use serde_json::Value;
use support::cluster::TestNamespace;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Every `*.yaml` file under `dir`, sorted, recursively.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn is_application_manifest(path: &Path) -> bool {
    path.components().any(|c| c.as_os_str() == "deploy")
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|error| panic!("{} is not valid YAML: {error}", path.display()));
    let documents: Vec<Value> = documents.into_iter().filter(|d| !d.is_null()).collect();
    assert!(!documents.is_empty(), "{} holds no object", path.display());
    documents
}

async fn resource(client: &Client, object: &Value) -> (ApiResource, Scope) {
    let api_version = object["apiVersion"].as_str().expect("apiVersion");
    let kind = object["kind"].as_str().expect("kind");
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let (resource, capabilities) = pinned_kind(
        client,
        &kube::api::GroupVersionKind::gvk(group, version, kind),
    )
    .await
    .unwrap_or_else(|error| panic!("the cluster does not serve {api_version} {kind}: {error}"));
    (resource, capabilities.scope)
}

/// Moves a namespaced example object (and the ServiceAccount subjects of a RoleBinding that
/// lived in the same namespace) into `namespace`.
fn relocate(object: &mut Value, namespace: &str) {
    let original = object["metadata"]["namespace"].as_str().map(str::to_owned);
    object["metadata"]["namespace"] = Value::from(namespace);
    if let Some(subjects) = object.get_mut("subjects").and_then(Value::as_array_mut) {
        for subject in subjects {
            if subject["namespace"].as_str() == original.as_deref() {
                subject["namespace"] = Value::from(namespace);
            }
        }
    }
}

#[tokio::test]
async fn every_example_object_is_created_in_the_cluster() {
    support::cluster::install_crds().await;
    let namespace = TestNamespace::create("examples").await;
    let client = namespace.client.clone();
    let params = PatchParams::apply("driftless-examples-test").force();

    let files: Vec<PathBuf> = yaml_files(&examples_dir())
        .into_iter()
        .filter(|path| !is_application_manifest(path))
        .collect();
    assert!(files.len() > 5, "the examples are missing: {files:?}");
    let mut repositories = Vec::new();
    for file in &files {
        let shown = file
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap()
            .display();
        // A file's objects are created in their order; the apiserver does not require a
        // referenced Secret or ServiceAccount to exist first.
        for mut object in documents(file) {
            let (resource, scope) = resource(&client, &object).await;
            assert!(
                matches!(scope, Scope::Namespaced),
                "{shown}: examples hold namespaced objects only, found {}",
                object["kind"]
            );
            assert!(
                object["metadata"]["namespace"].is_string(),
                "{shown}: {} {} names its namespace, so `kubectl apply -f` puts it where the \
                 comments say",
                object["kind"],
                object["metadata"]["name"]
            );
            relocate(&mut object, &namespace.name);
            let name = object["metadata"]["name"].as_str().unwrap().to_owned();
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), &namespace.name, &resource);
            api.patch(&name, &params, &Patch::Apply(&object))
                .await
                .unwrap_or_else(|error| {
                    panic!(
                        "{shown}: the apiserver rejects {} {name}: {error}",
                        resource.kind
                    )
                });
            if resource.kind == "GitRepository" {
                repositories.push((shown.to_string(), name));
            }
        }
    }

    // Every GitRepository reads back as the Rust type the controller works with.
    assert!(
        repositories.len() > 5,
        "the examples hold too few GitRepositories to check: {repositories:?}"
    );
    let api: Api<GitRepository> = namespace.api();
    for (file, name) in &repositories {
        let object = api
            .get(name)
            .await
            .unwrap_or_else(|error| panic!("{file}: GitRepository {name} reads back: {error}"));
        assert!(!object.spec.url.is_empty());
    }
    let names: Vec<&str> = repositories.iter().map(|(_, n)| n.as_str()).collect();
    for expected in [
        "quickstart",
        "app-ssh",
        "app-https",
        "app-pinned",
        "app-releases",
        "app-commit",
        "team-a-apps",
        "app-hooked",
        "app-shared-hook",
    ] {
        assert!(
            names.contains(&expected),
            "example GitRepository {expected} is missing; found {names:?}"
        );
    }

    // The examples use the features they are about.
    let get = |name: &'static str| {
        let api = api.clone();
        async move { api.get(name).await.unwrap().spec }
    };
    assert_eq!(get("app-ssh").await.secret_ref.unwrap().name, "app-ssh");
    assert!(get("app-ssh").await.url.starts_with("ssh://"));
    assert_eq!(get("app-https").await.secret_ref.unwrap().name, "app-https");
    assert!(get("app-pinned").await.reference.unwrap().tag.is_some());
    assert!(
        get("app-releases")
            .await
            .reference
            .unwrap()
            .semver
            .is_some()
    );
    assert_eq!(
        get("team-a-apps").await.service_account_name.as_deref(),
        Some("team-a-deployer")
    );
    assert_eq!(
        get("app-hooked").await.webhook.unwrap().secret_ref.name,
        "app-webhook"
    );
}

#[tokio::test]
async fn quickstart_application_manifests_pass_a_server_side_dry_run() {
    let namespace = TestNamespace::create("examples-quickstart").await;
    let client = namespace.client.clone();
    let params = PatchParams::apply("driftless-examples-test").dry_run();
    let deploy = examples_dir().join("quickstart/deploy");
    let files = yaml_files(&deploy);
    let kinds: Vec<String> = files
        .iter()
        .flat_map(|f| documents(f))
        .map(|o| o["kind"].as_str().unwrap().to_owned())
        .collect();
    for kind in ["Namespace", "Deployment", "Service", "ConfigMap"] {
        assert!(kinds.iter().any(|k| k == kind), "quickstart has no {kind}");
    }
    for file in &files {
        for mut object in documents(file) {
            let (resource, scope) = resource(&client, &object).await;
            let name = object["metadata"]["name"].as_str().unwrap().to_owned();
            let api: Api<DynamicObject> = match scope {
                Scope::Cluster => Api::all_with(client.clone(), &resource),
                Scope::Namespaced => {
                    assert_eq!(
                        object["metadata"]["namespace"],
                        "quickstart",
                        "{}: the quickstart lives in namespace quickstart",
                        file.display()
                    );
                    // The dry run needs an existing namespace: use the test's.
                    relocate(&mut object, &namespace.name);
                    Api::namespaced_with(client.clone(), &namespace.name, &resource)
                }
            };
            api.patch(&name, &params, &Patch::Apply(&object))
                .await
                .unwrap_or_else(|error| {
                    panic!("{}: the apiserver rejects {name}: {error}", file.display())
                });
        }
    }
}
