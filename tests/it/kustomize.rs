//! Kustomize rendering against the real pinned `kustomize` binary (built by
//! `tests/cluster/build.sh`), without a cluster:
//! - differential: every kustomization of the public repositories under
//!   `tests/fixtures/kustomize/` renders through driftless's sandbox to the same objects as a
//!   plain `kustomize build` of the same tree;
//! - hostile: each sandbox rule refuses its attack before any process runs and leaves nothing
//!   behind.

use crate::support;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use driftless::{
    render::{Refusal, RenderError, RenderOptions, RenderSettings, Renderer, RepoPath},
    telemetry::metrics::Metrics,
};
use serde_json::Value;
use support::dir_tree::DirTree;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kustomize")
}

fn kustomize_binary() -> PathBuf {
    let binary = support::cluster::binaries_dir().join("kustomize");
    assert!(
        binary.is_file(),
        "{} is missing: tests/cluster/build.sh builds it",
        binary.display()
    );
    binary
}

struct Harness {
    renderer: Renderer,
    metrics: Metrics,
    work_parent: tempfile::TempDir,
}

impl Harness {
    async fn new() -> Self {
        let work_parent = tempfile::tempdir().unwrap();
        let metrics = Metrics::default();
        let settings = RenderSettings {
            kustomize_binary: Some(kustomize_binary()),
            work_dir: Some(work_parent.path().to_owned()),
            ..RenderSettings::default()
        };
        let renderer = Renderer::new(settings, metrics.clone()).await;
        renderer
            .kustomize()
            .expect("the pinned kustomize is usable");
        Self {
            renderer,
            metrics,
            work_parent,
        }
    }

    async fn render(&self, repository: &Path, path: &str) -> Result<Vec<Value>, Vec<RenderError>> {
        let source = Arc::new(DirTree {
            root: repository.to_owned(),
        });
        let rendered = self
            .renderer
            .render(source, path, &RenderOptions::default())
            .await
            .map_err(|errors| errors.0)?;
        let mut documents = Vec::new();
        for unit in &rendered.units {
            documents.extend(parse_stream(&unit.output));
        }
        Ok(documents)
    }

    /// Nothing of any render is left on disk.
    fn assert_no_work_dir_left(&self) {
        let left: Vec<_> = std::fs::read_dir(self.work_parent.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "work directories left behind: {left:?}");
    }
}

fn parse_stream(bytes: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(bytes).expect("kustomize prints UTF-8");
    serde_saphyr::from_multiple::<Value>(text)
        .expect("kustomize prints valid YAML")
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// Every directory under `dir` holding a kustomization file, relative to `dir`.
fn kustomization_dirs(dir: &Path, relative: &str, found: &mut Vec<String>) {
    let names = ["kustomization.yaml", "kustomization.yml", "Kustomization"];
    if names.iter().any(|n| dir.join(n).is_file()) {
        found.push(relative.to_owned());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let child = if relative.is_empty() {
            name
        } else {
            format!("{relative}/{name}")
        };
        kustomization_dirs(&path, &child, found);
    }
}

/// `kustomize build` as a user runs it: its default load restrictor, straight on the files.
fn kustomize_build(dir: &Path) -> Result<Vec<Value>, String> {
    let output = std::process::Command::new(kustomize_binary())
        .arg("build")
        .arg(dir)
        .output()
        .unwrap();
    if output.status.success() {
        Ok(parse_stream(&output.stdout))
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// Kustomizations of the corpus that driftless refuses on purpose, with the rule.
fn expected_refusals() -> BTreeMap<&'static str, Refusal> {
    BTreeMap::from([("kustomize/examples/loadHttp", Refusal::Remote)])
}

#[tokio::test]
async fn real_repositories_render_to_the_objects_kustomize_build_prints() {
    let harness = Harness::new().await;
    let refusals = expected_refusals();
    let mut compared = 0;
    let mut objects = 0;
    let mut empty = Vec::new();
    let mut both_failed = Vec::new();
    let mut repositories: Vec<_> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    repositories.sort();
    for repository in repositories {
        let name = repository
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let mut units = Vec::new();
        kustomization_dirs(&repository, "", &mut units);
        for unit in units {
            let label = format!("{name}/{unit}");
            let ours = harness.render(&repository, &unit).await;
            if let Some(rule) = refusals.get(label.as_str()) {
                let errors = ours.expect_err(&label);
                assert!(
                    matches!(&errors[..], [RenderError::Refused { reason, .. }] if reason == rule),
                    "{label}: expected a {rule:?} refusal, got {errors:?}"
                );
                continue;
            }
            match (kustomize_build(&repository.join(&unit)), ours) {
                (Ok(expected), Ok(actual)) => {
                    assert_eq!(actual, expected, "{label}: objects differ");
                    // Flux's bootstrap placeholders render nothing: equal, but proving little.
                    if expected.is_empty() {
                        empty.push(label);
                    } else {
                        compared += 1;
                        objects += expected.len();
                    }
                }
                (Err(reason), Err(errors)) => {
                    both_failed.push(format!("{label}: {reason} / {errors:?}"))
                }
                (Ok(_), Err(errors)) => {
                    panic!("{label}: kustomize builds it, driftless fails: {errors:?}")
                }
                (Err(reason), Ok(_)) => {
                    panic!("{label}: kustomize fails ({reason}), driftless renders it")
                }
            }
        }
    }
    eprintln!(
        "{compared} kustomizations ({objects} objects) equal; empty: {empty:?}; \
         both failed: {both_failed:#?}"
    );
    assert!(compared >= 30, "only {compared} kustomizations compared");
    assert!(
        both_failed.len() <= 3,
        "more corpus kustomizations fail than expected: {both_failed:#?}"
    );
    harness.assert_no_work_dir_left();
}

/// Writes `files` (path → contents; contents `-> target` make a symlink) into a fresh
/// repository directory.
fn repository(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, contents) in files {
        let target = dir.path().join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        match contents.strip_prefix("-> ") {
            Some(link) => std::os::unix::fs::symlink(link, &target).unwrap(),
            None => std::fs::write(&target, contents).unwrap(),
        }
    }
    dir
}

const CONFIG_MAP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  a: b\n";

/// One attack per sandbox rule: the kustomization at `app/` and what it must be refused for.
/// An attack's name, the repository's files, and the rule that must refuse it.
type Attack = (&'static str, Vec<(&'static str, &'static str)>, Refusal);

fn attacks() -> Vec<Attack> {
    let k = "app/kustomization.yaml";
    vec![
        (
            "remote URL resource",
            vec![(k, "resources:\n- https://raw.example.com/x.yaml\n")],
            Refusal::Remote,
        ),
        (
            "remote git base",
            vec![(
                k,
                "resources:\n- github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v5.8.2\n",
            )],
            Refusal::Remote,
        ),
        (
            "go-getter base",
            vec![(k, "resources:\n- git::https://example.com/repo.git//base\n")],
            Refusal::Remote,
        ),
        (
            "scp-like base",
            vec![(k, "components:\n- git@example.com:org/repo.git\n")],
            Refusal::Remote,
        ),
        (
            "remote patch file",
            vec![(k, "patches:\n- path: https://example.com/patch.yaml\n")],
            Refusal::Remote,
        ),
        (
            "absolute resource",
            vec![(k, "resources:\n- /etc/passwd\n")],
            Refusal::Absolute,
        ),
        (
            "absolute generator source",
            vec![(
                k,
                "configMapGenerator:\n- name: x\n  files:\n  - passwd=/etc/passwd\n",
            )],
            Refusal::Absolute,
        ),
        (
            "base above the repository",
            vec![(k, "resources:\n- ../../outside\n")],
            Refusal::LeavesRepository,
        ),
        (
            "env file above the repository",
            vec![(
                k,
                "secretGenerator:\n- name: x\n  envs:\n  - ../../../.env\n",
            )],
            Refusal::LeavesRepository,
        ),
        (
            "patch outside the kustomization",
            vec![
                (
                    k,
                    "resources:\n- cm.yaml\npatches:\n- path: ../other/patch.yaml\n",
                ),
                ("app/cm.yaml", CONFIG_MAP),
                ("other/patch.yaml", CONFIG_MAP),
            ],
            Refusal::OutsideKustomization,
        ),
        (
            "resource file outside the kustomization",
            vec![
                (k, "resources:\n- ../other/cm.yaml\n"),
                ("other/cm.yaml", CONFIG_MAP),
            ],
            Refusal::OutsideKustomization,
        ),
        (
            "symlinked resource",
            vec![
                (k, "resources:\n- cm.yaml\n"),
                ("app/cm.yaml", "-> /etc/passwd"),
            ],
            Refusal::Symlink,
        ),
        (
            "symlinked base",
            vec![(k, "resources:\n- base\n"), ("app/base", "-> /etc")],
            Refusal::Symlink,
        ),
        (
            "symlinked generator source",
            vec![
                (
                    k,
                    "configMapGenerator:\n- name: x\n  files:\n  - key=secret\n",
                ),
                ("app/secret", "-> /proc/self/environ"),
            ],
            Refusal::Symlink,
        ),
        (
            "Helm chart",
            vec![(
                k,
                "helmCharts:\n- name: podinfo\n  repo: https://stefanprodan.github.io/podinfo\n",
            )],
            Refusal::Helm,
        ),
        (
            "Helm inflation generator",
            vec![
                (k, "generators:\n- helm.yaml\n"),
                (
                    "app/helm.yaml",
                    "apiVersion: builtin\nkind: HelmChartInflationGenerator\nmetadata:\n  name: x\nchartName: podinfo\n",
                ),
            ],
            Refusal::Helm,
        ),
        (
            "exec plugin",
            vec![
                (k, "transformers:\n- plugin.yaml\n"),
                (
                    "app/plugin.yaml",
                    "apiVersion: someteam.example.com/v1\nkind: ChartInflator\nmetadata:\n  name: x\n",
                ),
            ],
            Refusal::Plugin,
        ),
        (
            "KRM function",
            vec![(
                k,
                "generators:\n- |-\n  apiVersion: builtin\n  kind: ConfigMapGenerator\n  metadata:\n    name: x\n    annotations:\n      config.kubernetes.io/function: |\n        exec:\n          path: /bin/sh\n",
            )],
            Refusal::Plugin,
        ),
        (
            "unknown directory as a base",
            vec![
                (k, "resources:\n- ../plain\n"),
                ("plain/cm.yaml", CONFIG_MAP),
            ],
            Refusal::NotAKustomization,
        ),
    ]
}

#[tokio::test]
async fn every_sandbox_rule_refuses_its_attack_before_anything_runs() {
    let harness = Harness::new().await;
    for (attack, files, rule) in attacks() {
        let repo = repository(&files);
        let errors = harness.render(repo.path(), "app").await.expect_err(attack);
        let [RenderError::Refused { reason, file, .. }] = &errors[..] else {
            panic!("{attack}: expected one refusal, got {errors:?}");
        };
        assert_eq!(reason, &rule, "{attack}: {errors:?}");
        assert!(file.starts_with("app/"), "{attack}: names {file}");
        let message = errors[0].to_string();
        assert!(
            !message.contains(&*repo.path().to_string_lossy()),
            "{attack}: {message}"
        );
    }
    assert_eq!(
        harness.renderer.renders_run(),
        0,
        "kustomize ran on hostile input"
    );
    let refused = harness.metrics.render();
    assert!(
        refused.contains("driftless_render_total{renderer=\"kustomize\",outcome=\"refused\"} 19"),
        "{refused}"
    );
    harness.assert_no_work_dir_left();
}

#[tokio::test]
async fn a_path_through_a_symlinked_directory_reads_nothing_outside() {
    let harness = Harness::new().await;
    // `linked/passwd` resolves lexically inside the kustomization, but `linked` is a symlink:
    // it is not materialized, so the build finds no such file and leaks nothing.
    let repo = repository(&[
        (
            "app/kustomization.yaml",
            "resources:\n- cm.yaml\nconfigMapGenerator:\n- name: x\n  files:\n  - linked/passwd\n",
        ),
        ("app/cm.yaml", CONFIG_MAP),
        ("app/linked", "-> /etc"),
    ]);
    let errors = harness
        .render(repo.path(), "app")
        .await
        .expect_err("no such file");
    let message = errors[0].to_string();
    assert!(matches!(errors[0], RenderError::Failed { .. }), "{message}");
    assert!(!message.contains("root:"), "{message}");
    assert!(
        !message.contains(&*repo.path().to_string_lossy()),
        "{message}"
    );
    assert!(!message.contains("driftless-render-"), "{message}");
    harness.assert_no_work_dir_left();
}

#[tokio::test]
async fn kustomize_errors_name_repository_paths_never_the_work_directory() {
    let harness = Harness::new().await;
    let repo = repository(&[
        (
            "app/kustomization.yaml",
            "resources:\n- cm.yaml\npatches:\n- path: missing.yaml\n",
        ),
        ("app/cm.yaml", CONFIG_MAP),
    ]);
    let errors = harness
        .render(repo.path(), "app")
        .await
        .expect_err("missing patch");
    let message = errors[0].to_string();
    assert!(matches!(errors[0], RenderError::Failed { .. }), "{message}");
    assert!(message.contains("app/missing.yaml"), "{message}");
    assert!(
        !message.contains("driftless-render-") && !message.contains("/tmp"),
        "{message}"
    );
}

#[tokio::test]
async fn an_unchanged_input_renders_once_whatever_else_the_commit_changes() {
    let harness = Harness::new().await;
    let repo = repository(&[
        (
            "app/kustomization.yaml",
            "resources:\n- cm.yaml\nnamePrefix: p-\n",
        ),
        ("app/cm.yaml", CONFIG_MAP),
        ("README.md", "one"),
    ]);
    let first = harness.render(repo.path(), "app").await.unwrap();
    let again = harness.render(repo.path(), "app").await.unwrap();
    std::fs::write(repo.path().join("README.md"), "two").unwrap();
    let other_commit = harness.render(repo.path(), "app").await.unwrap();
    assert_eq!(first, again);
    assert_eq!(first, other_commit);
    assert_eq!(first[0]["metadata"]["name"], "p-app");
    assert_eq!(harness.renderer.renders_run(), 1);
    std::fs::write(
        repo.path().join("app/cm.yaml"),
        CONFIG_MAP.replace("a: b", "a: c"),
    )
    .unwrap();
    let changed = harness.render(repo.path(), "app").await.unwrap();
    assert_eq!(changed[0]["data"]["a"], "c");
    assert_eq!(harness.renderer.renders_run(), 2);
    let text = harness.metrics.render();
    assert!(text.contains("outcome=\"cached\"} 2"), "{text}");
    assert!(text.contains("outcome=\"success\"} 2"), "{text}");
    assert!(
        text.contains("driftless_render_duration_seconds_count{renderer=\"kustomize\"} 2"),
        "{text}"
    );
}

#[tokio::test]
async fn a_path_without_kustomization_renders_each_kustomized_subdirectory_as_a_unit() {
    let harness = Harness::new().await;
    let repo = repository(&[
        ("deploy/plain.yaml", CONFIG_MAP),
        (
            "deploy/one/kustomization.yaml",
            "resources:\n- cm.yaml\nnameSuffix: -one\n",
        ),
        ("deploy/one/cm.yaml", CONFIG_MAP),
        (
            "deploy/one/nested/kustomization.yaml",
            "resources:\n- ../cm.yaml\n",
        ),
        (
            "deploy/group/two/Kustomization",
            "resources:\n- cm.yaml\nnameSuffix: -two\n",
        ),
        ("deploy/group/two/cm.yaml", CONFIG_MAP),
    ]);
    let source = Arc::new(DirTree {
        root: repo.path().to_owned(),
    });
    let rendered = harness
        .renderer
        .render(source, "deploy", &RenderOptions::default())
        .await
        .unwrap();
    assert_eq!(rendered.layout.units, ["deploy/group/two", "deploy/one"]);
    let path = |p: &str| RepoPath::parse(p).unwrap();
    assert_eq!(
        rendered.layout.unit_of(&path("deploy/one/nested/x.yaml")),
        Some(&path("deploy/one"))
    );
    assert_eq!(rendered.layout.unit_of(&path("deploy/plain.yaml")), None);
    let names: Vec<Value> = rendered
        .units
        .iter()
        .flat_map(|u| parse_stream(&u.output))
        .map(|o| o["metadata"]["name"].clone())
        .collect();
    assert_eq!(names, ["app-two", "app-one"]);
}

#[tokio::test]
async fn the_network_stays_closed_even_for_input_that_passed_the_checks() {
    use driftless::render::sandbox::{ProcessLimits, WorkDir, run};
    // Bypasses the Rust checks on purpose: the process itself must not reach anything.
    let work = WorkDir::create(None).unwrap();
    work.write_file(
        &RepoPath::parse("kustomization.yaml").unwrap(),
        b"resources:\n- https://raw.githubusercontent.com/kubernetes-sigs/kustomize/master/examples/helloWorld/configMap.yaml\n",
    )
    .unwrap();
    let limits = ProcessLimits {
        timeout: std::time::Duration::from_secs(20),
        memory_bytes: 1024 * 1024 * 1024,
        max_stdout_bytes: 1024 * 1024,
        max_stderr_bytes: 64 * 1024,
    };
    let started = std::time::Instant::now();
    let args = ["build".into(), ".".into()];
    let finished = run(&kustomize_binary(), &args, &work, &limits)
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&finished.stderr);
    assert!(!finished.status.success(), "downloaded a remote resource");
    assert!(
        stderr.contains("127.0.0.1:9") || stderr.contains("proxy"),
        "{stderr}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
}

#[tokio::test]
async fn without_kustomize_plain_yaml_renders_and_kustomizations_fail_clearly() {
    let metrics = Metrics::default();
    let settings = RenderSettings {
        kustomize_binary: Some("/nonexistent/kustomize".into()),
        ..RenderSettings::default()
    };
    let renderer = Renderer::new(settings, metrics).await;
    assert!(
        matches!(renderer.kustomize(), Err(RenderError::Unavailable { reason, .. }) if reason.contains("/nonexistent/kustomize")),
        "{:?}",
        renderer.kustomize()
    );
    let repo = repository(&[
        ("plain/cm.yaml", CONFIG_MAP),
        ("app/kustomization.yaml", "resources:\n- cm.yaml\n"),
        ("app/cm.yaml", CONFIG_MAP),
    ]);
    let source = Arc::new(DirTree {
        root: repo.path().to_owned(),
    });
    let plain = renderer
        .render(source.clone(), "plain", &RenderOptions::default())
        .await
        .unwrap();
    assert!(plain.units.is_empty());
    let errors = renderer
        .render(source, "app", &RenderOptions::default())
        .await
        .unwrap_err();
    let message = errors.to_string();
    assert!(
        matches!(errors.0[..], [RenderError::Unavailable { .. }]),
        "{message}"
    );
    assert!(message.contains("/nonexistent/kustomize"), "{message}");
}

#[tokio::test]
async fn many_requests_for_one_input_share_one_render() {
    let harness = Harness::new().await;
    let repo = repository(&[
        (
            "app/kustomization.yaml",
            "resources:\n- cm.yaml\nnamePrefix: shared-\n",
        ),
        ("app/cm.yaml", CONFIG_MAP),
    ]);
    let renders = (0..10).map(|_| harness.render(repo.path(), "app"));
    let results = futures::future::join_all(renders).await;
    for result in &results {
        assert_eq!(
            result.as_ref().unwrap()[0]["metadata"]["name"],
            "shared-app"
        );
    }
    assert_eq!(
        harness.renderer.renders_run(),
        1,
        "ten GitRepositories, one kustomize run"
    );
}

#[test]
fn driftless_version_names_the_kustomize_it_would_use() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_driftless"))
        .arg("version")
        .arg("--kustomize-binary")
        .arg(kustomize_binary())
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("kustomize v5.8.2 (")),
        "{text}"
    );
    let missing = std::process::Command::new(env!("CARGO_BIN_EXE_driftless"))
        .args(["version", "--kustomize-binary", "/nonexistent/kustomize"])
        .output()
        .unwrap();
    let text = String::from_utf8(missing.stdout).unwrap();
    assert!(text.contains("kustomize is not available"), "{text}");
}

// ---- against the real cluster ----

mod cluster {
    use std::time::Duration;

    use driftless::{api::GitRepository, render::RenderSettings, telemetry::metrics::Metrics};
    use k8s_openapi::api::{apps::v1::Deployment, core::v1::ConfigMap};
    use kube::api::ListParams;
    use serde_json::json;

    use super::support::{
        cluster::{TestNamespace, install_crds},
        controller::RunningController,
        git::{GitRepos, HttpGitServer, HttpOptions, TestRepo},
        objects::applied_at,
        waiting::wait_for_named,
    };

    fn start_controller(namespace: &TestNamespace, metrics: Metrics) -> RunningController {
        RunningController::start_with_metrics(
            &namespace.name,
            |settings| {
                settings.default_interval = Duration::from_secs(1);
                settings.render = RenderSettings {
                    kustomize_binary: Some(super::kustomize_binary()),
                    ..RenderSettings::default()
                };
            },
            metrics,
        )
    }

    const BASE: &str = "resources:\n- deployment.yaml\nconfigMapGenerator:\n- name: app-config\n  files:\n  - app.properties\n";
    const OVERLAY: &str = "resources:\n- ../../base\nnamePrefix: prod-\nlabels:\n- pairs:\n    tier: web\nimages:\n- name: example.invalid/web\n  newTag: \"2\"\n";
    const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: example.invalid/web:1
        envFrom:
        - configMapRef:
            name: app-config
";

    fn push(repo: &TestRepo, greeting: &str, overlay: &str) -> String {
        let properties = format!("greeting={greeting}\n");
        repo.commit(
            &format!("greeting {greeting}"),
            &[
                ("base/kustomization.yaml", BASE),
                ("base/deployment.yaml", DEPLOYMENT),
                ("base/app.properties", &properties),
                ("overlays/prod/kustomization.yaml", overlay),
                ("README.md", greeting),
            ],
        )
    }

    /// Kustomize renders under the load of the whole suite: a longer deadline than the rest.
    async fn wait_for(
        namespace: &TestNamespace,
        what: &str,
        check: impl Fn(&GitRepository) -> bool,
    ) -> GitRepository {
        wait_for_named(namespace, "app", what, Duration::from_secs(90), check).await
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

    /// The generated ConfigMaps' names, and the one the Deployment reads.
    async fn rollout(namespace: &TestNamespace) -> (Vec<String>, String) {
        let configmaps = namespace
            .api::<ConfigMap>()
            .list(&ListParams::default().labels("tier=web"))
            .await
            .unwrap();
        let mut names: Vec<String> = configmaps
            .items
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect();
        names.sort();
        let deployment = namespace.api::<Deployment>().get("prod-web").await.unwrap();
        let spec = deployment.spec.unwrap().template.spec.unwrap();
        let container = &spec.containers[0];
        assert_eq!(container.image.as_deref(), Some("example.invalid/web:2"));
        let reference = container.env_from.as_ref().unwrap()[0]
            .config_map_ref
            .as_ref()
            .unwrap()
            .name
            .clone();
        (names, reference)
    }

    fn count(metrics: &Metrics, outcome: &str) -> u64 {
        let text = metrics.render();
        let series =
            format!("driftless_render_total{{renderer=\"kustomize\",outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .map_or(0, |v| v.trim().parse().unwrap())
    }

    /// `examples/kustomize/`: each overlay renders as `kustomize build` does, and every
    /// rendered object passes a server-side dry run (namespaced ones moved into the test's
    /// namespace).
    #[tokio::test]
    async fn the_kustomize_example_renders_and_passes_a_server_side_dry_run() {
        use kube::{
            Api,
            api::{DynamicObject, GroupVersionKind, Patch, PatchParams},
            discovery::{Scope, pinned_kind},
        };
        let namespace = TestNamespace::create("kustomize-example").await;
        let harness = super::Harness::new().await;
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kustomize");
        let params = PatchParams::apply("driftless-examples-test").dry_run();
        for overlay in ["deploy/overlays/staging", "deploy/overlays/production"] {
            let ours = harness.render(&example, overlay).await.unwrap();
            assert_eq!(
                ours,
                super::kustomize_build(&example.join(overlay)).unwrap(),
                "{overlay}"
            );
            let kinds: Vec<&str> = ours.iter().filter_map(|o| o["kind"].as_str()).collect();
            assert_eq!(
                kinds,
                ["Namespace", "ConfigMap", "Service", "Deployment"],
                "{overlay}"
            );
            for mut object in ours {
                let (group, version) = object["apiVersion"]
                    .as_str()
                    .unwrap()
                    .rsplit_once('/')
                    .unwrap_or(("", object["apiVersion"].as_str().unwrap()));
                let gvk = GroupVersionKind::gvk(group, version, object["kind"].as_str().unwrap());
                let (resource, capabilities) = pinned_kind(&namespace.client, &gvk).await.unwrap();
                let name = object["metadata"]["name"].as_str().unwrap().to_owned();
                let api: Api<DynamicObject> = match capabilities.scope {
                    Scope::Cluster => Api::all_with(namespace.client.clone(), &resource),
                    Scope::Namespaced => {
                        object["metadata"]["namespace"] = json!(namespace.name);
                        Api::namespaced_with(namespace.client.clone(), &namespace.name, &resource)
                    }
                };
                api.patch(&name, &params, &Patch::Apply(&object))
                    .await
                    .unwrap_or_else(|e| panic!("{overlay}: the apiserver rejects {name}: {e}"));
            }
        }
    }

    #[tokio::test]
    async fn a_generated_config_map_rolls_out_under_a_new_name_and_the_old_one_is_pruned() {
        install_crds().await;
        let namespace = TestNamespace::create("kustomize-rollout").await;
        let repos = GitRepos::new();
        let repo = repos.create("app");
        let first = push(&repo, "hello", OVERLAY);
        let server = HttpGitServer::start(repos.root(), HttpOptions::default());
        let metrics = Metrics::default();
        let _controller = start_controller(&namespace, metrics.clone());
        namespace
            .create_git_repository(
                "app",
                json!({
                    "url": server.url_for(&repo), "path": "overlays/prod", "interval": "1s",
                    "commonMetadata": { "labels": { "owner": "team-a" }, "annotations": { "team": "a" } },
                }),
            )
            .await;

        let converged = wait_for(&namespace, "the overlay", |r| applied_at(r, &first)).await;
        assert_eq!(ready(&converged).0, "True", "{:?}", ready(&converged));
        let status = converged.status.as_ref().unwrap();
        assert_eq!(
            status.last_applied_renderer.as_deref(),
            Some("kustomize v5.8.2")
        );
        let deployment = namespace.api::<Deployment>().get("prod-web").await.unwrap();
        let labels = deployment.metadata.labels.unwrap();
        assert_eq!(
            labels.get("owner").map(String::as_str),
            Some("team-a"),
            "commonMetadata"
        );
        assert_eq!(
            labels.get("tier").map(String::as_str),
            Some("web"),
            "the overlay's labels"
        );
        let annotations = deployment.metadata.annotations.unwrap();
        assert_eq!(annotations.get("team").map(String::as_str), Some("a"));
        let (names, referenced) = rollout(&namespace).await;
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].starts_with("prod-app-config-"), "{names:?}");
        assert_eq!(referenced, names[0]);

        // Resyncs of the same commit, and a commit that touches only other files, run
        // kustomize zero times.
        let renders = count(&metrics, "success");
        assert_eq!(renders, 1);
        let readme_only = repo.commit(
            "docs only",
            &[
                ("base/kustomization.yaml", BASE),
                ("base/deployment.yaml", DEPLOYMENT),
                ("base/app.properties", "greeting=hello\n"),
                ("overlays/prod/kustomization.yaml", OVERLAY),
                ("README.md", "docs changed"),
            ],
        );
        wait_for(&namespace, "the docs commit", |r| {
            applied_at(r, &readme_only)
        })
        .await;
        let cached_before = count(&metrics, "cached");
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(
            count(&metrics, "cached") > cached_before,
            "no resync happened"
        );
        assert_eq!(
            count(&metrics, "success"),
            renders,
            "a resync ran kustomize"
        );

        let second = push(&repo, "world", OVERLAY);
        wait_for(&namespace, "the new generator input", |r| {
            applied_at(r, &second)
        })
        .await;
        let (names_after, referenced_after) = rollout(&namespace).await;
        assert_eq!(
            names_after.len(),
            1,
            "the old ConfigMap is pruned: {names_after:?}"
        );
        assert_ne!(names_after[0], names[0], "a new hash suffix");
        assert_eq!(referenced_after, names_after[0]);
        let data = namespace
            .api::<ConfigMap>()
            .get(&names_after[0])
            .await
            .unwrap()
            .data
            .unwrap();
        assert_eq!(data["app.properties"], "greeting=world\n");

        // A hostile overlay is refused; nothing of it is written and the last good revision
        // stays.
        let hostile = OVERLAY.replace(
            "resources:\n- ../../base\n",
            "resources:\n- ../../base\n- https://raw.example.com/evil.yaml\n",
        );
        let bad = push(&repo, "evil", &hostile);
        let failed = wait_for(&namespace, "the refusal", |r| {
            r.status
                .as_ref()
                .and_then(|s| s.last_attempted_revision.as_deref())
                .is_some_and(|a| a.ends_with(&bad))
        })
        .await;
        let (status, reason, message) = ready(&failed);
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "BuildFailed"),
            "{message}"
        );
        assert!(
            message.contains("overlays/prod/kustomization.yaml")
                && message.contains("https://raw.example.com/evil.yaml")
                && message.contains("remote resources are not allowed"),
            "{message}"
        );
        let stalled = failed
            .status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .any(|c| c.type_ == "Stalled" && c.status == "True");
        assert!(stalled, "a refused commit needs a new commit: Stalled");
        assert!(
            applied_at(&failed, &second),
            "the last good revision stays applied"
        );
        assert_eq!(rollout(&namespace).await, (names_after, referenced_after));
    }

    /// kustomize's `namespace` transformer cannot know that a custom kind is cluster-scoped and
    /// sets a namespace on it; the apply engine drops it there instead of refusing the object.
    #[tokio::test]
    async fn a_namespace_kustomize_set_on_a_cluster_scoped_custom_kind_is_dropped() {
        use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
        use kube::{Api, api::DeleteParams, core::DynamicObject, discovery::ApiResource};
        install_crds().await;
        let namespace = TestNamespace::create("kustomize-cluster-scoped").await;
        let group = format!("{}.example.com", namespace.name);
        let crd = format!(
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: dials.{group}\nspec:\n  group: {group}\n  scope: Cluster\n  names: {{plural: dials, singular: dial, kind: Dial}}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema: {{type: object, x-kubernetes-preserve-unknown-fields: true}}\n"
        );
        let dial = format!(
            "apiVersion: {group}/v1\nkind: Dial\nmetadata:\n  name: volume-{}\nspec:\n  level: 11\n",
            namespace.name
        );
        let kustomization = format!(
            "namespace: {}\nresources:\n- crd.yaml\n- dial.yaml\n",
            namespace.name
        );
        let repos = GitRepos::new();
        let repo = repos.create("app");
        let first = repo.commit(
            "a cluster-scoped custom kind",
            &[
                ("app/kustomization.yaml", kustomization.as_str()),
                ("app/crd.yaml", crd.as_str()),
                ("app/dial.yaml", dial.as_str()),
            ],
        );
        let server = HttpGitServer::start(repos.root(), HttpOptions::default());
        let _controller = start_controller(&namespace, Metrics::default());
        namespace
            .create_git_repository(
                "app",
                json!({ "url": server.url_for(&repo), "path": "app" }),
            )
            .await;
        let converged = wait_for(&namespace, "the revision", |r| applied_at(r, &first)).await;
        assert_eq!(ready(&converged).0, "True", "{:?}", ready(&converged));
        let resource =
            ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(&group, "v1", "Dial"));
        let dials: Api<DynamicObject> = Api::all_with(namespace.client.clone(), &resource);
        let applied = dials
            .get(&format!("volume-{}", namespace.name))
            .await
            .unwrap();
        assert_eq!(applied.metadata.namespace, None, "applied cluster-scoped");
        let crds: Api<CustomResourceDefinition> = Api::all(namespace.client.clone());
        let _ = crds
            .delete(&format!("dials.{group}"), &DeleteParams::default())
            .await;
    }

    /// A tenant must not publish, through substitution, a Secret its ServiceAccount may not
    /// read: the variables are read as the account the revision is applied as.
    #[tokio::test]
    async fn post_build_reads_variables_as_the_service_account() {
        install_crds().await;
        let namespace = TestNamespace::create("kustomize-postbuild-sa").await;
        namespace
            .create_secret("not-yours", &[("token", b"s3cr3t".as_slice())])
            .await;
        namespace
            .grant_service_account(
                "tenant",
                &["configmaps"],
                &[
                    "get", "list", "watch", "create", "update", "patch", "delete",
                ],
            )
            .await;
        let repos = GitRepos::new();
        let repo = repos.create("app");
        let settings = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  token: ${token}\n";
        let first = repo.commit(
            "substituted",
            &[
                ("app/kustomization.yaml", "resources:\n- settings.yaml\n"),
                ("app/settings.yaml", settings),
            ],
        );
        let server = HttpGitServer::start(repos.root(), HttpOptions::default());
        let _controller = start_controller(&namespace, Metrics::default());
        namespace
            .create_git_repository(
                "app",
                json!({
                    "url": server.url_for(&repo), "path": "app", "serviceAccountName": "tenant",
                    "postBuild": { "substituteFrom": [{ "kind": "Secret", "name": "not-yours" }] },
                }),
            )
            .await;
        let failed = wait_for(&namespace, "the refused read", |r| {
            r.status
                .as_ref()
                .and_then(|s| s.last_attempted_revision.as_deref())
                .is_some_and(|a| a.ends_with(&first))
        })
        .await;
        let (status, reason, message) = ready(&failed);
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "BuildFailed"),
            "{message}"
        );
        assert!(
            message.contains("not-yours") && message.contains("forbidden"),
            "{message}"
        );
        assert!(
            namespace
                .api::<ConfigMap>()
                .get_opt("settings")
                .await
                .unwrap()
                .is_none(),
            "nothing applied with the Secret's value"
        );
    }

    #[tokio::test]
    async fn post_build_substitutes_from_a_config_map_and_a_secret_and_names_a_missing_variable() {
        use kube::api::PostParams;
        install_crds().await;
        let namespace = TestNamespace::create("kustomize-postbuild").await;
        let variables: ConfigMap = serde_json::from_value(json!({
            "metadata": { "name": "cluster-vars" },
            "data": { "cluster_name": "prod-1", "greeting": "from-configmap" },
        }))
        .unwrap();
        namespace
            .api::<ConfigMap>()
            .create(&PostParams::default(), &variables)
            .await
            .unwrap();
        namespace
            .create_secret("secret-vars", &[("token", b"s3cr3t".as_slice())])
            .await;
        let repos = GitRepos::new();
        let repo = repos.create("app");
        let settings = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  cluster: ${cluster_name}\n  token: ${token}\n  region: ${region:=eu-west-1}\n  greeting: ${greeting}\n  literal: $${cluster_name}\n";
        let first = repo.commit(
            "substituted",
            &[
                ("app/kustomization.yaml", "resources:\n- settings.yaml\n"),
                ("app/settings.yaml", settings),
            ],
        );
        let server = HttpGitServer::start(repos.root(), HttpOptions::default());
        let _controller = start_controller(&namespace, Metrics::default());
        namespace
            .create_git_repository(
                "app",
                json!({
                    "url": server.url_for(&repo), "path": "app", "interval": "1s",
                    "postBuild": {
                        "substitute": { "greeting": "inline-wins" },
                        "substituteFrom": [
                            { "kind": "ConfigMap", "name": "cluster-vars" },
                            { "kind": "Secret", "name": "secret-vars" },
                            { "kind": "Secret", "name": "absent", "optional": true },
                        ],
                    },
                }),
            )
            .await;
        let converged = wait_for(&namespace, "the substituted revision", |r| {
            applied_at(r, &first)
        })
        .await;
        assert_eq!(ready(&converged).0, "True", "{:?}", ready(&converged));
        let data = namespace
            .api::<ConfigMap>()
            .get("settings")
            .await
            .unwrap()
            .data
            .unwrap();
        assert_eq!(data["cluster"], "prod-1");
        assert_eq!(data["token"], "s3cr3t");
        assert_eq!(data["region"], "eu-west-1");
        assert_eq!(data["greeting"], "inline-wins");
        assert_eq!(data["literal"], "${cluster_name}");
        // A changed Secret of substituteFrom re-runs the GitRepository at once, long before its
        // interval (raised to an hour here).
        let api = namespace.api::<GitRepository>();
        let patch = json!({ "spec": { "interval": "1h" } });
        api.patch(
            "app",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let secret = json!({ "data": { "token": "cm90YXRlZA==" } }); // "rotated"
        namespace
            .api::<k8s_openapi::api::core::v1::Secret>()
            .patch(
                "secret-vars",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&secret),
            )
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let data = namespace
                .api::<ConfigMap>()
                .get("settings")
                .await
                .unwrap()
                .data
                .unwrap();
            if data["token"] == "rotated" {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the Secret change was not picked up"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }

        let patch = json!({ "spec": { "interval": "1s" } });
        api.patch(
            "app",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
        let broken = format!("{settings}  zone: ${{undefined_zone}}\n");
        let bad = repo.commit(
            "unset variable",
            &[
                ("app/kustomization.yaml", "resources:\n- settings.yaml\n"),
                ("app/settings.yaml", &broken),
            ],
        );
        let failed = wait_for(&namespace, "the unset variable", |r| {
            r.status
                .as_ref()
                .and_then(|s| s.last_attempted_revision.as_deref())
                .is_some_and(|a| a.ends_with(&bad))
        })
        .await;
        let (status, reason, message) = ready(&failed);
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "BuildFailed"),
            "{message}"
        );
        assert!(
            message.contains("\"undefined_zone\"")
                && message.contains("ConfigMap settings")
                && message.contains("app (kustomize build)"),
            "{message}"
        );
        assert!(
            applied_at(&failed, &first),
            "the last good revision stays applied"
        );
    }
}

const WEB: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.0
      - name: cache
        image: redis
";

fn edits() -> driftless::render::KustomizationEdits {
    driftless::render::KustomizationEdits {
        name_prefix: Some("new-".into()),
        name_suffix: Some("-x".into()),
        images: vec![
            serde_json::json!({ "name": "nginx", "newTag": "2.0" }),
            serde_json::json!({ "name": "redis", "newName": "valkey", "newTag": "8" }),
        ],
        patches: vec![serde_json::json!({
            "patch": "- op: replace\n  path: /spec/replicas\n  value: 3\n",
            "target": { "kind": "Deployment" },
        })],
        components: vec!["../components/team".into()],
    }
}

async fn render_with(
    harness: &Harness,
    repository: &Path,
    path: &str,
    kustomization: driftless::render::KustomizationEdits,
) -> Result<Vec<Value>, Vec<RenderError>> {
    let source = Arc::new(DirTree {
        root: repository.to_owned(),
    });
    let options = RenderOptions { kustomization };
    let rendered = harness
        .renderer
        .render(source, path, &options)
        .await
        .map_err(|e| e.0)?;
    Ok(rendered
        .units
        .iter()
        .flat_map(|u| parse_stream(&u.output))
        .collect())
}

const COMPONENT: &str = "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nlabels:\n- pairs:\n    team: a\n";

#[tokio::test]
async fn spec_fields_edit_the_kustomization_as_flux_does() {
    let harness = Harness::new().await;
    let original = repository(&[
        (
            "app/kustomization.yaml",
            "resources:\n- web.yaml\nnamePrefix: old-\nimages:\n- name: nginx\n  newTag: \"1.5\"\n",
        ),
        ("app/web.yaml", WEB),
        ("components/team/kustomization.yaml", COMPONENT),
    ]);
    // The same kustomization with Flux's edits written in by hand: prefix and suffix replaced,
    // images merged by name, the patch and the component appended.
    let edited_by_hand = repository(&[
        (
            "app/kustomization.yaml",
            "resources:\n- web.yaml\nnamePrefix: new-\nnameSuffix: -x\nimages:\n- name: nginx\n  newTag: \"2.0\"\n- name: redis\n  newName: valkey\n  newTag: \"8\"\npatches:\n- patch: |\n    - op: replace\n      path: /spec/replicas\n      value: 3\n  target:\n    kind: Deployment\ncomponents:\n- ../components/team\n",
        ),
        ("app/web.yaml", WEB),
        ("components/team/kustomization.yaml", COMPONENT),
    ]);
    let ours = render_with(&harness, original.path(), "app", edits())
        .await
        .unwrap();
    let expected = kustomize_build(&edited_by_hand.path().join("app")).unwrap();
    assert_eq!(ours, expected);
    assert_eq!(ours[0]["metadata"]["name"], "new-web-x");
    assert_eq!(ours[0]["spec"]["replicas"], 3);
    assert_eq!(ours[0]["metadata"]["labels"]["team"], "a");
    let images: Vec<&Value> = ours[0]["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["image"])
        .collect();
    assert_eq!(images, ["nginx:2.0", "valkey:8"]);
}

#[tokio::test]
async fn spec_fields_on_a_plain_path_generate_its_kustomization() {
    let harness = Harness::new().await;
    let repo = repository(&[
        ("deploy/web.yaml", WEB),
        ("deploy/config/cm.yaml", CONFIG_MAP),
        ("deploy/config/values.yaml", "replicas: 3\nnot: an object\n"),
        (
            "deploy/sub/kustomization.yaml",
            "resources:\n- cm.yaml\nnameSuffix: -sub\n",
        ),
        ("deploy/sub/cm.yaml", CONFIG_MAP),
        (
            "deploy/sub/extra.yaml",
            CONFIG_MAP
                .replace("name: app", "name: never-listed")
                .as_str(),
        ),
        ("components/team/kustomization.yaml", COMPONENT),
    ]);
    let source = Arc::new(DirTree {
        root: repo.path().to_owned(),
    });
    let options = RenderOptions {
        kustomization: edits(),
    };
    let rendered = harness
        .renderer
        .render(source, "deploy", &options)
        .await
        .unwrap();
    assert_eq!(
        rendered.layout.units,
        ["deploy"],
        "one generated unit covers the path"
    );
    let mut names: Vec<String> = rendered
        .units
        .iter()
        .flat_map(|u| parse_stream(&u.output))
        .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["new-app-sub-x", "new-app-x", "new-web-x"]);
}

#[tokio::test]
async fn spec_components_follow_the_sandbox_rules() {
    let harness = Harness::new().await;
    let repo = repository(&[
        ("app/kustomization.yaml", "resources:\n- web.yaml\n"),
        ("app/web.yaml", WEB),
    ]);
    for (component, rule) in [
        ("../../../outside", Refusal::LeavesRepository),
        ("https://example.com/component", Refusal::Remote),
        ("/etc", Refusal::Absolute),
    ] {
        let kustomization = driftless::render::KustomizationEdits {
            components: vec![component.into()],
            ..Default::default()
        };
        let errors = render_with(&harness, repo.path(), "app", kustomization)
            .await
            .expect_err(component);
        assert!(
            matches!(&errors[..], [RenderError::Refused { reason, field, .. }] if *reason == rule && field == "components"),
            "{component}: {errors:?}"
        );
    }
    assert_eq!(harness.renderer.renders_run(), 0);
}

/// Two GitRepositories following one commit with different `spec.ignore` share one renderer
/// (and its cache): each gets the render of the files it sees, never the other's, whichever
/// renders first. The raw tree id is the same for both; what the cache keys on is not.
#[tokio::test]
async fn one_commit_with_different_ignores_renders_what_each_object_sees() {
    use driftless::{
        api::GitRepositorySpec,
        manifests::{Budget, read_manifests},
        revision::{ChartContext, manifest_inputs},
        source::{Limits, read_local_revision},
    };
    let repos = support::git::GitRepos::new();
    let repo = repos.create("ignores");
    let config_map =
        |name: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n");
    let (a, b) = (config_map("a"), config_map("b"));
    repo.commit(
        "two objects",
        &[("app/a.yaml", a.as_str()), ("app/b.yaml", b.as_str())],
    );
    let spec = |ignore: &[&str]| GitRepositorySpec {
        url: "https://example.invalid/ignores.git".into(),
        path: Some("app".into()),
        ignore: ignore.iter().map(|pattern| pattern.to_string()).collect(),
        // A Kustomize field: the path gets a generated kustomization of the files it holds.
        name_prefix: Some("t-".into()),
        ..GitRepositorySpec::default()
    };
    let everything = spec(&[]);
    let without_b = spec(&["b.yaml"]);
    for order in [[&everything, &without_b], [&without_b, &everything]] {
        let harness = Harness::new().await;
        for spec in order {
            let artifact = read_local_revision(
                repo.path(),
                "main",
                "app",
                &spec.ignore,
                Limits::default().tree,
            )
            .expect("the commit reads");
            let inputs =
                manifest_inputs(&harness.renderer, &artifact, spec, &ChartContext::default())
                    .await
                    .unwrap_or_else(|errors| panic!("{errors}"));
            let objects = read_manifests(inputs.files(), &Budget::default())
                .unwrap_or_else(|errors| panic!("{errors}"));
            let names: Vec<_> = objects
                .iter()
                .map(|m| m.object.metadata.name.clone().unwrap_or_default())
                .collect();
            let expected = if spec.ignore.is_empty() {
                vec!["t-a", "t-b"]
            } else {
                vec!["t-a"]
            };
            assert_eq!(names, expected, "ignore {:?}", spec.ignore);
        }
        assert_eq!(
            harness.renderer.renders_run(),
            2,
            "one render for each view of the commit"
        );
        harness.assert_no_work_dir_left();
    }
}
