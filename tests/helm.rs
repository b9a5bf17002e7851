//! Helm charts against the real pinned `helm` binary (built by `tests/cluster/build.sh`):
//! - differential, without a cluster: every chart of `tests/fixtures/helm/` (with its default
//!   values and each of its `ci/` values files) renders through driftless's sandbox to the same
//!   objects as `helm template` run directly with the same flags;
//! - the Rust-side rules: values files outside the repository, missing dependencies, symlinks;
//!   a schema violation reaches the message with repository-relative paths; a second render of
//!   the same input runs helm zero times;
//! - against the real cluster: a chart applies and rolls out on kwok nodes, a values change in
//!   Git rolls the Deployment, a removed template is pruned, `valuesFrom` a Secret (and its
//!   change re-renders), CRDs with their custom resources in one revision, and failing charts
//!   write nothing.

mod support;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use driftless::{
    render::{
        Capabilities, ChartRequest, Refusal, RenderError, RenderSettings, Renderer, ValuesDocument,
    },
    telemetry::metrics::Metrics,
};
use serde_json::{Value, json};
use support::dir_tree::DirTree;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/helm")
}

fn helm_binary() -> PathBuf {
    let binary = support::cluster::binaries_dir().join("helm");
    assert!(
        binary.is_file(),
        "{} is missing: tests/cluster/build.sh builds it",
        binary.display()
    );
    binary
}

/// Capabilities that switch on the charts' optional branches (PDBs, VPAs, monitors).
fn capabilities() -> Capabilities {
    let mut api_versions: Vec<String> = [
        "v1",
        "v1/ConfigMap",
        "v1/Service",
        "apps/v1",
        "apps/v1/Deployment",
        "apps/v1/DaemonSet",
        "policy/v1",
        "policy/v1/PodDisruptionBudget",
        "networking.k8s.io/v1",
        "networking.k8s.io/v1/Ingress",
        "networking.k8s.io/v1/IngressClass",
        "autoscaling/v2",
        "autoscaling/v2/HorizontalPodAutoscaler",
        "autoscaling.k8s.io/v1",
        "autoscaling.k8s.io/v1/VerticalPodAutoscaler",
        "monitoring.coreos.com/v1",
        "monitoring.coreos.com/v1/ServiceMonitor",
        "cert-manager.io/v1",
        "cert-manager.io/v1/Certificate",
    ]
    .map(String::from)
    .to_vec();
    api_versions.sort();
    Capabilities {
        kube_version: "v1.35.4".into(),
        api_versions,
    }
}

struct Harness {
    renderer: Renderer,
    work_parent: tempfile::TempDir,
}

impl Harness {
    async fn new() -> Self {
        let work_parent = tempfile::tempdir().unwrap();
        let settings = RenderSettings {
            helm_binary: Some(helm_binary()),
            work_dir: Some(work_parent.path().to_owned()),
            ..RenderSettings::default()
        };
        let renderer = Renderer::new(settings, Metrics::default()).await;
        renderer.helm().expect("the pinned helm is usable");
        Self {
            renderer,
            work_parent,
        }
    }

    async fn render(&self, root: &Path, request: &ChartRequest) -> Result<Vec<Value>, RenderError> {
        let source = Arc::new(DirTree {
            root: root.to_owned(),
        });
        let unit = self
            .renderer
            .render_chart(source, request)
            .await
            .map_err(|mut errors| errors.0.remove(0))?;
        Ok(parse_stream(&unit.output))
    }

    fn assert_no_work_dir_left(&self) {
        let left: Vec<_> = std::fs::read_dir(self.work_parent.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "work directories left behind: {left:?}");
    }
}

fn request(chart: &str, values_files: &[String]) -> ChartRequest {
    ChartRequest {
        chart: chart.into(),
        release_name: "corpus".into(),
        namespace: "corpus-ns".into(),
        values_files: values_files.to_vec(),
        values_documents: Vec::new(),
        include_crds: true,
        skip_tests: true,
        capabilities: Some(capabilities()),
    }
}

fn parse_stream(bytes: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).expect("helm prints UTF-8");
    serde_saphyr::from_multiple::<Value>(text)
        .expect("helm prints valid YAML")
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// `helm template` as a user runs it on the chart directory, same flags, then the documented
/// hook rule applied independently: hooks of no install/upgrade phase are not objects to apply.
fn helm_template(root: &Path, request: &ChartRequest, extra_values: &[PathBuf]) -> Vec<Value> {
    let mut command = std::process::Command::new(helm_binary());
    command
        .current_dir(root)
        .arg("template")
        .arg(&request.release_name)
        .arg(root.join(&request.chart))
        .args(["--namespace", &request.namespace]);
    if let Some(capabilities) = &request.capabilities {
        command.args(["--kube-version", &capabilities.kube_version]);
        for version in &capabilities.api_versions {
            command.args(["--api-versions", version]);
        }
    }
    if request.include_crds {
        command.arg("--include-crds");
    }
    if request.skip_tests {
        command.arg("--skip-tests");
    }
    for file in &request.values_files {
        command.arg("--values").arg(root.join(file));
    }
    for file in extra_values {
        command.arg("--values").arg(file);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "helm template {}: {}",
        request.chart,
        String::from_utf8_lossy(&output.stderr)
    );
    parse_stream(&output.stdout)
        .into_iter()
        .filter(|object| {
            let hooks = object["metadata"]["annotations"]["helm.sh/hook"].as_str();
            hooks.is_none_or(|hooks| {
                hooks.split(',').map(str::trim).any(|hook| {
                    [
                        "pre-install",
                        "post-install",
                        "pre-upgrade",
                        "post-upgrade",
                        "crd-install",
                    ]
                    .contains(&hook)
                })
            })
        })
        .collect()
}

/// Certificates made by `genCA`/`genSelfSignedCert` differ on every run, driftless's or not:
/// every base64 PEM block becomes one placeholder.
fn without_generated_keys(objects: Vec<Value>) -> Vec<Value> {
    fn mask(value: &mut Value) {
        match value {
            Value::String(text) if text.starts_with("LS0tLS1CRUdJTi") => *text = "<pem>".into(),
            Value::Array(items) => items.iter_mut().for_each(mask),
            Value::Object(fields) => fields.values_mut().for_each(mask),
            _ => {}
        }
    }
    let mut objects = objects;
    objects.iter_mut().for_each(mask);
    objects
}

/// The chart's `ci/` values files, as paths from the corpus root.
fn ci_values(chart: &str) -> Vec<String> {
    let dir = fixtures_dir().join(chart).join("ci");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml"))
        .map(|name| format!("{chart}/ci/{name}"))
        .collect();
    files.sort();
    files
}

const CORPUS: [&str; 7] = [
    "ingress-nginx",
    "kube-state-metrics",
    "metrics-server",
    "nginx",
    "podinfo",
    "prometheus-node-exporter",
    "sealed-secrets",
];

#[tokio::test]
async fn real_charts_render_to_the_objects_helm_template_prints() {
    let harness = Harness::new().await;
    let root = fixtures_dir();
    let mut compared = 0;
    let mut objects = 0;
    for chart in CORPUS {
        let mut cases = vec![Vec::new()];
        cases.extend(ci_values(chart).into_iter().map(|file| vec![file]));
        if chart == "podinfo" {
            cases.push(vec!["podinfo/values-prod.yaml".into()]);
        }
        for values_files in cases {
            let request = request(chart, &values_files);
            let expected = helm_template(&root, &request, &[]);
            let actual = harness
                .render(&root, &request)
                .await
                .unwrap_or_else(|e| panic!("{chart} {values_files:?}: {e}"));
            assert_eq!(
                without_generated_keys(actual),
                without_generated_keys(expected.clone()),
                "{chart} {values_files:?}: objects differ"
            );
            assert!(!expected.is_empty(), "{chart}: rendered nothing");
            compared += 1;
            objects += expected.len();
        }
    }
    eprintln!("{compared} chart renders ({objects} objects) equal to helm template's");
    assert!(compared >= 30, "only {compared} renders compared");
    harness.assert_no_work_dir_left();
}

#[tokio::test]
async fn values_from_documents_and_inline_values_merge_after_the_files_as_helm_does() {
    let harness = Harness::new().await;
    let root = fixtures_dir();
    let from_secret = "ui:\n  message: from a Secret\n";
    let inline = json!({"ui": {"color": "#112233"}, "service": {"type": "NodePort"}});
    let request = ChartRequest {
        values_documents: vec![
            ValuesDocument {
                origin: "Secret a/b key values.yaml".into(),
                contents: from_secret.into(),
            },
            ValuesDocument {
                origin: "spec.helm.values".into(),
                contents: inline.to_string(),
            },
        ],
        ..request("podinfo", &["podinfo/values-prod.yaml".into()])
    };
    let scratch = tempfile::tempdir().unwrap();
    let secret_file = scratch.path().join("secret.yaml");
    let inline_file = scratch.path().join("inline.json");
    std::fs::write(&secret_file, from_secret).unwrap();
    std::fs::write(&inline_file, inline.to_string()).unwrap();
    let expected = helm_template(&root, &request, &[secret_file, inline_file]);
    let actual = harness.render(&root, &request).await.unwrap();
    assert_eq!(actual, expected);
    let deployment = actual
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("a Deployment");
    let text = deployment.to_string();
    assert!(
        text.contains("from a Secret") && text.contains("#112233"),
        "{text}"
    );
}

#[tokio::test]
async fn crds_follow_include_crds() {
    let harness = Harness::new().await;
    let root = fixtures_dir();
    let kinds = |objects: &[Value]| {
        objects
            .iter()
            .filter(|o| o["kind"] == "CustomResourceDefinition")
            .count()
    };
    let with = harness
        .render(&root, &request("sealed-secrets", &[]))
        .await
        .unwrap();
    assert_eq!(kinds(&with), 1);
    let without = ChartRequest {
        include_crds: false,
        ..request("sealed-secrets", &[])
    };
    let without = harness.render(&root, &without).await.unwrap();
    assert_eq!(kinds(&without), 0);
}

/// A scratch repository holding one small chart, with `files` added on top.
fn scratch_repository(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let base: [(&str, &str); 4] = [
        (
            "charts/app/Chart.yaml",
            "apiVersion: v2\nname: app\nversion: 0.1.0\n",
        ),
        ("charts/app/values.yaml", "replicas: 1\n"),
        (
            "charts/app/templates/cm.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\ndata:\n  replicas: {{ .Values.replicas | quote }}\n",
        ),
        ("secret-outside.yaml", "replicas: 9\n"),
    ];
    for (path, contents) in base.iter().chain(files) {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
    dir
}

fn small_request(values_files: &[&str]) -> ChartRequest {
    ChartRequest {
        chart: "charts/app".into(),
        release_name: "web".into(),
        namespace: "default".into(),
        values_files: values_files.iter().map(|f| f.to_string()).collect(),
        include_crds: true,
        skip_tests: true,
        ..ChartRequest::default()
    }
}

#[tokio::test]
async fn values_files_outside_the_repository_or_symlinked_are_refused_before_helm_runs() {
    let harness = Harness::new().await;
    let repository = scratch_repository(&[]);
    std::os::unix::fs::symlink("/etc/passwd", repository.path().join("linked.yaml")).unwrap();
    for (entry, rule) in [
        ("../outside.yaml", Refusal::LeavesRepository),
        ("charts/../../x.yaml", Refusal::LeavesRepository),
        ("/etc/passwd", Refusal::Absolute),
        ("linked.yaml", Refusal::Symlink),
    ] {
        let error = harness
            .render(repository.path(), &small_request(&[entry]))
            .await
            .expect_err(entry);
        assert!(
            matches!(&error, RenderError::Refused { reason, field, .. } if *reason == rule && field == "valuesFiles"),
            "{entry}: {error:?}"
        );
    }
    assert_eq!(
        harness.renderer.renders_run(),
        0,
        "helm ran on a refused input"
    );
    harness.assert_no_work_dir_left();
}

#[tokio::test]
async fn a_missing_dependency_must_be_vendored_and_helm_never_fetches_it() {
    let harness = Harness::new().await;
    let repository = scratch_repository(&[(
        "charts/app/Chart.yaml",
        "apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n- name: redis\n  version: 1.x\n  repository: https://charts.example.invalid\n",
    )]);
    let error = harness
        .render(repository.path(), &small_request(&[]))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("\"redis\"")
            && message.contains("missing from charts/app/charts/")
            && message.contains("vendored"),
        "{message}"
    );
    assert_eq!(harness.renderer.renders_run(), 0);
    // Vendored as a directory, the same chart renders.
    let vendored = scratch_repository(&[
        (
            "charts/app/Chart.yaml",
            "apiVersion: v2\nname: app\nversion: 0.1.0\ndependencies:\n- name: redis\n  version: 1.x\n  repository: https://charts.example.invalid\n",
        ),
        (
            "charts/app/charts/redis/Chart.yaml",
            "apiVersion: v2\nname: redis\nversion: 1.0.0\n",
        ),
    ]);
    harness
        .render(vendored.path(), &small_request(&[]))
        .await
        .expect("a vendored dependency renders");
}

#[tokio::test]
async fn a_symlink_inside_the_chart_is_refused() {
    let harness = Harness::new().await;
    let repository = scratch_repository(&[]);
    std::os::unix::fs::symlink(
        "/etc/hostname",
        repository.path().join("charts/app/templates/leak.yaml"),
    )
    .unwrap();
    let error = harness
        .render(repository.path(), &small_request(&[]))
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("charts/app/templates/leak.yaml is a symlink"),
        "{error}"
    );
}

#[tokio::test]
async fn schema_violations_reach_the_message_without_temporary_paths() {
    let harness = Harness::new().await;
    let repository = scratch_repository(&[(
        "charts/app/values.schema.json",
        r#"{"type":"object","properties":{"replicas":{"type":"integer","maximum":5}}}"#,
    )]);
    let mut request = small_request(&[]);
    request.values_documents.push(ValuesDocument {
        origin: "spec.helm.values".into(),
        contents: r#"{"replicas": 50}"#.into(),
    });
    let error = harness
        .render(repository.path(), &request)
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, RenderError::Failed { .. }), "{error:?}");
    assert!(
        message.starts_with("`helm template charts/app` failed:")
            && message.contains("replicas")
            && !message.contains("driftless-render-")
            && !message.contains(&*repository.path().to_string_lossy()),
        "{message}"
    );
    // A broken values document is named by its origin, not by a generated file.
    request.values_documents[0].contents = "replicas: [".into();
    let message = harness
        .render(repository.path(), &request)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("spec.helm.values") && !message.contains("generated"),
        "{message}"
    );
}

#[tokio::test]
async fn the_same_input_renders_once() {
    let harness = Harness::new().await;
    let repository = scratch_repository(&[]);
    let request = small_request(&[]);
    let first = harness.render(repository.path(), &request).await.unwrap();
    let again = harness.render(repository.path(), &request).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(harness.renderer.renders_run(), 1);
    // Another values document is another input.
    let mut changed = request.clone();
    changed.values_documents.push(ValuesDocument {
        origin: "x".into(),
        contents: "replicas: 2".into(),
    });
    harness.render(repository.path(), &changed).await.unwrap();
    assert_eq!(harness.renderer.renders_run(), 2);
    // Other capabilities are another input too.
    let mut elsewhere = request;
    elsewhere.capabilities = Some(capabilities());
    harness.render(repository.path(), &elsewhere).await.unwrap();
    assert_eq!(harness.renderer.renders_run(), 3);
}

#[allow(dead_code)]
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(90);
