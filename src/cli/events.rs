//! `driftless events NAME`: what the controller announced about one GitRepository.

use std::process::ExitCode;

use k8s_openapi::api::core::v1::Event;
use kube::{Api, api::ListParams};

use super::{
    CliError, ObjectArgs,
    connect::connect,
    output::{self, Table},
};

pub async fn run(args: ObjectArgs) -> Result<ExitCode, CliError> {
    let connection = connect(&args.cluster).await?;
    let api: Api<Event> = Api::namespaced(connection.client, &connection.namespace);
    let selector = format!(
        "involvedObject.kind=GitRepository,involvedObject.name={}",
        args.name
    );
    let mut events = api
        .list(&ListParams::default().fields(&selector))
        .await
        .map_err(CliError::api("listing events"))?
        .items;
    events.sort_by_key(last_seen);
    let mut table = Table::new(&["LAST SEEN", "TYPE", "REASON", "COUNT", "MESSAGE"]);
    for event in &events {
        table.row(vec![
            last_seen(event)
                .map(|t| output::age(output::seconds_since(&t)))
                .unwrap_or_else(|| "-".into()),
            event.type_.clone().unwrap_or_default(),
            event.reason.clone().unwrap_or_default(),
            count(event).to_string(),
            event.message.clone().unwrap_or_default(),
        ]);
    }
    if events.is_empty() {
        eprintln!(
            "no events for GitRepository {}/{}",
            connection.namespace, args.name
        );
    } else {
        print!("{}", table.render());
    }
    Ok(ExitCode::SUCCESS)
}

/// The newest time the event happened: a series' last observation, else its own times.
fn last_seen(event: &Event) -> Option<jiff::Timestamp> {
    event
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref().map(|t| t.0))
        .or_else(|| event.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.first_timestamp.as_ref().map(|t| t.0))
}

fn count(event: &Event) -> i32 {
    event
        .series
        .as_ref()
        .and_then(|s| s.count)
        .or(event.count)
        .unwrap_or(1)
        .max(1)
}
