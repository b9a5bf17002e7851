//! The request of one alert, for each type, built without I/O.

use serde_json::{Value, json};

use crate::{
    api::{AlertEvent, AlertType},
    commit_status::PostRequest,
};

/// What happened, to which object, at which revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alert {
    pub namespace: String,
    pub name: String,
    pub event: AlertEvent,
    /// `main@sha1:<sha>`.
    pub revision: String,
    pub message: String,
    /// RFC 3339.
    pub time: String,
    /// Unique per alert (the CloudEvents `id`).
    pub id: String,
}

/// Where an alert goes: the Secret's `address` and optional `token`; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub kind: AlertType,
    pub address: String,
    pub token: Option<String>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The header of the HMAC-SHA256 of a `webhook` body: `sha256=<hex>`, as driftless's own
/// generic receiver verifies it.
pub const SIGNATURE_HEADER: &str = "x-signature";

/// The request that delivers `alert` to `endpoint`.
pub fn alert_request(endpoint: &Endpoint, alert: &Alert) -> PostRequest {
    let title = format!(
        "{} {}/{}: {}",
        alert.event.name(),
        alert.namespace,
        alert.name,
        alert.revision
    );
    let mut headers = Vec::new();
    let body = match endpoint.kind {
        // Slack's incoming-webhook JSON: `text`, with an attachment for colour and fields.
        AlertType::Slack => json!({
            "username": "driftless",
            "text": title,
            "attachments": [{
                "color": if alert.event.is_error() { "danger" } else { "good" },
                "title": title,
                "text": alert.message,
                "fields": fields(alert),
            }],
        }),
        // Discord's execute-webhook JSON: `content` and one embed.
        AlertType::Discord => json!({
            "username": "driftless",
            "content": title,
            "embeds": [{
                "title": title,
                "description": crate::commit_status::truncate(&alert.message, 4096),
                "color": if alert.event.is_error() { 0xd0_36_36 } else { 0x2e_b8_86 },
            }],
        }),
        // A Teams workflow webhook takes a message with an Adaptive Card attachment.
        AlertType::Msteams => json!({
            "type": "message",
            "attachments": [{
                "contentType": "application/vnd.microsoft.card.adaptive",
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        { "type": "TextBlock", "text": title, "weight": "bolder", "wrap": true },
                        { "type": "TextBlock", "text": alert.message, "wrap": true },
                    ],
                },
            }],
        }),
        AlertType::Webhook => {
            let body = data(alert);
            if let Some(token) = &endpoint.token {
                headers.push((SIGNATURE_HEADER, signature(token.as_bytes(), &body)));
            }
            body
        }
        // CloudEvents 1.0, structured content mode (the whole event is the JSON body).
        AlertType::Cloudevents => {
            headers.push(("content-type", "application/cloudevents+json".to_owned()));
            if let Some(token) = &endpoint.token {
                headers.push(("authorization", format!("Bearer {token}")));
            }
            json!({
                "specversion": "1.0",
                "id": alert.id,
                "source": format!("driftless.dev/namespaces/{}/gitrepositories/{}", alert.namespace, alert.name),
                "type": format!("dev.driftless.gitrepository.{}", alert.event.name()),
                "subject": alert.revision,
                "time": alert.time,
                "datacontenttype": "application/json",
                "data": data(alert),
            })
        }
    };
    PostRequest {
        url: endpoint.address.clone(),
        headers,
        body,
    }
}

fn fields(alert: &Alert) -> Value {
    json!([
        { "title": "GitRepository", "value": format!("{}/{}", alert.namespace, alert.name), "short": true },
        { "title": "Revision", "value": alert.revision, "short": true },
    ])
}

/// driftless's own JSON of an alert (the `webhook` body, the CloudEvent's `data`).
fn data(alert: &Alert) -> Value {
    json!({
        "namespace": alert.namespace,
        "name": alert.name,
        "event": alert.event.name(),
        "severity": if alert.event.is_error() { "error" } else { "info" },
        "revision": alert.revision,
        "message": alert.message,
        "time": alert.time,
    })
}

/// `sha256=<hex HMAC-SHA256(key, body)>` over the bytes the client sends (the same
/// serialization of the same value).
fn signature(key: &[u8], body: &Value) -> String {
    use hmac::{Hmac, Mac};
    let bytes = serde_json::to_vec(body).expect("a JSON value serializes");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(&bytes);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}
