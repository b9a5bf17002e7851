//! The `driftless controller` binary as operators run it: two replicas with leader election,
//! failover after SIGKILL, a leader cut off from its Lease that stops before a standby starts,
//! and a signed push webhook that triggers an immediate reconcile.

use crate::support;

use std::{
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use driftless::api::{GitRepository, LastWebhook};
use serde_json::json;
use support::{
    admission::AdmissionHook,
    cluster::{TestNamespace, install_crds},
    git::{GitRepos, HttpGitServer, HttpOptions},
    objects::*,
    replica::*,
    waiting::*,
    webhook::*,
};

#[tokio::test]
async fn two_replicas_elect_one_leader_and_fail_over_after_sigkill() {
    install_crds().await;
    let namespace = TestNamespace::create("leader-election").await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let first = commit(&repo, "one");
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let election = [
        "--leader-elect",
        "--leader-election-lease-duration",
        "3s",
        "--leader-election-renew-period",
        "500ms",
        "--disable-webhook",
    ];
    let mut replicas = vec![
        start_replica(&namespace, &election),
        start_replica(&namespace, &election),
    ];
    create_repository(&namespace, &server.url_for(&repo), "1s").await;
    wait_applied(&namespace, &first, Duration::from_secs(60)).await;

    let leader = lease_holder(&namespace)
        .await
        .expect("one replica holds the Lease");
    let pids: Vec<u32> = replicas.iter().map(|r| r.child.id()).collect();
    let leader_index = pids
        .iter()
        .position(|pid| leader.contains(&format!("_{pid:x}")))
        .unwrap_or_else(|| panic!("Lease holder {leader} is one of {pids:?}"));
    eprintln!("leader: {leader} (pid {})", pids[leader_index]);

    let mut killed = replicas.remove(leader_index);
    killed.child.kill().expect("SIGKILL the leader");
    killed.child.wait().unwrap();
    let second = commit(&repo, "two");
    let took = wait_applied(&namespace, &second, Duration::from_secs(60)).await;
    let new_leader = lease_holder(&namespace).await.unwrap();
    assert_ne!(
        new_leader, leader,
        "the surviving replica took the Lease over"
    );
    eprintln!("failover: {new_leader} applied the next commit {took:?} after the leader died");
}

/// A Deployment no node can run (no node has the label it selects), so that waiting for its
/// health keeps a reconcile in flight.
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
      nodeSelector: {driftless.dev/no-such-node: \"true\"}
      containers:
      - name: stuck
        image: example.invalid/stuck:1
";

/// Waits until `replica` holds the Lease; panics after `within`.
async fn wait_leading(namespace: &TestNamespace, replica: &Replica, within: Duration) {
    let started = tokio::time::Instant::now();
    while started.elapsed() < within {
        if lease_holder(namespace)
            .await
            .is_some_and(|holder| replica.holds(&holder))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{} did not lead within {within:?}; holder: {:?}",
        replica.host,
        lease_holder(namespace).await
    );
}

#[tokio::test]
async fn a_leader_whose_lease_writes_hang_stops_before_a_standby_takes_over() {
    install_crds().await;
    let namespace = TestNamespace::create("leader-hang").await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    repo.commit(
        "a rollout that never completes",
        &[
            ("deploy/app.yaml", manifest("one").as_str()),
            ("deploy/stuck.yaml", UNSCHEDULABLE),
        ],
    );
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let election = [
        "--leader-elect",
        "--leader-election-lease-duration",
        "4s",
        "--leader-election-renew-deadline",
        "2s",
        "--leader-election-renew-period",
        "500ms",
        "--disable-webhook",
    ];
    let mut leader = start_replica(&namespace, &election);
    wait_leading(&namespace, &leader, Duration::from_secs(60)).await;
    // The apiserver itself holds every Lease update that keeps the leader the holder, once the
    // test cuts the leader off: its renewals hang while the rest of its traffic flows.
    let cut_off = Arc::new(AtomicBool::new(false));
    let hold_when = {
        let cut_off = cut_off.clone();
        let leader_prefix = format!("{}_", leader.host);
        Box::new(move |request: &serde_json::Value| {
            let holder = request["object"]["spec"]["holderIdentity"].as_str();
            cut_off.load(Ordering::SeqCst)
                && holder.is_some_and(|holder| holder.starts_with(&leader_prefix))
        })
    };
    let hook = AdmissionHook::start(
        &namespace,
        "coordination.k8s.io",
        "v1",
        &["leases"],
        &["UPDATE"],
        hold_when,
    )
    .await;
    let standby = start_replica(&namespace, &election);
    // Waiting for a rollout that never completes keeps the leader's reconcile in flight; it
    // would write the status when the five minutes are up.
    namespace
        .create_git_repository(
            "app",
            json!({ "url": server.url_for(&repo), "path": "deploy", "interval": "1h",
                    "wait": true, "timeout": "5m" }),
        )
        .await;
    let deployments = namespace.api::<k8s_openapi::api::apps::v1::Deployment>();
    for _ in 0..600 {
        if deployments.get_opt("stuck").await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        deployments.get_opt("stuck").await.unwrap().is_some(),
        "the leader applied the revision and waits for its health"
    );
    // Both replicas have seen a few renewals.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        leader.child.try_wait().unwrap().is_none(),
        "the leader runs"
    );

    cut_off.store(true, Ordering::SeqCst);
    let cut = tokio::time::Instant::now();
    let (mut leader_stopped, mut standby_leading) = (None, None);
    while cut.elapsed() < Duration::from_secs(60)
        && (leader_stopped.is_none() || standby_leading.is_none())
    {
        if leader_stopped.is_none() {
            if let Some(status) = leader.child.try_wait().unwrap() {
                leader_stopped = Some((cut.elapsed(), status));
            }
        }
        if standby_leading.is_none()
            && lease_holder(&namespace)
                .await
                .is_some_and(|holder| standby.holds(&holder))
        {
            standby_leading = Some(cut.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("leader stopped: {leader_stopped:?}; standby leading: {standby_leading:?}");
    assert!(
        hook.held() > 0,
        "the leader's renewals reached the apiserver and hung"
    );
    let standby_leading = standby_leading.expect("the standby takes over");
    let (stopped, status) =
        leader_stopped.expect("the leader stops; it was still running after the standby took over");
    assert!(
        stopped < standby_leading,
        "the leader stopped after {stopped:?}, only after the standby led at {standby_leading:?}"
    );
    assert!(
        !status.success(),
        "losing leadership is an error exit: {status}"
    );
    hook.release();
}

#[tokio::test]
async fn a_signed_push_webhook_triggers_an_immediate_reconcile() {
    install_crds().await;
    let namespace = TestNamespace::create("webhook-push").await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let first = commit(&repo, "one");
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let secrets = tempfile::tempdir().unwrap();
    write_secret(secrets.path(), "github", "It's a Secret to Everybody");
    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let secrets_dir = secrets.path().to_str().unwrap();
    let replica = start_replica(
        &namespace,
        &[
            "--webhook-bind-address",
            &address,
            "--webhook-secrets-dir",
            secrets_dir,
        ],
    );
    let url = server.url_for(&repo);
    // Polling once an hour: only the webhook can make the next commit land quickly.
    create_repository(&namespace, &url, "1h").await;
    wait_applied(&namespace, &first, Duration::from_secs(60)).await;
    wait_for_port(port).await;

    let second = commit(&repo, "two");
    let payload = json!({
        "ref": "refs/heads/main", "after": second, "head_commit": { "id": second },
        "repository": { "clone_url": url, "default_branch": "main" },
    });
    let body = serde_json::to_vec(&payload).unwrap();
    let (status, response) =
        github_push(port, "/hooks/github", b"wrong secret", "delivery-1", &body);
    assert_eq!(status, 401, "a forged signature is refused: {response}");

    let (status, response) = github_push(
        port,
        "/hooks/github",
        b"It's a Secret to Everybody",
        "delivery-2",
        &body,
    );
    assert_eq!(status, 202, "{response}");
    assert!(
        response.contains(r#""triggered":1"#),
        "one object triggered, counted, not named: {response}"
    );
    let took = wait_applied(&namespace, &second, Duration::from_secs(30)).await;
    eprintln!("push to applied through the webhook: {took:?}");
    assert!(
        took < Duration::from_secs(20),
        "the webhook, not the hourly poll, applied it"
    );
    // Recorded with the status of the reconcile it started.
    let recorded = wait_last_webhook(&namespace, "delivery-2").await;
    assert_eq!(recorded.provider, "github");
    assert!(
        recorded.received_at.parse::<jiff::Timestamp>().is_ok(),
        "{recorded:?}"
    );

    // A push of the applied commit asks for no reconcile and writes nothing.
    let api = namespace.api::<GitRepository>();
    let version_before = api.get("app").await.unwrap().metadata.resource_version;
    let queued_before = replica.counter(QUEUED_PUSHES);
    let (status, response) = github_push(
        port,
        "/hooks/github",
        b"It's a Secret to Everybody",
        "delivery-3",
        &body,
    );
    assert_eq!(status, 202, "{response}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        replica.counter(QUEUED_PUSHES),
        queued_before,
        "an applied commit is not reconciled again"
    );
    let after = api.get("app").await.unwrap();
    assert_eq!(after.metadata.resource_version, version_before, "no write");
}

/// `status.lastWebhook` once it names `delivery`.
async fn wait_last_webhook(namespace: &TestNamespace, delivery: &str) -> LastWebhook {
    let api = namespace.api::<GitRepository>();
    let mut last = None;
    for _ in 0..100 {
        let repository = api.get("app").await.unwrap();
        last = repository.status.and_then(|status| status.last_webhook);
        let named = last
            .as_ref()
            .and_then(|recorded| recorded.delivery_id.as_deref());
        if named == Some(delivery) {
            return last.expect("just matched");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("status.lastWebhook never named {delivery}: {last:?}");
}

async fn owned_configmaps(namespace: &TestNamespace) -> usize {
    let selector = kube::api::ListParams::default().labels("driftless.dev/name=app");
    let list = namespace
        .api::<k8s_openapi::api::core::v1::ConfigMap>()
        .list(&selector)
        .await
        .unwrap();
    list.items.len()
}

#[tokio::test]
async fn a_controller_killed_mid_apply_converges_after_restart_with_nothing_lost() {
    const OBJECTS: usize = 400;
    install_crds().await;
    let namespace = TestNamespace::create("sigkill-mid-apply").await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let documents: Vec<String> = (0..OBJECTS)
        .map(|i| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\ndata:\n  index: \"{i}\"\n"))
        .collect();
    let head = repo.commit(
        "large",
        &[("deploy/many.yaml", documents.join("---\n").as_str())],
    );
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let mut first = start_replica(
        &namespace,
        &["--disable-webhook", "--apply-concurrency", "2"],
    );
    create_repository(&namespace, &server.url_for(&repo), "1s").await;

    let mut written = 0;
    for _ in 0..600 {
        written = owned_configmaps(&namespace).await;
        if written > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.child.kill().expect("SIGKILL the controller");
    first.child.wait().unwrap();
    let at_kill = owned_configmaps(&namespace).await;
    eprintln!("killed with {at_kill} of {OBJECTS} objects written (first seen: {written})");
    // Only a kill between the first and the last write tests a half-applied revision.
    assert!(
        written > 0,
        "no object was written before the kill: the test killed an idle controller"
    );
    assert!(
        at_kill < OBJECTS,
        "all {OBJECTS} objects were written before the kill: nothing was interrupted"
    );

    let _second = start_replica(&namespace, &["--disable-webhook"]);
    wait_applied(&namespace, &head, Duration::from_secs(120)).await;
    assert_eq!(
        owned_configmaps(&namespace).await,
        OBJECTS,
        "every object applied and owned"
    );
    let status = namespace
        .api::<GitRepository>()
        .get("app")
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(
        status.inventory.len(),
        OBJECTS,
        "the inventory lists every object"
    );
}

#[tokio::test]
async fn a_per_object_webhook_path_is_published_and_triggers_only_with_its_token() {
    install_crds().await;
    let namespace = TestNamespace::create("webhook-object").await;
    let token = b"per-object-token";
    namespace.create_secret("hook", &[("token", token)]).await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let first = commit(&repo, "one");
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let port = free_port();
    let replica = start_replica(
        &namespace,
        &["--webhook-bind-address", &format!("127.0.0.1:{port}")],
    );
    let url = server.url_for(&repo);
    namespace
        .create_git_repository(
            "app",
            json!({ "url": url, "path": "deploy", "interval": "1h", "webhook": { "secretRef": { "name": "hook" } } }),
        )
        .await;
    wait_applied(&namespace, &first, Duration::from_secs(60)).await;
    let status = namespace
        .api::<GitRepository>()
        .get("app")
        .await
        .unwrap()
        .status
        .unwrap();
    let path = status
        .webhook_path
        .expect("status.webhookPath is published");
    assert_eq!(
        path,
        driftless::webhook::object_hook_path(token, &namespace.name, "app")
    );
    wait_for_port(port).await;

    let second = commit(&repo, "two");
    let body = serde_json::to_vec(&json!({
        "ref": "refs/heads/main", "after": second, "head_commit": { "id": second },
        "repository": { "clone_url": url, "default_branch": "main" },
    }))
    .unwrap();
    let (status, response) = github_push(port, &path, b"some other secret", "d-1", &body);
    assert_eq!(status, 401, "{response}");
    let (status, response) = github_push(port, &path, token, "d-2", &body);
    assert_eq!(status, 202, "{response}");
    wait_applied(&namespace, &second, Duration::from_secs(30)).await;
    let metrics =
        support::controller::http_get(replica.metrics_port, "/metrics").expect("/metrics answers");
    assert!(
        metrics.contains(r#"driftless_webhook_requests_total{receiver="object",provider="github",outcome="unauthorized"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"driftless_webhook_requests_total{receiver="object",provider="github",outcome="accepted"} 1"#),
        "{metrics}"
    );
}

/// `curl` (installed by tests/prereqs.sh) as a git host would call the receiver over TLS;
/// returns the HTTP status, or the curl error when the TLS handshake fails.
fn curl_post(url: &str, ca: &Path, client: Option<(&Path, &Path)>) -> Result<String, String> {
    let mut command = Command::new("curl");
    command
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "-d",
            "{}",
            "--cacert",
        ])
        .arg(ca);
    if let Some((cert, key)) = client {
        command.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    let output = command.arg(url).output().expect("curl runs");
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[tokio::test]
async fn the_webhook_receiver_serves_mutual_tls() {
    let namespace = TestNamespace::create("webhook-mtls").await;
    let tls = support::git::TestTls::generate();
    let files = tempfile::tempdir().unwrap();
    let path = |name: &str| files.path().join(name);
    let (server_cert, server_key) = tls.server_pem();
    let (client_cert, client_key) = tls.client_certificate("git host");
    for (name, contents) in [
        ("ca.pem", tls.ca_pem.as_str()),
        ("server.pem", server_cert),
        ("server.key", server_key),
        ("client.pem", client_cert.as_str()),
        ("client.key", client_key.as_str()),
    ] {
        std::fs::write(path(name), contents).unwrap();
    }
    let port = free_port();
    let (ca, server_cert, server_key) = (path("ca.pem"), path("server.pem"), path("server.key"));
    let _replica = start_replica(
        &namespace,
        &[
            "--webhook-bind-address",
            &format!("127.0.0.1:{port}"),
            "--webhook-tls-cert",
            server_cert.to_str().unwrap(),
            "--webhook-tls-key",
            server_key.to_str().unwrap(),
            "--webhook-client-ca",
            ca.to_str().unwrap(),
        ],
    );
    wait_for_port(port).await;
    let url = format!("https://127.0.0.1:{port}/hooks/github");

    let without = tokio::task::spawn_blocking({
        let (url, ca) = (url.clone(), ca.clone());
        move || curl_post(&url, &ca, None)
    });
    let refused = without.await.unwrap();
    // Refused by the TLS handshake (an alert), not by anything else that makes curl fail.
    let refused = refused.expect_err("a client without a certificate is refused");
    assert!(
        refused.to_lowercase().contains("alert") && !refused.contains("Connection refused"),
        "a client without a certificate is refused by the handshake: {refused}"
    );
    let (cert, key) = (path("client.pem"), path("client.key"));
    let with = tokio::task::spawn_blocking(move || curl_post(&url, &ca, Some((&cert, &key))));
    // No shared GitHub secret is configured, so a client that got through TLS gets 404.
    assert_eq!(
        with.await.unwrap().as_deref(),
        Ok("404"),
        "a client with a certificate gets through TLS"
    );
}
