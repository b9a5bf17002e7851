//! The client commands through the real binary: `build` offline on a real git checkout, and
//! `get`, `reconcile --wait`, `suspend`/`resume`, `events` and `tree` (an inventory, and the
//! dependency graph) against the real cluster with a controller and a git server running.

use crate::support;

use std::{
    path::Path,
    process::{Command, Output},
    time::Duration,
};

use driftless::api::GitRepository;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::json;
use support::{
    cluster::{TestNamespace, install_crds, kubeconfig_path},
    controller::RunningController,
    git::{GitRepos, HttpGitServer, HttpOptions},
    objects::applied_at,
    waiting::wait_for,
};

const CONFIGMAP: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  colour: blue\n";
const EXTRA: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n";
const THIRD: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: third\n";
const SECOND: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: second\n  namespace: elsewhere\ndata: {}\n";

fn driftless(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_driftless"))
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("the driftless binary runs")
}

/// A client command against the test cluster, in `namespace`.
fn driftless_in(namespace: &str, args: &[&str]) -> Output {
    let kubeconfig = kubeconfig_path().to_str().unwrap().to_owned();
    let mut all = args.to_vec();
    all.extend(["--kubeconfig", &kubeconfig, "-n", namespace]);
    driftless(&all)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn build_prints_the_objects_of_a_commit_and_fails_on_a_broken_one() {
    let repos = GitRepos::new();
    let repo = repos.create("app");
    repo.commit(
        "two objects",
        &[
            ("deploy/settings.yaml", CONFIGMAP),
            ("deploy/second.yaml", SECOND),
            ("README.md", "# not a manifest"),
        ],
    );
    let dir = repo.path().to_str().unwrap();

    let built = driftless(&["build", dir, "--path", "deploy"]);
    assert!(built.status.success(), "{}", stderr(&built));
    let text = stdout(&built);
    assert!(
        text.contains("name: settings") && text.contains("name: second"),
        "{text}"
    );
    assert!(text.contains("# Source: deploy/settings.yaml"), "{text}");

    let json = driftless(&["build", dir, "--path", "deploy", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON output");
    let names: Vec<_> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["second", "settings"], "files in path order");

    // The spec file's path and ignore rules apply, as the controller reads them.
    let spec = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        spec.path(),
        "apiVersion: driftless.dev/v1alpha1\nkind: GitRepository\nmetadata:\n  name: app\nspec:\n  url: https://example.invalid/app.git\n  path: deploy\n  ignore: [second.yaml]\n",
    )
    .unwrap();
    let ignored = driftless(&[
        "build",
        dir,
        "--spec-file",
        spec.path().to_str().unwrap(),
        "-o",
        "json",
    ]);
    let list: serde_json::Value = serde_json::from_slice(&ignored.stdout).expect("JSON output");
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "{}",
        stderr(&ignored)
    );

    let first = repo.rev_parse("HEAD");
    repo.commit(
        "broken",
        &[
            ("deploy/settings.yaml", CONFIGMAP),
            ("deploy/broken.yaml", "kind: ConfigMap\nmetadata: {}\n"),
        ],
    );
    let broken = driftless(&["build", dir, "--path", "deploy"]);
    assert_eq!(
        broken.status.code(),
        Some(1),
        "a broken revision fails the check"
    );
    let message = stderr(&broken);
    assert!(
        message.contains("deploy/broken.yaml"),
        "names the file: {message}"
    );
    assert!(stdout(&broken).is_empty(), "prints no objects");

    let earlier = driftless(&["build", dir, "--path", "deploy", "--revision", &first]);
    assert!(
        earlier.status.success(),
        "an earlier commit still builds: {}",
        stderr(&earlier)
    );

    repo.commit_with_links(
        &[("settings.yaml", CONFIGMAP)],
        &[("linked.yaml", "../elsewhere.yaml")],
    );
    let linked = driftless(&["build", dir, "--path", "deploy"]);
    assert_eq!(
        linked.status.code(),
        Some(1),
        "a symlinked manifest fails the build as the controller fails the revision"
    );
    assert!(
        stderr(&linked).contains("deploy/linked.yaml"),
        "{}",
        stderr(&linked)
    );

    let missing = driftless(&["build", dir, "--path", "nowhere"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("nowhere"), "{}", stderr(&missing));
}

#[test]
fn build_of_the_quickstart_example_yields_its_objects() {
    // The example is a directory of this checkout, built from its HEAD like any repository.
    let root = env!("CARGO_MANIFEST_DIR");
    let built = driftless(&[
        "build",
        root,
        "--path",
        "examples/quickstart/deploy",
        "-o",
        "json",
    ]);
    assert!(built.status.success(), "{}", stderr(&built));
    let list: serde_json::Value = serde_json::from_slice(&built.stdout).expect("JSON output");
    let mut kinds: Vec<_> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap().to_owned())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["ConfigMap", "Deployment", "Namespace", "Service"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn get_reconcile_suspend_resume_events_and_tree_against_the_cluster() {
    install_crds().await;
    let namespace = TestNamespace::create("cli").await;
    let ns = namespace.name.clone();
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let first = repo.commit("one object", &[("deploy/settings.yaml", CONFIGMAP)]);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let _controller = RunningController::start(&ns);
    namespace
        .create_git_repository(
            "app",
            json!({ "url": server.url_for(&repo), "path": "deploy", "interval": "1h" }),
        )
        .await;
    wait_for(&namespace, "the first revision", |r| applied_at(r, &first)).await;

    let run = |args: Vec<String>| {
        let ns = ns.clone();
        tokio::task::spawn_blocking(move || {
            driftless_in(&ns, &args.iter().map(String::as_str).collect::<Vec<_>>())
        })
    };
    let get = run(vec!["get".into()]).await.unwrap();
    assert!(get.status.success(), "{}", stderr(&get));
    let table = stdout(&get);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("NAME") && header.contains("READY") && header.contains("REVISION"),
        "{table}"
    );
    let row = table.lines().nth(1).expect("a row for the object");
    assert!(
        row.starts_with("app ")
            && row.contains("True")
            && row.contains(&format!("main@sha1:{}", &first[..7])),
        "{table}"
    );
    let yaml = stdout(
        &run(vec!["get".into(), "app".into(), "-o".into(), "yaml".into()])
            .await
            .unwrap(),
    );
    assert!(
        yaml.contains("kind: GitRepository") && yaml.contains("lastAppliedRevision"),
        "{yaml}"
    );
    let missing = run(vec!["get".into(), "nothing-here".into()])
        .await
        .unwrap();
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));

    // An interval of an hour: only the requested reconcile can apply the push in time.
    let second = repo.commit(
        "two objects",
        &[
            ("deploy/settings.yaml", CONFIGMAP),
            ("deploy/extra.yaml", EXTRA),
        ],
    );
    let reconciled = run(vec![
        "reconcile".into(),
        "app".into(),
        "--wait".into(),
        "--timeout".into(),
        "60s".into(),
    ])
    .await
    .unwrap();
    assert!(
        reconciled.status.success(),
        "{}\n{}",
        stdout(&reconciled),
        stderr(&reconciled)
    );
    assert!(
        stdout(&reconciled).contains(&second),
        "the outcome names the revision: {}",
        stdout(&reconciled)
    );
    assert!(
        stderr(&reconciled).is_empty(),
        "no progress on a pipe: {}",
        stderr(&reconciled)
    );
    assert!(
        namespace
            .api::<ConfigMap>()
            .get_opt("extra")
            .await
            .unwrap()
            .is_some()
    );

    let tree = stdout(&run(vec!["tree".into(), "app".into()]).await.unwrap());
    assert!(
        tree.contains(&format!("namespace {ns}")) && tree.contains("ConfigMap"),
        "{tree}"
    );
    assert!(
        tree.contains("extra ✓ healthy") && tree.contains("settings ✓ healthy"),
        "{tree}"
    );

    let events = stdout(&run(vec!["events".into(), "app".into()]).await.unwrap());
    assert!(
        events.starts_with("LAST SEEN") && events.contains("NewRevision"),
        "{events}"
    );

    let suspended = run(vec!["suspend".into(), "app".into()]).await.unwrap();
    assert!(suspended.status.success(), "{}", stderr(&suspended));
    wait_for(&namespace, "Suspended", |r| r.spec.suspend == Some(true)).await;
    let refused = run(vec!["reconcile".into(), "app".into(), "--wait".into()])
        .await
        .unwrap();
    assert_eq!(
        refused.status.code(),
        Some(1),
        "a suspended object is not reconciled"
    );
    assert!(
        stderr(&refused).contains("suspended"),
        "{}",
        stderr(&refused)
    );
    let third = repo.commit(
        "three",
        &[
            ("deploy/settings.yaml", CONFIGMAP),
            ("deploy/extra.yaml", EXTRA),
            ("deploy/third.yaml", THIRD),
        ],
    );
    let resumed = run(vec!["resume".into(), "app".into()]).await.unwrap();
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    wait_for(&namespace, "the commit pushed while suspended", |r| {
        applied_at(r, &third)
    })
    .await;

    repo.commit("broken", &[("deploy/settings.yaml", CONFIGMAP), ("deploy/broken.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: broken\nspec:\n  ports:\n  - port: 70000\n")]);
    let failed = run(vec![
        "reconcile".into(),
        "app".into(),
        "--wait".into(),
        "--timeout".into(),
        "60s".into(),
    ])
    .await
    .unwrap();
    assert_eq!(
        failed.status.code(),
        Some(1),
        "{}\n{}",
        stdout(&failed),
        stderr(&failed)
    );
    assert!(
        stdout(&failed).contains("broken"),
        "the failure says why: {}",
        stdout(&failed)
    );
}

/// Progress of `reconcile --wait` is for people: shown on a terminal (here tmux's), and the
/// same command on a pipe (the test above) prints none.
#[tokio::test(flavor = "multi_thread")]
async fn reconcile_wait_shows_progress_on_a_terminal() {
    install_crds().await;
    let namespace = TestNamespace::create("cli-tty").await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let first = repo.commit("one object", &[("deploy/settings.yaml", CONFIGMAP)]);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let _controller = RunningController::start(&namespace.name);
    namespace
        .create_git_repository(
            "app",
            json!({ "url": server.url_for(&repo), "path": "deploy", "interval": "1h" }),
        )
        .await;
    wait_for(&namespace, "the first revision", |r| applied_at(r, &first)).await;
    let second = repo.commit(
        "two",
        &[
            ("deploy/settings.yaml", CONFIGMAP),
            ("deploy/extra.yaml", EXTRA),
        ],
    );

    let session = format!("driftless-cli-{}", std::process::id());
    let log = tempfile::NamedTempFile::new().unwrap();
    // tmux gives the command a real terminal; capture-pane reads what a person would see.
    let script = format!(
        "{} reconcile app --wait --timeout 60s --kubeconfig {} -n {}; echo EXIT=$? >> {}; sleep 30",
        env!("CARGO_BIN_EXE_driftless"),
        kubeconfig_path().display(),
        namespace.name,
        log.path().display()
    );
    let started = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "200",
            "-y",
            "20",
            &script,
        ])
        .status()
        .expect("tmux runs");
    assert!(started.success(), "tmux starts a session");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(log.path())
        .unwrap()
        .contains("EXIT=")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "reconcile --wait did not finish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let screen = Command::new("tmux")
        .args(["capture-pane", "-p", "-t", &session])
        .output()
        .unwrap();
    let _ = Command::new("tmux")
        .args(["kill-session", "-t", &session])
        .status();
    let screen = String::from_utf8_lossy(&screen.stdout).into_owned();
    assert!(
        std::fs::read_to_string(log.path())
            .unwrap()
            .contains("EXIT=0"),
        "{screen}"
    );
    assert!(
        screen.contains("◎ reconcile of GitRepository") && screen.contains("requested"),
        "progress on a terminal: {screen}"
    );
    assert!(
        screen.contains(&format!("✔ applied revision main@sha1:{second}")),
        "{screen}"
    );
}

#[test]
fn the_binary_is_a_kubectl_plugin_and_prints_completions() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("kubectl-driftless");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_driftless"), &plugin).unwrap();
    let path = format!(
        "{}:{}:{}",
        dir.path().display(),
        support::cluster::binaries_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let help = Command::new("kubectl")
        .args(["driftless", "get", "--help"])
        .env("PATH", &path)
        .output()
        .expect("kubectl runs");
    assert!(help.status.success(), "{}", stderr(&help));
    assert!(
        stdout(&help).contains("Usage: kubectl driftless get"),
        "{}",
        stdout(&help)
    );

    let completion = driftless(&["completion", "bash"]);
    assert!(completion.status.success());
    assert!(
        stdout(&completion).contains("_driftless"),
        "a bash completion function"
    );
}

/// A namespace with a GitRepository `app` applied by a running controller.
async fn applied_repository(
    test: &str,
) -> (TestNamespace, GitRepos, HttpGitServer, RunningController) {
    install_crds().await;
    let namespace = TestNamespace::create(test).await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let first = repo.commit("one object", &[("deploy/settings.yaml", CONFIGMAP)]);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let controller = RunningController::start(&namespace.name);
    namespace
        .create_git_repository(
            "app",
            json!({ "url": server.url_for(&repo), "path": "deploy" }),
        )
        .await;
    wait_for(&namespace, "the first revision", |r| applied_at(r, &first)).await;
    (namespace, repos, server, controller)
}

async fn run_in(namespace: &TestNamespace, args: &[&str]) -> Output {
    let ns = namespace.name.clone();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        driftless_in(&ns, &args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap()
}

async fn gone(namespace: &TestNamespace) -> bool {
    namespace
        .api::<GitRepository>()
        .get_opt("app")
        .await
        .unwrap()
        .is_none()
}

#[tokio::test(flavor = "multi_thread")]
async fn uninstall_prunes_through_the_running_controller() {
    let (namespace, _repos, _server, _controller) = applied_repository("cli-uninstall").await;
    let removed = run_in(&namespace, &["uninstall", "--timeout", "60s"]).await;
    assert!(
        removed.status.success(),
        "{}\n{}",
        stdout(&removed),
        stderr(&removed)
    );
    assert!(
        stdout(&removed).contains("0 released without the controller"),
        "{}",
        stdout(&removed)
    );
    assert!(gone(&namespace).await);
    assert!(
        namespace
            .api::<ConfigMap>()
            .get_opt("settings")
            .await
            .unwrap()
            .is_none(),
        "pruned"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn uninstall_keep_objects_leaves_what_was_applied() {
    let (namespace, _repos, _server, _controller) = applied_repository("cli-uninstall-keep").await;
    let removed = run_in(
        &namespace,
        &["uninstall", "--keep-objects", "--timeout", "60s"],
    )
    .await;
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert!(gone(&namespace).await);
    assert!(
        namespace
            .api::<ConfigMap>()
            .get_opt("settings")
            .await
            .unwrap()
            .is_some(),
        "kept"
    );
}

/// Without a controller the finalizer would keep the object, and its namespace, Terminating
/// forever; uninstall says what stays and releases it.
#[tokio::test(flavor = "multi_thread")]
async fn uninstall_without_a_controller_releases_the_finalizer_and_says_what_stays() {
    let (namespace, _repos, _server, controller) = applied_repository("cli-uninstall-gone").await;
    drop(controller);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let removed = run_in(&namespace, &["uninstall", "--timeout", "3s"]).await;
    assert!(removed.status.success(), "{}", stderr(&removed));
    let said = stderr(&removed);
    assert!(
        said.contains("leaves 1 applied object(s)") && said.contains("_settings__ConfigMap"),
        "{said}"
    );
    assert!(gone(&namespace).await, "released");
    assert!(
        namespace
            .api::<ConfigMap>()
            .get_opt("settings")
            .await
            .unwrap()
            .is_some(),
        "left behind, as said"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn check_reports_the_crd_and_the_users_rights() {
    install_crds().await;
    let namespace = TestNamespace::create("cli-check").await;
    namespace
        .create_git_repository(
            "app",
            json!({ "url": "https://example.invalid/app.git", "serviceAccountName": "missing" }),
        )
        .await;
    let checked = run_in(&namespace, &["check"]).await;
    let report = stdout(&checked);
    assert!(
        report.contains("✓ CRD gitrepositories.driftless.dev installed, v1alpha1 served"),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "✓ you may manage GitRepositories in namespace {}",
            namespace.name
        )),
        "{report}"
    );
    assert!(
        report.contains("webhook receiver") || report.contains("webhook Service"),
        "a webhook line: {report}"
    );
    assert!(
        report.contains("names ServiceAccount missing, which does not exist")
            && report.contains("fix: "),
        "{report}"
    );
    assert_eq!(
        checked.status.code(),
        Some(1),
        "a ✗ line fails the check: {report}"
    );
}

const OLD: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: old\n";
const TOKEN_V1: &str =
    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: token\nstringData:\n  token: hunter2-first\n";
const TOKEN_V2: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: token\nstringData:\n  token: hunter2-second\n";

#[tokio::test(flavor = "multi_thread")]
async fn diff_previews_creates_changes_prunes_and_masks_secrets() {
    install_crds().await;
    let namespace = TestNamespace::create("cli-diff").await;
    let ns = namespace.name.clone();
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let first = repo.commit(
        "first",
        &[
            ("deploy/settings.yaml", CONFIGMAP),
            ("deploy/old.yaml", OLD),
            ("deploy/token.yaml", TOKEN_V1),
        ],
    );
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let _controller = RunningController::start(&ns);
    namespace
        .create_git_repository(
            "app",
            json!({ "url": server.url_for(&repo), "path": "deploy", "interval": "1h" }),
        )
        .await;
    wait_for(&namespace, "the first revision", |r| applied_at(r, &first)).await;
    let checkout = repo.path().to_str().unwrap().to_owned();

    // The applied revision itself, fetched from the object's repository: nothing to do.
    let same = run_in(&namespace, &["diff", "app"]).await;
    assert_eq!(
        same.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&same),
        stderr(&same)
    );
    assert!(
        stdout(&same).contains("0 to change, 3 unchanged"),
        "{}",
        stdout(&same)
    );

    // A pull request's branch, never pushed to what the controller follows.
    repo.branch("pr", &first);
    let changed_settings = CONFIGMAP.replace("blue", "red");
    repo.commit_on(
        "pr",
        "change",
        &[
            ("deploy/settings.yaml", &changed_settings),
            ("deploy/extra.yaml", EXTRA),
            ("deploy/token.yaml", TOKEN_V2),
        ],
    );
    let preview = run_in(
        &namespace,
        &["diff", "app", "--path", &checkout, "--revision", "pr"],
    )
    .await;
    let text = stdout(&preview);
    assert_eq!(
        preview.status.code(),
        Some(1),
        "changes exit 1: {text}\n{}",
        stderr(&preview)
    );
    assert!(
        text.contains(&format!("~ change v1 ConfigMap {ns}/settings")),
        "{text}"
    );
    assert!(
        text.contains("-  colour: blue") && text.contains("+  colour: red"),
        "a unified diff: {text}"
    );
    assert!(
        text.contains(&format!("+ create v1 ConfigMap {ns}/extra")),
        "{text}"
    );
    assert!(
        text.contains(&format!("- prune ConfigMap {ns}/old")),
        "{text}"
    );
    assert!(
        text.contains(&format!("~ change v1 Secret {ns}/token")) && text.contains("*** (after)"),
        "{text}"
    );
    assert!(
        !text.contains("hunter2") && !text.contains("aHVudGVy"),
        "secret values never shown: {text}"
    );
    assert!(
        namespace
            .api::<ConfigMap>()
            .get_opt("extra")
            .await
            .unwrap()
            .is_none(),
        "a diff writes nothing"
    );
    assert!(
        namespace
            .api::<ConfigMap>()
            .get_opt("old")
            .await
            .unwrap()
            .is_some(),
        "a diff prunes nothing"
    );

    // `--ref`: the same plan from the object's own repository, as the controller posts it on
    // a pull request, without a checkout.
    let by_ref = run_in(&namespace, &["diff", "app", "--ref", "refs/heads/pr"]).await;
    assert_eq!(by_ref.status.code(), Some(1), "{}", stderr(&by_ref));
    assert_eq!(stdout(&by_ref), text, "--ref and --path show one plan");

    // The object's ServiceAccount is used: one without rights makes the preview fail like the apply.
    namespace
        .create_git_repository("tenant", json!({ "url": server.url_for(&repo), "path": "deploy", "serviceAccountName": "nobody", "suspend": true }))
        .await;
    let denied = run_in(
        &namespace,
        &["diff", "tenant", "--path", &checkout, "--revision", "main"],
    )
    .await;
    assert_eq!(
        denied.status.code(),
        Some(2),
        "{}\n{}",
        stdout(&denied),
        stderr(&denied)
    );
    assert!(stderr(&denied).contains("forbidden"), "{}", stderr(&denied));
}

/// `build` renders kustomizations through the controller's renderer: the objects of the
/// example's overlay are the objects `kustomize build` prints for it, generator hash included.
#[test]
fn build_renders_a_kustomize_overlay_like_kustomize_build() {
    let root = env!("CARGO_MANIFEST_DIR");
    let overlay = "examples/kustomize/deploy/overlays/production";
    let kustomize = support::cluster::binaries_dir().join("kustomize");
    assert!(
        kustomize.is_file(),
        "{} is missing: tests/cluster/build.sh builds it",
        kustomize.display()
    );
    let kustomize = kustomize.to_str().unwrap();
    let built = driftless(&[
        "build",
        root,
        "--path",
        overlay,
        "--kustomize-binary",
        kustomize,
        "-o",
        "json",
    ]);
    assert!(built.status.success(), "{}", stderr(&built));
    let list: serde_json::Value = serde_json::from_slice(&built.stdout).expect("JSON output");
    let mut ours: Vec<serde_json::Value> = list["items"].as_array().unwrap().clone();

    let upstream = Command::new(kustomize)
        .arg("build")
        .arg(Path::new(root).join(overlay))
        .output()
        .unwrap();
    assert!(upstream.status.success(), "{}", stderr(&upstream));
    let text = String::from_utf8(upstream.stdout).unwrap();
    let mut theirs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple::<serde_json::Value>(&text)
            .unwrap()
            .into_iter()
            .filter(|d| !d.is_null())
            .collect();
    let key = |v: &serde_json::Value| format!("{}/{}", v["kind"], v["metadata"]["name"]);
    ours.sort_by_key(key);
    theirs.sort_by_key(key);
    assert_eq!(ours, theirs, "the same objects as kustomize build");
    assert!(
        ours.iter()
            .any(|o| o["kind"] == "ConfigMap"
                && o["metadata"]["name"].as_str().unwrap().contains('-')),
        "a generated, hash-suffixed ConfigMap"
    );
}

#[test]
fn build_fetches_a_remote_revision_like_the_controller() {
    let repos = GitRepos::new();
    let repo = repos.create("app");
    repo.commit("one", &[("deploy/settings.yaml", CONFIGMAP)]);
    repo.branch("release", "main");
    repo.commit_on(
        "release",
        "two",
        &[
            ("deploy/settings.yaml", CONFIGMAP),
            ("deploy/extra.yaml", EXTRA),
        ],
    );
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let url = server.url_for(&repo);
    let built = driftless(&[
        "build", "--repo", &url, "--ref", "release", "--path", "deploy", "-o", "json",
    ]);
    assert!(built.status.success(), "{}", stderr(&built));
    assert!(
        stderr(&built).contains("built revision release@sha1:"),
        "{}",
        stderr(&built)
    );
    let list: serde_json::Value = serde_json::from_slice(&built.stdout).expect("JSON output");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let missing = driftless(&[
        "build", "--repo", &url, "--ref", "nowhere", "--path", "deploy",
    ]);
    assert_eq!(missing.status.code(), Some(2), "{}", stderr(&missing));
    assert!(stderr(&missing).contains("nowhere"), "{}", stderr(&missing));
}

/// What `build` prints is what the controller applies: a plain file and a kustomize overlay
/// with a generator, built offline and reconciled by the controller, give the same objects.
#[tokio::test(flavor = "multi_thread")]
async fn build_yields_exactly_what_the_controller_applies() {
    install_crds().await;
    let namespace = TestNamespace::create("cli-build-equals").await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let overlay = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- ../../base\nnamePrefix: prod-\nconfigMapGenerator:\n- name: settings\n  literals:\n  - colour=green\n";
    let base = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- extra.yaml\n";
    let commit = repo.commit(
        "plain and kustomize",
        &[
            ("deploy/plain.yaml", CONFIGMAP),
            ("deploy/prod/kustomization.yaml", overlay),
            ("base/kustomization.yaml", base),
            ("base/extra.yaml", EXTRA),
        ],
    );
    let kustomize = support::cluster::binaries_dir().join("kustomize");
    let built = driftless(&[
        "build",
        repo.path().to_str().unwrap(),
        "--path",
        "deploy",
        "--kustomize-binary",
        kustomize.to_str().unwrap(),
        "-o",
        "json",
    ]);
    assert!(built.status.success(), "{}", stderr(&built));
    let list: serde_json::Value = serde_json::from_slice(&built.stdout).unwrap();
    let items = list["items"].as_array().unwrap().clone();
    let mut built: Vec<String> = items
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    built.sort();
    assert_eq!(built.len(), 3, "{built:?}");

    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let _controller = RunningController::start_rendering(&namespace.name);
    namespace
        .create_git_repository(
            "app",
            json!({ "url": server.url_for(&repo), "path": "deploy" }),
        )
        .await;
    let applied_repository = wait_for(&namespace, "the revision", |r| applied_at(r, &commit)).await;
    let mut applied: Vec<String> = applied_repository
        .status
        .unwrap()
        .inventory
        .iter()
        .map(|entry| {
            let parts: Vec<&str> = entry.id.split('_').collect();
            format!("{}/{}", parts[3], parts[1])
        })
        .collect();
    applied.sort();
    assert_eq!(built, applied, "build printed what the controller applied");
    // The same objects by content, not only by name: every field build printed is live with
    // the same value (the live objects carry more: driftless's labels, server fields).
    let configmaps = namespace.api::<ConfigMap>();
    for item in &items {
        assert_eq!(item["kind"], "ConfigMap", "{item}");
        let name = item["metadata"]["name"].as_str().unwrap();
        let live = serde_json::to_value(configmaps.get(name).await.unwrap()).unwrap();
        assert_eq!(
            live["data"], item["data"],
            "{name}: data differs from build"
        );
        for field in ["labels", "annotations"] {
            let printed = item["metadata"][field]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for (key, value) in printed {
                assert_eq!(
                    live["metadata"][field][&key], value,
                    "{name}: {field} {key} differs from build"
                );
            }
        }
    }
}

/// `get --watch` prints the table, then a row for each change, until it is stopped.
#[tokio::test(flavor = "multi_thread")]
async fn get_watch_prints_a_row_per_change() {
    let (namespace, _repos, _server, _controller) = applied_repository("cli-watch").await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_driftless"))
        .args(["get", "app", "--watch", "-o", "wide", "--kubeconfig"])
        .arg(kubeconfig_path())
        .args(["-n", &namespace.name])
        .env_remove("KUBECONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the driftless binary runs");
    let stdout = child.stdout.take().unwrap();
    let (rows, printed) = std::sync::mpsc::channel::<String>();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let suspended = line.contains(" true ");
            seen.push(line.clone());
            let _ = rows.send(line);
            if suspended {
                break;
            }
        }
        seen
    });
    // The change must come after the watch has printed the object as it was: suspending
    // before that would put `true` in the first table and prove nothing about --watch.
    let first_row = loop {
        let line = printed
            .recv_timeout(Duration::from_secs(30))
            .expect("get --watch printed no row for the object");
        if line.starts_with("app ") {
            break line;
        }
    };
    assert!(
        !first_row.contains(" true "),
        "the object was suspended before the watch started: {first_row}"
    );
    let suspended = run_in(&namespace, &["suspend", "app"]).await;
    assert!(suspended.status.success(), "{}", stderr(&suspended));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !lines.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "no row for the change"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = lines.join().unwrap();
    let object_rows = seen.iter().filter(|line| line.starts_with("app ")).count();
    assert!(
        object_rows >= 2,
        "the suspension was not printed as a new row: {seen:?}"
    );
    // The reader has gone (its end of the pipe is closed): the next row ends the command
    // quietly, as `get --watch | head` would, not with a panic.
    let resumed = run_in(&namespace, &["resume", "app"]).await;
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("get --watch kept running after its reader left");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut errors = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut errors).unwrap();
    assert!(!errors.contains("panicked"), "{errors}");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGPIPE), "{status:?}: {errors}");
    assert!(
        seen[0].starts_with("NAME") && seen[0].contains("SUSPENDED"),
        "{seen:?}"
    );
    assert!(
        seen.iter().skip(1).all(|l| l.starts_with("app ")),
        "rows, not tables: {seen:?}"
    );
    assert!(
        seen.last().unwrap().contains(" true "),
        "the suspension shows: {seen:?}"
    );
}

/// The pinned helm, built by `tests/cluster/build.sh`.
fn helm_binary() -> String {
    let helm = support::cluster::binaries_dir().join("helm");
    assert!(
        helm.is_file(),
        "{} is missing: tests/cluster/build.sh builds it",
        helm.display()
    );
    helm.to_str().unwrap().to_owned()
}

/// The pinned kustomize, built by `tests/cluster/build.sh`.
fn kustomize_binary() -> String {
    let kustomize = support::cluster::binaries_dir().join("kustomize");
    assert!(
        kustomize.is_file(),
        "{} is missing: tests/cluster/build.sh builds it",
        kustomize.display()
    );
    kustomize.to_str().unwrap().to_owned()
}

const SMALL_CHART: [(&str, &str); 2] = [
    (
        "charts/app/Chart.yaml",
        "apiVersion: v2\nname: app\nversion: 0.1.0\n",
    ),
    (
        "charts/app/templates/cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n",
    ),
];

/// A spec file no apiserver ever admitted is held to the CRD's rules before anything runs: a
/// release name (or an object name, the default release name) spelled
/// `--post-renderer=<script>` is refused with the field and the rule named, and helm never
/// runs the script. The same spec with a proper name builds, so helm was there to be fooled.
#[test]
fn build_refuses_a_spec_file_that_admission_would_refuse_and_runs_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let repos = GitRepos::new();
    let repo = repos.create("chart");
    repo.commit("a chart", &SMALL_CHART);
    let dir = repo.path().to_str().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let script = scratch.path().join("post-render.sh");
    let marker = scratch.path().join("ran");
    std::fs::write(
        &script,
        format!("#!/bin/sh\ntouch {}\ncat\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let flag = format!("--post-renderer={}", script.display());
    let helm = helm_binary();
    let build = |name: &str, helm_fields: &str| {
        let spec = scratch.path().join("spec.yaml");
        std::fs::write(
            &spec,
            format!(
                "apiVersion: driftless.dev/v1alpha1\nkind: GitRepository\nmetadata:\n  name: {name:?}\n\
                 spec:\n  url: https://example.invalid/chart.git\n  helm:\n    chart: charts/app\n{helm_fields}"
            ),
        )
        .unwrap();
        driftless(&[
            "build",
            dir,
            "--spec-file",
            spec.to_str().unwrap(),
            "--helm-binary",
            &helm,
            "-o",
            "json",
        ])
    };

    let refused = build("app", &format!("    releaseName: {flag:?}\n"));
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains(
            "refused by the CRD's rules: spec.helm.releaseName: releaseName must be a DNS-1123 \
             label of at most 53 characters, as Helm requires"
        ),
        "{}",
        stderr(&refused)
    );
    assert!(stdout(&refused).is_empty());
    assert!(!marker.exists(), "helm ran the post-renderer");

    let refused = build(&flag, "");
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("metadata.name: a name must be a DNS-1123 subdomain"),
        "{}",
        stderr(&refused)
    );
    assert!(!marker.exists(), "helm ran the post-renderer");

    let built = build("app", "    releaseName: web\n");
    assert!(built.status.success(), "{}", stderr(&built));
    let list: serde_json::Value = serde_json::from_slice(&built.stdout).expect("JSON output");
    assert_eq!(list["items"][0]["metadata"]["name"], "web");
    assert!(!marker.exists());
}

/// A kustomization directory whose name is a kustomize flag is built as that directory: the
/// unit comes after `--` on kustomize's command line.
#[test]
fn build_renders_a_unit_directory_named_like_a_flag_as_a_directory() {
    let repos = GitRepos::new();
    let repo = repos.create("flags");
    repo.commit(
        "a flag-named unit",
        &[
            (
                "--enable-helm/kustomization.yaml",
                "resources:\n- cm.yaml\n",
            ),
            ("--enable-helm/cm.yaml", CONFIGMAP),
        ],
    );
    let built = driftless(&[
        "build",
        repo.path().to_str().unwrap(),
        "--kustomize-binary",
        &kustomize_binary(),
        "-o",
        "json",
    ]);
    assert!(built.status.success(), "{}", stderr(&built));
    let list: serde_json::Value = serde_json::from_slice(&built.stdout).expect("JSON output");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["metadata"]["name"], "settings");
}

/// Runs `command` to its end and returns its output with its peak resident memory in KiB
/// (`wait4`'s figure for that one child, whatever else the test process runs meanwhile).
// The child is reaped by wait4, which std's `wait` cannot replace: it alone gives its rusage.
#[allow(clippy::zombie_processes)]
fn output_and_peak_rss(command: &mut Command) -> (Output, i64) {
    use std::io::Read;
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the driftless binary runs");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        out.read_to_end(&mut text).unwrap();
        text
    });
    let mut stderr = Vec::new();
    err.read_to_end(&mut stderr).unwrap();
    let stdout = reader.join().unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value, filled in by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, which nothing else waits for.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    let status = std::os::unix::process::ExitStatusExt::from_raw(status);
    (
        Output {
            status,
            stdout,
            stderr,
        },
        usage.ru_maxrss,
    )
}

/// A 400 KB manifest repeating `${X}` with a 2 KiB `X` would grow to 200 MB: `build` stops
/// substituting at the manifest file limit, names the file, the object and the limit, and its
/// peak memory stays far below what the whole output would take.
#[test]
fn build_stops_a_substitution_bomb_at_the_file_limit_with_small_memory() {
    let repos = GitRepos::new();
    let repo = repos.create("bomb");
    let bomb = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\ndata:\n  v: \"{}\"\n",
        "${X}".repeat(100_000)
    );
    repo.commit("a bomb", &[("deploy/bomb.yaml", bomb.as_str())]);
    let scratch = tempfile::tempdir().unwrap();
    let spec = scratch.path().join("spec.yaml");
    std::fs::write(
        &spec,
        format!(
            "apiVersion: driftless.dev/v1alpha1\nkind: GitRepository\nmetadata:\n  name: bomb\n\
             spec:\n  url: https://example.invalid/bomb.git\n  path: deploy\n  postBuild:\n    \
             substitute:\n      X: {}\n",
            "x".repeat(2048)
        ),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let (output, peak_kib) = output_and_peak_rss(
        Command::new(env!("CARGO_BIN_EXE_driftless"))
            .args(["build", repo.path().to_str().unwrap(), "--spec-file"])
            .arg(&spec)
            .env_remove("KUBECONFIG"),
    );
    let took = started.elapsed();
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{message}");
    let limit = driftless::manifests::Budget::default().max_file_bytes;
    assert!(
        message.contains(&format!(
            "deploy/bomb.yaml: ConfigMap bomb: substituting the variables makes the stream \
             larger than {limit} bytes (the largest manifest file accepted)"
        )),
        "{message}"
    );
    assert!(took < Duration::from_secs(20), "took {took:?}");
    // The full output alone would be 200 MB; the limit is 16 MiB.
    assert!(
        peak_kib < 100 * 1024,
        "peak resident memory {peak_kib} KiB: substitution built past its limit"
    );
    eprintln!("substitution bomb refused in {took:?}, peak RSS {peak_kib} KiB");
}

/// `driftless tree` without a name: the dependsOn graph of the namespace, each GitRepository
/// above what it depends on, a blocked one saying what blocks it; then all Ready once the
/// object at the bottom of the chain exists.
#[tokio::test(flavor = "multi_thread")]
async fn tree_draws_the_dependency_graph_and_what_blocks_each() {
    install_crds().await;
    let namespace = TestNamespace::create("cli-tree-graph").await;
    let repos = GitRepos::new();
    let repo = repos.create("layers");
    let files: Vec<(String, String)> = ["base", "mid", "top", "other"]
        .iter()
        .map(|layer| {
            (
                format!("{layer}/cm.yaml"),
                format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {layer}\n"),
            )
        })
        .collect();
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    repo.commit("four layers", &borrowed);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let url = server.url_for(&repo);
    let _controller = RunningController::start(&namespace.name);
    let layers = [
        (
            "base",
            json!([{ "apiVersion": "v1", "kind": "ConfigMap", "name": "gate" }]),
        ),
        ("mid", json!([{ "name": "base" }])),
        ("top", json!([{ "name": "mid" }])),
        ("other", json!([])),
    ];
    for (name, depends_on) in &layers {
        namespace
            .create_git_repository(
                name,
                json!({ "url": url, "path": name, "interval": "1h", "dependsOn": depends_on }),
            )
            .await;
    }
    let reason_is = |name: &'static str, wanted: &'static str| {
        let namespace = &namespace;
        async move {
            support::waiting::wait_for_named(
                namespace,
                name,
                wanted,
                Duration::from_secs(60),
                |r| {
                    support::objects::condition(r, "Ready")
                        .is_some_and(|(_, reason, _)| reason == wanted)
                },
            )
            .await;
        }
    };
    for name in ["base", "mid", "top"] {
        reason_is(name, "DependencyNotReady").await;
    }
    reason_is("other", "Succeeded").await;

    let ns = &namespace.name;
    let output = run_in(&namespace, &["tree"]).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let tree = stdout(&output);
    eprintln!("{tree}");
    let lines: Vec<&str> = tree.lines().collect();
    assert_eq!(lines.len(), 5, "{tree}");
    assert!(lines[0].starts_with("other ✓ Ready "), "{tree}");
    assert!(
        lines[1].starts_with("top ✗ blocked: ") && lines[1].contains(&format!("{ns}/mid")),
        "{tree}"
    );
    assert!(
        lines[2].starts_with("└── mid ✗ blocked: ") && lines[2].contains(&format!("{ns}/base")),
        "{tree}"
    );
    assert!(
        lines[3].starts_with("    └── base ✗ blocked: ") && lines[3].contains("gate"),
        "{tree}"
    );
    assert_eq!(
        lines[4],
        format!("        └── v1 ConfigMap {ns}/gate (its health gates this one)"),
        "{tree}"
    );

    // The bottom of the chain appears: every layer becomes Ready, and the tree says so.
    let gate: ConfigMap =
        serde_json::from_value(json!({ "metadata": { "name": "gate" } })).unwrap();
    namespace
        .api::<ConfigMap>()
        .create(&Default::default(), &gate)
        .await
        .unwrap();
    for name in ["base", "mid", "top"] {
        reason_is(name, "Succeeded").await;
    }
    let tree = stdout(&run_in(&namespace, &["tree"]).await);
    let ready = tree.lines().filter(|l| l.contains("✓ Ready ")).count();
    assert_eq!(ready, 4, "{tree}");

    // Every namespace: the same graph, each GitRepository named with its namespace.
    let all = stdout(&run_in(&namespace, &["tree", "-A"]).await);
    assert!(all.contains(&format!("{ns}/top ✓ Ready ")), "{all}");
    assert!(all.contains(&format!("└── {ns}/mid ✓ Ready ")), "{all}");
}
