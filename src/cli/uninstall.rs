//! `driftless uninstall`: remove every GitRepository cleanly, before the controller goes.
//!
//! A GitRepository carries a finalizer so that the controller can prune (or deliberately orphan)
//! what it applied before the object disappears. Once the controller is uninstalled nothing
//! removes that finalizer, and the object, and then its namespace, stay Terminating forever.
//! This command deletes the GitRepositories while the controller still runs; what the controller
//! does not finish within the timeout is released by removing the finalizer, after listing what
//! stays in the cluster.

use std::{process::ExitCode, time::Duration};

use clap::Args;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::json;

use super::{CliError, ClusterArgs, connect::connect, output};
use crate::api::{FINALIZER, GitRepository};

#[derive(Args, Debug)]
pub struct UninstallArgs {
    /// Remove the GitRepositories of every namespace (default: the namespace of `-n`).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Leave the applied objects in the cluster instead of pruning them.
    #[arg(long)]
    pub keep_objects: bool,
    /// How long to wait for the controller to prune before releasing the finalizers.
    #[arg(long, default_value = "2m", value_parser = super::parse_duration)]
    pub timeout: Duration,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub async fn run(args: UninstallArgs) -> Result<ExitCode, CliError> {
    let connection = connect(&args.cluster).await?;
    let all: Api<GitRepository> = if args.all_namespaces {
        Api::all(connection.client.clone())
    } else {
        Api::namespaced(connection.client.clone(), &connection.namespace)
    };
    let repositories = all
        .list(&Default::default())
        .await
        .map_err(CliError::api("listing GitRepositories"))?
        .items;
    if repositories.is_empty() {
        println!("no GitRepositories to remove");
        return Ok(ExitCode::SUCCESS);
    }
    for repository in &repositories {
        let api = namespaced(&connection.client, repository);
        if args.keep_objects {
            orphan(&api, repository).await?;
        }
        api.delete(&repository.name_any(), &DeleteParams::background())
            .await
            .map_err(CliError::api(format!(
                "deleting GitRepository {}",
                key(repository)
            )))?;
        println!("deleting GitRepository {}", key(repository));
    }
    let remaining = wait_until_gone(&connection.client, &repositories, args.timeout).await?;
    for repository in &remaining {
        release(&connection.client, repository).await?;
    }
    println!(
        "removed {} GitRepositories ({} released without the controller)",
        repositories.len(),
        remaining.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// `prune: false` makes the finalizer leave the objects; removing the finalizer then makes the
/// deletion immediate, with or without a running controller.
async fn orphan(api: &Api<GitRepository>, repository: &GitRepository) -> Result<(), CliError> {
    let name = repository.name_any();
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": { "prune": false } })),
    )
    .await
    .map_err(CliError::api(format!(
        "keeping the objects of {}",
        key(repository)
    )))?;
    strip_finalizer(api, repository).await
}

async fn wait_until_gone(
    client: &kube::Client,
    repositories: &[GitRepository],
    timeout: Duration,
) -> Result<Vec<GitRepository>, CliError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut remaining = Vec::new();
        for repository in repositories {
            let api = namespaced(client, repository);
            if let Some(live) = api
                .get_opt(&repository.name_any())
                .await
                .map_err(CliError::api(format!(
                    "reading GitRepository {}",
                    key(repository)
                )))?
            {
                remaining.push(live);
            }
        }
        if remaining.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok(remaining);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The controller did not finish (it is gone, or cannot prune): say what stays, then let the
/// object go so its namespace can be deleted.
async fn release(client: &kube::Client, repository: &GitRepository) -> Result<(), CliError> {
    let inventory = repository
        .status
        .as_ref()
        .map(|s| s.inventory.clone())
        .unwrap_or_default();
    let message = format!(
        "GitRepository {} was not cleaned up by the controller within the timeout; releasing it \
         leaves {} applied object(s) in the cluster:",
        key(repository),
        inventory.len()
    );
    eprintln!("{}", output::failure_line(&message));
    for entry in &inventory {
        eprintln!("    {}", entry.id);
    }
    strip_finalizer(&namespaced(client, repository), repository).await
}

/// Removes driftless's finalizer, keeping any other; retried on a conflicting write.
async fn strip_finalizer(
    api: &Api<GitRepository>,
    repository: &GitRepository,
) -> Result<(), CliError> {
    let name = repository.name_any();
    let mut current = repository.clone();
    for _ in 0..5 {
        let kept: Vec<&String> = current
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .collect();
        // The resourceVersion makes a concurrent change a conflict instead of a lost update.
        let patch = json!({ "metadata": { "finalizers": kept, "resourceVersion": current.resource_version() } });
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                match api
                    .get_opt(&name)
                    .await
                    .map_err(CliError::api("reading the GitRepository"))?
                {
                    Some(fresh) => current = fresh,
                    None => return Ok(()),
                }
            }
            Err(error) => {
                return Err(CliError::api(format!(
                    "removing the finalizer of {}",
                    key(repository)
                ))(error));
            }
        }
    }
    Err(CliError::Output(format!(
        "GitRepository {} kept changing; run uninstall again",
        key(repository)
    )))
}

fn namespaced(client: &kube::Client, repository: &GitRepository) -> Api<GitRepository> {
    Api::namespaced(client.clone(), &repository.namespace().unwrap_or_default())
}

fn key(repository: &GitRepository) -> String {
    format!(
        "{}/{}",
        repository.namespace().unwrap_or_default(),
        repository.name_any()
    )
}
