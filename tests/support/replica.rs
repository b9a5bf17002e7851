//! The `driftless controller` binary as operators run it, as a child process: starting
//! replicas, the ports they listen on, the GitRepository objects and commits they reconcile,
//! the leader Lease, and webhook deliveries over plain HTTP/1.1.

use std::{
    io::{Read, Write},
    path::Path,
    process::{Child, Command},
    sync::atomic::{AtomicU16, AtomicU32, Ordering},
    time::Duration,
};

use driftless::api::GitRepository;
use hmac::{Hmac, Mac};
use k8s_openapi::api::{coordination::v1::Lease, core::v1::ConfigMap};
use kube::api::PostParams;
use serde_json::json;
use sha2::Sha256;

use super::{
    cluster::{TestNamespace, kubeconfig_path},
    git::TestRepo,
};

/// A controller process, killed when dropped.
pub struct Replica {
    pub child: Child,
    pub metrics_port: u16,
    /// The `HOSTNAME` the process runs with: its leader-election identity is
    /// `<host>_<pid hex><nanos hex>`, see [`Replica::holds`].
    pub host: String,
    _cache: tempfile::TempDir,
}

impl Replica {
    /// Whether `holder` (a Lease's `holderIdentity`) is this replica.
    pub fn holds(&self, holder: &str) -> bool {
        holder.starts_with(&format!("{}_", self.host))
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port for a server the controller binary will open. Taken below the kernel's ephemeral
/// range (which starts at 32768), so a port-0 listener of a parallel test can never grab it
/// between this check and the binary's bind.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 700) as u16 * 16;
    loop {
        let port = base + NEXT.fetch_add(1, Ordering::Relaxed) % 4_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Starts `driftless controller` watching only `namespace`, with a cache of its own, metrics
/// on a free port and the `extra` flags.
pub fn start_replica(namespace: &TestNamespace, extra: &[&str]) -> Replica {
    static REPLICAS: AtomicU32 = AtomicU32::new(0);
    let host = format!(
        "replica-{}-{}",
        std::process::id(),
        REPLICAS.fetch_add(1, Ordering::Relaxed)
    );
    let cache = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_driftless"))
        .args([
            "controller",
            "--namespace",
            &namespace.name,
            "--controller-namespace",
            &namespace.name,
        ])
        .args([
            "--metrics-bind-address",
            &format!("127.0.0.1:{metrics_port}"),
        ])
        .arg("--git-cache-dir")
        .arg(cache.path())
        .args(extra)
        .env("KUBECONFIG", kubeconfig_path())
        .env("RUST_LOG", "driftless=info")
        .env("HOSTNAME", &host)
        .spawn()
        .expect("the driftless binary starts");
    Replica {
        child,
        metrics_port,
        host,
        _cache: cache,
    }
}

/// A ConfigMap `app` whose `data.value` is `value`.
pub fn manifest(value: &str) -> String {
    manifest_named("app", value)
}

/// A ConfigMap `name` whose `data.value` is `value`.
pub fn manifest_named(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  value: \"{value}\"\n"
    )
}

/// Commits [`manifest`] with `value` as `deploy/app.yaml`; returns the commit id.
pub fn commit(repo: &TestRepo, value: &str) -> String {
    commit_configmap(repo, "app", value)
}

/// Commits [`manifest_named`] `configmap` with `value` as `deploy/app.yaml`.
pub fn commit_configmap(repo: &TestRepo, configmap: &str, value: &str) -> String {
    repo.commit(
        value,
        &[("deploy/app.yaml", manifest_named(configmap, value).as_str())],
    )
}

/// Creates GitRepository `app` following the default branch of `url`, path `deploy`.
pub async fn create_repository(namespace: &TestNamespace, url: &str, interval: &str) {
    create_repository_named(namespace, "app", url, interval).await;
}

/// Creates GitRepository `name` following the default branch of `url`, path `deploy`.
pub async fn create_repository_named(
    namespace: &TestNamespace,
    name: &str,
    url: &str,
    interval: &str,
) {
    namespace
        .create_git_repository(
            name,
            json!({ "url": url, "path": "deploy", "interval": interval }),
        )
        .await;
}

/// Waits until GitRepository `app` reports `commit` applied; returns how long that took.
pub async fn wait_applied(namespace: &TestNamespace, commit: &str, within: Duration) -> Duration {
    wait_applied_named(namespace, "app", commit, within).await
}

/// Waits until GitRepository `name` reports `commit` in `status.lastAppliedRevision`.
pub async fn wait_applied_named(
    namespace: &TestNamespace,
    name: &str,
    commit: &str,
    within: Duration,
) -> Duration {
    let started = tokio::time::Instant::now();
    let api = namespace.api::<GitRepository>();
    while started.elapsed() < within {
        if applied_revision(namespace, name).await.ends_with(commit) {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = api.get(name).await.unwrap().status;
    panic!("{commit} was not applied to {name} within {within:?}; status: {status:?}");
}

/// `status.lastAppliedRevision` of GitRepository `name`, empty before the first apply.
pub async fn applied_revision(namespace: &TestNamespace, name: &str) -> String {
    let repository = namespace.api::<GitRepository>().get(name).await.unwrap();
    repository
        .status
        .and_then(|s| s.last_applied_revision)
        .unwrap_or_default()
}

/// `data.value` of ConfigMap `name`, as the cluster has it now.
pub async fn configmap_value(namespace: &TestNamespace, name: &str) -> Option<String> {
    let configmap = namespace.api::<ConfigMap>().get_opt(name).await.unwrap()?;
    configmap.data?.remove("value")
}

/// The `holderIdentity` of the `driftless-leader` Lease in `namespace`.
pub async fn lease_holder(namespace: &TestNamespace) -> Option<String> {
    let lease = namespace
        .api::<Lease>()
        .get_opt("driftless-leader")
        .await
        .unwrap()?;
    lease.spec?.holder_identity
}

/// Lowercase hex of HMAC-SHA256(`key`, `body`).
pub fn hmac_sha256_hex(key: &[u8], body: &[u8]) -> String {
    hmac_sha256(key, body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// HMAC-SHA256(`key`, `body`).
pub fn hmac_sha256(key: &[u8], body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// The `X-Hub-Signature-256` value of `body` signed with `secret`.
pub fn github_signature(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hmac_sha256_hex(secret, body))
}

/// Delivers `body` as a GitHub push event signed with `key`.
pub fn github_push(
    port: u16,
    path: &str,
    key: &[u8],
    delivery: &str,
    body: &[u8],
) -> (u16, String) {
    let signature = github_signature(key, body);
    let headers = [
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", delivery),
        ("X-Hub-Signature-256", signature.as_str()),
        ("Content-Type", "application/json"),
    ];
    post(port, path, &headers, body)
}

/// POSTs `body` with `headers` to the receiver; returns the status code and the response.
pub fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    request(port, "POST", path, headers, body)
}

/// Sends one HTTP/1.1 request on a fresh connection; returns the status code (0 when no status
/// line came back) and the raw response. A server may answer before reading the whole body
/// (413) and close: write errors are then ignored, and whatever was read before an error is
/// returned.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).expect("the receiver listens");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let mut buffer = [0; 8192];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => response.extend_from_slice(&buffer[..read]),
        }
    }
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, response)
}

/// Waits until something accepts connections on `port`.
pub async fn wait_for_port(port: u16) {
    for _ in 0..600 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {port}");
}

/// Writes a shared webhook secret as the Helm chart mounts it: one file per provider, with
/// the trailing newline `kubectl create secret --from-file` keeps.
pub fn write_secret(dir: &Path, provider: &str, secret: &str) {
    std::fs::write(dir.join(provider), format!("{secret}\n")).unwrap();
}
