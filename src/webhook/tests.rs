//! HTTP-level tests of the receiver: real requests through the router with a recording
//! [`Trigger`] in place of the controller.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::verify::{encode_hex, hmac_sha256};
use super::*;
use crate::api::GitReference;

mod properties;

const SECRET: &[u8] = b"shared-secret";
const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// Records every trigger; fails for the objects listed in `failing`.
#[derive(Default)]
struct RecordingTrigger {
    calls: Mutex<Vec<(String, String, Option<String>)>>,
    failing: Mutex<HashSet<String>>,
    deliveries: Mutex<Vec<(String, Delivery)>>,
    previews: Mutex<Vec<(String, u64)>>,
}

impl RecordingTrigger {
    fn calls(&self) -> Vec<(String, String, Option<String>)> {
        self.calls.lock().unwrap().clone()
    }
}

impl Trigger for RecordingTrigger {
    fn trigger(
        &self,
        namespace: &str,
        name: &str,
        commit: Option<&str>,
    ) -> BoxFuture<'static, Result<(), TriggerError>> {
        let object = format!("{namespace}/{name}");
        self.calls.lock().unwrap().push((
            namespace.to_string(),
            name.to_string(),
            commit.map(str::to_string),
        ));
        let fail = self.failing.lock().unwrap().contains(&object);
        Box::pin(async move {
            if fail {
                Err(TriggerError::Failed("api server unavailable".into()))
            } else {
                Ok(())
            }
        })
    }

    fn record_delivery(
        &self,
        namespace: &str,
        name: &str,
        delivery: &Delivery,
    ) -> BoxFuture<'static, Result<(), TriggerError>> {
        let object = format!("{namespace}/{name}");
        self.deliveries
            .lock()
            .unwrap()
            .push((object, delivery.clone()));
        Box::pin(async { Ok(()) })
    }

    fn preview(&self, namespace: &str, name: &str, pull: &PullRequest) -> bool {
        let object = format!("{namespace}/{name}");
        self.previews.lock().unwrap().push((object, pull.number));
        true
    }
}

struct Harness {
    state: WebhookState,
    trigger: Arc<RecordingTrigger>,
}

impl Harness {
    fn new() -> Harness {
        let trigger = Arc::new(RecordingTrigger::default());
        let secrets = SharedSecrets {
            github: Some(SECRET.to_vec()),
            gitlab: Some(b"gitlab-token".to_vec()),
            ..SharedSecrets::default()
        };
        let mut state = WebhookState::new(secrets, trigger.clone());
        state.retry = TriggerRetry {
            attempts: 2,
            first_backoff: Duration::from_millis(1),
        };
        let mut index = state.targets.write().unwrap();
        index.insert(target("site", "git@github.com:org/repo.git", "main"));
        index.insert(target("staging", "https://github.com/org/repo", "staging"));
        index.insert(target(
            "gl",
            "https://gitlab.example.com/group/repo.git",
            "main",
        ));
        drop(index);
        Harness { state, trigger }
    }

    /// Sends `request` and returns the answer once the triggers it started are done too.
    async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = router(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        self.settle().await;
        (status, body)
    }

    /// Waits for the triggers that run after their answers.
    async fn settle(&self) {
        let in_flight = &self.state.in_flight;
        in_flight.close();
        in_flight.wait().await;
        in_flight.reopen();
    }
}

fn target(name: &str, url: &str, branch: &str) -> Target {
    let reference = GitReference {
        branch: Some(branch.to_string()),
        ..GitReference::default()
    };
    Target::new("apps", name, url, Some(reference)).unwrap()
}

fn github_push_body(git_ref: &str) -> Vec<u8> {
    json!({
        "ref": git_ref,
        "after": SHA,
        "repository": {
            "clone_url": "https://github.com/org/repo.git",
            "ssh_url": "git@github.com:org/repo.git",
            "html_url": "https://github.com/org/repo",
            "default_branch": "main"
        }
    })
    .to_string()
    .into_bytes()
}

fn github_signature(secret: &[u8], body: &[u8]) -> String {
    format!("sha256={}", encode_hex(&hmac_sha256(secret, &[body])))
}

fn github_request(
    path: &str,
    event: &str,
    delivery: &str,
    signature: &str,
    body: Vec<u8>,
) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", signature)
        .body(Body::from(body))
        .unwrap()
}

fn signed_github_push(delivery: &str, git_ref: &str) -> Request<Body> {
    let body = github_push_body(git_ref);
    let signature = github_signature(SECRET, &body);
    github_request("/hooks/github", "push", delivery, &signature, body)
}

fn github_pull_request_body() -> Vec<u8> {
    json!({
        "action": "synchronize",
        "number": 7,
        "pull_request": {
            "head": { "sha": SHA, "repo": { "id": 1 } },
            "base": { "ref": "main", "repo": { "id": 1 } }
        },
        "repository": { "clone_url": "https://github.com/org/repo.git" }
    })
    .to_string()
    .into_bytes()
}

#[tokio::test]
async fn a_pull_request_is_verified_and_deduplicated_like_a_push() {
    let harness = Harness::new();
    let body = github_pull_request_body();
    let wrong = github_signature(b"not the secret", &body);
    let forged = github_request("/hooks/github", "pull_request", "p-1", &wrong, body.clone());
    let (status, _) = harness.send(forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(harness.trigger.previews.lock().unwrap().is_empty());

    let signature = github_signature(SECRET, &body);
    let signed = || {
        github_request(
            "/hooks/github",
            "pull_request",
            "p-1",
            &signature,
            body.clone(),
        )
    };
    let (status, answer) = harness.send(signed()).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // Every object of the repository is asked, whatever its branch: each decides by its spec.
    assert_eq!(answer, json!({"triggered": 0, "previewed": 2}));
    let (status, answer) = harness.send(signed()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["duplicate"], json!(true));
    assert_eq!(
        *harness.trigger.previews.lock().unwrap(),
        [
            ("apps/site".to_string(), 7),
            ("apps/staging".to_string(), 7)
        ]
    );
    assert!(
        harness.trigger.calls().is_empty(),
        "a pull request reconciles nothing"
    );
}

#[tokio::test]
async fn valid_github_push_triggers_matching_target() {
    let harness = Harness::new();
    let (status, body) = harness
        .send(signed_github_push("d-1", "refs/heads/main"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body, json!({"triggered": 1}));
    assert_eq!(
        harness.trigger.calls(),
        [(
            "apps".to_string(),
            "site".to_string(),
            Some(SHA.to_string())
        )]
    );
}

#[tokio::test]
async fn wrong_or_missing_signature_is_401_and_triggers_nothing() {
    let harness = Harness::new();
    let body = github_push_body("refs/heads/main");
    let wrong = github_signature(b"not the secret", &body);
    let request = github_request("/hooks/github", "push", "d-1", &wrong, body.clone());
    let (status, response) = harness.send(request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(response, json!({"error": "signature does not match"}));

    let unsigned = Request::post("/hooks/github")
        .header("x-github-event", "push")
        .body(Body::from(body))
        .unwrap();
    let (status, _) = harness.send(unsigned).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(harness.trigger.calls().is_empty());
}

#[tokio::test]
async fn rejected_delivery_does_not_burn_its_delivery_id() {
    let harness = Harness::new();
    let body = github_push_body("refs/heads/main");
    let wrong = github_signature(b"forged", &body);
    let forged = github_request("/hooks/github", "push", "d-7", &wrong, body);
    assert_eq!(harness.send(forged).await.0, StatusCode::UNAUTHORIZED);
    let (status, _) = harness
        .send(signed_github_push("d-7", "refs/heads/main"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(harness.trigger.calls().len(), 1);
}

#[tokio::test]
async fn ping_is_200_with_nothing_triggered() {
    let harness = Harness::new();
    let body = br#"{"zen": "Keep it logically awesome.", "hook_id": 1}"#.to_vec();
    let signature = github_signature(SECRET, &body);
    let request = github_request("/hooks/github", "ping", "p-1", &signature, body);
    let (status, response) = harness.send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(response, json!({"triggered": 0}));
    assert!(harness.trigger.calls().is_empty());
}

#[tokio::test]
async fn replayed_delivery_is_not_triggered_twice() {
    let harness = Harness::new();
    let (first, _) = harness
        .send(signed_github_push("d-1", "refs/heads/main"))
        .await;
    let (second, body) = harness
        .send(signed_github_push("d-1", "refs/heads/main"))
        .await;
    assert_eq!(first, StatusCode::ACCEPTED);
    assert_eq!(second, StatusCode::OK);
    assert_eq!(body, json!({"triggered": 0, "duplicate": true}));
    assert_eq!(harness.trigger.calls().len(), 1);
    let (third, _) = harness
        .send(signed_github_push("d-2", "refs/heads/main"))
        .await;
    assert_eq!(third, StatusCode::ACCEPTED);
    assert_eq!(harness.trigger.calls().len(), 2);
}

#[tokio::test]
async fn body_over_limit_is_413() {
    let harness = Harness::new();
    let body = vec![b' '; DEFAULT_BODY_LIMIT + 1];
    let signature = github_signature(SECRET, &body);
    let request = github_request("/hooks/github", "push", "big", &signature, body);
    let (status, _) = harness.send(request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(harness.trigger.calls().is_empty());
}

#[tokio::test]
async fn branch_mismatch_is_202_with_empty_list() {
    let harness = Harness::new();
    let (status, body) = harness
        .send(signed_github_push("d-1", "refs/heads/feature"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body, json!({"triggered": 0}));
    assert!(harness.trigger.calls().is_empty());
}

#[tokio::test]
async fn other_branch_triggers_its_target_only() {
    let harness = Harness::new();
    let (status, body) = harness
        .send(signed_github_push("d-1", "refs/heads/staging"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body, json!({"triggered": 1}));
    let objects: Vec<String> = harness.trigger.calls().into_iter().map(|c| c.1).collect();
    assert_eq!(objects, ["staging"]);
}

#[tokio::test]
async fn unknown_provider_and_unconfigured_provider_are_404() {
    let harness = Harness::new();
    for path in [
        "/hooks/svn",
        "/hooks/gitea",
        "/hooks/bitbucket",
        &format!("/hooks/{}", "a".repeat(64)),
    ] {
        let request = Request::post(path).body(Body::from("{}")).unwrap();
        let (status, _) = harness.send(request).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
}

#[tokio::test]
async fn ignored_event_and_invalid_json() {
    let harness = Harness::new();
    let body = br#"{"action": "opened"}"#.to_vec();
    let signature = github_signature(SECRET, &body);
    let request = github_request("/hooks/github", "issues", "i-1", &signature, body);
    let (status, response) = harness.send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(response, json!({"triggered": 0, "ignored": "issues"}));

    let body = b"not json".to_vec();
    let signature = github_signature(SECRET, &body);
    let request = github_request("/hooks/github", "push", "i-2", &signature, body);
    assert_eq!(harness.send(request).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn gitlab_token_push_triggers() {
    let harness = Harness::new();
    let body = json!({
        "object_kind": "push",
        "ref": "refs/heads/main",
        "after": SHA,
        "checkout_sha": SHA,
        "project": {"git_ssh_url": "git@gitlab.example.com:group/repo.git"}
    });
    let request = |token: &str| {
        Request::post("/hooks/gitlab")
            .header("x-gitlab-event", "Push Hook")
            .header("x-gitlab-token", token)
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    assert_eq!(
        harness.send(request("wrong")).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, response) = harness.send(request("gitlab-token")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(response, json!({"triggered": 1}));
}

#[tokio::test]
async fn a_failing_trigger_is_retried_after_the_answer_and_then_a_redelivery_is_processed() {
    let harness = Harness::new();
    harness
        .trigger
        .failing
        .lock()
        .unwrap()
        .insert("apps/site".to_string());
    let (status, body) = harness
        .send(signed_github_push("d-1", "refs/heads/main"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "answered before triggering");
    assert_eq!(body, json!({"triggered": 1}));
    assert_eq!(harness.trigger.calls().len(), 2, "tried twice");
    harness.trigger.failing.lock().unwrap().clear();
    let (status, _) = harness
        .send(signed_github_push("d-1", "refs/heads/main"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "not dropped as a duplicate");
    assert_eq!(harness.trigger.calls().len(), 3);
}

#[tokio::test]
async fn a_trigger_that_fails_once_succeeds_on_its_retry() {
    let harness = Harness::new();
    let flaky = FlakyTrigger::default();
    let mut state = harness.state.clone();
    state.trigger = Arc::new(flaky.clone());
    let flaky_harness = Harness {
        state,
        trigger: harness.trigger.clone(),
    };
    let (status, _) = flaky_harness
        .send(signed_github_push("d-2", "refs/heads/main"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(flaky.attempts.load(Ordering::SeqCst), 2);
    let (status, body) = flaky_harness
        .send(signed_github_push("d-2", "refs/heads/main"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["duplicate"], true, "the retried delivery was handled");
}

/// Fails the first attempt of every object, then succeeds.
#[derive(Clone, Default)]
struct FlakyTrigger {
    attempts: Arc<AtomicUsize>,
}

impl Trigger for FlakyTrigger {
    fn trigger(
        &self,
        _namespace: &str,
        _name: &str,
        _commit: Option<&str>,
    ) -> BoxFuture<'static, Result<(), TriggerError>> {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if attempt == 0 {
                Err(TriggerError::Failed("connection reset".into()))
            } else {
                Ok(())
            }
        })
    }
}

#[tokio::test]
async fn per_object_hook_triggers_its_object_with_its_own_token() {
    let harness = Harness::new();
    let token = b"object-token";
    let path = harness
        .state
        .object_hooks
        .write()
        .unwrap()
        .insert("apps", "site", token);
    assert_eq!(path, object_hook_path(token, "apps", "site"));

    let body = github_push_body("refs/heads/main");
    let shared = github_signature(SECRET, &body);
    let request = github_request(&path, "push", "o-1", &shared, body.clone());
    assert_eq!(harness.send(request).await.0, StatusCode::UNAUTHORIZED);

    let signature = github_signature(token, &body);
    let request = github_request(&path, "push", "o-1", &signature, body);
    let (status, response) = harness.send(request).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(response, json!({"triggered": 1}));
    assert_eq!(harness.trigger.calls()[0].1, "site");

    let body = github_push_body("refs/heads/staging");
    let signature = github_signature(token, &body);
    let request = github_request(&path, "push", "o-2", &signature, body);
    let (status, response) = harness.send(request).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(response, json!({"triggered": 0}), "site follows main");
}

#[tokio::test]
async fn gitlab_standard_webhooks_signature_is_verified_and_its_id_deduplicated() {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;

    let mut harness = Harness::new();
    let key = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    harness.state.secrets = ReloadableSecrets::new(SharedSecrets {
        gitlab: Some(format!("whsec_{key}").into_bytes()),
        ..SharedSecrets::default()
    });
    let body = json!({
        "object_kind": "push",
        "ref": "refs/heads/main",
        "checkout_sha": SHA,
        "project": {"git_http_url": "https://gitlab.example.com/group/repo.git"}
    })
    .to_string();
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let signed = format!("msg_1.{timestamp}.{body}");
    let mac = hmac_sha256(&BASE64.decode(key).unwrap(), &[signed.as_bytes()]);
    let request = |signature: String| {
        Request::post("/hooks/gitlab")
            .header("x-gitlab-event", "Push Hook")
            .header("webhook-id", "msg_1")
            .header("webhook-timestamp", &timestamp)
            .header("webhook-signature", signature)
            .body(Body::from(body.clone()))
            .unwrap()
    };
    let bad = harness.send(request("v1,AAAA".to_string())).await;
    assert_eq!(bad.0, StatusCode::UNAUTHORIZED);
    let good = format!("v1,{}", BASE64.encode(mac));
    let (status, response) = harness.send(request(good.clone())).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(response, json!({"triggered": 1}));
    let (status, response) = harness.send(request(good)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(response["duplicate"], json!(true));
    assert_eq!(harness.trigger.calls().len(), 1);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after_per_receiver() {
    let mut harness = Harness::new();
    harness.state.rate_limiter = Arc::new(RateLimiter::new(RateLimit {
        per_second: 0.001,
        burst: 2,
    }));
    for delivery in ["r-1", "r-2"] {
        let response = router(harness.state.clone())
            .oneshot(signed_github_push(delivery, "refs/heads/main"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    let response = router(harness.state.clone())
        .oneshot(signed_github_push("r-3", "refs/heads/main"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1000).contains(&retry_after), "{retry_after}");
    harness.settle().await;
    assert_eq!(
        harness.trigger.calls().len(),
        2,
        "a refused request triggers nothing"
    );

    // Checked before the signature: even a forged request is refused without verification.
    let forged = github_request("/hooks/github", "push", "r-4", "sha256=00", vec![]);
    assert_eq!(harness.send(forged).await.0, StatusCode::TOO_MANY_REQUESTS);

    // Other receivers keep their own budget; unknown paths stay 404 and get no bucket.
    let gitlab = Request::post("/hooks/gitlab")
        .header("x-gitlab-event", "Push Hook")
        .header("x-gitlab-token", "wrong")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(harness.send(gitlab).await.0, StatusCode::UNAUTHORIZED);
    for _ in 0..3 {
        let unknown = Request::post(format!("/hooks/{}", "b".repeat(64)))
            .body(Body::from("{}"))
            .unwrap();
        assert_eq!(harness.send(unknown).await.0, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn per_object_hooks_have_their_own_rate_limit() {
    let mut harness = Harness::new();
    harness.state.rate_limiter = Arc::new(RateLimiter::new(RateLimit {
        per_second: 0.001,
        burst: 1,
    }));
    let token = b"object-token";
    let path = harness
        .state
        .object_hooks
        .write()
        .unwrap()
        .insert("apps", "site", token);
    let body = github_push_body("refs/heads/main");
    let signature = github_signature(token, &body);
    let request =
        |delivery: &str| github_request(&path, "push", delivery, &signature, body.clone());
    assert_eq!(harness.send(request("o-1")).await.0, StatusCode::ACCEPTED);
    assert_eq!(
        harness.send(request("o-2")).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    let shared = signed_github_push("s-1", "refs/heads/main");
    assert_eq!(harness.send(shared).await.0, StatusCode::ACCEPTED);
}

/// Deadlines against slow clients, over real TCP connections to a served receiver.
mod deadlines {
    use std::io::{Read as _, Write as _};
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// Short deadlines, so the tests are quick; generous margins, so a loaded machine passes.
    const DEADLINE: Duration = Duration::from_millis(300);
    const CLOSED_WITHIN: Duration = Duration::from_secs(3);

    async fn served(harness: &Harness, tls: Option<Arc<rustls::ServerConfig>>) -> SocketAddr {
        let tls = tls.map(axum_server::tls_rustls::RustlsConfig::from_config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut state = harness.state.clone();
        state.body_timeout = DEADLINE;
        tokio::spawn(serve_connections(listener, router(state), DEADLINE, tls));
        address
    }

    /// Keeps sending one byte every 50 ms, as a slow-loris client does, until the server
    /// closes the connection.
    fn trickle(mut writer: tokio::net::tcp::OwnedWriteHalf, byte: u8) {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if writer.write_all(&[byte]).await.is_err() {
                    return;
                }
            }
        });
    }

    /// What the server sent until it closed, and how long closing took. Fails if it did not.
    async fn until_closed(reader: &mut tokio::net::tcp::OwnedReadHalf) -> (String, Duration) {
        let started = Instant::now();
        let mut received = Vec::new();
        let read = tokio::time::timeout(CLOSED_WITHIN, reader.read_to_end(&mut received)).await;
        let text = String::from_utf8_lossy(&received).into_owned();
        assert!(
            read.is_ok(),
            "the connection stayed open; received {text:?}"
        );
        (text, started.elapsed())
    }

    #[tokio::test]
    async fn a_trickled_request_head_is_cut_off_at_the_header_deadline() {
        let harness = Harness::new();
        let address = served(&harness, None).await;
        let (mut reader, mut writer) = TcpStream::connect(address).await.unwrap().into_split();
        writer
            .write_all(b"POST /hooks/github HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            .await
            .unwrap();
        trickle(writer, b'a');
        let (response, took) = until_closed(&mut reader).await;
        assert!(took >= DEADLINE / 2, "closed after {took:?}");
        assert!(
            response.is_empty() || response.starts_with("HTTP/1.1 408"),
            "{response:?}"
        );
    }

    #[tokio::test]
    async fn a_silent_or_one_byte_connection_is_closed_at_the_header_deadline() {
        let harness = Harness::new();
        let address = served(&harness, None).await;
        // "P" is also how an HTTP/2 preface starts: a server that sniffs the protocol waits.
        for opening in [&b""[..], b"P"] {
            let (mut reader, mut writer) = TcpStream::connect(address).await.unwrap().into_split();
            writer.write_all(opening).await.unwrap();
            let (_, took) = until_closed(&mut reader).await;
            assert!(took < CLOSED_WITHIN, "{took:?}");
        }
    }

    #[tokio::test]
    async fn a_trickled_body_gets_408_at_the_body_deadline_and_prompt_ones_are_served() {
        let harness = Harness::new();
        let address = served(&harness, None).await;

        let body = github_push_body("refs/heads/main");
        let head = |length: usize, delivery: &str, signature: &str| {
            format!(
                "POST /hooks/github HTTP/1.1\r\nHost: localhost\r\nContent-Length: {length}\r\n\
                 X-GitHub-Event: push\r\nX-GitHub-Delivery: {delivery}\r\n\
                 X-Hub-Signature-256: {signature}\r\nConnection: close\r\n\r\n"
            )
        };
        let mut prompt = TcpStream::connect(address).await.unwrap();
        let signature = github_signature(SECRET, &body);
        let mut request = head(body.len(), "t-1", &signature).into_bytes();
        request.extend_from_slice(&body);
        prompt.write_all(&request).await.unwrap();
        let (mut reader, _writer) = prompt.into_split();
        let (response, _) = until_closed(&mut reader).await;
        assert!(response.starts_with("HTTP/1.1 202"), "{response:?}");

        let (mut reader, mut writer) = TcpStream::connect(address).await.unwrap().into_split();
        let started = Instant::now();
        writer
            .write_all(head(body.len(), "t-2", &signature).as_bytes())
            .await
            .unwrap();
        writer.write_all(&body[..10]).await.unwrap();
        trickle(writer, b' ');
        let (response, _) = until_closed(&mut reader).await;
        let took = started.elapsed();
        assert!(response.starts_with("HTTP/1.1 408"), "{response:?}");
        assert!(took >= DEADLINE && took < CLOSED_WITHIN, "{took:?}");
        assert_eq!(
            harness.trigger.calls().len(),
            1,
            "the slow delivery triggered nothing"
        );
    }

    fn tls_pair() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let certificate: CertificateDer<'static> = certified.cert.der().clone();
        let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certificate.clone()], PrivateKeyDer::Pkcs8(key))
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certificate).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// Over TLS, the handshake and then the request head each get the header deadline.
    #[tokio::test]
    async fn tls_connections_get_the_same_deadlines() {
        let harness = Harness::new();
        let (server, client) = tls_pair();
        let address = served(&harness, Some(server)).await;

        let (mut reader, _writer) = TcpStream::connect(address).await.unwrap().into_split();
        let (_, took) = until_closed(&mut reader).await;
        assert!(
            took < CLOSED_WITHIN,
            "a stalled handshake was closed after {took:?}"
        );

        let took = tokio::task::spawn_blocking(move || {
            let tcp = std::net::TcpStream::connect(address).unwrap();
            tcp.set_read_timeout(Some(CLOSED_WITHIN)).unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let connection = rustls::ClientConnection::new(client, name).unwrap();
            let mut tls = rustls::StreamOwned::new(connection, tcp);
            tls.write_all(b"POST /hooks/github HTTP/1.1\r\nHost: localhost\r\n")
                .unwrap();
            tls.flush().unwrap();
            let started = Instant::now();
            let mut buffer = [0u8; 512];
            loop {
                match tls.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(error) => {
                        let kind = error.kind();
                        let stalled = matches!(
                            kind,
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        );
                        assert!(!stalled, "the TLS connection stayed open");
                        break;
                    }
                }
            }
            started.elapsed()
        })
        .await
        .unwrap();
        assert!(
            took < CLOSED_WITHIN,
            "a stalled TLS request head lasted {took:?}"
        );
    }
}

#[tokio::test]
async fn requests_are_counted_by_receiver_provider_and_outcome() {
    let mut harness = Harness::new();
    let metrics = crate::telemetry::metrics::Metrics::default();
    harness.state.metrics = Some(metrics.clone());
    harness
        .send(signed_github_push("m-1", "refs/heads/main"))
        .await;
    harness
        .send(signed_github_push("m-1", "refs/heads/main"))
        .await;
    let body = github_push_body("refs/heads/main");
    let forged = github_signature(b"forged", &body);
    harness
        .send(github_request(
            "/hooks/github",
            "push",
            "m-2",
            &forged,
            body,
        ))
        .await;
    let ping = br#"{"zen": "hi"}"#.to_vec();
    let signature = github_signature(SECRET, &ping);
    harness
        .send(github_request(
            "/hooks/github",
            "ping",
            "m-3",
            &signature,
            ping,
        ))
        .await;
    harness
        .send(Request::get("/hooks/github").body(Body::empty()).unwrap())
        .await;
    harness
        .send(Request::post("/hooks/svn").body(Body::empty()).unwrap())
        .await;
    let unknown_object = Request::post(format!("/hooks/{}", "c".repeat(64)))
        .header("x-gitlab-event", "Push Hook")
        .body(Body::empty())
        .unwrap();
    harness.send(unknown_object).await;

    let text = metrics.render();
    for (labels, count) in [
        (
            r#"receiver="shared",provider="github",outcome="accepted""#,
            1,
        ),
        (
            r#"receiver="shared",provider="github",outcome="duplicate""#,
            1,
        ),
        (
            r#"receiver="shared",provider="github",outcome="unauthorized""#,
            1,
        ),
        (r#"receiver="shared",provider="github",outcome="ping""#, 1),
        (
            r#"receiver="shared",provider="github",outcome="method_not_allowed""#,
            1,
        ),
        (
            r#"receiver="shared",provider="unknown",outcome="not_found""#,
            1,
        ),
        (
            r#"receiver="object",provider="gitlab",outcome="not_found""#,
            1,
        ),
    ] {
        let line = format!("driftless_webhook_requests_total{{{labels}}} {count}");
        assert!(text.contains(&line), "{line} missing from\n{text}");
    }
    let latency = r#"driftless_webhook_request_duration_seconds_count{receiver="shared",provider="github"} 5"#;
    assert!(text.contains(latency), "{text}");
}

#[tokio::test]
async fn a_matched_delivery_is_recorded_on_its_objects_once() {
    let harness = Harness::new();
    let before = std::time::SystemTime::now();
    harness
        .send(signed_github_push("d-9", "refs/heads/main"))
        .await;
    harness
        .send(signed_github_push("d-9", "refs/heads/main"))
        .await;
    harness
        .send(signed_github_push("d-10", "refs/heads/feature"))
        .await;
    let deliveries = harness.trigger.deliveries.lock().unwrap().clone();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    let (object, delivery) = &deliveries[0];
    assert_eq!(object, "apps/site");
    assert_eq!(delivery.provider, Provider::GitHub);
    assert_eq!(delivery.id.as_deref(), Some("d-9"));
    assert!(delivery.received_at >= before);
}

#[tokio::test]
async fn a_huge_delivery_id_is_recorded_as_a_bounded_digest() {
    let harness = Harness::new();
    let huge = "d".repeat(200 * 1024);
    let (status, _) = harness
        .send(signed_github_push(&huge, "refs/heads/main"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let deliveries = harness.trigger.deliveries.lock().unwrap().clone();
    let recorded = deliveries[0].1.id.clone().unwrap();
    assert!(
        recorded.len() <= crate::webhook::MAX_DELIVERY_ID_LEN,
        "{} bytes recorded",
        recorded.len()
    );
    assert!(recorded.starts_with("sha256:"), "{recorded}");
    let (status, body) = harness
        .send(signed_github_push(&huge, "refs/heads/main"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["duplicate"], true,
        "the huge id is still de-duplicated"
    );
}

fn github_push_without_id(git_ref: &str) -> Request<Body> {
    let body = github_push_body(git_ref);
    Request::post("/hooks/github")
        .header("x-github-event", "push")
        .header("x-hub-signature-256", github_signature(SECRET, &body))
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn a_delivery_without_an_id_is_deduplicated_by_its_body() {
    let harness = Harness::new();
    let (first, _) = harness
        .send(github_push_without_id("refs/heads/main"))
        .await;
    let (again, body) = harness
        .send(github_push_without_id("refs/heads/main"))
        .await;
    assert_eq!(first, StatusCode::ACCEPTED);
    assert_eq!(again, StatusCode::OK);
    assert_eq!(body["duplicate"], true);
    assert_eq!(harness.trigger.calls().len(), 1, "one reconcile request");
    let (other, _) = harness
        .send(github_push_without_id("refs/heads/staging"))
        .await;
    assert_eq!(
        other,
        StatusCode::ACCEPTED,
        "another body is another delivery"
    );
    assert_eq!(harness.trigger.calls().len(), 2);
}

#[tokio::test]
async fn the_answer_counts_matched_objects_without_naming_them() {
    let harness = Harness::new();
    {
        let mut index = harness.state.targets.write().unwrap();
        let reference = GitReference {
            branch: Some("main".to_string()),
            ..GitReference::default()
        };
        let url = "https://github.com/org/repo";
        index.insert(Target::new("tenant-b", "secret-app", url, Some(reference)).unwrap());
    }
    let request = signed_github_push("d-count", "refs/heads/main");
    let response = router(harness.state.clone())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&bytes).to_string();
    harness.settle().await;
    assert_eq!(text, r#"{"triggered":2}"#);
    for name in ["tenant-b", "secret-app", "apps", "site"] {
        assert!(!text.contains(name), "{name} in {text}");
    }
    assert_eq!(harness.trigger.calls().len(), 2, "both are still triggered");
}

/// Holds every trigger until released, like an API server that stopped answering.
struct HeldTrigger {
    release: tokio::sync::Semaphore,
    calls: AtomicUsize,
}

impl Trigger for Arc<HeldTrigger> {
    fn trigger(
        &self,
        _namespace: &str,
        _name: &str,
        _commit: Option<&str>,
    ) -> BoxFuture<'static, Result<(), TriggerError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let held = self.clone();
        Box::pin(async move {
            held.release.acquire().await.unwrap().forget();
            Ok(())
        })
    }
}

#[tokio::test]
async fn deliveries_beyond_the_in_flight_bound_get_503_and_trigger_nothing() {
    let harness = Harness::new();
    let held = Arc::new(HeldTrigger {
        release: tokio::sync::Semaphore::new(0),
        calls: AtomicUsize::new(0),
    });
    let mut state = harness.state.clone();
    state.trigger = Arc::new(held.clone());
    state.delivery_slots = DeliverySlots::new(1);
    let send = |delivery: &str| {
        router(state.clone()).oneshot(signed_github_push(delivery, "refs/heads/main"))
    };
    assert_eq!(send("held-1").await.unwrap().status(), StatusCode::ACCEPTED);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(held.calls.load(Ordering::SeqCst), 1);

    let refused = send("refused-1").await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(held.calls.load(Ordering::SeqCst), 1, "nothing triggered");
    let duplicate = send("held-1").await.unwrap();
    assert_eq!(
        duplicate.status(),
        StatusCode::OK,
        "a redelivery needs no slot"
    );

    held.release.add_permits(1);
    let in_flight = &state.in_flight;
    in_flight.close();
    in_flight.wait().await;
    in_flight.reopen();
    held.release.add_permits(1);
    let retried = send("refused-1").await.unwrap();
    assert_eq!(
        retried.status(),
        StatusCode::ACCEPTED,
        "a refused delivery was not remembered as seen"
    );
}

#[tokio::test]
async fn bodies_beyond_the_global_budget_get_503_on_every_receiver() {
    let mut harness = Harness::new();
    harness.state.body_budget = BodyBudget::new(1500);
    harness.state.body_timeout = Duration::from_secs(60);
    let state = harness.state.clone();
    // A body that never arrives holds its reservation, as a slow sender does.
    let stalled = Request::post("/hooks/github")
        .header("content-length", "1000")
        .body(Body::from_stream(futures::stream::pending::<
            Result<axum::body::Bytes, std::io::Error>,
        >()))
        .unwrap();
    let holding = tokio::spawn(router(state.clone()).oneshot(stalled));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(state.body_budget.available(), 500);

    let gitlab = |length: usize| {
        Request::post("/hooks/gitlab")
            .header("x-gitlab-event", "Push Hook")
            .header("x-gitlab-token", "gitlab-token")
            .header("content-length", length.to_string())
            .body(Body::from(vec![b' '; length]))
            .unwrap()
    };
    let refused = router(state.clone()).oneshot(gitlab(600)).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.headers().contains_key("retry-after"));
    let small = router(state.clone()).oneshot(gitlab(400)).await.unwrap();
    assert_eq!(
        small.status(),
        StatusCode::BAD_REQUEST,
        "fits in what is left"
    );

    let chunked = Request::post("/hooks/gitlab")
        .header("x-gitlab-token", "gitlab-token")
        .body(Body::from_stream(futures::stream::iter([Ok::<
            _,
            std::io::Error,
        >(
            axum::body::Bytes::from_static(b"{}"),
        )])))
        .unwrap();
    let refused = router(state.clone()).oneshot(chunked).await.unwrap();
    assert_eq!(
        refused.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "a body of unknown length reserves the body limit"
    );

    holding.abort();
    let _ = holding.await;
    assert_eq!(state.body_budget.available(), 1500, "returned when done");
    let served = router(state.clone()).oneshot(gitlab(600)).await.unwrap();
    assert_eq!(served.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_413_before_anything_is_reserved() {
    let mut harness = Harness::new();
    harness.state.body_budget = BodyBudget::new(10);
    let request = Request::post("/hooks/github")
        .header("content-length", (DEFAULT_BODY_LIMIT + 1).to_string())
        .body(Body::from_stream(futures::stream::pending::<
            Result<axum::body::Bytes, std::io::Error>,
        >()))
        .unwrap();
    let response = router(harness.state.clone())
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(harness.state.body_budget.available(), 10);
}

#[tokio::test]
async fn a_signed_webhook_id_wins_over_an_unsigned_idempotency_key() {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;

    let mut harness = Harness::new();
    let key = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    harness.state.secrets = ReloadableSecrets::new(SharedSecrets {
        gitlab: Some(format!("whsec_{key}").into_bytes()),
        ..SharedSecrets::default()
    });
    let body = json!({
        "object_kind": "push",
        "ref": "refs/heads/main",
        "checkout_sha": SHA,
        "project": {"git_http_url": "https://gitlab.example.com/group/repo.git"}
    })
    .to_string();
    let timestamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string();
    let signed = format!("msg_1.{timestamp}.{body}");
    let mac = hmac_sha256(&BASE64.decode(key).unwrap(), &[signed.as_bytes()]);
    let signature = format!("v1,{}", BASE64.encode(mac));
    // A captured delivery, replayed with a fresh value in the header nobody signs.
    let delivery = |idempotency_key: &str| {
        Request::post("/hooks/gitlab")
            .header("x-gitlab-event", "Push Hook")
            .header("idempotency-key", idempotency_key)
            .header("webhook-id", "msg_1")
            .header("webhook-timestamp", &timestamp)
            .header("webhook-signature", &signature)
            .body(Body::from(body.clone()))
            .unwrap()
    };
    let (status, _) = harness.send(delivery("first")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, response) = harness.send(delivery("replayed")).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    assert_eq!(response["duplicate"], true);
    assert_eq!(harness.trigger.calls().len(), 1);
    let recorded = harness.trigger.deliveries.lock().unwrap()[0].1.id.clone();
    assert_eq!(recorded.as_deref(), Some("msg_1"));
}

#[tokio::test]
async fn an_overflowing_timestamp_is_401_not_a_crash() {
    let harness = Harness::new();
    let request = Request::post("/hooks/gitlab")
        .header("x-gitlab-event", "Push Hook")
        .header("webhook-id", "msg_1")
        .header("webhook-timestamp", "18446744073709551615")
        .header("webhook-signature", "v1,AAAA")
        .body(Body::from("{}"))
        .unwrap();
    let (status, body) = harness.send(request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[tokio::test]
async fn replaced_shared_secrets_apply_to_the_next_request() {
    let harness = Harness::new();
    harness.state.secrets.replace(SharedSecrets {
        github: Some(b"rotated".to_vec()),
        ..SharedSecrets::default()
    });
    let (old, _) = harness
        .send(signed_github_push("r-1", "refs/heads/main"))
        .await;
    assert_eq!(
        old,
        StatusCode::UNAUTHORIZED,
        "the old secret no longer works"
    );
    let body = github_push_body("refs/heads/main");
    let signature = github_signature(b"rotated", &body);
    let request = github_request("/hooks/github", "push", "r-1", &signature, body);
    assert_eq!(harness.send(request).await.0, StatusCode::ACCEPTED);
    let gitlab = Request::post("/hooks/gitlab")
        .header("x-gitlab-token", "gitlab-token")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(
        harness.send(gitlab).await.0,
        StatusCode::NOT_FOUND,
        "a provider dropped from the files is disabled"
    );
}
