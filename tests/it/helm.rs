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

use crate::support;

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

/// A script that leaves a marker file when anything runs it (as helm runs a post-renderer).
struct Tripwire {
    dir: tempfile::TempDir,
}

impl Tripwire {
    fn new() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("post-render.sh");
        let marker = dir.path().join("ran");
        std::fs::write(
            &script,
            format!("#!/bin/sh\ntouch {}\ncat\n", marker.display()),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        Self { dir }
    }

    /// `--post-renderer=<the script>`: what a tenant would put where a name goes.
    fn flag(&self) -> String {
        format!(
            "--post-renderer={}",
            self.dir.path().join("post-render.sh").display()
        )
    }

    fn ran(&self) -> bool {
        self.dir.path().join("ran").exists()
    }
}

/// No value of a request is read by helm as a flag: a release name or a namespace spelled
/// `--post-renderer=<script>` (which the CRD refuses, but the renderer does not rely on that)
/// never makes helm run the script. The same script does run when it is really passed as the
/// flag, so the tripwire works.
#[tokio::test]
async fn a_flag_shaped_name_or_namespace_never_reaches_helm_as_a_flag() {
    let harness = Harness::new().await;
    let repository = scratch_repository(&[]);
    let tripwire = Tripwire::new();
    let flag = tripwire.flag();
    let requests = [
        ChartRequest {
            release_name: flag.clone(),
            ..small_request(&[])
        },
        ChartRequest {
            namespace: flag.clone(),
            ..small_request(&[])
        },
    ];
    for request in &requests {
        let result = harness.render(repository.path(), request).await;
        assert!(
            !tripwire.ran(),
            "helm ran the post-renderer for {request:?}: {result:?}"
        );
    }
    harness.assert_no_work_dir_left();

    let direct = std::process::Command::new(helm_binary())
        .args(["template", "web", "charts/app", &flag])
        .current_dir(repository.path())
        .env("HOME", repository.path())
        .output()
        .unwrap();
    assert!(
        direct.status.success(),
        "{}",
        String::from_utf8_lossy(&direct.stderr)
    );
    assert!(
        tripwire.ran(),
        "the tripwire fires when helm really gets the flag"
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

// ---- against the real cluster ----

mod cluster {
    use super::*;
    use driftless::api::GitRepository;
    use k8s_openapi::api::{
        apps::v1::Deployment,
        core::v1::{ConfigMap, Secret, Service},
    };
    use kube::api::{Patch, PatchParams, PostParams};
    use support::{
        cluster::{TestNamespace, install_crds},
        git::{GitRepos, HttpGitServer, HttpOptions, TestRepo},
    };

    struct RunningController {
        task: tokio::task::JoinHandle<()>,
        _cache: tempfile::TempDir,
    }

    impl Drop for RunningController {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    fn start_controller(namespace: &TestNamespace, metrics: Metrics) -> RunningController {
        let cache = tempfile::tempdir().unwrap();
        let mut settings = support::controller::settings_for(
            &namespace.name,
            cache.path(),
            Duration::from_secs(1),
        );
        settings.render = RenderSettings {
            helm_binary: Some(helm_binary()),
            ..RenderSettings::default()
        };
        let task = tokio::spawn(async move {
            let config = support::cluster::admin_config().await;
            driftless::controller::run(config, settings, metrics)
                .await
                .expect("the controller runs");
        });
        RunningController {
            task,
            _cache: cache,
        }
    }

    async fn wait_for(
        namespace: &TestNamespace,
        what: &str,
        check: impl Fn(&GitRepository) -> bool,
    ) -> GitRepository {
        let api = namespace.api::<GitRepository>();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let repository = api.get("app").await.unwrap();
            if check(&repository) {
                return repository;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; status: {:#?}",
                repository.status
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    fn applied_at(repository: &GitRepository, commit: &str) -> bool {
        let status = repository.status.as_ref();
        status
            .and_then(|s| s.last_applied_revision.as_deref())
            .is_some_and(|r| r.ends_with(commit))
    }

    fn attempted(repository: &GitRepository, commit: &str) -> bool {
        let status = repository.status.as_ref();
        status
            .and_then(|s| s.last_attempted_revision.as_deref())
            .is_some_and(|r| r.ends_with(commit))
    }

    fn ready(repository: &GitRepository) -> (String, String, String) {
        let status = repository.status.as_ref().unwrap();
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        (c.status.clone(), c.reason.clone(), c.message.clone())
    }

    fn count(metrics: &Metrics, outcome: &str) -> u64 {
        let text = metrics.render();
        let series = format!("driftless_render_total{{renderer=\"helm\",outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    /// The podinfo chart of the corpus under `charts/podinfo/`, less the templates `without`,
    /// plus `extra` files.
    fn podinfo_files(without: &[&str], extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let chart = fixtures_dir().join("podinfo");
        let mut files = Vec::new();
        let mut stack = vec![chart.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let relative = path
                    .strip_prefix(&chart)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                if without.contains(&relative.as_str()) {
                    continue;
                }
                files.push((
                    format!("charts/podinfo/{relative}"),
                    std::fs::read_to_string(&path).unwrap(),
                ));
            }
        }
        files.extend(extra.iter().map(|(p, c)| (p.to_string(), c.to_string())));
        files
    }

    fn commit(repo: &TestRepo, message: &str, files: &[(String, String)]) -> String {
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        repo.commit(message, &files)
    }

    /// Creates GitRepository `app` and makes sure it is stored with its `helm` field. Other
    /// test runs on the shared cluster may install an older CRD without `spec.helm` at any
    /// time, and the apiserver then prunes the field on the next write (the controller's
    /// finalizer); the CRD is installed again and the spec written back until it sticks.
    async fn create_app(namespace: &TestNamespace, spec: Value) {
        install_crds().await;
        namespace.create_git_repository("app", spec.clone()).await;
        let api = namespace.api::<GitRepository>();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let stored = api.get("app").await.unwrap();
            let finalized = !stored
                .metadata
                .finalizers
                .clone()
                .unwrap_or_default()
                .is_empty();
            if stored.spec.helm.is_some() && finalized {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "spec.helm keeps being pruned by another CRD version on the shared cluster"
            );
            if stored.spec.helm.is_none() {
                install_crds().await;
                let patch = json!({ "spec": spec });
                api.patch("app", &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .unwrap();
            }
        }
    }

    #[tokio::test]
    async fn a_corpus_chart_rolls_out_follows_its_values_and_prunes_a_removed_template() {
        install_crds().await;
        let namespace = TestNamespace::create("helm-podinfo").await;
        let repos = GitRepos::new();
        let repo = repos.create("app");
        let values = "replicaCount: 2\nui:\n  message: first\n";
        let first = commit(
            &repo,
            "podinfo",
            &podinfo_files(&[], &[("env/prod.yaml", values)]),
        );
        let server = HttpGitServer::start(repos.root(), HttpOptions::default());
        let metrics = Metrics::default();
        let _controller = start_controller(&namespace, metrics.clone());
        create_app(
            &namespace,
            json!({
                "url": server.url_for(&repo), "path": "charts/podinfo", "interval": "1s",
                "helm": {
                    "valuesFiles": ["env/prod.yaml"],
                    "values": { "ui": { "color": "#224466" } },
                },
            }),
        )
        .await;
        let converged = wait_for(&namespace, "the chart", |r| applied_at(r, &first)).await;
        assert_eq!(ready(&converged).0, "True", "{:?}", ready(&converged));
        assert_eq!(
            converged
                .status
                .as_ref()
                .unwrap()
                .last_applied_renderer
                .as_deref(),
            Some("helm v3.22.0")
        );
        let deployments = namespace.api::<Deployment>();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
        let deployment = loop {
            let deployment = deployments.get("app-podinfo").await.unwrap();
            let available = deployment
                .status
                .as_ref()
                .and_then(|s| s.available_replicas);
            if available == Some(2) {
                break deployment;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not rolled out on the kwok nodes: {:?}",
                deployment.status
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let env = serde_json::to_string(&deployment.spec.unwrap().template).unwrap();
        assert!(env.contains("first") && env.contains("#224466"), "{env}");
        namespace.api::<Service>().get("app-podinfo").await.unwrap();

        // A resync of the same commit runs helm zero times.
        let renders = count(&metrics, "success");
        assert_eq!(renders, 1);
        let cached = count(&metrics, "cached");
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(count(&metrics, "cached") > cached, "no resync happened");
        assert_eq!(count(&metrics, "success"), renders, "a resync ran helm");

        // A values change in Git rolls the Deployment.
        let second = commit(
            &repo,
            "new message",
            &podinfo_files(
                &[],
                &[("env/prod.yaml", &values.replace("first", "second"))],
            ),
        );
        let converged = wait_for(&namespace, "the values change", |r| applied_at(r, &second)).await;
        assert_eq!(ready(&converged).0, "True", "{:?}", ready(&converged));
        let deployment = deployments.get("app-podinfo").await.unwrap();
        let template = serde_json::to_string(&deployment.spec.unwrap().template).unwrap();
        assert!(template.contains("second"), "{template}");
        assert!(deployment.metadata.generation > Some(1));

        // A template removed from the chart prunes its object.
        let third = commit(
            &repo,
            "no service",
            &podinfo_files(
                &["templates/service.yaml"],
                &[("env/prod.yaml", &values.replace("first", "second"))],
            ),
        );
        wait_for(&namespace, "the removed template", |r| {
            applied_at(r, &third)
        })
        .await;
        let service = namespace
            .api::<Service>()
            .get_opt("app-podinfo")
            .await
            .unwrap();
        assert!(
            service.is_none_or(|s| s.metadata.deletion_timestamp.is_some()),
            "the Service was not pruned"
        );
    }

    const SMALL_CHART: [(&str, &str); 3] = [
        (
            "chart/Chart.yaml",
            "apiVersion: v2\nname: small\nversion: 0.1.0\n",
        ),
        ("chart/values.yaml", "greeting: default\n"),
        (
            "chart/templates/settings.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  greeting: {{ .Values.greeting | quote }}\n  color: ${color}\n",
        ),
    ];

    async fn config_map_data(
        namespace: &TestNamespace,
    ) -> std::collections::BTreeMap<String, String> {
        namespace
            .api::<ConfigMap>()
            .get("settings")
            .await
            .unwrap()
            .data
            .unwrap()
    }

    async fn eventually_data(namespace: &TestNamespace, key: &str, value: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let data = namespace
                .api::<ConfigMap>()
                .get_opt("settings")
                .await
                .unwrap();
            let found = data.and_then(|c| c.data).and_then(|d| d.get(key).cloned());
            if found.as_deref() == Some(value) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{key} never became {value:?} (is {found:?})"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `valuesFrom` a Secret and `postBuild.substituteFrom` a ConfigMap: changing either
    /// re-renders and applies at once, without a push or an annotation (the interval is an hour).
    #[tokio::test]
    async fn a_changed_values_secret_or_substitution_config_map_is_applied_without_a_push() {
        install_crds().await;
        let namespace = TestNamespace::create("helm-values-from").await;
        namespace
            .create_secret(
                "app-values",
                &[("values.yaml", b"greeting: from-secret\n".as_slice())],
            )
            .await;
        let variables: ConfigMap = serde_json::from_value(json!({
            "metadata": { "name": "vars" }, "data": { "color": "blue" },
        }))
        .unwrap();
        namespace
            .api::<ConfigMap>()
            .create(&PostParams::default(), &variables)
            .await
            .unwrap();
        let repos = GitRepos::new();
        let repo = repos.create("app");
        let first = repo.commit("small chart", &SMALL_CHART);
        let server = HttpGitServer::start(repos.root(), HttpOptions::default());
        let _controller = start_controller(&namespace, Metrics::default());
        // An hour's interval: only the watches can bring the changes below in time.
        create_app(
            &namespace,
            json!({
                "url": server.url_for(&repo), "interval": "1h",
                "helm": {
                    "chart": "chart",
                    "valuesFrom": [
                        { "kind": "Secret", "name": "app-values" },
                        { "kind": "ConfigMap", "name": "absent", "optional": true },
                    ],
                },
                "postBuild": { "substituteFrom": [{ "kind": "ConfigMap", "name": "vars" }] },
            }),
        )
        .await;
        let converged = wait_for(&namespace, "the chart", |r| applied_at(r, &first)).await;
        assert_eq!(ready(&converged).0, "True", "{:?}", ready(&converged));
        let data = config_map_data(&namespace).await;
        assert_eq!(data["greeting"], "from-secret");
        assert_eq!(data["color"], "blue");

        let secret = json!({ "stringData": { "values.yaml": "greeting: rotated\n" } });
        namespace
            .api::<Secret>()
            .patch(
                "app-values",
                &PatchParams::default(),
                &Patch::Merge(&secret),
            )
            .await
            .unwrap();
        eventually_data(&namespace, "greeting", "rotated").await;
        let variables = json!({ "data": { "color": "green" } });
        namespace
            .api::<ConfigMap>()
            .patch("vars", &PatchParams::default(), &Patch::Merge(&variables))
            .await
            .unwrap();
        eventually_data(&namespace, "color", "green").await;
    }

    const CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.helm-test.driftless.dev
spec:
  group: helm-test.driftless.dev
  names: {kind: Widget, listKind: WidgetList, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
";

    #[tokio::test]
    async fn a_chart_with_crds_and_their_custom_resources_applies_in_one_revision() {
        use kube::{Api, api::DynamicObject, discovery::ApiResource};
        install_crds().await;
        let namespace = TestNamespace::create("helm-crds").await;
        let repos = GitRepos::new();
        let repo = repos.create("app");
        let first = repo.commit(
            "crds",
            &[
                ("chart/Chart.yaml", "apiVersion: v2\nname: widgets\nversion: 0.1.0\n"),
                ("chart/crds/widgets.yaml", CRD),
                (
                    "chart/templates/widget.yaml",
                    "apiVersion: helm-test.driftless.dev/v1\nkind: Widget\nmetadata:\n  name: {{ .Release.Name }}-widget\nspec:\n  size: 3\n",
                ),
                (
                    "chart/templates/test.yaml",
                    "apiVersion: v1\nkind: Pod\nmetadata:\n  name: never\n  annotations:\n    helm.sh/hook: test\nspec:\n  containers: [{name: t, image: busybox}]\n",
                ),
                (
                    "chart/templates/cleanup.yaml",
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: on-delete\n  annotations:\n    helm.sh/hook: pre-delete\n",
                ),
                (
                    "chart/templates/setup.yaml",
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: on-install\n  annotations:\n    helm.sh/hook: pre-install,pre-upgrade\n",
                ),
            ],
        );
        let server = HttpGitServer::start(repos.root(), HttpOptions::default());
        let _controller = start_controller(&namespace, Metrics::default());
        create_app(
            &namespace,
            json!({
                "url": server.url_for(&repo), "interval": "1s",
                "helm": { "chart": "chart", "skipTests": false },
            }),
        )
        .await;
        let converged = wait_for(&namespace, "the chart", |r| applied_at(r, &first)).await;
        assert_eq!(ready(&converged).0, "True", "{:?}", ready(&converged));
        let resource = ApiResource {
            group: "helm-test.driftless.dev".into(),
            version: "v1".into(),
            api_version: "helm-test.driftless.dev/v1".into(),
            kind: "Widget".into(),
            plural: "widgets".into(),
        };
        let widgets: Api<DynamicObject> =
            Api::namespaced_with(namespace.client.clone(), &namespace.name, &resource);
        let widget = widgets.get("app-widget").await.unwrap();
        assert_eq!(widget.data["spec"]["size"], 3);
        // The hook rule: install/upgrade hooks are applied, test and delete hooks never.
        let configmaps = namespace.api::<ConfigMap>();
        assert!(configmaps.get_opt("on-install").await.unwrap().is_some());
        assert!(configmaps.get_opt("on-delete").await.unwrap().is_none());
        let pods = namespace.api::<k8s_openapi::api::core::v1::Pod>();
        assert!(pods.get_opt("never").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_missing_dependency_or_a_schema_violation_fails_clearly_and_writes_nothing() {
        install_crds().await;
        let namespace = TestNamespace::create("helm-failures").await;
        let repos = GitRepos::new();
        let repo = repos.create("app");
        // A good revision first: "writes nothing" then means its objects stay as they are.
        let good = repo.commit("small chart", &SMALL_CHART);
        let with_dependency = SMALL_CHART[0].1.to_owned()
            + "dependencies:\n- name: postgresql\n  version: 1.x\n  repository: oci://registry.example.invalid/charts\n";
        let server = HttpGitServer::start(repos.root(), HttpOptions::default());
        let _controller = start_controller(&namespace, Metrics::default());
        create_app(
            &namespace,
            json!({
                "url": server.url_for(&repo), "interval": "1s",
                "helm": { "chart": "chart" },
                "postBuild": { "substitute": { "color": "red" } },
            }),
        )
        .await;
        wait_for(&namespace, "the good revision", |r| applied_at(r, &good)).await;
        let settings = namespace.api::<ConfigMap>();
        let before = settings.get("settings").await.unwrap();
        let unchanged = || async {
            let now = settings.get("settings").await.unwrap();
            assert_eq!(
                (&now.metadata.resource_version, &now.data),
                (&before.metadata.resource_version, &before.data),
                "a failed revision wrote to the applied objects"
            );
        };
        let first = repo.commit(
            "missing dependency",
            &[
                ("chart/Chart.yaml", &with_dependency),
                SMALL_CHART[1],
                SMALL_CHART[2],
            ],
        );
        let failed = wait_for(&namespace, "the missing dependency", |r| {
            attempted(r, &first)
        })
        .await;
        let (status, reason, message) = ready(&failed);
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "BuildFailed"),
            "{message}"
        );
        assert!(
            message.contains("\"postgresql\"") && message.contains("must be vendored"),
            "{message}"
        );
        unchanged().await;

        let schema = r#"{"type":"object","required":["greeting"],"properties":{"greeting":{"type":"string","maxLength":5}}}"#;
        let second = repo.commit(
            "schema",
            &[
                SMALL_CHART[0],
                SMALL_CHART[1],
                SMALL_CHART[2],
                ("chart/values.schema.json", schema),
            ],
        );
        let failed = wait_for(&namespace, "the schema violation", |r| {
            attempted(r, &second)
        })
        .await;
        let (status, reason, message) = ready(&failed);
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "BuildFailed"),
            "{message}"
        );
        assert!(
            message.contains("`helm template chart` failed")
                && message.contains("greeting")
                && !message.contains("driftless-render-"),
            "{message}"
        );
        unchanged().await;

        // A values file outside the repository is refused at admission already.
        install_crds().await;
        let outside = namespace
            .api::<GitRepository>()
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "apiVersion": "driftless.dev/v1alpha1", "kind": "GitRepository",
                    "metadata": { "name": "outside" },
                    "spec": {
                        "url": server.url_for(&repo),
                        "helm": { "chart": "chart", "valuesFiles": ["../../etc/passwd"] },
                    },
                }))
                .unwrap(),
            )
            .await
            .unwrap_err();
        assert!(outside.to_string().contains("valuesFiles"), "{outside}");
    }

    /// `examples/helm/`: the GitRepository's chart renders (its values files, its inline
    /// values, the optional Secret absent) and every object passes a server-side dry run.
    #[tokio::test]
    async fn the_helm_example_renders_and_passes_a_server_side_dry_run() {
        use driftless::revision::{ChartContext, chart_request};
        use kube::{
            Api,
            api::{DynamicObject, GroupVersionKind},
            discovery::pinned_kind,
        };
        let namespace = TestNamespace::create("helm-example").await;
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/helm");
        let text = std::fs::read_to_string(example.join("gitrepository.yaml")).unwrap();
        let repository: GitRepository = serde_saphyr::from_str(&text).unwrap();
        let helm = repository
            .spec
            .helm
            .as_ref()
            .expect("the example sets spec.helm");
        let context = ChartContext {
            release_name: "shop".into(),
            namespace: namespace.name.clone(),
            values_from: Vec::new(),
            capabilities: Some(capabilities()),
        };
        let request = chart_request(&repository.spec, helm, &context);
        let harness = Harness::new().await;
        let objects = harness.render(&example, &request).await.unwrap();
        let kinds: Vec<&str> = objects.iter().filter_map(|o| o["kind"].as_str()).collect();
        assert_eq!(kinds, ["PodDisruptionBudget", "Service", "Deployment"]);
        let deployment = &objects[2];
        assert_eq!(deployment["spec"]["replicas"], 3, "the production values");
        assert!(
            deployment
                .to_string()
                .contains("Welcome to the production shop")
        );
        let params = PatchParams::apply("driftless-examples-test").dry_run();
        for mut object in objects {
            let (group, version) = object["apiVersion"]
                .as_str()
                .unwrap()
                .rsplit_once('/')
                .unwrap_or(("", object["apiVersion"].as_str().unwrap()));
            let gvk = GroupVersionKind::gvk(group, version, object["kind"].as_str().unwrap());
            let (resource, _) = pinned_kind(&namespace.client, &gvk).await.unwrap();
            object["metadata"]["namespace"] = json!(namespace.name);
            let name = object["metadata"]["name"].as_str().unwrap().to_owned();
            let api: Api<DynamicObject> =
                Api::namespaced_with(namespace.client.clone(), &namespace.name, &resource);
            api.patch(&name, &params, &Patch::Apply(&object))
                .await
                .unwrap_or_else(|e| panic!("the apiserver rejects {name}: {e}"));
        }
    }
}

#[test]
fn driftless_version_names_the_helm_it_would_use() {
    let found = std::process::Command::new(env!("CARGO_BIN_EXE_driftless"))
        .args(["version", "--helm-binary"])
        .arg(helm_binary())
        .output()
        .unwrap();
    let text = String::from_utf8(found.stdout).unwrap();
    assert!(text.contains("helm v3.22.0 ("), "{text}");
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_driftless"))
        .args(["version", "--helm-binary", "/nonexistent/helm"])
        .output()
        .unwrap();
    let text = String::from_utf8(missing.stdout).unwrap();
    assert!(text.contains("helm is not available"), "{text}");
}
