//! The apply engine against the real test cluster: server-side apply with ownership labels,
//! no-op detection (zero writes), drift correction, all-or-nothing validation per stage,
//! CRDs applied together with their custom resources, and the prune guards (a CRD only when it
//! opts in, never an object created again since it was checked).

use crate::support;

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use driftless::apply::{
    Applier, ApplyError, ApplyOptions, ApplyReport, DesiredObject, ObjectRef, inventory::ObjectKey,
};
use k8s_openapi::{
    api::{
        apps::v1::Deployment,
        core::v1::{ConfigMap, Namespace, Service},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, DynamicObject, Patch, PatchParams, PostParams},
    core::GroupVersionKind,
    discovery::ApiResource,
};
use serde_json::{Value, json};
use support::{
    admission::AdmissionHook,
    cluster::{TestNamespace, admin_client, unique_name},
};

const OWNER_LABEL: &str = "driftless.dev/name";

fn desired(origin: &str, object: Value) -> DesiredObject {
    DesiredObject {
        origin: origin.to_owned(),
        object: serde_json::from_value(object).expect("a valid object literal"),
        rendered: false,
    }
}

fn options(namespace: &TestNamespace) -> ApplyOptions {
    ApplyOptions {
        default_namespace: namespace.name.clone(),
        owner_labels: BTreeMap::from([
            (OWNER_LABEL.to_owned(), "app".to_owned()),
            ("driftless.dev/namespace".to_owned(), "team".to_owned()),
        ]),
        concurrency: 4,
        ..ApplyOptions::default()
    }
}

fn config_map(data_value: &str) -> DesiredObject {
    desired(
        "app.yaml: document 1 (line 1)",
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": "settings" },
            "data": { "greeting": data_value }
        }),
    )
}

fn deployment() -> DesiredObject {
    desired(
        "app.yaml: document 2 (line 7)",
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web" },
            "spec": {
                "replicas": 2,
                "selector": { "matchLabels": { "app": "web" } },
                "template": {
                    "metadata": { "labels": { "app": "web" } },
                    "spec": { "containers": [{ "name": "web", "image": "example.invalid/web:1" }] }
                }
            }
        }),
    )
}

fn service(port: i64) -> DesiredObject {
    desired(
        "app.yaml: document 3 (line 22)",
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": { "name": "web" },
            "spec": { "selector": { "app": "web" }, "ports": [{ "port": port }] }
        }),
    )
}

fn app() -> Vec<DesiredObject> {
    vec![config_map("hello"), deployment(), service(80)]
}

fn names(refs: &[ObjectRef]) -> Vec<String> {
    refs.iter()
        .map(|r| format!("{} {}", r.kind, r.name))
        .collect()
}

async fn apply(
    applier: &Applier,
    objects: Vec<DesiredObject>,
    options: &ApplyOptions,
) -> ApplyReport {
    applier
        .apply(objects, options)
        .await
        .unwrap_or_else(|error| panic!("apply failed: {error}"))
}

#[tokio::test]
async fn applies_objects_into_default_namespace_with_ownership_labels() {
    let namespace = TestNamespace::create("apply-creates").await;
    let applier = Applier::new(namespace.client.clone());

    let report = apply(&applier, app(), &options(&namespace)).await;

    assert_eq!(
        names(&report.created),
        ["ConfigMap settings", "Deployment web", "Service web"]
    );
    assert_eq!(report.writes, 3);
    let labels = [
        namespace
            .api::<ConfigMap>()
            .get("settings")
            .await
            .unwrap()
            .labels()
            .clone(),
        namespace
            .api::<Deployment>()
            .get("web")
            .await
            .unwrap()
            .labels()
            .clone(),
        namespace
            .api::<Service>()
            .get("web")
            .await
            .unwrap()
            .labels()
            .clone(),
    ];
    for labels in labels {
        assert_eq!(labels.get(OWNER_LABEL).map(String::as_str), Some("app"));
        assert_eq!(
            labels.get("driftless.dev/namespace").map(String::as_str),
            Some("team")
        );
    }
}

#[tokio::test]
async fn reapplying_an_unchanged_revision_writes_nothing() {
    let namespace = TestNamespace::create("apply-noop").await;
    let applier = Applier::new(namespace.client.clone());
    apply(&applier, app(), &options(&namespace)).await;
    // Let the controllers stamp status and revision annotations on the Deployment first.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;

    let report = apply(&applier, app(), &options(&namespace)).await;

    assert_eq!(report.writes, 0, "{report:?}");
    assert_eq!(report.unchanged.len(), 3, "{report:?}");
}

#[tokio::test]
async fn hand_edits_are_corrected_as_drift_and_git_changes_as_configured() {
    let namespace = TestNamespace::create("apply-drift").await;
    let applier = Applier::new(namespace.client.clone());
    apply(&applier, app(), &options(&namespace)).await;
    let config_maps = namespace.api::<ConfigMap>();
    let edit = json!({ "data": { "greeting": "edited by hand" } });
    config_maps
        .patch("settings", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();
    let scale = json!({ "spec": { "replicas": 5 } });
    namespace
        .api::<Deployment>()
        .patch_scale("web", &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .unwrap();

    let report = apply(&applier, app(), &options(&namespace)).await;

    assert_eq!(
        names(&report.drift_corrected),
        ["ConfigMap settings", "Deployment web"]
    );
    assert_eq!(report.writes, 2);
    let data = config_maps.get("settings").await.unwrap().data.unwrap();
    assert_eq!(data["greeting"], "hello");
    let live = namespace.api::<Deployment>().get("web").await.unwrap();
    assert_eq!(live.spec.unwrap().replicas, Some(2));

    let changed = vec![config_map("changed in git"), deployment(), service(80)];
    let report = apply(&applier, changed, &options(&namespace)).await;
    assert_eq!(names(&report.configured), ["ConfigMap settings"]);
    assert_eq!(report.writes, 1);
}

#[tokio::test]
async fn an_object_made_by_hand_is_adopted_and_a_removed_owned_label_is_drift() {
    let namespace = TestNamespace::create("apply-adopt").await;
    let applier = Applier::new(namespace.client.clone());
    let config_maps = namespace.api::<ConfigMap>();
    let by_hand: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "settings" }, "data": { "greeting": "made by hand" }
    }))
    .unwrap();
    config_maps
        .create(&PostParams::default(), &by_hand)
        .await
        .unwrap();

    let report = apply(&applier, vec![config_map("hello")], &options(&namespace)).await;
    assert_eq!(
        names(&report.configured),
        ["ConfigMap settings"],
        "{report:?}"
    );
    assert!(report.created.is_empty(), "{report:?}");
    let adopted = config_maps.get("settings").await.unwrap();
    assert_eq!(adopted.labels()[OWNER_LABEL], "app");
    assert_eq!(adopted.data.unwrap()["greeting"], "hello");

    let unlabel = json!({ "metadata": { "labels": { OWNER_LABEL: null } } });
    config_maps
        .patch("settings", &PatchParams::default(), &Patch::Merge(&unlabel))
        .await
        .unwrap();
    let report = apply(&applier, vec![config_map("hello")], &options(&namespace)).await;
    assert_eq!(
        names(&report.drift_corrected),
        ["ConfigMap settings"],
        "{report:?}"
    );
    let relabelled = config_maps.get("settings").await.unwrap();
    assert_eq!(relabelled.labels()[OWNER_LABEL], "app");
}

#[tokio::test]
async fn one_invalid_object_stops_the_whole_stage_and_every_failure_is_listed() {
    let namespace = TestNamespace::create("apply-invalid").await;
    let applier = Applier::new(namespace.client.clone());
    let mut bad_deployment = deployment();
    bad_deployment.object.data["spec"]["notAField"] = json!(true);

    let error = applier
        .apply(
            vec![config_map("hello"), bad_deployment, service(70000)],
            &options(&namespace),
        )
        .await
        .expect_err("invalid objects are rejected");

    let ApplyError::Validation(failures) = &error else {
        panic!("expected a validation error, got {error}");
    };
    assert_eq!(
        names(
            &failures
                .iter()
                .map(|f| f.object.clone())
                .collect::<Vec<_>>()
        ),
        ["Deployment web", "Service web"]
    );
    let message = error.to_string();
    eprintln!("{message}");
    let deployment_line = format!(
        "app.yaml: document 2 (line 7): apps/v1 Deployment {}/web: ",
        namespace.name
    );
    assert!(message.contains(&deployment_line), "{message}");
    assert!(message.contains("notAField"), "{message}");
    assert!(
        message.contains("app.yaml: document 3 (line 22): v1 Service"),
        "{message}"
    );
    let written = namespace
        .api::<ConfigMap>()
        .get_opt("settings")
        .await
        .unwrap();
    assert!(written.is_none(), "the valid ConfigMap must not be written");
}

#[tokio::test]
async fn crd_namespace_and_their_objects_apply_in_one_revision() {
    let namespace = TestNamespace::create("apply-crd").await;
    let group = format!("{}.test.driftless.dev", unique_name("g"));
    let crd_name = format!("widgets.{group}");
    let _crd_cleanup = Cleanup::Crd(crd_name.clone());
    let extra_namespace = unique_name("apply-crd-extra");
    let _namespace_cleanup = Cleanup::Namespace(extra_namespace.clone());
    let applier = Applier::new(namespace.client.clone());
    let objects = vec![
        widget(&group),
        crd(&group),
        desired(
            "ns.yaml",
            json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": extra_namespace } }),
        ),
        desired(
            "cm.yaml",
            json!({ "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "inside", "namespace": extra_namespace } }),
        ),
    ];

    let objects_again = objects.clone();
    let report = apply(&applier, objects, &options(&namespace)).await;

    assert_eq!(report.created.len(), 4, "{report:?}");
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(&group, "v1", "Widget"));
    let widgets: Api<DynamicObject> =
        Api::namespaced_with(namespace.client.clone(), &namespace.name, &resource);
    let gadget = widgets
        .get("gadget")
        .await
        .expect("the custom resource exists");
    assert_eq!(gadget.data["spec"]["size"], 3);
    assert_eq!(
        gadget.labels().get(OWNER_LABEL).map(String::as_str),
        Some("app")
    );
    let inside: Api<ConfigMap> = Api::namespaced(namespace.client.clone(), &extra_namespace);
    assert!(inside.get_opt("inside").await.unwrap().is_some());

    // The refreshed discovery now knows Widget without its CRD in the revision.
    let report = apply(&applier, vec![widget(&group)], &options(&namespace)).await;
    assert_eq!(
        (report.writes, report.unchanged.len()),
        (0, 1),
        "{report:?}"
    );
    let fresh = Applier::new(namespace.client.clone());
    let report = apply(&fresh, objects_again, &options(&namespace)).await;
    assert_eq!(
        (report.writes, report.unchanged.len()),
        (0, 4),
        "{report:?}"
    );
}

fn crd(group: &str) -> DesiredObject {
    desired(
        "crd.yaml",
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": { "name": format!("widgets.{group}") },
            "spec": {
                "group": group, "scope": "Namespaced",
                "names": { "plural": "widgets", "singular": "widget", "kind": "Widget" },
                "versions": [{
                    "name": "v1", "served": true, "storage": true,
                    "schema": { "openAPIV3Schema": {
                        "type": "object",
                        "properties": { "spec": { "type": "object",
                            "properties": { "size": { "type": "integer" } } } }
                    } }
                }]
            }
        }),
    )
}

fn widget(group: &str) -> DesiredObject {
    desired(
        "widget.yaml",
        json!({
            "apiVersion": format!("{group}/v1"), "kind": "Widget",
            "metadata": { "name": "gadget" },
            "spec": { "size": 3 }
        }),
    )
}

#[tokio::test]
async fn cluster_scoped_object_with_a_namespace_is_rejected_before_any_write() {
    let namespace = TestNamespace::create("apply-scope").await;
    let applier = Applier::new(namespace.client.clone());
    let misplaced = desired(
        "rbac.yaml: document 1 (line 1)",
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": { "name": unique_name("reader"), "namespace": "team" },
            "rules": []
        }),
    );

    let error = applier
        .apply(vec![config_map("hello"), misplaced], &options(&namespace))
        .await
        .expect_err("a namespace on a cluster-scoped object is an error");

    let message = error.to_string();
    assert!(
        matches!(error, ApplyError::Validation(ref f) if f.len() == 1),
        "{message}"
    );
    assert!(
        message.contains(
            "rbac.yaml: document 1 (line 1): rbac.authorization.k8s.io/v1 ClusterRole team/reader-"
        ),
        "{message}"
    );
    assert!(message.contains("cluster-scoped"), "{message}");
    let written = namespace
        .api::<ConfigMap>()
        .get_opt("settings")
        .await
        .unwrap();
    assert!(written.is_none(), "nothing is written when a check fails");
}

#[tokio::test]
async fn unknown_kind_names_origin_and_kind() {
    let namespace = TestNamespace::create("apply-unknown").await;
    let applier = Applier::new(namespace.client.clone());
    let unknown = desired(
        "x.yaml: document 4 (line 30)",
        json!({ "apiVersion": "nothing.test.driftless.dev/v1", "kind": "Gizmo", "metadata": { "name": "g" } }),
    );

    let error = applier
        .apply(vec![unknown], &options(&namespace))
        .await
        .expect_err("an unknown kind is an error");

    let message = error.to_string();
    assert!(
        message.contains(
            "x.yaml: document 4 (line 30): nothing.test.driftless.dev/v1 Gizmo g: unknown kind"
        ),
        "{message}"
    );
}

#[tokio::test]
async fn if_not_present_objects_are_created_once_and_never_updated() {
    let namespace = TestNamespace::create("apply-if-not-present").await;
    let applier = Applier::new(namespace.client.clone());
    let mut create_once = config_map("initial");
    create_once.object.metadata.annotations = Some(
        [(
            "driftless.dev/apply".to_owned(),
            "if-not-present".to_owned(),
        )]
        .into(),
    );
    let report = apply(&applier, vec![create_once.clone()], &options(&namespace)).await;
    assert_eq!(names(&report.created), ["ConfigMap settings"]);
    let edit = json!({ "data": { "greeting": "edited by hand" } });
    namespace
        .api::<ConfigMap>()
        .patch("settings", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();

    let report = apply(&applier, vec![create_once], &options(&namespace)).await;

    assert_eq!(report.writes, 0);
    let data = namespace
        .api::<ConfigMap>()
        .get("settings")
        .await
        .unwrap()
        .data
        .unwrap();
    assert_eq!(data["greeting"], "edited by hand");
}

/// A cluster-scoped object a test creates, deleted when the test ends, even when it fails.
enum Cleanup {
    Crd(String),
    Namespace(String),
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (is_crd, name) = match self {
            Cleanup::Crd(name) => (true, name.clone()),
            Cleanup::Namespace(name) => (false, name.clone()),
        };
        // Drop cannot await and the test's runtime may be shutting down: use a runtime of our own.
        let deleted = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for clean-up")
                .block_on(delete_cluster_object(is_crd, name))
        })
        .join();
        if let Ok(Err(error)) = deleted {
            eprintln!("clean-up failed: {error}");
        }
    }
}

async fn delete_cluster_object(is_crd: bool, name: String) -> Result<(), kube::Error> {
    let client = admin_client().await;
    let params = DeleteParams::background();
    if is_crd {
        let crds: Api<CustomResourceDefinition> = Api::all(client);
        crds.delete(&name, &params).await.map(|_| ())
    } else {
        let namespaces: Api<Namespace> = Api::all(client);
        namespaces.delete(&name, &params).await.map(|_| ())
    }
}

#[tokio::test]
async fn the_same_object_twice_is_rejected() {
    let namespace = TestNamespace::create("apply-duplicate").await;
    let applier = Applier::new(namespace.client.clone());
    let mut again = config_map("other");
    again.origin = "other.yaml: document 1 (line 1)".to_owned();

    let error = applier
        .apply(vec![config_map("hello"), again], &options(&namespace))
        .await
        .expect_err("a duplicate object is an error");

    let message = error.to_string();
    assert!(
        message.contains("other.yaml: document 1 (line 1): v1 ConfigMap")
            && message.contains("also defined in app.yaml: document 1 (line 1)"),
        "{message}"
    );
}

fn config_map_key(namespace: &TestNamespace, name: &str) -> ObjectKey {
    ObjectKey {
        group: String::new(),
        version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: Some(namespace.name.clone()),
        name: name.into(),
    }
}

#[tokio::test]
async fn prune_never_deletes_an_object_created_again_after_it_was_checked() {
    let namespace = TestNamespace::create("prune-uid").await;
    let applier = Applier::new(namespace.client.clone());
    apply(&applier, vec![config_map("v1")], &options(&namespace)).await;
    let configmaps = namespace.api::<ConfigMap>();
    let checked = configmaps.get("settings").await.unwrap();

    // The apiserver holds prune's DELETE (after prune checked the object) while the test
    // deletes the ConfigMap and creates it again under the same name, owner labels included.
    let held_one = Arc::new(AtomicBool::new(false));
    let hook = AdmissionHook::start(
        &namespace,
        "",
        "v1",
        &["configmaps"],
        &["DELETE"],
        Box::new(move |request| {
            request["name"] == "settings" && !held_one.swap(true, Ordering::SeqCst)
        }),
    )
    .await;
    let key = config_map_key(&namespace, "settings");
    let pruning = tokio::spawn(async move { applier.prune(&[key], "app", "team").await });
    hook.wait_held(1, Duration::from_secs(30)).await;
    configmaps
        .delete("settings", &DeleteParams::default())
        .await
        .unwrap();
    while configmaps.get_opt("settings").await.unwrap().is_some() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut replacement: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "settings", "labels": checked.labels() },
        "data": { "greeting": "made again by hand" },
    }))
    .unwrap();
    replacement = configmaps
        .create(&PostParams::default(), &replacement)
        .await
        .unwrap();
    hook.release();

    let report = pruning.await.unwrap().expect("the prune completes");
    assert!(report.deleted.is_empty(), "{report:?}");
    assert_eq!(report.skipped.len(), 1, "{report:?}");
    assert!(
        report.skipped[0].1.contains("deleted and created again"),
        "{report:?}"
    );
    let live = configmaps
        .get_opt("settings")
        .await
        .unwrap()
        .expect("the object created again survives the prune");
    assert_eq!(live.uid(), replacement.uid());
    assert_ne!(live.uid(), checked.uid());
}

fn annotated(mut object: DesiredObject, key: &str, value: &str) -> DesiredObject {
    object
        .object
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(key.into(), value.into());
    object
}

#[tokio::test]
async fn prune_deletes_a_crd_only_when_it_opts_in() {
    let namespace = TestNamespace::create("prune-crd").await;
    let group = format!("{}.test.driftless.dev", unique_name("g"));
    let crd_name = format!("widgets.{group}");
    let _crd_cleanup = Cleanup::Crd(crd_name.clone());
    let applier = Applier::new(namespace.client.clone());
    apply(
        &applier,
        vec![crd(&group), widget(&group)],
        &options(&namespace),
    )
    .await;
    let crd_key = ObjectKey {
        group: "apiextensions.k8s.io".into(),
        version: "v1".into(),
        kind: "CustomResourceDefinition".into(),
        namespace: None,
        name: crd_name.clone(),
    };
    let crds: Api<CustomResourceDefinition> = Api::all(namespace.client.clone());

    // The revision dropped the CRD: it stays, and with it every Widget of the cluster.
    let report = applier
        .prune(std::slice::from_ref(&crd_key), "app", "team")
        .await
        .unwrap();
    assert!(report.deleted.is_empty(), "{report:?}");
    assert!(
        report.skipped[0]
            .1
            .contains("annotated driftless.dev/prune: enabled"),
        "{report:?}"
    );
    assert!(crds.get_opt(&crd_name).await.unwrap().is_some());
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(&group, "v1", "Widget"));
    let widgets: Api<DynamicObject> =
        Api::namespaced_with(namespace.client.clone(), &namespace.name, &resource);
    assert!(widgets.get_opt("gadget").await.unwrap().is_some());

    // A CRD that opted in (in its manifest) is pruned.
    let opted_in = annotated(crd(&group), "driftless.dev/prune", "enabled");
    apply(&applier, vec![opted_in], &options(&namespace)).await;
    let report = applier.prune(&[crd_key], "app", "team").await.unwrap();
    assert_eq!(
        names(&report.deleted),
        [format!("CustomResourceDefinition {crd_name}")]
    );
}
