//! Alerts: each type's request against a recording server (Slack's JSON, CloudEvents in
//! structured mode, the webhook's HMAC as driftless's own generic receiver verifies it), and
//! through the controller binary: an apply is announced once, a resync announces nothing.

use crate::support;

use std::time::Duration;

use driftless::{
    alerts::{Alert, Endpoint, SIGNATURE_HEADER, alert_request},
    api::{AlertEvent, AlertType},
    commit_status::StatusClient,
};
use serde_json::json;
use support::{
    cluster::{TestNamespace, install_crds},
    git::{GitRepos, HttpGitServer, HttpOptions},
    objects::*,
    recorder::Recorder,
    replica::*,
    waiting::*,
};

fn alert(event: AlertEvent) -> Alert {
    Alert {
        namespace: "team-a".into(),
        name: "app".into(),
        event,
        revision: "main@sha1:0123456789abcdef0123456789abcdef01234567".into(),
        message: "Applied revision main@sha1:0123…: 1 created".into(),
        time: "2026-12-07T20:00:00Z".into(),
        id: "team-a/app/1".into(),
    }
}

async fn send(
    kind: AlertType,
    token: Option<&str>,
    event: AlertEvent,
) -> support::recorder::Recorded {
    let recorder = Recorder::start();
    let endpoint = Endpoint {
        kind,
        address: format!("{}/hook", recorder.url()),
        token: token.map(str::to_owned),
    };
    StatusClient::new(Default::default())
        .post(&alert_request(&endpoint, &alert(event)))
        .await
        .expect("the recording server takes the alert");
    recorder.requests().remove(0)
}

// Slack incoming webhooks: https://api.slack.com/messaging/webhooks — a JSON body with `text`
// (and legacy `attachments` with `color`, `title`, `text`, `fields`).
#[tokio::test]
async fn slack_gets_slack_compatible_json() {
    let got = send(AlertType::Slack, None, AlertEvent::Failed).await;
    assert_eq!(got.method, "POST");
    assert_eq!(got.path, "/hook");
    assert_eq!(got.header("content-type"), Some("application/json"));
    let body = got.json();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .starts_with("Failed team-a/app: main@sha1:")
    );
    let attachment = &body["attachments"][0];
    assert_eq!(attachment["color"], "danger");
    assert_eq!(
        attachment["text"],
        alert(AlertEvent::Failed).message.as_str()
    );
    assert_eq!(attachment["fields"][0]["value"], "team-a/app");
}

// CloudEvents 1.0 structured content mode over HTTP
// (https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/bindings/http-protocol-binding.md#32-structured-content-mode):
// `Content-Type: application/cloudevents+json`, the required attributes `specversion`, `id`,
// `source`, `type` in the body, the data under `data`.
#[tokio::test]
async fn cloudevents_are_sent_in_structured_mode() {
    let got = send(
        AlertType::Cloudevents,
        Some("bearer-token"),
        AlertEvent::Applied,
    )
    .await;
    assert_eq!(
        got.header("content-type"),
        Some("application/cloudevents+json")
    );
    assert_eq!(got.header("authorization"), Some("Bearer bearer-token"));
    let body = got.json();
    assert_eq!(body["specversion"], "1.0");
    assert_eq!(body["id"], "team-a/app/1");
    assert_eq!(
        body["source"],
        "driftless.dev/namespaces/team-a/gitrepositories/app"
    );
    assert_eq!(body["type"], "dev.driftless.gitrepository.Applied");
    assert_eq!(body["time"], "2026-12-07T20:00:00Z");
    assert_eq!(body["datacontenttype"], "application/json");
    assert_eq!(body["data"]["event"], "Applied");
    assert_eq!(body["data"]["severity"], "info");
}

/// The webhook's body is signed as driftless's own generic receiver verifies deliveries.
#[tokio::test]
async fn the_webhook_body_is_signed_as_the_generic_receiver_verifies() {
    let got = send(AlertType::Webhook, Some("hmac key"), AlertEvent::Stalled).await;
    let signature = got.header(SIGNATURE_HEADER).expect("a signature header");
    driftless::webhook::verify::verify_prefixed_sha256(b"hmac key", &got.body, signature)
        .expect("the receiver's own check accepts it");
    assert!(
        driftless::webhook::verify::verify_prefixed_sha256(b"another key", &got.body, signature)
            .is_err()
    );
    assert_eq!(got.json()["severity"], "error");
    let unsigned = send(AlertType::Webhook, None, AlertEvent::Applied).await;
    assert_eq!(unsigned.header(SIGNATURE_HEADER), None);
}

#[tokio::test]
async fn an_apply_is_announced_once_and_a_resync_announces_nothing() {
    install_crds().await;
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let first = commit(&repo, "one");
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let recorder = Recorder::start();
    let namespace = TestNamespace::create("alerts").await;
    namespace
        .create_secret(
            "alert-hook",
            &[
                ("address", recorder.url().as_bytes()),
                ("token", b"hmac key"),
            ],
        )
        .await;
    let _replica = start_replica(&namespace, &["--disable-webhook"]);
    namespace
        .create_git_repository(
            "app",
            json!({ "url": server.url_for(&repo), "path": "deploy", "interval": "1h",
                    "alerts": [{ "type": "webhook", "secretRef": { "name": "alert-hook" },
                                 "events": ["Applied", "Failed"] }] }),
        )
        .await;
    crate::commit_status::assert_kept(&namespace, "alerts").await;
    wait_applied(&namespace, &first, Duration::from_secs(60)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while recorder.requests().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no alert arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let applied = recorder.requests().remove(0);
    assert_eq!(applied.json()["event"], "Applied");
    assert!(
        applied.json()["revision"]
            .as_str()
            .unwrap()
            .ends_with(&first)
    );

    // A resync of the same revision: nothing new to announce.
    support::waiting::resync(&namespace, "resync-1").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(recorder.requests().len(), 1, "{:#?}", recorder.requests());

    // The next commit is announced.
    let second = commit(&repo, "two");
    support::waiting::request_reconcile(&namespace, "resync-2").await;
    wait_applied(&namespace, &second, Duration::from_secs(60)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while recorder.requests().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the second apply was not announced"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        recorder.requests()[1].json()["revision"]
            .as_str()
            .unwrap()
            .ends_with(&second)
    );
}

// Discord's execute webhook (https://discord.com/developers/docs/resources/webhook#execute-webhook):
// JSON with `content` and/or `embeds` (`title`, `description`, `color`).
#[tokio::test]
async fn discord_gets_content_and_an_embed() {
    let got = send(AlertType::Discord, None, AlertEvent::Pruned).await;
    let body = got.json();
    assert!(
        body["content"]
            .as_str()
            .unwrap()
            .starts_with("Pruned team-a/app")
    );
    let embed = &body["embeds"][0];
    assert_eq!(
        embed["description"],
        alert(AlertEvent::Pruned).message.as_str()
    );
    assert!(embed["color"].is_u64());
}

// Teams workflow webhooks take a message whose attachment is an Adaptive Card
// (https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using).
#[tokio::test]
async fn teams_gets_an_adaptive_card() {
    let got = send(AlertType::Msteams, None, AlertEvent::DriftCorrected).await;
    let body = got.json();
    assert_eq!(body["type"], "message");
    let attachment = &body["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(attachment["content"]["type"], "AdaptiveCard");
    let texts: Vec<&str> = attachment["content"]["body"]
        .as_array()
        .unwrap()
        .iter()
        .map(|block| block["text"].as_str().unwrap())
        .collect();
    assert!(
        texts[0].starts_with("DriftCorrected team-a/app"),
        "{texts:?}"
    );
    assert_eq!(texts[1], alert(AlertEvent::DriftCorrected).message.as_str());
}
