//! `driftless diff NAME`: what applying a revision would change in the cluster, before it
//! happens — the preview a pull request's CI job shows.
//!
//! The objects come from a local checkout (`--path DIR`, a commit of it) or from the object's
//! own repository at its ref, read by the controller's tree rules and manifest checks; each is
//! dry-run by server-side apply as the object's ServiceAccount (when it names one), exactly as
//! the controller would apply it. Nothing is written.

use std::{path::PathBuf, process::ExitCode};

use clap::Args;
use kube::{Api, Client, ResourceExt, api::DynamicObject};
use serde_json::Value;

use super::{
    CliError, ClusterArgs,
    connect::{Connection, connect},
    objects::{self, RenderArgs},
    output::{self, Tone},
};
use crate::{
    api::{APPLIED_HASH_ANNOTATION, GitRepository},
    apply::{
        Applier, ApplyOptions, Change, Previewed,
        inventory::{ObjectKey, stale},
    },
    manifests::Manifest,
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
    #[command(flatten)]
    pub render: RenderArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Kinds whose values are never printed.
const MASKED_KINDS: [&str; 1] = ["Secret"];

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
    let changes = report(&previewed, &pruned);
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
            let fetched = objects::fetched_revision(spec, &owner, credentials).await?;
            eprintln!("previewing revision {}", fetched.artifact.revision);
            objects::objects_of(
                &fetched.artifact,
                spec,
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

fn would_prune(repository: &GitRepository, previewed: &[Previewed]) -> Vec<ObjectKey> {
    if repository.spec.prune == Some(false) {
        return Vec::new();
    }
    let old = repository
        .status
        .as_ref()
        .map(|s| s.inventory.clone())
        .unwrap_or_default();
    let new: Vec<_> = previewed
        .iter()
        .map(|p| ObjectKey::from(&p.reference).to_entry())
        .collect();
    stale(&old, &new)
}

/// Prints the preview; returns whether anything would change.
fn report(previewed: &[Previewed], pruned: &[ObjectKey]) -> bool {
    let mut unchanged = 0;
    let mut changes = 0;
    for one in previewed {
        let kind = &one.reference.kind;
        match &one.change {
            Change::Unchanged | Change::CreateOnlyPresent => unchanged += 1,
            Change::Create(object) => {
                changes += 1;
                println!(
                    "{}",
                    output::toned(&format!("+ create {}", one.reference), Tone::Good, false)
                );
                let (_, shown) = masked_pair(Value::Null, comparable(object), kind);
                print!(
                    "{}",
                    unified(&Value::Null, &shown, &one.reference.to_string())
                );
            }
            Change::CreateAfterItsPrerequisites(why) => {
                changes += 1;
                println!(
                    "{}",
                    output::toned(
                        &format!(
                            "+ create {} (validated once what it needs exists: {why})",
                            one.reference
                        ),
                        Tone::Good,
                        false
                    )
                );
            }
            Change::Update(live, would_be) => {
                changes += 1;
                println!(
                    "{}",
                    output::toned(&format!("~ change {}", one.reference), Tone::Pending, false)
                );
                let (before, after) = masked_pair(comparable(live), comparable(would_be), kind);
                print!("{}", unified(&before, &after, &one.reference.to_string()));
            }
        }
    }
    for key in pruned {
        changes += 1;
        let namespace = key
            .namespace
            .as_deref()
            .map(|n| format!("{n}/"))
            .unwrap_or_default();
        println!(
            "{}",
            output::toned(
                &format!("- prune {} {}{}", key.kind, namespace, key.name),
                Tone::Bad,
                false
            )
        );
    }
    println!("{changes} to change, {unchanged} unchanged");
    changes > 0
}

/// The object as a person compares it: no server bookkeeping, no status.
fn comparable(object: &DynamicObject) -> Value {
    let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
    if let Some(root) = value.as_object_mut() {
        root.remove("status");
        if let Some(metadata) = root.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in [
                "managedFields",
                "resourceVersion",
                "uid",
                "generation",
                "creationTimestamp",
            ] {
                metadata.remove(field);
            }
            // The content hash changes with any change: bookkeeping, not news.
            if let Some(annotations) = metadata
                .get_mut("annotations")
                .and_then(Value::as_object_mut)
            {
                annotations.remove(APPLIED_HASH_ANNOTATION);
                if annotations.is_empty() {
                    metadata.remove("annotations");
                }
            }
        }
    }
    value
}

/// Secret values replaced by `***`, and by `*** (before)` / `*** (after)` where they differ, as
/// `kubectl diff` shows them: the diff says which keys change, never what they hold.
fn masked_pair(mut before: Value, mut after: Value, kind: &str) -> (Value, Value) {
    if !MASKED_KINDS.contains(&kind) {
        return (before, after);
    }
    for field in ["data", "stringData"] {
        let old = before
            .get(field)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let new = after
            .get(field)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mask = |map: &serde_json::Map<String, Value>,
                    other: &serde_json::Map<String, Value>,
                    tag: &str| {
            map.iter()
                .map(|(key, value)| {
                    let same = other.get(key) == Some(value);
                    let shown = if same {
                        "***".to_owned()
                    } else {
                        format!("*** ({tag})")
                    };
                    (key.clone(), Value::String(shown))
                })
                .collect::<serde_json::Map<_, _>>()
        };
        if let Some(slot) = before.get_mut(field) {
            *slot = Value::Object(mask(&old, &new, "before"));
        }
        if let Some(slot) = after.get_mut(field) {
            *slot = Value::Object(mask(&new, &old, "after"));
        }
    }
    (before, after)
}

fn unified(before: &Value, after: &Value, name: &str) -> String {
    let yaml = |value: &Value| match value {
        Value::Null => String::new(),
        value => serde_saphyr::to_string(value).unwrap_or_default(),
    };
    let (before, after) = (yaml(before), yaml(after));
    similar::TextDiff::from_lines(&before, &after)
        .unified_diff()
        .context_radius(3)
        .header(&format!("{name} (live)"), &format!("{name} (after apply)"))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_values_never_show_but_changed_keys_do() {
        let before = json!({ "kind": "Secret", "data": { "same": "c2FtZQ==", "changed": "b2xk" } });
        let after = json!({ "kind": "Secret", "data": { "same": "c2FtZQ==", "changed": "bmV3", "added": "eA==" } });
        let (before, after) = masked_pair(before, after, "Secret");
        assert_eq!(
            before["data"],
            json!({ "same": "***", "changed": "*** (before)" })
        );
        assert_eq!(
            after["data"],
            json!({ "same": "***", "changed": "*** (after)", "added": "*** (after)" })
        );
        let text = unified(&before, &after, "v1 Secret ns/s");
        assert!(
            !text.contains("b2xk") && !text.contains("bmV3") && text.contains("*** (after)"),
            "{text}"
        );
    }

    #[test]
    fn other_kinds_are_shown_as_they_are() {
        let value = json!({ "kind": "ConfigMap", "data": { "a": "1" } });
        let (before, _) = masked_pair(value.clone(), value.clone(), "ConfigMap");
        assert_eq!(before, value);
    }
}
