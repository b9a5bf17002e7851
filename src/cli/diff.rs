//! `driftless diff NAME`: what applying a revision would change in the cluster, before it
//! happens — the preview a pull request's CI job shows.
//!
//! The objects come from a local checkout (`--path DIR`, a commit of it) or from the object's
//! own repository at its ref, read by the controller's tree rules and manifest checks; each is
//! dry-run by server-side apply as the object's ServiceAccount (when it names one), exactly as
//! the controller would apply it. Nothing is written.

use std::{path::PathBuf, process::ExitCode};

use clap::Args;
use kube::{Api, Client, ResourceExt};

use super::{
    CliError, ClusterArgs,
    connect::{Connection, connect},
    objects::{self, RenderArgs},
    output::{self, Tone},
};
use crate::{
    api::GitRepository,
    apply::{Applier, ApplyOptions},
    manifests::Manifest,
    preview::{Action, Plan, preview_reference, would_prune},
    render::Capabilities,
    revision::{self, ChartContext},
};

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// Name of the GitRepository.
    pub name: String,
    /// A local checkout of the repository to preview instead of the object's own revision (its
    /// commit `--revision`, at the object's `spec.path`).
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// With --path: the commit to preview (default HEAD).
    #[arg(long, default_value = "HEAD")]
    pub revision: String,
    /// Preview this commit (full SHA) or ref of the object's repository instead of its own
    /// ref, e.g. a pull request's `refs/pull/7/head`: the plan the controller posts on it.
    #[arg(long = "ref", conflicts_with = "path")]
    pub git_ref: Option<String>,
    #[command(flatten)]
    pub render: RenderArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub async fn run(args: DiffArgs) -> Result<ExitCode, CliError> {
    let connection = connect(&args.cluster).await?;
    let namespace = connection.namespace.clone();
    let api: Api<GitRepository> = Api::namespaced(connection.client.clone(), &namespace);
    let repository = api
        .get_opt(&args.name)
        .await
        .map_err(CliError::api("reading the GitRepository"))?
        .ok_or_else(|| CliError::NotFound {
            namespace: namespace.clone(),
            name: args.name.clone(),
        })?;
    let client = applying_client(&connection, &repository)?;
    let manifests = desired_manifests(&args, &connection, &repository, &client).await?;
    let desired = revision::desired_objects(manifests);
    let applier = Applier::new(client);
    let options = ApplyOptions::for_repository(&repository, &namespace, 8);
    let previewed = applier
        .preview(desired, &options)
        .await
        .map_err(|e| CliError::Output(format!("revision cannot be applied: {e}")))?;
    let pruned = would_prune(&repository, &previewed);
    let changes = report(&Plan::of(&previewed, &pruned));
    Ok(if changes {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// As the controller: `valuesFrom` read as the applying account, the cluster's capabilities.
async fn chart_context(
    connection: &Connection,
    repository: &GitRepository,
    client: &Client,
) -> Result<ChartContext, CliError> {
    let Some(helm) = &repository.spec.helm else {
        return Ok(ChartContext::default());
    };
    let values_from = revision::read_values_from(client, &connection.namespace, &helm.values_from)
        .await
        .map_err(CliError::Render)?;
    let served = Applier::new(connection.client.clone())
        .served_apis()
        .await
        .map_err(|e| CliError::Output(format!("reading the cluster's capabilities: {e}")))?;
    let options = ApplyOptions::for_repository(repository, &connection.namespace, 1);
    Ok(ChartContext {
        release_name: repository.name_any(),
        namespace: options.default_namespace,
        values_from,
        capabilities: Some(Capabilities {
            kube_version: served.server_version,
            api_versions: served.api_versions,
        }),
    })
}

async fn desired_manifests(
    args: &DiffArgs,
    connection: &Connection,
    repository: &GitRepository,
    client: &Client,
) -> Result<Vec<Manifest>, CliError> {
    let spec = &repository.spec;
    let renderer = args.render.renderer().await;
    let variables = match &spec.post_build {
        Some(post_build) => Some(
            revision::read_variables(client, &connection.namespace, post_build)
                .await
                .map_err(CliError::Render)?,
        ),
        None => None,
    };
    let chart = chart_context(connection, repository, client).await?;
    match &args.path {
        Some(dir) => {
            let artifact = objects::local_revision(dir, &args.revision, spec)?;
            objects::objects_of(&artifact, spec, &renderer, &chart, variables.as_ref()).await
        }
        None => {
            let credentials = match &spec.secret_ref {
                Some(secret) => Some(
                    objects::read_credentials(
                        &connection.client,
                        &connection.namespace,
                        &secret.name,
                    )
                    .await?,
                ),
                None => None,
            };
            let owner = format!("{}/{}", connection.namespace, repository.name_any());
            let mut spec = spec.clone();
            if let Some(wanted) = &args.git_ref {
                spec.reference = Some(preview_reference(wanted, spec.reference.as_ref()));
            }
            let fetched = objects::fetched_revision(&spec, &owner, credentials).await?;
            eprintln!("previewing revision {}", fetched.artifact.revision);
            objects::objects_of(
                &fetched.artifact,
                &spec,
                &renderer,
                &chart,
                variables.as_ref(),
            )
            .await
        }
    }
}

/// As the controller does: the object's ServiceAccount when it names one, so a preview shows
/// what that account may do, and a refusal shows as the error the apply would meet.
fn applying_client(
    connection: &Connection,
    repository: &GitRepository,
) -> Result<Client, CliError> {
    match &repository.spec.service_account_name {
        Some(account) => {
            crate::apply::client_as(&connection.config, &connection.namespace, account)
                .map_err(CliError::Client)
        }
        None => Ok(connection.client.clone()),
    }
}

/// Prints the plan; returns whether anything would change.
fn report(plan: &Plan) -> bool {
    for planned in &plan.objects {
        let (line, tone) = match &planned.action {
            Action::Create => (format!("+ create {}", planned.object), Tone::Good),
            Action::CreateLater(why) => (
                format!(
                    "+ create {} (validated once what it needs exists: {why})",
                    planned.object
                ),
                Tone::Good,
            ),
            Action::Change => (format!("~ change {}", planned.object), Tone::Pending),
            Action::Prune => (format!("- prune {}", planned.object), Tone::Bad),
        };
        println!("{}", output::toned(&line, tone, false));
        if let Some(diff) = &planned.diff {
            print!("{diff}");
        }
    }
    println!(
        "{} to change, {} unchanged",
        plan.objects.len(),
        plan.unchanged
    );
    plan.changes_anything()
}
