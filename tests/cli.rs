//! The client commands through the real binary: `build` offline on a real git checkout, and
//! `get`, `reconcile --wait`, `suspend`/`resume`, `events` and `tree` against the real cluster
//! with a controller and a git server running.

mod support;

use std::{
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

async fn wait_until(
    namespace: &TestNamespace,
    what: &str,
    check: impl Fn(&GitRepository) -> bool,
) -> GitRepository {
    let api = namespace.api::<GitRepository>();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let repository = api.get("app").await.unwrap();
        if check(&repository) {
            return repository;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {:#?}",
            repository.status
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn applied(repository: &GitRepository, commit: &str) -> bool {
    repository
        .status
        .as_ref()
        .and_then(|s| s.last_applied_revision.as_deref())
        .is_some_and(|r| r.ends_with(commit))
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
    wait_until(&namespace, "the first revision", |r| applied(r, &first)).await;

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
    wait_until(&namespace, "Suspended", |r| r.spec.suspend == Some(true)).await;
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
    wait_until(&namespace, "the commit pushed while suspended", |r| {
        applied(r, &third)
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
    wait_until(&namespace, "the first revision", |r| applied(r, &first)).await;
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
