//! Real content end to end: a platform repository of five prometheus-operator CRDs (2.4 MB of
//! YAML), podinfo's kustomization, a ServiceMonitor, a PrometheusRule and a ConfigMap (the
//! fixtures of `tests/fixtures/`), applied by the `driftless controller` binary and pushed to
//! through its webhook. A push that changes one file parses that file only (the others' objects
//! come from the parse cache, counted by `driftless_manifest_files_total`), and what the cluster
//! then holds is what `driftless build` renders from scratch for the same commit. A hand edit
//! that a push does not look at is still corrected by the next full reconcile.

use crate::support;

use std::{path::Path, process::Command, time::Duration};

use driftless::{api::GitRepository, controller::RECONCILE_REQUESTED_AT};
use kube::{
    Api,
    api::{DynamicObject, Patch, PatchParams},
    discovery::{ApiResource, Discovery},
};
use serde_json::{Value, json};
use support::{
    cluster::{TestNamespace, install_crds},
    git::{GitRepos, HttpGitServer, HttpOptions, TestRepo},
    objects::*,
    replica::*,
    waiting::*,
    webhook::write_secret,
};

use crate::webhooks::{Delivery, GITHUB_SECRET, strs, webhook_flags};

const PATH: &str = "platform";
const PARSED: &str = r#"driftless_manifest_files_total{outcome="parsed"}"#;
const CACHED: &str = r#"driftless_manifest_files_total{outcome="cached"}"#;
const DEADLINE: Duration = Duration::from_secs(60);

/// The platform repository's files, with the ConfigMap's value `value`.
fn platform_files(value: &str) -> Vec<(String, String)> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let read = |path: &Path| std::fs::read_to_string(path).unwrap();
    let mut files = Vec::new();
    let crds = fixtures.join("prometheus-operator/example/prometheus-operator-crd");
    let mut names: Vec<String> = std::fs::read_dir(&crds)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 5, "the five CRD fixtures");
    for name in names {
        files.push((format!("{PATH}/crds/{name}"), read(&crds.join(&name))));
    }
    let guides = fixtures.join("prometheus-operator/example/user-guides");
    files.push((
        format!("{PATH}/monitoring/servicemonitor.yaml"),
        read(&guides.join("getting-started/example-app-service-monitor.yaml")),
    ));
    files.push((
        format!("{PATH}/monitoring/prometheusrule.yaml"),
        read(&guides.join("alerting/prometheus-example-rules.yaml")),
    ));
    let podinfo = fixtures.join("kustomize/podinfo/kustomize");
    for name in [
        "kustomization.yaml",
        "deployment.yaml",
        "hpa.yaml",
        "service.yaml",
    ] {
        files.push((format!("{PATH}/podinfo/{name}"), read(&podinfo.join(name))));
    }
    files.push((
        format!("{PATH}/config/settings.yaml"),
        manifest_named("settings", value),
    ));
    files
}

fn commit_all(repo: &TestRepo, message: &str, files: &[(String, String)]) -> String {
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(path, contents)| (path.as_str(), contents.as_str()))
        .collect();
    repo.commit(message, &files)
}

/// `driftless build` of `commit` of the repository's work tree, as JSON objects.
fn built_objects(repo: &TestRepo, commit: &str) -> Vec<Value> {
    let kustomize = support::cluster::binaries_dir().join("kustomize");
    let output = Command::new(env!("CARGO_BIN_EXE_driftless"))
        .args(["build", repo.path().to_str().unwrap(), "--path", PATH])
        .args(["--revision", commit, "-o", "json"])
        .arg("--kustomize-binary")
        .arg(&kustomize)
        .env_remove("KUBECONFIG")
        .output()
        .expect("the driftless binary runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let list: Value = serde_json::from_slice(&output.stdout).expect("JSON output");
    list["items"].as_array().unwrap().clone()
}

/// Where `live` misses a field of `desired` or holds another value; `None` when it holds them
/// all (it may hold more).
fn difference(live: &Value, desired: &Value, at: &str) -> Option<String> {
    match (live, desired) {
        (Value::Object(live), Value::Object(desired)) => desired.iter().find_map(|(key, value)| {
            let at = format!("{at}.{key}");
            match live.get(key) {
                Some(live) => difference(live, value, &at),
                None => Some(format!("{at}: missing")),
            }
        }),
        (Value::Array(live), Value::Array(desired)) if live.len() == desired.len() => live
            .iter()
            .zip(desired)
            .enumerate()
            .find_map(|(index, (l, d))| difference(l, d, &format!("{at}[{index}]"))),
        (live, desired) if live == desired => None,
        (live, desired) => Some(format!("{at}: {live} instead of {desired}")),
    }
}

/// The API of `desired`'s kind, in `namespace` for namespaced kinds whose manifest names none.
async fn api_for(
    discovery: &Discovery,
    namespace: &TestNamespace,
    desired: &Value,
) -> Api<DynamicObject> {
    let api_version = desired["apiVersion"].as_str().unwrap();
    let kind = desired["kind"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let (resource, capabilities) = discovery
        .resolve_gvk(&kube::core::GroupVersionKind::gvk(group, version, kind))
        .unwrap_or_else(|| panic!("the cluster serves {api_version} {kind}"));
    let client = support::cluster::admin_client().await;
    match capabilities.scope {
        kube::discovery::Scope::Cluster => Api::all_with(client, &resource),
        kube::discovery::Scope::Namespaced => {
            let in_namespace = desired["metadata"]["namespace"]
                .as_str()
                .unwrap_or(&namespace.name);
            Api::namespaced_with(client, in_namespace, &resource)
        }
    }
}

/// Checks that the live object of `desired` is what the server makes of `desired` itself: a
/// server-side-apply dry run of the freshly built object, as the controller's field manager,
/// against the live one (the server normalizes quantities and adds defaults, on both sides).
async fn assert_live_is_built(discovery: &Discovery, namespace: &TestNamespace, desired: &Value) {
    let api = api_for(discovery, namespace, desired).await;
    let name = desired["metadata"]["name"].as_str().unwrap();
    let live = serde_json::to_value(api.get(name).await.unwrap()).unwrap();
    let params = PatchParams::apply("driftless").force().dry_run();
    let fresh = api.patch(name, &params, &Patch::Apply(desired)).await;
    let fresh = serde_json::to_value(fresh.unwrap()).unwrap();
    let what = format!("{} {name}", desired["kind"]);
    for (field, value) in fresh.as_object().unwrap() {
        if field != "metadata" && field != "status" {
            assert_eq!(
                &live[field], value,
                "{what}: {field} differs from a full render"
            );
        }
    }
    let labels = desired["metadata"].get("labels").unwrap_or(&Value::Null);
    let labels = if labels.is_null() { &json!({}) } else { labels };
    let differs = difference(&live["metadata"]["labels"], labels, ".metadata.labels");
    assert!(differs.is_none(), "{what}: {differs:?}");
}

fn service_monitors(namespace: &TestNamespace) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "monitoring.coreos.com".into(),
        version: "v1".into(),
        api_version: "monitoring.coreos.com/v1".into(),
        kind: "ServiceMonitor".into(),
        plural: "servicemonitors".into(),
    };
    Api::namespaced_with(namespace.client.clone(), &namespace.name, &resource)
}

#[tokio::test]
async fn a_push_changing_one_file_of_a_crd_repository_parses_only_that_file() {
    install_crds().await;
    let namespace = TestNamespace::create("real-content").await;
    let repos = GitRepos::new();
    let repo = repos.create("platform");
    let first = commit_all(&repo, "one", &platform_files("1"));
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let url = server.url_for(&repo);
    let secrets = tempfile::tempdir().unwrap();
    write_secret(secrets.path(), "github", GITHUB_SECRET);
    let port = free_port();
    let kustomize = support::cluster::binaries_dir().join("kustomize");
    let mut flags = webhook_flags(port, &secrets).to_vec();
    flags.extend(["--kustomize-binary".into(), kustomize.display().to_string()]);
    let replica = start_replica(&namespace, &strs(&flags));
    let spec = json!({ "url": url, "path": PATH, "interval": "1h" });
    namespace.create_git_repository("platform", spec).await;
    wait_applied_named(&namespace, "platform", &first, Duration::from_secs(180)).await;
    wait_for_port(port).await;
    let files = platform_files("1").len() as u64;
    // Every committed file but the kustomization's own, plus podinfo's rendered stream.
    let streams = files - 4 + 1;
    assert_eq!(
        replica.counter(PARSED),
        streams,
        "the first reconcile parses all"
    );

    // A push changing the ConfigMap's file: that file is parsed, the rest comes from the cache.
    let second = commit_all(&repo, "two", &platform_files("2"));
    let (status, response) = Delivery::GitHub.deliver(port, &repo, &url, &first, &second, "real-1");
    assert_eq!(status, 202, "{response}");
    wait_applied_named(&namespace, "platform", &second, DEADLINE).await;
    assert_eq!(
        configmap_value(&namespace, "settings").await.as_deref(),
        Some("2")
    );
    assert_eq!(
        replica.counter(PARSED),
        streams + 1,
        "only the changed file"
    );
    assert!(
        replica.counter(CACHED) >= streams - 1,
        "every other stream from the cache"
    );

    // What the cluster holds is what a render from scratch of the same commit gives.
    let discovery = Discovery::new(support::cluster::admin_client().await)
        .run()
        .await
        .unwrap();
    let built = built_objects(&repo, &second);
    assert_eq!(
        built.len(),
        11,
        "5 CRDs, 2 monitoring objects, 3 podinfo, 1 ConfigMap"
    );
    for desired in &built {
        assert_live_is_built(&discovery, &namespace, desired).await;
    }

    // A hand edit: a push that does not change the object does not look at it; the full
    // reconcile (asked for by hand here, the interval's drift check otherwise) corrects it.
    let monitors = service_monitors(&namespace);
    let edit = json!({"spec": {"endpoints": [{"port": "edited"}]}});
    monitors
        .patch("example-app", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();
    let third = commit_all(&repo, "three", &platform_files("3"));
    let (status, response) = Delivery::GitHub.deliver(port, &repo, &url, &second, &third, "real-2");
    assert_eq!(status, 202, "{response}");
    wait_applied_named(&namespace, "platform", &third, DEADLINE).await;
    let port_of = || async {
        let monitor = monitors.get("example-app").await.unwrap();
        monitor.data["spec"]["endpoints"][0]["port"].clone()
    };
    assert_eq!(port_of().await, "edited", "a push trusts unchanged objects");
    let asked = "2026-12-07T20:00:00Z";
    let annotate = json!({"metadata": {"annotations": {RECONCILE_REQUESTED_AT: asked}}});
    namespace
        .api::<GitRepository>()
        .patch(
            "platform",
            &PatchParams::default(),
            &Patch::Merge(&annotate),
        )
        .await
        .unwrap();
    wait_for_named(
        &namespace,
        "platform",
        "the asked reconcile",
        DEADLINE,
        |r| {
            r.status
                .as_ref()
                .and_then(|s| s.last_handled_reconcile_at.as_deref())
                == Some(asked)
        },
    )
    .await;
    assert_eq!(port_of().await, "web", "the full reconcile corrects drift");
}
