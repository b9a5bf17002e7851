//! `spec.alerts`: where a GitRepository's outcomes are announced (chat, a webhook, CloudEvents).

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::LocalObjectReference;

/// How an alert is delivered.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertType {
    /// A Slack incoming webhook (or anything that takes Slack's JSON: Mattermost, Rocket.Chat).
    Slack,
    /// A Microsoft Teams workflow webhook (an Adaptive Card message).
    Msteams,
    /// A Discord webhook.
    Discord,
    /// Any HTTP endpoint: driftless's JSON, signed with HMAC-SHA256 in `X-Signature`.
    Webhook,
    /// A CloudEvents 1.0 event in structured mode.
    Cloudevents,
}

impl AlertType {
    pub fn name(self) -> &'static str {
        match self {
            AlertType::Slack => "slack",
            AlertType::Msteams => "msteams",
            AlertType::Discord => "discord",
            AlertType::Webhook => "webhook",
            AlertType::Cloudevents => "cloudevents",
        }
    }
}

/// What happened to a GitRepository that an alert may announce.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
pub enum AlertEvent {
    /// A commit's objects were created or changed.
    Applied,
    /// A reconcile failed (a retry may pass).
    Failed,
    /// Objects changed outside Git were written back.
    DriftCorrected,
    /// Objects that left the repository were deleted.
    Pruned,
    /// A reconcile failed in a way only a change of the spec or the repository can fix.
    Stalled,
}

impl AlertEvent {
    pub fn name(self) -> &'static str {
        match self {
            AlertEvent::Applied => "Applied",
            AlertEvent::Failed => "Failed",
            AlertEvent::DriftCorrected => "DriftCorrected",
            AlertEvent::Pruned => "Pruned",
            AlertEvent::Stalled => "Stalled",
        }
    }

    /// Whether it is bad news.
    pub fn is_error(self) -> bool {
        matches!(self, AlertEvent::Failed | AlertEvent::Stalled)
    }
}

/// The least severity an alert sends.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertSeverity {
    /// Every selected event.
    Info,
    /// Only `Failed` and `Stalled`.
    Error,
}

/// One destination of alerts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertSpec {
    /// `slack`, `msteams`, `discord`, `webhook` or `cloudevents`.
    #[serde(rename = "type")]
    pub kind: AlertType,
    /// Secret in this namespace, read as the GitRepository's ServiceAccount: `address` (the
    /// URL to post to, required) and, for `webhook` and `cloudevents`, an optional `token`
    /// (webhook: the HMAC key of `X-Signature`; cloudevents: sent as a Bearer token).
    pub secret_ref: LocalObjectReference,
    /// The events to send. Default: all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 5))]
    pub events: Vec<AlertEvent>,
    /// `info` (default) sends every selected event, `error` only `Failed` and `Stalled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<AlertSeverity>,
}

impl AlertSpec {
    /// Whether `event` is to be sent to this destination.
    pub fn wants(&self, event: AlertEvent) -> bool {
        let selected = self.events.is_empty() || self.events.contains(&event);
        let severe_enough = self.severity != Some(AlertSeverity::Error) || event.is_error();
        selected && severe_enough
    }
}
