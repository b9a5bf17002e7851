//! `driftless get`: GitRepositories as a table, or as YAML/JSON.

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{
    Api, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};

use super::{
    CliError, ClusterArgs,
    connect::connect,
    output::{self, Table},
};
use crate::api::GitRepository;

#[derive(Args, Debug)]
pub struct GetArgs {
    /// One GitRepository; all of the namespace when left out.
    pub name: Option<String>,
    /// List GitRepositories of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Output format: a table (default), `wide` (with URL, path and message), `yaml`, `json`.
    #[arg(short, long, value_enum)]
    pub output: Option<Format>,
    /// After listing, print a line for every change, until interrupted.
    #[arg(short, long)]
    pub watch: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Wide,
    Yaml,
    Json,
}

pub async fn run(args: GetArgs) -> Result<ExitCode, CliError> {
    let connection = connect(&args.cluster).await?;
    let api: Api<GitRepository> = if args.all_namespaces {
        Api::all(connection.client)
    } else {
        Api::namespaced(connection.client, &connection.namespace)
    };
    let mut listed = match &args.name {
        Some(name) => vec![
            api.get_opt(name)
                .await
                .map_err(CliError::api("reading the GitRepository"))?
                .ok_or_else(|| CliError::NotFound {
                    namespace: connection.namespace.clone(),
                    name: name.clone(),
                })?,
        ],
        None => {
            api.list(&Default::default())
                .await
                .map_err(CliError::api("listing GitRepositories"))?
                .items
        }
    };
    listed.sort_by_key(|r| (r.namespace(), r.name_any()));
    print!("{}", render(&listed, &args)?);
    if args.watch {
        watch(&api, &args).await?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn watch(api: &Api<GitRepository>, args: &GetArgs) -> Result<(), CliError> {
    let mut config = watcher::Config::default();
    if let Some(name) = &args.name {
        config = config.fields(&format!("metadata.name={name}"));
    }
    let mut changes = watcher(api.clone(), config).applied_objects().boxed();
    while let Some(repository) = changes
        .try_next()
        .await
        .map_err(|e| CliError::Output(format!("watching GitRepositories: {e}")))?
    {
        let mut rows = render(&[repository], args)?;
        if matches!(args.output, None | Some(Format::Wide)) {
            // A watch prints rows, not a table again per change.
            rows = rows.lines().skip(1).map(|l| format!("{l}\n")).collect();
        }
        print!("{rows}");
    }
    Ok(())
}

fn render(repositories: &[GitRepository], args: &GetArgs) -> Result<String, CliError> {
    let output_error = |e: &dyn std::fmt::Display| CliError::Output(e.to_string());
    match args.output {
        Some(Format::Json) => serde_json::to_string_pretty(&one_or_list(repositories))
            .map(|s| s + "\n")
            .map_err(|e| output_error(&e)),
        Some(Format::Yaml) => {
            serde_saphyr::to_string(&one_or_list(repositories)).map_err(|e| output_error(&e))
        }
        format => Ok(table(
            repositories,
            args.all_namespaces,
            format == Some(Format::Wide),
        )),
    }
}

/// One object as itself, several as a kubectl-style `List`.
fn one_or_list(repositories: &[GitRepository]) -> serde_json::Value {
    match repositories {
        [one] => serde_json::to_value(one).unwrap_or_default(),
        many => serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": many }),
    }
}

/// The table people read: readiness first, then what was applied and how long ago.
pub fn table(repositories: &[GitRepository], with_namespace: bool, wide: bool) -> String {
    let mut header = vec!["NAME", "READY", "REASON", "REVISION", "OBJECTS", "SINCE"];
    if with_namespace {
        header.insert(0, "NAMESPACE");
    }
    if wide {
        header.extend(["SUSPENDED", "URL", "PATH", "DEPENDS ON", "MESSAGE"]);
    }
    let mut table = Table::new(&header);
    for repository in repositories {
        let status = repository.status.clone().unwrap_or_default();
        let ready = condition(&status.conditions, "Ready");
        let mut row = vec![
            repository.name_any(),
            ready_cell(ready),
            ready.map(|c| c.reason.clone()).unwrap_or_default(),
            repository
                .applied_revision()
                .map(output::short_revision)
                .unwrap_or_else(|| "-".into()),
            status.inventory.len().to_string(),
            ready
                .map(|c| output::age(output::seconds_since(&c.last_transition_time.0)))
                .unwrap_or_else(|| "-".into()),
        ];
        if with_namespace {
            row.insert(0, repository.namespace().unwrap_or_default());
        }
        if wide {
            row.extend([
                repository.spec.suspend.unwrap_or(false).to_string(),
                repository.spec.url.clone(),
                repository.spec.path.clone().unwrap_or_else(|| "/".into()),
                depends_on_cell(repository),
                ready.map(|c| c.message.clone()).unwrap_or_default(),
            ]);
        }
        table.row(row);
    }
    table.render()
}

/// `spec.dependsOn` in one cell: `crds,Deployment/platform/ingress` (a GitRepository of the
/// same namespace by its name alone); `-` when there is none. Which of them block is in the
/// message.
fn depends_on_cell(repository: &GitRepository) -> String {
    let own = repository.namespace().unwrap_or_default();
    let names: Vec<String> = repository
        .spec
        .depends_on
        .iter()
        .map(|dependency| {
            let namespace = dependency.namespace_or(&own);
            let located = if namespace == own {
                dependency.name.clone()
            } else {
                format!("{namespace}/{}", dependency.name)
            };
            if dependency.is_git_repository() {
                located
            } else {
                format!("{}/{located}", dependency.kind())
            }
        })
        .collect();
    if names.is_empty() {
        "-".into()
    } else {
        names.join(",")
    }
}

pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Plain text: colour codes would break the column alignment that scripts and eyes rely on.
fn ready_cell(ready: Option<&Condition>) -> String {
    ready.map_or("Unknown", |c| c.status.as_str()).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wide_table_names_what_each_repository_depends_on() {
        let repository: GitRepository = serde_json::from_value(serde_json::json!({
            "apiVersion": "driftless.dev/v1alpha1", "kind": "GitRepository",
            "metadata": { "name": "app", "namespace": "team-a" },
            "spec": { "url": "https://example.com/r.git", "dependsOn": [
                { "name": "crs" },
                { "name": "crds", "namespace": "platform" },
                { "name": "ingress", "namespace": "team-a", "apiVersion": "apps/v1",
                  "kind": "Deployment" },
            ] },
        }))
        .unwrap();
        assert_eq!(
            depends_on_cell(&repository),
            "crs,platform/crds,Deployment/ingress"
        );
        let table = table(&[repository], false, true);
        assert!(
            table.lines().next().unwrap().contains("DEPENDS ON"),
            "{table}"
        );
    }
}
