//! Repository credentials through the controller, against the real cluster: a tenant cannot
//! borrow a Secret its ServiceAccount may not read, and tokens pasted into `spec.url` never
//! reach a status, an Event or a log line.

use crate::support;

use std::{
    io::{BufRead, BufReader, Write},
    net::TcpListener,
    sync::{Arc, Mutex},
    time::Duration,
};

use driftless::api::GitRepository;
use k8s_openapi::api::events::v1::Event;
use serde_json::json;
use support::cluster::{TestNamespace, install_crds};

/// Kills the controller binary when the test ends, whatever happens.
struct ChildProcess(std::process::Child);

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The driftless binary watching only `namespace`, its JSON log lines (stdout and stderr)
/// written to `log`.
fn start_binary(
    namespace: &TestNamespace,
    cache: &std::path::Path,
    log: &std::path::Path,
) -> ChildProcess {
    let stdout = std::fs::File::create(log).unwrap();
    let stderr = stdout.try_clone().unwrap();
    ChildProcess(
        std::process::Command::new(env!("CARGO_BIN_EXE_driftless"))
            .args([
                "controller",
                "--log-format",
                "json",
                "--namespace",
                &namespace.name,
            ])
            .args(["--disable-webhook", "--metrics-bind-address", "127.0.0.1:0"])
            .args(["--default-interval", "2s"])
            .arg("--git-cache-dir")
            .arg(cache)
            .env("KUBECONFIG", support::cluster::kubeconfig_path())
            .env("RUST_LOG", "info")
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("the driftless binary starts"),
    )
}

/// Every request head that arrives, answered with a basic-auth challenge so that a client
/// holding credentials would send them.
struct RecordingServer {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
}

impl RecordingServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let recorded = heads.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                recorded.lock().unwrap().push(head);
                let _ = stream.write_all(
                    b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Self { port, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

async fn ready_false(namespace: &TestNamespace, name: &str) -> (String, String) {
    let api = namespace.api::<GitRepository>();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let repository = api.get(name).await.unwrap();
        let ready = repository
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .filter(|c| c.status == "False")
            .map(|c| (c.reason.clone(), c.message.clone()));
        if let Some(ready) = ready {
            return ready;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "GitRepository {name} never became Ready=False: {:#?}",
            repository.status
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn event_notes(namespace: &TestNamespace) -> Vec<String> {
    let events = namespace.api::<Event>();
    let list = events.list(&Default::default()).await.unwrap();
    list.items.into_iter().filter_map(|e| e.note).collect()
}

#[tokio::test]
async fn a_secret_the_service_account_may_not_read_is_never_sent() {
    install_crds().await;
    let namespace = TestNamespace::create("source-secret-rbac").await;
    // The tenant's account may manage ConfigMaps, and may not read Secrets.
    namespace
        .grant_service_account("tenant", &["configmaps"], &["*"])
        .await;
    let password: &[u8] = b"not-for-the-tenant";
    let data: [(&str, &[u8]); 3] = [
        ("username", b"deployer"),
        ("password", password),
        ("bearerToken", b"bearer-not-for-the-tenant"),
    ];
    namespace.create_secret("team-credentials", &data).await;
    // A second account that may read the Secret: its requests show what a request carrying
    // these credentials looks like to the server, so the check below is not vacuous.
    namespace
        .grant_service_account("reader", &["secrets", "configmaps"], &["*"])
        .await;
    let server = RecordingServer::start();
    let cache = tempfile::tempdir().unwrap();
    let log = cache.path().join("controller.log");
    let _controller = start_binary(&namespace, &cache.path().join("git"), &log);
    for (name, account) in [("borrower", "tenant"), ("reader", "reader")] {
        namespace
            .create_git_repository(
                name,
                json!({
                    "url": format!("http://127.0.0.1:{}/{name}.git", server.port),
                    "secretRef": { "name": "team-credentials" },
                    "serviceAccountName": account,
                    "interval": "2s",
                }),
            )
            .await;
    }

    let (reason, message) = ready_false(&namespace, "borrower").await;
    eprintln!("as the tenant reads it: {message}");
    assert_eq!(reason, "SecretNotFound", "{message}");
    assert!(
        message.contains("team-credentials") && message.contains("forbidden"),
        "the status names the Secret and says it could not be read: {message}"
    );
    // Instead of waiting a while: wait until the same controller, after refusing the borrower,
    // has sent the Secret's credentials for the reader (whose account may read it) twice, so
    // that a reconcile of the borrower that did read the Secret would have reached the server.
    let authorized = |path: &str| {
        let request = format!("GET /{path}.git/");
        server
            .heads()
            .into_iter()
            .filter(|head| head.starts_with(&request))
            .filter(|head| head.to_ascii_lowercase().contains("authorization:"))
            .count()
    };
    let refused_at = authorized("reader");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while authorized("reader") < refused_at + 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reader's requests never carried the Secret's credentials: {:#?}",
            server.heads()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        authorized("borrower"),
        0,
        "credentials of a Secret the tenant may not read were sent: {:#?}",
        server.heads()
    );
}

#[tokio::test]
async fn tokens_in_urls_never_reach_status_events_or_logs() {
    install_crds().await;
    let namespace = TestNamespace::create("source-url-redaction").await;
    let closed_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // What the CRD's own validation lets through; the engine's tests cover the rest.
    let urls = [
        // The `/` in the token makes the URL unparsable: the part after it reads as a path.
        format!("https://deployer:ghp_Sup3rS3cr3t/T0k3n@127.0.0.1:{closed_port}/app.git"),
        format!("https://ghp_Sup3rS3cr3t/T0k3n@127.0.0.1:{closed_port}/app.git"),
        "https://deployer:ghp_Sup3rS3cr3t@127.0.0.1:99999/app.git".to_owned(),
        "ssh://git:ghp_Sup3rS3cr3t/T0k3n@127.0.0.1/app.git".to_owned(),
        "https://deployer:ghp_Sup3rS3cr3t@:8080/app.git".to_owned(),
        "https://deployer:ghp_Sup3rS3cr3t@127.0.0.1/".to_owned(),
        format!("https://deployer:ghp_Sup3rS3cr3t@127.0.0.1:{closed_port}/app.git"),
    ];
    let cache = tempfile::tempdir().unwrap();
    let log = cache.path().join("controller.log");
    let _controller = start_binary(&namespace, &cache.path().join("git"), &log);
    for (index, url) in urls.iter().enumerate() {
        namespace
            .create_git_repository(
                &format!("leaky-{index}"),
                json!({ "url": url, "interval": "2s" }),
            )
            .await;
    }
    let mut messages = Vec::new();
    for (index, url) in urls.iter().enumerate() {
        let (_, message) = ready_false(&namespace, &format!("leaky-{index}")).await;
        eprintln!("{url}: {message}");
        messages.push(message);
    }
    // The failures were logged and announced by now; give the log a moment to flush.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let notes = event_notes(&namespace).await;
    assert!(!notes.is_empty(), "the failures were announced as Events");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("reconcile failed"),
        "the failures were logged: {logged}"
    );
    let places = [
        ("status", messages.join("\n")),
        ("events", notes.join("\n")),
        ("log", logged),
    ];
    for (place, text) in places {
        for secret in ["ghp_Sup3rS3cr3t", "T0k3n"] {
            assert!(
                !text.contains(secret),
                "the token reached the {place}: {text}"
            );
        }
    }
}
