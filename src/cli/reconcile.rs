//! `driftless reconcile`, `suspend` and `resume`: the requests a person makes of the controller.

use std::{process::ExitCode, time::Duration};

use clap::Args;
use futures::{StreamExt, TryStreamExt};
use kube::{
    Api,
    api::{Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;

use super::{
    CliError, ClusterArgs, ObjectArgs,
    connect::connect,
    get::condition,
    output::{self, Tone},
};
use crate::api::{GitRepository, RECONCILE_REQUESTED_AT};

/// What the CLI's writes are attributed to in managedFields.
const FIELD_MANAGER: &str = "driftless-cli";

#[derive(Args, Debug)]
pub struct ReconcileArgs {
    /// Name of the GitRepository.
    pub name: String,
    /// Follow the reconcile until it is Ready or fails; exit 1 when it fails.
    #[arg(short, long)]
    pub wait: bool,
    /// Longest to wait with --wait (e.g. 90s, 5m).
    #[arg(long, default_value = "5m", value_parser = super::parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub async fn run(args: ReconcileArgs) -> Result<ExitCode, CliError> {
    let connection = connect(&args.cluster).await?;
    let api: Api<GitRepository> = Api::namespaced(connection.client, &connection.namespace);
    let key = format!("{}/{}", connection.namespace, args.name);
    let repository = read(&api, &connection.namespace, &args.name).await?;
    if repository.spec.suspend == Some(true) {
        eprintln!(
            "{}",
            output::failure_line(&format!(
                "GitRepository {key} is suspended; `driftless resume {}` reconciles it",
                args.name
            ))
        );
        return Ok(ExitCode::from(1));
    }
    let requested_at = request(&api, &args.name).await?;
    progress(&format!("reconcile of GitRepository {key} requested"));
    if !args.wait {
        println!("reconcile requested for GitRepository {key}");
        return Ok(ExitCode::SUCCESS);
    }
    match tokio::time::timeout(args.timeout, follow(&api, &args.name, &requested_at)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(CliError::TimedOut(args.timeout)),
    }
}

/// `spec.suspend` on or off; resuming also asks for a reconcile, so it starts at once.
pub async fn suspend(args: ObjectArgs, suspended: bool) -> Result<ExitCode, CliError> {
    let connection = connect(&args.cluster).await?;
    let api: Api<GitRepository> = Api::namespaced(connection.client, &connection.namespace);
    read(&api, &connection.namespace, &args.name).await?;
    let mut patch = json!({ "spec": { "suspend": suspended } });
    if !suspended {
        patch["metadata"] = json!({ "annotations": { RECONCILE_REQUESTED_AT: now() } });
    }
    api.patch(&args.name, &write_params(), &Patch::Merge(&patch))
        .await
        .map_err(CliError::api("updating the GitRepository"))?;
    let verb = if suspended { "suspended" } else { "resumed" };
    println!(
        "GitRepository {}/{} {verb}",
        connection.namespace, args.name
    );
    Ok(ExitCode::SUCCESS)
}

async fn read(
    api: &Api<GitRepository>,
    namespace: &str,
    name: &str,
) -> Result<GitRepository, CliError> {
    api.get_opt(name)
        .await
        .map_err(CliError::api("reading the GitRepository"))?
        .ok_or_else(|| CliError::NotFound {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
}

/// Sets the reconcile annotation to a new value and returns it.
async fn request(api: &Api<GitRepository>, name: &str) -> Result<String, CliError> {
    let requested_at = now();
    let patch = json!({ "metadata": { "annotations": { RECONCILE_REQUESTED_AT: requested_at } } });
    api.patch(name, &write_params(), &Patch::Merge(&patch))
        .await
        .map_err(CliError::api("requesting a reconcile"))?;
    Ok(requested_at)
}

/// Watches the object until the controller reports having handled this request.
async fn follow(
    api: &Api<GitRepository>,
    name: &str,
    requested_at: &str,
) -> Result<ExitCode, CliError> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut changes = watcher(api.clone(), config).applied_objects().boxed();
    let mut last_step = String::new();
    while let Some(repository) = changes
        .try_next()
        .await
        .map_err(|e| CliError::Output(format!("watching the GitRepository: {e}")))?
    {
        let step = Step::of(&repository, requested_at);
        let line = step.describe(&repository);
        if line != last_step {
            match step {
                Step::Done { ready: true } => {
                    println!("{}", output::toned(&format!("✔ {line}"), Tone::Good, false))
                }
                Step::Done { ready: false } => {
                    println!("{}", output::toned(&format!("✗ {line}"), Tone::Bad, false))
                }
                _ => progress(&line),
            }
            last_step = line;
        }
        if let Step::Done { ready } = step {
            return Ok(if ready {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
    }
    Err(CliError::Output(
        "the watch ended before the reconcile did".into(),
    ))
}

/// Where a requested reconcile is, read from the object's status.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// The controller has not picked the request up yet.
    Waiting,
    /// `Reconciling=True`: applying a new revision (and waiting for health if asked).
    Applying,
    /// The request was handled: Ready says how it went.
    Done { ready: bool },
}

impl Step {
    fn of(repository: &GitRepository, requested_at: &str) -> Step {
        let status = repository.status.clone().unwrap_or_default();
        let reconciling =
            condition(&status.conditions, "Reconciling").is_some_and(|c| c.status == "True");
        let handled = status.last_handled_reconcile_at.as_deref() == Some(requested_at);
        let current = status.observed_generation == repository.metadata.generation;
        if reconciling {
            return Step::Applying;
        }
        if handled && current {
            let ready = condition(&status.conditions, "Ready").is_some_and(|c| c.status == "True");
            return Step::Done { ready };
        }
        Step::Waiting
    }

    fn describe(&self, repository: &GitRepository) -> String {
        let status = repository.status.clone().unwrap_or_default();
        let ready = condition(&status.conditions, "Ready");
        let message = ready.map(|c| c.message.as_str()).unwrap_or_default();
        match self {
            Step::Waiting => "waiting for the controller to fetch the revision".into(),
            Step::Applying => {
                let reconciling = condition(&status.conditions, "Reconciling");
                let message = reconciling.map(|c| c.message.as_str()).unwrap_or_default();
                if repository.spec.wait == Some(true) {
                    format!("{message} (then waiting for the objects to become healthy)")
                } else {
                    message.to_owned()
                }
            }
            Step::Done { ready: true } => format!(
                "applied revision {}: {message}",
                repository.applied_revision().unwrap_or("-")
            ),
            Step::Done { ready: false } => format!(
                "reconcile failed ({}): {message}",
                ready.map(|c| c.reason.as_str()).unwrap_or("Unknown")
            ),
        }
    }
}

/// Progress goes to stderr, and only when a person watches it.
fn progress(line: &str) {
    if output::progress_wanted() {
        eprintln!("{} {line}", output::toned("◎", Tone::Pending, true));
    }
}

fn write_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    }
}

/// Nanoseconds make two requests in one second different values, so both are seen.
fn now() -> String {
    jiff::Timestamp::now().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::GitRepositoryStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn with_status(conditions: &[(&str, &str)], handled: Option<&str>) -> GitRepository {
        let mut repository = GitRepository::new("app", Default::default());
        repository.metadata.generation = Some(2);
        repository.status = Some(GitRepositoryStatus {
            observed_generation: Some(2),
            last_handled_reconcile_at: handled.map(str::to_owned),
            conditions: conditions
                .iter()
                .map(|(type_, status)| Condition {
                    type_: type_.to_string(),
                    status: status.to_string(),
                    reason: "R".into(),
                    message: "m".into(),
                    last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
                    observed_generation: Some(2),
                })
                .collect(),
            ..Default::default()
        });
        repository
    }

    #[test]
    fn a_request_is_done_once_handled_and_not_reconciling() {
        let asked = "2026-12-01T00:00:00Z";
        assert_eq!(
            Step::of(&with_status(&[("Ready", "True")], None), asked),
            Step::Waiting
        );
        assert_eq!(
            Step::of(
                &with_status(
                    &[("Ready", "Unknown"), ("Reconciling", "True")],
                    Some(asked)
                ),
                asked
            ),
            Step::Applying
        );
        assert_eq!(
            Step::of(&with_status(&[("Ready", "True")], Some(asked)), asked),
            Step::Done { ready: true }
        );
        assert_eq!(
            Step::of(&with_status(&[("Ready", "False")], Some(asked)), asked),
            Step::Done { ready: false }
        );
    }
}
