//! `driftless tree NAME`: the inventory by namespace and kind, with each object's health;
//! `driftless tree` without a name: the dependency graph ([`super::dependency_tree`]).

use std::{collections::BTreeMap, process::ExitCode};

use clap::Args;
use kube::{Api, Client, api::DynamicObject, core::GroupVersionKind, discovery};

use super::{
    CliError, ClusterArgs,
    connect::connect,
    dependency_tree,
    output::{self, Tone},
};
use crate::{
    api::GitRepository,
    apply::{
        health::{Health, health_of},
        inventory::ObjectKey,
    },
};

#[derive(Args, Debug)]
pub struct TreeArgs {
    /// A GitRepository: the objects it applied. Left out: the dependency graph
    /// (`spec.dependsOn`) of the namespace's GitRepositories and what blocks each.
    pub name: Option<String>,
    /// Without a name: the dependency graph of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

pub async fn run(args: TreeArgs) -> Result<ExitCode, CliError> {
    match &args.name {
        Some(name) => inventory(name, &args.cluster).await,
        None => dependency_tree::run(args.all_namespaces, &args.cluster).await,
    }
}

async fn inventory(name: &str, cluster: &ClusterArgs) -> Result<ExitCode, CliError> {
    let connection = connect(cluster).await?;
    let api: Api<GitRepository> = Api::namespaced(connection.client.clone(), &connection.namespace);
    let repository = api
        .get_opt(name)
        .await
        .map_err(CliError::api("reading the GitRepository"))?
        .ok_or_else(|| CliError::NotFound {
            namespace: connection.namespace.clone(),
            name: name.to_owned(),
        })?;
    let status = repository.status.clone().unwrap_or_default();
    println!(
        "GitRepository {}/{} ({})",
        connection.namespace,
        name,
        repository
            .applied_revision()
            .map(output::short_revision)
            .unwrap_or_else(|| "nothing applied yet".into())
    );
    let mut groups: BTreeMap<String, Vec<(ObjectKey, Health)>> = BTreeMap::new();
    for entry in &status.inventory {
        let (key, health) = match ObjectKey::parse(entry) {
            Ok(key) => {
                let health = live_health(&connection.client, &key).await;
                (key, health)
            }
            Err(error) => {
                eprintln!("{}", output::failure_line(&error.to_string()));
                continue;
            }
        };
        let scope = key
            .namespace
            .clone()
            .map(|n| format!("namespace {n}"))
            .unwrap_or_else(|| "cluster-scoped".into());
        groups.entry(scope).or_default().push((key, health));
    }
    print!("{}", render(&groups));
    Ok(ExitCode::SUCCESS)
}

/// Reads the object as the CLI's user; what cannot be read says why instead of a health.
async fn live_health(client: &Client, key: &ObjectKey) -> Health {
    let gvk = GroupVersionKind::gvk(&key.group, &key.version, &key.kind);
    let resource = match discovery::pinned_kind(client, &gvk).await {
        Ok((resource, _)) => resource,
        Err(error) => return Health::Failed(format!("kind not served: {error}")),
    };
    let api: Api<DynamicObject> = match &key.namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    match api.get_opt(&key.name).await {
        Ok(Some(object)) => health_of(&object),
        Ok(None) => Health::Failed("missing from the cluster".into()),
        Err(error) => Health::Failed(format!("cannot read: {error}")),
    }
}

/// Namespaces, then kinds, then names, drawn with box characters as `tree` draws directories.
fn render(groups: &BTreeMap<String, Vec<(ObjectKey, Health)>>) -> String {
    let mut out = String::new();
    let scopes = groups.len();
    for (s, (scope, objects)) in groups.iter().enumerate() {
        let last_scope = s + 1 == scopes;
        out.push_str(&format!("{}{scope}\n", branch(last_scope)));
        let mut by_kind: BTreeMap<&str, Vec<&(ObjectKey, Health)>> = BTreeMap::new();
        for object in objects {
            by_kind
                .entry(object.0.kind.as_str())
                .or_default()
                .push(object);
        }
        let indent = if last_scope { "    " } else { "│   " };
        let kinds = by_kind.len();
        for (k, (kind, objects)) in by_kind.iter().enumerate() {
            let last_kind = k + 1 == kinds;
            out.push_str(&format!("{indent}{}{kind}\n", branch(last_kind)));
            let inner = format!("{indent}{}", if last_kind { "    " } else { "│   " });
            for (o, (key, health)) in objects.iter().enumerate() {
                let last = o + 1 == objects.len();
                out.push_str(&format!(
                    "{inner}{}{} {}\n",
                    branch(last),
                    key.name,
                    health_cell(health)
                ));
            }
        }
    }
    out
}

fn branch(last: bool) -> &'static str {
    if last { "└── " } else { "├── " }
}

fn health_cell(health: &Health) -> String {
    match health {
        Health::Healthy => output::toned("✓ healthy", Tone::Good, false),
        Health::InProgress(why) => output::toned(&format!("… {why}"), Tone::Pending, false),
        Health::Failed(why) => output::toned(&format!("✗ {why}"), Tone::Bad, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(namespace: Option<&str>, kind: &str, name: &str) -> ObjectKey {
        ObjectKey {
            group: String::new(),
            version: "v1".into(),
            kind: kind.into(),
            namespace: namespace.map(str::to_owned),
            name: name.into(),
        }
    }

    #[test]
    fn the_tree_groups_by_scope_then_kind() {
        let groups = BTreeMap::from([
            (
                "cluster-scoped".to_owned(),
                vec![(key(None, "Namespace", "team-a"), Health::Healthy)],
            ),
            (
                "namespace team-a".to_owned(),
                vec![
                    (key(Some("team-a"), "ConfigMap", "one"), Health::Healthy),
                    (
                        key(Some("team-a"), "ConfigMap", "two"),
                        Health::Failed("missing from the cluster".into()),
                    ),
                ],
            ),
        ]);
        assert_eq!(
            render(&groups),
            "├── cluster-scoped\n│   └── Namespace\n│       └── team-a ✓ healthy\n\
             └── namespace team-a\n    └── ConfigMap\n        ├── one ✓ healthy\n        └── two ✗ missing from the cluster\n"
        );
    }
}
