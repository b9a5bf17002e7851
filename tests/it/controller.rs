//! The controller end to end: a GitRepository applied to the real cluster, served by a real git
//! server, converges; a push converges at the next interval; a bad commit keeps the last good
//! revision running and says why; a missing Secret stalls and recovers when it appears.

use crate::support;

use std::time::Duration;

use driftless::api::GitRepository;
use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::json;
use support::{
    cluster::{TestNamespace, install_crds},
    controller::RunningController,
    git::{GitRepos, HttpGitServer, HttpOptions, TestRepo},
    objects::condition,
    waiting::{wait_for, wait_for_named, wait_until_gone},
};

const USER: &str = "deployer";
const PASSWORD: &str = "pa55word";

fn configmap_manifest(value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app-config\ndata:\n  greeting: {value}\n"
    )
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: example.invalid/web:1
";

fn push(repo: &TestRepo, greeting: &str, extra: &[(&str, &str)]) -> String {
    let config = configmap_manifest(greeting);
    let mut files = vec![
        ("deploy/config.yaml", config.as_str()),
        ("deploy/web.yaml", DEPLOYMENT),
    ];
    files.extend_from_slice(extra);
    repo.commit(&format!("greeting {greeting}"), &files)
}

async fn create_repository(namespace: &TestNamespace, url: &str, secret: Option<&str>) {
    let spec = match secret {
        Some(secret) => json!({ "secretRef": { "name": secret } }),
        None => json!({}),
    };
    create_repository_with(namespace, url, spec).await;
}

async fn create_credentials(namespace: &TestNamespace) {
    let data: [(&str, &[u8]); 2] = [
        ("username", USER.as_bytes()),
        ("password", PASSWORD.as_bytes()),
    ];
    namespace.create_secret("git-auth", &data).await;
}

fn ready(repository: &GitRepository) -> Option<(String, String, String)> {
    condition(repository, "Ready")
}

/// Whether the last attempt was `commit` (applied or not).
fn attempted(repository: &GitRepository, commit: &str) -> bool {
    let status = repository.status.as_ref();
    status
        .and_then(|s| s.last_attempted_revision.as_deref())
        .is_some_and(|a| a.ends_with(commit))
}

/// Whether `commit` was attempted and left the object not Ready.
fn failed_at(repository: &GitRepository, commit: &str) -> bool {
    attempted(repository, commit)
        && ready(repository).is_some_and(|(status, _, _)| status == "False")
}

fn applied(repository: &GitRepository) -> Option<String> {
    repository.status.as_ref()?.last_applied_revision.clone()
}

async fn greeting(namespace: &TestNamespace) -> Option<String> {
    let configmap = namespace
        .api::<ConfigMap>()
        .get_opt("app-config")
        .await
        .unwrap()?;
    configmap.data?.get("greeting").cloned()
}

#[tokio::test]
async fn git_repository_converges_follows_pushes_and_survives_a_bad_commit() {
    install_crds().await;
    let namespace = TestNamespace::create("controller-converges").await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let first = push(&repo, "hello", &[]);
    let server = HttpGitServer::start(
        repos.root(),
        HttpOptions::default().basic_auth(USER, PASSWORD),
    );
    create_credentials(&namespace).await;
    let _controller = RunningController::start(&namespace.name);
    create_repository(&namespace, &server.url_for(&repo), Some("git-auth")).await;

    let converged = wait_for(&namespace, "the first revision", |r| {
        applied(r).is_some_and(|a| a.ends_with(&first))
    })
    .await;
    let (status, reason, message) = ready(&converged).unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "Succeeded"),
        "{message}"
    );
    assert_eq!(applied(&converged).unwrap(), format!("main@sha1:{first}"));
    assert_eq!(greeting(&namespace).await.as_deref(), Some("hello"));
    eprintln!("converged: {message}");

    let second = push(&repo, "world", &[]);
    wait_for(&namespace, "the pushed revision", |r| {
        applied(r).is_some_and(|a| a.ends_with(&second))
    })
    .await;
    assert_eq!(greeting(&namespace).await.as_deref(), Some("world"));

    let broken = "apiVersion: v1\nkind: Service\nmetadata:\n  name: broken\nspec:\n  ports:\n  - port: 70000\n";
    let bad = push(&repo, "never-applied", &[("deploy/broken.yaml", broken)]);
    let failed = wait_for(&namespace, "the bad commit to be reported", |r| {
        failed_at(r, &bad)
    })
    .await;
    let (_, reason, message) = ready(&failed).unwrap();
    assert_eq!(reason, "ValidationFailed", "{message}");
    assert!(
        message.contains("deploy/broken.yaml") && message.contains("broken"),
        "{message}"
    );
    assert!(
        applied(&failed).unwrap().ends_with(&second),
        "the last good revision stays applied"
    );
    assert_eq!(
        greeting(&namespace).await.as_deref(),
        Some("world"),
        "nothing of the bad commit was written"
    );
}

#[tokio::test]
async fn missing_secret_stalls_and_recovers_when_it_appears() {
    install_crds().await;
    let namespace = TestNamespace::create("controller-secret").await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let commit = push(&repo, "hello", &[]);
    let server = HttpGitServer::start(
        repos.root(),
        HttpOptions::default().basic_auth(USER, PASSWORD),
    );
    let _controller = RunningController::start(&namespace.name);
    create_repository(&namespace, &server.url_for(&repo), Some("git-auth")).await;

    let stalled = wait_for(&namespace, "Stalled", |r| {
        r.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Stalled" && c.status == "True")
        })
    })
    .await;
    let (_, reason, message) = ready(&stalled).unwrap();
    assert_eq!(reason, "SecretNotFound");
    assert!(message.contains("git-auth"), "{message}");

    create_credentials(&namespace).await;
    let recovered = wait_for(&namespace, "recovery", |r| {
        applied(r).is_some_and(|a| a.ends_with(&commit))
    })
    .await;
    let conditions = &recovered.status.unwrap().conditions;
    assert!(
        conditions.iter().all(|c| c.type_ != "Stalled"),
        "{conditions:?}"
    );
}

#[tokio::test]
async fn service_account_impersonation_denies_what_the_tenant_may_not_do() {
    install_crds().await;
    let namespace = TestNamespace::create("controller-tenant").await;
    namespace
        .grant_service_account("tenant", &["configmaps"], &["*"])
        .await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    push(&repo, "hello", &[]);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let _controller = RunningController::start(&namespace.name);
    namespace
        .create_git_repository(
            "app",
            json!({ "url": server.url_for(&repo), "path": "deploy", "interval": "2s", "serviceAccountName": "tenant" }),
        )
        .await;

    let denied = wait_for(&namespace, "the denial", |r| {
        ready(r).is_some_and(|(status, _, _)| status == "False")
    })
    .await;
    let (_, _, message) = ready(&denied).unwrap();
    assert!(
        message.contains("Deployment") && message.contains("forbidden"),
        "{message}"
    );
    assert!(
        message.contains("system:serviceaccount:") && message.contains(":tenant"),
        "{message}"
    );
    assert_eq!(
        greeting(&namespace).await,
        None,
        "nothing of the denied revision was written"
    );
}

/// Kills the controller binary when the test ends, whatever happens.
struct ChildProcess(std::process::Child);

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_converges_and_serves_health_and_metrics() {
    install_crds().await;
    let namespace = TestNamespace::create("controller-binary").await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let commit = push(&repo, "hello", &[]);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let cache = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _controller = ChildProcess(
        std::process::Command::new(env!("CARGO_BIN_EXE_driftless"))
            .args([
                "controller",
                "--log-format",
                "json",
                "--namespace",
                &namespace.name,
                "--disable-webhook",
            ])
            .args(["--metrics-bind-address", &format!("127.0.0.1:{port}")])
            .arg("--git-cache-dir")
            .arg(cache.path())
            .env("KUBECONFIG", support::cluster::kubeconfig_path())
            .spawn()
            .expect("the driftless binary starts"),
    );
    namespace
        .create_git_repository(
            "app",
            json!({ "url": server.url_for(&repo), "path": "deploy", "interval": "2s" }),
        )
        .await;

    wait_for(&namespace, "the binary to converge", |r| {
        applied(r).is_some_and(|a| a.ends_with(&commit))
    })
    .await;
    let health = support::controller::http_get(port, "/healthz").expect("/healthz answers");
    assert!(
        health.starts_with("HTTP/1.0 200") || health.starts_with("HTTP/1.1 200"),
        "{health}"
    );
    let metrics = support::controller::http_get(port, "/metrics").expect("/metrics answers");
    assert!(
        metrics.contains("driftless_lead_time_seconds_count 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("driftless_reconcile_duration_seconds_count{result=\"success\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "driftless_ready{{namespace=\"{}\",name=\"app\"}} 1",
            namespace.name
        )),
        "{metrics}"
    );
}

fn configmap(name: &str, annotations: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n{annotations}data:\n  a: b\n"
    )
}

async fn configmap_exists(namespace: &TestNamespace, name: &str) -> bool {
    namespace
        .api::<ConfigMap>()
        .get_opt(name)
        .await
        .unwrap()
        .is_some()
}

async fn create_repository_with(
    namespace: &TestNamespace,
    url: &str,
    extra_spec: serde_json::Value,
) {
    let mut spec = json!({ "url": url, "path": "deploy", "interval": "2s" });
    spec.as_object_mut()
        .unwrap()
        .extend(extra_spec.as_object().unwrap().clone());
    namespace.create_git_repository("app", spec).await;
}

#[tokio::test]
async fn removed_objects_are_pruned_with_guards_and_the_finalizer_cleans_up() {
    install_crds().await;
    let namespace = TestNamespace::create("controller-prune").await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let (kept, extra, main) = (
        configmap(
            "keep",
            "  annotations:\n    driftless.dev/prune: disabled\n",
        ),
        configmap("extra", ""),
        configmap("main", ""),
    );
    repo.commit(
        "four objects",
        &[
            ("deploy/main.yaml", main.as_str()),
            ("deploy/extra.yaml", extra.as_str()),
            ("deploy/keep.yaml", kept.as_str()),
        ],
    );
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let _controller = RunningController::start(&namespace.name);
    create_repository_with(&namespace, &server.url_for(&repo), json!({})).await;
    let first = wait_for(&namespace, "the first revision", |r| applied(r).is_some()).await;
    assert_eq!(first.status.unwrap().inventory.len(), 3);

    let second = repo.commit("only main", &[("deploy/main.yaml", main.as_str())]);
    let pruned = wait_for(&namespace, "the prune", |r| {
        applied(r).is_some_and(|a| a.ends_with(&second))
    })
    .await;
    let status = pruned.status.unwrap();
    assert_eq!(status.inventory.len(), 1, "{:?}", status.inventory);
    assert_eq!(status.last_apply.unwrap().pruned, 1);
    assert!(
        !configmap_exists(&namespace, "extra").await,
        "extra left the repository and was pruned"
    );
    assert!(
        configmap_exists(&namespace, "keep").await,
        "prune: disabled is never pruned"
    );

    let empty = repo.commit(
        "emptied by mistake",
        &[("deploy/README.md", "nothing here")],
    );
    let refused = wait_for(&namespace, "the empty-revision guard", |r| {
        attempted(r, &empty)
    })
    .await;
    let (status, reason, message) = ready(&refused).unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "PruneFailed"),
        "{message}"
    );
    assert!(message.contains("no objects"), "{message}");
    assert!(
        configmap_exists(&namespace, "main").await,
        "an empty revision deletes nothing"
    );

    namespace
        .api::<GitRepository>()
        .delete("app", &Default::default())
        .await
        .unwrap();
    wait_until_gone(&namespace, "main").await;
    assert!(configmap_exists(&namespace, "keep").await);
}

#[tokio::test]
async fn deleting_with_prune_disabled_leaves_objects_in_place() {
    install_crds().await;
    let namespace = TestNamespace::create("controller-orphan").await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let main = configmap("main", "");
    repo.commit("one", &[("deploy/main.yaml", main.as_str())]);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let _controller = RunningController::start(&namespace.name);
    create_repository_with(
        &namespace,
        &server.url_for(&repo),
        json!({ "prune": false }),
    )
    .await;
    wait_for(&namespace, "the first revision", |r| applied(r).is_some()).await;

    let api = namespace.api::<GitRepository>();
    api.delete("app", &Default::default()).await.unwrap();
    for _ in 0..120 {
        if api.get_opt("app").await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        api.get_opt("app").await.unwrap().is_none(),
        "the finalizer let go"
    );
    assert!(
        configmap_exists(&namespace, "main").await,
        "objects stay when prune is false"
    );
}

const UNSCHEDULABLE: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: stuck
spec:
  replicas: 1
  selector:
    matchLabels: {app: stuck}
  template:
    metadata:
      labels: {app: stuck}
    spec:
      nodeSelector: {no-such-node: \"true\"}
      containers:
      - name: app
        image: example.invalid/app:1
";

#[tokio::test]
async fn waiting_for_health_reports_ready_only_when_deployments_are_available() {
    install_crds().await;
    let namespace = TestNamespace::create("controller-wait").await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let healthy = push(&repo, "hello", &[]);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let _controller = RunningController::start(&namespace.name);
    create_repository_with(
        &namespace,
        &server.url_for(&repo),
        json!({ "wait": true, "timeout": "8s" }),
    )
    .await;

    let ready_repo = wait_for(&namespace, "a healthy revision", |r| {
        applied(r).is_some_and(|a| a.ends_with(&healthy))
    })
    .await;
    let deployment = namespace
        .api::<k8s_openapi::api::apps::v1::Deployment>()
        .get("web")
        .await
        .unwrap();
    assert_eq!(
        deployment.status.and_then(|s| s.available_replicas),
        Some(2),
        "Ready means available"
    );
    assert_eq!(ready(&ready_repo).unwrap().0, "True");

    assert!(
        condition(&ready_repo, "Reconciling").is_none(),
        "Reconciling is removed when done"
    );

    let stuck = push(&repo, "stuck", &[("deploy/stuck.yaml", UNSCHEDULABLE)]);
    let working = wait_for(&namespace, "Reconciling while waiting for health", |r| {
        condition(r, "Reconciling").is_some_and(|(status, _, _)| status == "True")
    })
    .await;
    let (status, reason, message) = ready(&working).unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("Unknown", "Progressing")
    );
    assert!(message.contains(&stuck), "{message}");
    let unhealthy = wait_for(&namespace, "the health check to fail", |r| {
        failed_at(r, &stuck)
    })
    .await;
    assert!(condition(&unhealthy, "Reconciling").is_none());
    let (_, reason, message) = ready(&unhealthy).unwrap();
    assert_eq!(reason, "HealthCheckFailed", "{message}");
    assert!(
        message.contains("Deployment") && message.contains("stuck"),
        "{message}"
    );
    assert!(
        applied(&unhealthy).unwrap().ends_with(&healthy),
        "the revision is not counted as applied"
    );
}

const BILLION_LAUGHS: &str =
    "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
";

const WITNESS_CONFIGMAP: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: witness\ndata:\n  seen: \"yes\"\n";

#[tokio::test]
async fn hostile_yaml_suspend_trigger_annotation_and_drift_at_the_next_interval() {
    install_crds().await;
    let namespace = TestNamespace::create("controller-lifecycle").await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let good = push(&repo, "hello", &[]);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let _controller = RunningController::start(&namespace.name);
    create_repository_with(&namespace, &server.url_for(&repo), json!({})).await;
    wait_for(&namespace, "the first revision", |r| {
        applied(r).is_some_and(|a| a.ends_with(&good))
    })
    .await;

    // A hand edit is reverted at the next interval (2 s).
    let configmaps = namespace.api::<ConfigMap>();
    let edit = json!({ "data": { "greeting": "edited by hand" } });
    configmaps
        .patch(
            "app-config",
            &Default::default(),
            &kube::api::Patch::Merge(&edit),
        )
        .await
        .unwrap();
    for _ in 0..60 {
        if greeting(&namespace).await.as_deref() == Some("hello") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        greeting(&namespace).await.as_deref(),
        Some("hello"),
        "drift reverted"
    );

    // A hostile file fails cleanly, naming the file; the cluster keeps the last good revision.
    let hostile = push(&repo, "hostile", &[("deploy/laughs.yaml", BILLION_LAUGHS)]);
    let failed = wait_for(&namespace, "the hostile file to be refused", |r| {
        attempted(r, &hostile)
    })
    .await;
    let (status, reason, message) = ready(&failed).unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "ManifestInvalid"),
        "{message}"
    );
    assert!(message.contains("deploy/laughs.yaml"), "{message}");
    assert_eq!(greeting(&namespace).await.as_deref(), Some("hello"));

    // Suspend: nothing is applied, and the status says so.
    let api = namespace.api::<GitRepository>();
    let suspend = json!({ "spec": { "suspend": true } });
    api.patch(
        "app",
        &Default::default(),
        &kube::api::Patch::Merge(&suspend),
    )
    .await
    .unwrap();
    wait_for(&namespace, "Suspended", |r| {
        ready(r).is_some_and(|(_, reason, _)| reason == "Suspended")
    })
    .await;
    // A witness on the same repository (its own path) applies the new commit: proof that the
    // controller ran, fetched and applied it while `app` stayed suspended, not merely that a
    // few seconds passed.
    let fixed = push(
        &repo,
        "while-suspended",
        &[("witness/witness.yaml", WITNESS_CONFIGMAP)],
    );
    namespace
        .create_git_repository(
            "witness",
            json!({ "url": server.url_for(&repo), "path": "witness", "interval": "2s" }),
        )
        .await;
    support::waiting::wait_applied_named(&namespace, "witness", &fixed, Duration::from_secs(60))
        .await;
    // The witness reconciled at once; `app` would have reached its next interval (2 s) within
    // two of them had it not been suspended.
    for _ in 0..16 {
        assert_eq!(
            greeting(&namespace).await.as_deref(),
            Some("hello"),
            "suspended objects are not reconciled"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let suspended = api.get("app").await.unwrap().status.unwrap_or_default();
    assert!(
        !suspended
            .last_applied_revision
            .as_deref()
            .is_some_and(|applied| applied.ends_with(&fixed)),
        "a suspended object applied a new commit: {:?}",
        suspended.last_applied_revision
    );

    // Resume, and ask for an immediate reconcile with the annotation; its value is echoed.
    let resume = json!({
        "metadata": { "annotations": { "driftless.dev/reconcile-requested-at": "now-1" } },
        "spec": { "suspend": false, "interval": "1h" },
    });
    api.patch(
        "app",
        &Default::default(),
        &kube::api::Patch::Merge(&resume),
    )
    .await
    .unwrap();
    let resumed = wait_for(&namespace, "the requested reconcile", |r| {
        applied(r).is_some_and(|a| a.ends_with(&fixed))
    })
    .await;
    assert_eq!(
        resumed.status.unwrap().last_handled_reconcile_at.as_deref(),
        Some("now-1")
    );
    assert_eq!(
        greeting(&namespace).await.as_deref(),
        Some("while-suspended")
    );
}

#[tokio::test]
async fn multi_kind_revision_converges_and_prune_never_deletes_the_own_namespace() {
    use k8s_openapi::api::{core::v1::Namespace, rbac::v1::Role};
    install_crds().await;
    let namespace = TestNamespace::create("controller-multikind").await;
    let other = support::cluster::unique_name("pruned-ns");
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let own_namespace = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {}\n",
        namespace.name
    );
    let other_namespace = format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {other}\n");
    let in_other = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: inside\n  namespace: {other}\ndata:\n  a: b\n"
    );
    let rbac = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: app\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: app\nrules:\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: app\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: app\nsubjects:\n- kind: ServiceAccount\n  name: app\n";
    let service = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n  - port: 80\n";
    let first = push(
        &repo,
        "hello",
        &[
            (
                "deploy/00-namespaces.yaml",
                &format!("{own_namespace}---\n{other_namespace}"),
            ),
            ("deploy/other.yaml", &in_other),
            ("deploy/rbac.yaml", rbac),
            ("deploy/service.yaml", service),
        ],
    );
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let _controller = RunningController::start(&namespace.name);
    create_repository_with(&namespace, &server.url_for(&repo), json!({})).await;
    let converged = wait_for(&namespace, "the multi-kind revision", |r| {
        applied(r).is_some_and(|a| a.ends_with(&first))
    })
    .await;
    assert_eq!(converged.status.unwrap().inventory.len(), 9);

    let second = push(&repo, "changed", &[]);
    let pruned = wait_for(&namespace, "the prune", |r| {
        applied(r).is_some_and(|a| a.ends_with(&second))
    })
    .await;
    assert_eq!(
        pruned.status.unwrap().inventory.len(),
        2,
        "ConfigMap and Deployment remain"
    );
    assert_eq!(greeting(&namespace).await.as_deref(), Some("changed"));
    assert!(
        namespace
            .api::<Role>()
            .get_opt("app")
            .await
            .unwrap()
            .is_none(),
        "RBAC left the repository"
    );
    let namespaces: kube::Api<Namespace> = kube::Api::all(namespace.client.clone());
    let own = namespaces.get(&namespace.name).await.unwrap();
    assert!(
        own.metadata.deletion_timestamp.is_none(),
        "the GitRepository's own namespace is never pruned"
    );
    let gone = namespaces.get_opt(&other).await.unwrap();
    assert!(
        gone.is_none_or(|ns| ns.metadata.deletion_timestamp.is_some()),
        "the other namespace is pruned"
    );
}

fn stalled(repository: &GitRepository) -> Option<(String, String, String)> {
    condition(repository, "Stalled").filter(|(status, _, _)| status == "True")
}

#[tokio::test]
async fn without_a_service_account_the_default_one_applies_or_the_object_is_refused() {
    install_crds().await;
    let namespace = TestNamespace::create("controller-default-sa").await;
    namespace
        .grant_service_account("tenant", &["configmaps"], &["*"])
        .await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    push(&repo, "hello", &[]);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());

    // Restricted, with a default: the object is applied as the namespace's `tenant`, which may
    // not create the Deployment, so nothing is written.
    let controller = RunningController::start_with(&namespace.name, |settings| {
        settings.require_service_account = true;
        settings.default_service_account = Some("tenant".into());
    });
    create_repository_with(&namespace, &server.url_for(&repo), json!({})).await;
    let denied = wait_for(&namespace, "the tenant's denial", |r| {
        ready(r).is_some_and(|(status, _, _)| status == "False")
    })
    .await;
    let (_, _, message) = ready(&denied).unwrap();
    assert!(
        message.contains(&format!("system:serviceaccount:{}:tenant", namespace.name))
            && message.contains("forbidden"),
        "{message}"
    );
    assert_eq!(greeting(&namespace).await, None);
    drop(controller);

    // Restricted without a default: refused before anything is fetched or applied.
    let _controller = RunningController::start_with(&namespace.name, |settings| {
        settings.require_service_account = true;
    });
    let annotate = json!({ "metadata": { "annotations": {
        "driftless.dev/reconcile-requested-at": "no-default" } } });
    namespace
        .api::<GitRepository>()
        .patch(
            "app",
            &Default::default(),
            &kube::api::Patch::Merge(&annotate),
        )
        .await
        .unwrap();
    let refused = wait_for(&namespace, "the refusal", |r| {
        stalled(r).is_some_and(|(_, reason, _)| reason == "ServiceAccountRequired")
    })
    .await;
    let (status, reason, message) = ready(&refused).unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "ServiceAccountRequired")
    );
    assert!(message.contains("spec.serviceAccountName"), "{message}");
    assert_eq!(greeting(&namespace).await, None);
}

#[tokio::test]
async fn a_symlinked_manifest_fails_the_revision_and_prunes_nothing_unless_ignored() {
    install_crds().await;
    let namespace = TestNamespace::create("controller-symlink").await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let (main, linked) = (configmap("main", ""), configmap("linked", ""));
    let first = repo.commit(
        "two objects",
        &[
            ("deploy/main.yaml", main.as_str()),
            ("deploy/linked.yaml", linked.as_str()),
        ],
    );
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let _controller = RunningController::start(&namespace.name);
    create_repository_with(&namespace, &server.url_for(&repo), json!({})).await;
    wait_for(&namespace, "the first revision", |r| {
        applied(r).is_some_and(|a| a.ends_with(&first))
    })
    .await;

    // linked.yaml becomes a symlink (to a file outside deploy/): never followed, and not
    // read as "gone" either.
    let readme = "not a manifest";
    let linking = repo.commit_with_links(
        &[("main.yaml", main.as_str()), ("README", readme)],
        &[
            ("linked.yaml", "../shared/linked.yaml"),
            ("README.md", "README"),
        ],
    );
    let failed = wait_for(&namespace, "the symlink to fail the revision", |r| {
        failed_at(r, &linking)
    })
    .await;
    let (_, reason, message) = ready(&failed).unwrap();
    assert_eq!(reason, "ManifestInvalid", "{message}");
    assert!(message.contains("deploy/linked.yaml"), "{message}");
    assert!(
        !message.contains("README.md"),
        "a symlink that cannot be a manifest is no reason to fail: {message}"
    );
    assert!(applied(&failed).unwrap().ends_with(&first));
    assert!(
        configmap_exists(&namespace, "linked").await,
        "nothing is pruned for a skipped path"
    );
    assert_eq!(
        failed.status.unwrap().inventory.len(),
        2,
        "the inventory keeps the object"
    );

    // Ignored explicitly, the path is no longer a reason to fail; its object is pruned.
    let ignore = json!({ "spec": { "ignore": ["deploy/linked.yaml"] } });
    namespace
        .api::<GitRepository>()
        .patch(
            "app",
            &Default::default(),
            &kube::api::Patch::Merge(&ignore),
        )
        .await
        .unwrap();
    wait_for(&namespace, "the ignored symlink", |r| {
        applied(r).is_some_and(|a| a.ends_with(&linking))
    })
    .await;
    wait_until_gone(&namespace, "linked").await;
}

#[tokio::test]
async fn an_unrelated_repository_becomes_ready_while_others_wait_for_health() {
    install_crds().await;
    let namespace = TestNamespace::create("controller-health-pool").await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let waiting = 8;
    let mut files: Vec<(String, String)> = (0..waiting)
        .map(|n| {
            (
                format!("waiter-{n}/stuck.yaml"),
                UNSCHEDULABLE.replace("stuck", &format!("stuck-{n}")),
            )
        })
        .collect();
    files.push(("ready/config.yaml".into(), configmap("unrelated", "")));
    let borrowed: Vec<(&str, &str)> = files
        .iter()
        .map(|(path, contents)| (path.as_str(), contents.as_str()))
        .collect();
    repo.commit("eight stuck Deployments and a ConfigMap", &borrowed);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    // More waiters than workers (the harness runs 4).
    let _controller = RunningController::start(&namespace.name);
    let url = server.url_for(&repo);
    for n in 0..waiting {
        namespace
            .create_git_repository(
                &format!("waiter-{n}"),
                json!({ "url": url, "path": format!("waiter-{n}"), "interval": "1h",
                        "wait": true, "timeout": "10m" }),
            )
            .await;
    }
    for n in 0..waiting {
        wait_for_named(
            &namespace,
            &format!("waiter-{n}"),
            "the waiter to wait for health",
            Duration::from_secs(60),
            |r| condition(r, "Reconciling").is_some_and(|(status, _, _)| status == "True"),
        )
        .await;
    }
    namespace
        .create_git_repository(
            "unrelated",
            json!({ "url": url, "path": "ready", "interval": "1h" }),
        )
        .await;
    let unrelated = wait_for_named(
        &namespace,
        "unrelated",
        "the unrelated GitRepository to become Ready while eight wait",
        Duration::from_secs(30),
        |r| ready(r).is_some_and(|(status, _, _)| status == "True"),
    )
    .await;
    assert!(applied(&unrelated).is_some());
    let still = namespace
        .api::<GitRepository>()
        .get("waiter-0")
        .await
        .unwrap();
    let (status, _, message) = condition(&still, "Reconciling").unwrap();
    assert_eq!(status, "True", "the waiters still wait: {message}");
    assert!(
        message.contains("waiting") && message.contains("stuck-0"),
        "{message}"
    );
}

#[tokio::test]
async fn deleting_a_suspended_repository_keeps_what_it_applied() {
    install_crds().await;
    let namespace = TestNamespace::create("controller-suspend-delete").await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let main = configmap("main", "");
    repo.commit("one", &[("deploy/main.yaml", main.as_str())]);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let _controller = RunningController::start(&namespace.name);
    create_repository_with(&namespace, &server.url_for(&repo), json!({})).await;
    wait_for(&namespace, "the first revision", |r| applied(r).is_some()).await;

    let api = namespace.api::<GitRepository>();
    let suspend = json!({ "spec": { "suspend": true } });
    api.patch(
        "app",
        &Default::default(),
        &kube::api::Patch::Merge(&suspend),
    )
    .await
    .unwrap();
    wait_for(&namespace, "Suspended", |r| {
        ready(r).is_some_and(|(_, reason, _)| reason == "Suspended")
    })
    .await;
    api.delete("app", &Default::default()).await.unwrap();
    wait_until_deleted(&api, "app").await;
    assert!(
        configmap_exists(&namespace, "main").await,
        "a suspended GitRepository's objects stay when it is deleted"
    );
}

async fn wait_until_deleted(api: &kube::Api<GitRepository>, name: &str) {
    for _ in 0..240 {
        if api.get_opt(name).await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let left = api.get_opt(name).await.unwrap();
    panic!("GitRepository {name} is stuck: {left:#?}");
}

#[tokio::test]
async fn a_finalizer_whose_service_account_lost_its_rights_is_released_with_a_warning() {
    use k8s_openapi::api::rbac::v1::RoleBinding;
    install_crds().await;
    let namespace = TestNamespace::create("controller-finalizer-release").await;
    namespace
        .grant_service_account("tenant", &["configmaps"], &["*"])
        .await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let main = configmap("main", "");
    repo.commit("one", &[("deploy/main.yaml", main.as_str())]);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let _controller = RunningController::start(&namespace.name);
    create_repository_with(
        &namespace,
        &server.url_for(&repo),
        json!({ "serviceAccountName": "tenant" }),
    )
    .await;
    wait_for(&namespace, "the first revision", |r| applied(r).is_some()).await;

    // The tenant loses its rights; pruning on deletion can never succeed.
    namespace
        .api::<RoleBinding>()
        .delete("tenant", &Default::default())
        .await
        .unwrap();
    let api = namespace.api::<GitRepository>();
    api.delete("app", &Default::default()).await.unwrap();
    wait_until_deleted(&api, "app").await;
    assert!(
        configmap_exists(&namespace, "main").await,
        "what could not be pruned is left in place"
    );
    let events = namespace
        .api::<k8s_openapi::api::events::v1::Event>()
        .list(&Default::default())
        .await
        .unwrap();
    let abandoned = events
        .items
        .iter()
        .find(|e| e.reason.as_deref() == Some("CleanupAbandoned"))
        .unwrap_or_else(|| panic!("a CleanupAbandoned event: {:#?}", events.items));
    assert_eq!(abandoned.type_.as_deref(), Some("Warning"));
    let note = abandoned.note.clone().unwrap_or_default();
    assert!(note.contains("forbidden"), "{note}");
}

#[tokio::test]
async fn status_writes_clear_an_emptied_inventory_and_a_removed_webhook_path() {
    install_crds().await;
    let namespace = TestNamespace::create("controller-status-clear").await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let main = configmap("main", "");
    repo.commit("one", &[("deploy/main.yaml", main.as_str())]);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    namespace
        .create_secret("hook", &[("token", b"a-webhook-token".as_slice())])
        .await;
    let _controller = RunningController::start(&namespace.name);
    create_repository_with(
        &namespace,
        &server.url_for(&repo),
        json!({ "pruneEmpty": true, "webhook": { "secretRef": { "name": "hook" } } }),
    )
    .await;
    let first = wait_for(&namespace, "the first revision with a webhook path", |r| {
        applied(r).is_some() && r.status.as_ref().is_some_and(|s| s.webhook_path.is_some())
    })
    .await;
    assert_eq!(first.status.unwrap().inventory.len(), 1);

    let empty = repo.commit("everything removed", &[("deploy/README.md", "empty")]);
    let remove_webhook = json!({ "spec": { "webhook": null } });
    namespace
        .api::<GitRepository>()
        .patch(
            "app",
            &Default::default(),
            &kube::api::Patch::Merge(&remove_webhook),
        )
        .await
        .unwrap();
    let emptied = wait_for(&namespace, "the empty revision", |r| {
        applied(r).is_some_and(|a| a.ends_with(&empty))
    })
    .await;
    wait_until_gone(&namespace, "main").await;
    let status = emptied.status.unwrap();
    assert!(status.inventory.is_empty(), "{:?}", status.inventory);
    assert_eq!(
        status.webhook_path, None,
        "the removed webhook's path is gone"
    );
}

#[tokio::test]
async fn a_git_repository_with_a_name_longer_than_a_label_applies_prunes_and_cleans_up() {
    install_crds().await;
    let namespace = TestNamespace::create("controller-long-name").await;
    // A DNS subdomain of 240 characters: valid for a GitRepository, four times a label value.
    let name = format!("{}app.example.com", "team-a-deploys-".repeat(15));
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let (main, extra) = (configmap("main", ""), configmap("extra", ""));
    let first = repo.commit(
        "two objects",
        &[
            ("deploy/main.yaml", main.as_str()),
            ("deploy/extra.yaml", extra.as_str()),
        ],
    );
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let _controller = RunningController::start(&namespace.name);
    namespace
        .create_git_repository(
            &name,
            json!({ "url": server.url_for(&repo), "path": "deploy", "interval": "2s" }),
        )
        .await;
    support::waiting::wait_applied_named(&namespace, &name, &first, Duration::from_secs(60)).await;
    let label = driftless::apply::inventory::owner_label_value(&name);
    assert!(label.len() <= 63, "{label}");
    let labels = namespace
        .api::<ConfigMap>()
        .get("main")
        .await
        .unwrap()
        .metadata
        .labels
        .unwrap_or_default();
    assert_eq!(labels.get("driftless.dev/name"), Some(&label));

    let second = repo.commit("only main", &[("deploy/main.yaml", main.as_str())]);
    support::waiting::wait_applied_named(&namespace, &name, &second, Duration::from_secs(60)).await;
    wait_until_gone(&namespace, "extra").await;
    namespace
        .api::<GitRepository>()
        .delete(&name, &Default::default())
        .await
        .unwrap();
    wait_until_gone(&namespace, "main").await;
}

/// Events of `reason` on GitRepository `app`, by their notes.
async fn event_notes(namespace: &TestNamespace, reason: &str) -> Vec<String> {
    let events = namespace
        .api::<k8s_openapi::api::events::v1::Event>()
        .list(&Default::default())
        .await
        .unwrap();
    events
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.note)
        .collect()
}

#[tokio::test]
async fn each_pushed_revision_is_readable_in_the_listed_events() {
    install_crds().await;
    let namespace = TestNamespace::create("controller-events-per-revision").await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let first = push(&repo, "hello", &[]);
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let _controller = RunningController::start(&namespace.name);
    create_repository(&namespace, &server.url_for(&repo), None).await;
    wait_for(&namespace, "the first revision", |r| {
        applied(r).is_some_and(|a| a.ends_with(&first))
    })
    .await;
    let second = push(&repo, "world", &[]);
    wait_for(&namespace, "the pushed revision", |r| {
        applied(r).is_some_and(|a| a.ends_with(&second))
    })
    .await;

    // The events are published before the status write the wait saw.
    for reason in ["NewRevision", "Applied"] {
        let notes = event_notes(&namespace, reason).await;
        for commit in [&first, &second] {
            assert!(
                notes.iter().any(|note| note.contains(commit.as_str())),
                "a {reason} event names {commit}: {notes:#?}"
            );
        }
    }
}

/// `/metrics` of the binary on `port`, once it answers.
fn metrics_text(port: u16) -> String {
    support::controller::http_get(port, "/metrics").expect("/metrics answers")
}

/// Polls `/metrics` until `check` accepts it, or fails showing it.
async fn wait_for_metrics(port: u16, what: &str, check: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let text = metrics_text(port);
        if check(&text) {
            return text;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what} in /metrics:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn the_binary_counts_pruned_objects_and_reconcile_errors_and_forgets_deleted_repositories() {
    use k8s_openapi::api::rbac::v1::RoleBinding;
    install_crds().await;
    let namespace = TestNamespace::create("controller-binary-metrics").await;
    namespace
        .grant_service_account("tenant", &["configmaps"], &["*"])
        .await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let (main, extra) = (configmap("main", ""), configmap("extra", ""));
    let first = repo.commit(
        "two",
        &[
            ("deploy/main.yaml", main.as_str()),
            ("deploy/extra.yaml", extra.as_str()),
        ],
    );
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let cache = tempfile::tempdir().unwrap();
    let port = support::replica::free_port();
    let _controller = ChildProcess(
        std::process::Command::new(env!("CARGO_BIN_EXE_driftless"))
            .args(["controller", "--namespace", &namespace.name])
            .args(["--disable-webhook", "--default-interval", "2s"])
            .args(["--metrics-bind-address", &format!("127.0.0.1:{port}")])
            .arg("--git-cache-dir")
            .arg(cache.path())
            .env("KUBECONFIG", support::cluster::kubeconfig_path())
            .spawn()
            .expect("the driftless binary starts"),
    );
    create_repository_with(
        &namespace,
        &server.url_for(&repo),
        json!({ "serviceAccountName": "tenant", "interval": "2s" }),
    )
    .await;
    wait_for(&namespace, "the first revision", |r| {
        applied(r).is_some_and(|a| a.ends_with(&first))
    })
    .await;
    let ready_series = format!(
        "driftless_ready{{namespace=\"{}\",name=\"app\"}} 1",
        namespace.name
    );
    let applied_once =
        wait_for_metrics(port, "the Ready series", |m| m.contains(&ready_series)).await;
    assert!(
        applied_once.contains("driftless_objects_pruned_total 0"),
        "{applied_once}"
    );

    let second = repo.commit("one", &[("deploy/main.yaml", main.as_str())]);
    wait_for(&namespace, "the revision without extra", |r| {
        applied(r).is_some_and(|a| a.ends_with(&second))
    })
    .await;
    wait_until_gone(&namespace, "extra").await;
    wait_for_metrics(port, "one pruned object", |m| {
        m.contains("driftless_objects_pruned_total 1")
    })
    .await;

    // Pruning on deletion can never succeed: every failed clean-up is an error of the
    // reconcile, counted, until the finalizer is released.
    namespace
        .api::<RoleBinding>()
        .delete("tenant", &Default::default())
        .await
        .unwrap();
    let api = namespace.api::<GitRepository>();
    api.delete("app", &Default::default()).await.unwrap();
    wait_for_metrics(port, "a counted clean-up error", |m| {
        m.contains("driftless_reconcile_errors_total{error=\"cleanup\"}")
    })
    .await;
    wait_until_deleted(&api, "app").await;
    let after = metrics_text(port);
    let object_series = format!("namespace=\"{}\",name=\"app\"", namespace.name);
    assert!(
        !after.contains(&object_series),
        "no series of the deleted GitRepository is left: {after}"
    );
}
