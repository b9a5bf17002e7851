//! HTTP-level tests of the receiver: real requests through the router with a recording
//! [`Trigger`] in place of the controller.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::future::BoxFuture;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::verify::{encode_hex, hmac_sha256};
use super::*;
use crate::api::GitReference;

const SECRET: &[u8] = b"shared-secret";
const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// Records every trigger; fails for the objects listed in `failing`.
#[derive(Default)]
struct RecordingTrigger {
    calls: Mutex<Vec<(String, String, Option<String>)>>,
    failing: Mutex<HashSet<String>>,
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
    ) -> BoxFuture<'static, Result<(), String>> {
        let object = format!("{namespace}/{name}");
        self.calls.lock().unwrap().push((
            namespace.to_string(),
            name.to_string(),
            commit.map(str::to_string),
        ));
        let fail = self.failing.lock().unwrap().contains(&object);
        Box::pin(async move {
            if fail {
                Err("api server unavailable".to_string())
            } else {
                Ok(())
            }
        })
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
        let state = WebhookState::new(secrets, trigger.clone());
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

    async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = router(self.state.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, body)
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

#[tokio::test]
async fn valid_github_push_triggers_matching_target() {
    let harness = Harness::new();
    let (status, body) = harness
        .send(signed_github_push("d-1", "refs/heads/main"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body, json!({"triggered": ["apps/site"]}));
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
    assert_eq!(response, json!({"triggered": []}));
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
    assert_eq!(body, json!({"triggered": [], "duplicate": true}));
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
    assert_eq!(body, json!({"triggered": []}));
    assert!(harness.trigger.calls().is_empty());
}

#[tokio::test]
async fn other_branch_triggers_its_target_only() {
    let harness = Harness::new();
    let (status, body) = harness
        .send(signed_github_push("d-1", "refs/heads/staging"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body, json!({"triggered": ["apps/staging"]}));
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
    assert_eq!(response, json!({"triggered": [], "ignored": "issues"}));

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
    assert_eq!(response, json!({"triggered": ["apps/gl"]}));
}

#[tokio::test]
async fn failed_trigger_is_502_and_the_redelivery_is_processed() {
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
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body, json!({"triggered": [], "failed": ["apps/site"]}));
    harness.trigger.failing.lock().unwrap().clear();
    let (status, _) = harness
        .send(signed_github_push("d-1", "refs/heads/main"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(harness.trigger.calls().len(), 2);
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
    assert_eq!(response, json!({"triggered": ["apps/site"]}));

    let body = github_push_body("refs/heads/staging");
    let signature = github_signature(token, &body);
    let request = github_request(&path, "push", "o-2", &signature, body);
    let (status, response) = harness.send(request).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(response, json!({"triggered": []}), "site follows main");
}

#[tokio::test]
async fn gitlab_standard_webhooks_signature_is_verified_and_its_id_deduplicated() {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as BASE64;

    let mut harness = Harness::new();
    let key = "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    harness.state.secrets = Arc::new(SharedSecrets {
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
    assert_eq!(response, json!({"triggered": ["apps/gl"]}));
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
