//! The alerts of a reconcile: which events its outcome is, and each alert's endpoint read from
//! its Secret as the tenant. Sending runs in the background ([`crate::alerts`]) and never fails
//! a reconcile.

use kube::{ResourceExt, runtime::events::EventType};

use super::{
    Context, commit_status::tenant_secret, converged::Converged, failure::Failure, report::publish,
};
use crate::{
    alerts::{Alert, Endpoint},
    api::{AlertEvent, AlertSpec, GitRepository},
};

/// The Warning event of an alert whose Secret could not be used.
pub(super) const ALERT_REFUSED: &str = "AlertRefused";

/// Announces what a successful reconcile did: `Applied`, `DriftCorrected`, `Pruned`.
pub(super) async fn announce_success(
    context: &Context,
    repository: &GitRepository,
    converged: &Converged,
) {
    let report = &converged.report;
    let events = [
        (
            AlertEvent::Applied,
            report.created.len() + report.configured.len(),
        ),
        (AlertEvent::DriftCorrected, report.drift_corrected.len()),
        (AlertEvent::Pruned, converged.pruned.deleted.len()),
    ];
    for (event, count) in events {
        if count > 0 {
            announce(
                context,
                repository,
                &converged.revision,
                event,
                &converged.summary(),
            )
            .await;
        }
    }
}

/// Announces a failed reconcile: `Stalled` when only the user can fix it, else `Failed`.
pub(super) async fn announce_failure(
    context: &Context,
    repository: &GitRepository,
    failure: &Failure,
) {
    let event = if failure.stalled {
        AlertEvent::Stalled
    } else {
        AlertEvent::Failed
    };
    let revision = failure.revision.as_deref().unwrap_or_default();
    let message = format!("{}: {}", failure.reason.as_str(), failure.message);
    announce(context, repository, revision, event, &message).await;
}

async fn announce(
    context: &Context,
    repository: &GitRepository,
    revision: &str,
    event: AlertEvent,
    message: &str,
) {
    let wanted: Vec<&AlertSpec> = repository
        .spec
        .alerts
        .iter()
        .filter(|alert| alert.wants(event))
        .collect();
    if wanted.is_empty() {
        return;
    }
    let namespace = repository.namespace().unwrap_or_default();
    let name = repository.name_any();
    if !context
        .alerts
        .first_time(&namespace, &name, revision, event)
    {
        return;
    }
    let now = jiff::Timestamp::now();
    let alert = Alert {
        id: format!(
            "{namespace}/{name}/{revision}/{}/{}",
            event.name(),
            now.as_nanosecond()
        ),
        namespace,
        name,
        event,
        revision: revision.to_owned(),
        message: message.to_owned(),
        time: now.to_string(),
    };
    for spec in wanted {
        match tenant_secret(
            context,
            repository,
            &spec.secret_ref.name,
            "spec.alerts[].secretRef",
        )
        .await
        {
            Ok(mut data) => match data.remove("address").filter(|a| !a.trim().is_empty()) {
                Some(address) => {
                    let endpoint = Endpoint {
                        kind: spec.kind,
                        address: address.trim().to_owned(),
                        token: data.remove("token").filter(|t| !t.is_empty()),
                    };
                    context.alerts.send(endpoint, alert.clone());
                }
                None => {
                    let note = format!(
                        "Secret {}/{} named by spec.alerts[].secretRef has no `address`",
                        alert.namespace, spec.secret_ref.name
                    );
                    refuse(context, repository, spec, note).await;
                }
            },
            Err(note) => refuse(context, repository, spec, note).await,
        }
    }
}

async fn refuse(context: &Context, repository: &GitRepository, spec: &AlertSpec, note: String) {
    context.metrics.count_alert(spec.kind.name(), "refused");
    publish(
        &context.recorder,
        repository,
        EventType::Warning,
        ALERT_REFUSED,
        note,
    )
    .await;
}
