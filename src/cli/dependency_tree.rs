//! `driftless tree` without a name: the `spec.dependsOn` graph of the GitRepositories of a
//! namespace (or of every namespace), each drawn above what it depends on, with its `Ready`
//! state and, for a blocked one, what blocks it (its `DependencyNotReady` message).

use std::{
    collections::{BTreeMap, BTreeSet},
    process::ExitCode,
};

use kube::Api;

use super::{
    CliError, ClusterArgs,
    connect::connect,
    output::{self, Tone},
};
use crate::{
    api::GitRepository,
    ordering::{Node, dependencies_of},
};

pub async fn run(all_namespaces: bool, cluster: &ClusterArgs) -> Result<ExitCode, CliError> {
    let connection = connect(cluster).await?;
    let api: Api<GitRepository> = if all_namespaces {
        Api::all(connection.client.clone())
    } else {
        Api::namespaced(connection.client.clone(), &connection.namespace)
    };
    let listed = api
        .list(&Default::default())
        .await
        .map_err(CliError::api("listing GitRepositories"))?
        .items;
    let shown: Vec<Node> = listed.iter().map(Node::of).collect();
    let mut known: BTreeMap<Node, GitRepository> =
        listed.into_iter().map(|r| (Node::of(&r), r)).collect();
    // A dependency in another namespace is read on its own; one the user may not read is drawn
    // as unreadable rather than failing the whole graph.
    let elsewhere: BTreeSet<Node> = known
        .values()
        .flat_map(dependencies_of)
        .filter(|node| !known.contains_key(node))
        .collect();
    let mut unreadable = BTreeMap::new();
    for node in elsewhere {
        let api: Api<GitRepository> = Api::namespaced(connection.client.clone(), &node.namespace);
        match api.get_opt(&node.name).await {
            Ok(Some(found)) => {
                known.insert(node, found);
            }
            Ok(None) => {}
            Err(error) => {
                unreadable.insert(node, error.to_string());
            }
        }
    }
    if shown.is_empty() {
        eprintln!("no GitRepositories found");
        return Ok(ExitCode::SUCCESS);
    }
    let graph = Graph {
        known: &known,
        unreadable: &unreadable,
        home: (!all_namespaces).then_some(connection.namespace.as_str()),
    };
    print!("{}", graph.render(&shown));
    Ok(ExitCode::SUCCESS)
}

/// The GitRepositories read, and how to name them.
struct Graph<'a> {
    known: &'a BTreeMap<Node, GitRepository>,
    unreadable: &'a BTreeMap<Node, String>,
    /// The namespace listed, whose objects are named without it; `None` for every namespace.
    home: Option<&'a str>,
}

impl Graph<'_> {
    /// Each of `shown` that nothing shown depends on, with what it depends on below it; then
    /// any not drawn yet (members of a cycle, which has no top).
    fn render(&self, shown: &[Node]) -> String {
        let depended_on: BTreeSet<Node> = shown
            .iter()
            .filter_map(|node| self.known.get(node))
            .flat_map(dependencies_of)
            .collect();
        let mut tops: Vec<&Node> = shown
            .iter()
            .filter(|node| !depended_on.contains(node))
            .collect();
        tops.sort();
        let mut drawn = BTreeSet::new();
        let mut out = String::new();
        for top in tops {
            self.draw(top, "", "", &mut Vec::new(), &mut drawn, &mut out);
        }
        let mut rest: Vec<&Node> = shown.iter().filter(|n| !drawn.contains(*n)).collect();
        rest.sort();
        for node in rest {
            if !drawn.contains(node) {
                self.draw(node, "", "", &mut Vec::new(), &mut drawn, &mut out);
            }
        }
        out
    }

    /// One node's line (`lead` before it) and its dependencies below (`indent` before them).
    fn draw(
        &self,
        node: &Node,
        lead: &str,
        indent: &str,
        path: &mut Vec<Node>,
        drawn: &mut BTreeSet<Node>,
        out: &mut String,
    ) {
        let label = self.label(node);
        if path.contains(node) {
            let cycle = output::toned(
                "↻ cycle: depends on itself through the above",
                Tone::Bad,
                false,
            );
            out.push_str(&format!("{lead}{label} {cycle}\n"));
            return;
        }
        let Some(repository) = self.known.get(node) else {
            let why = match self.unreadable.get(node) {
                Some(error) => format!("✗ cannot be read: {error}"),
                None => "✗ not found".to_owned(),
            };
            let why = output::toned(&why, Tone::Bad, false);
            out.push_str(&format!("{lead}{label} {why}\n"));
            return;
        };
        if !drawn.insert(node.clone()) {
            out.push_str(&format!("{lead}{label} (dependencies drawn above)\n"));
            return;
        }
        out.push_str(&format!("{lead}{label} {}\n", state_of(repository)));
        let own = node.namespace.as_str();
        let dependencies = &repository.spec.depends_on;
        path.push(node.clone());
        for (i, dependency) in dependencies.iter().enumerate() {
            let last = i + 1 == dependencies.len();
            let branch = format!("{indent}{}", if last { "└── " } else { "├── " });
            let below = format!("{indent}{}", if last { "    " } else { "│   " });
            if dependency.is_git_repository() {
                let child = Node::new(dependency.namespace_or(own), &dependency.name);
                self.draw(&child, &branch, &below, path, drawn, out);
            } else {
                let namespace = dependency.namespace_or(own);
                out.push_str(&format!(
                    "{branch}{} {} {namespace}/{} (its health gates this one)\n",
                    dependency.api_version(),
                    dependency.kind(),
                    dependency.name
                ));
            }
        }
        path.pop();
    }

    fn label(&self, node: &Node) -> String {
        match self.home {
            Some(home) if home == node.namespace => node.name.clone(),
            _ => node.to_string(),
        }
    }
}

/// `✓ Ready`, `✗ blocked: <what blocks it>`, `✗ <reason>: <message>` or `… <reason>`.
fn state_of(repository: &GitRepository) -> String {
    let status = repository.status.clone().unwrap_or_default();
    let Some(ready) = status.conditions.iter().find(|c| c.type_ == "Ready") else {
        return output::toned("… not reconciled yet", Tone::Pending, false);
    };
    let message = ready.message.lines().next().unwrap_or_default();
    if repository.spec.suspend == Some(true) {
        return output::toned("‖ suspended", Tone::Pending, false);
    }
    match (ready.status.as_str(), ready.reason.as_str()) {
        ("True", _) => {
            let revision = repository
                .applied_revision()
                .map(|r| format!(" {}", output::short_revision(r)))
                .unwrap_or_default();
            output::toned(&format!("✓ Ready{revision}"), Tone::Good, false)
        }
        (_, "DependencyNotReady") => {
            output::toned(&format!("✗ blocked: {message}"), Tone::Bad, false)
        }
        ("False", reason) => output::toned(&format!("✗ {reason}: {message}"), Tone::Bad, false),
        (_, reason) => output::toned(&format!("… {reason}: {message}"), Tone::Pending, false),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn repository(
        name: &str,
        depends_on: serde_json::Value,
        ready: (&str, &str, &str),
    ) -> GitRepository {
        let (status, reason, message) = ready;
        serde_json::from_value(json!({
            "apiVersion": "driftless.dev/v1alpha1", "kind": "GitRepository",
            "metadata": { "name": name, "namespace": "team", "generation": 1 },
            "spec": { "url": "https://example.com/r.git", "dependsOn": depends_on },
            "status": { "conditions": [{ "type": "Ready", "status": status, "reason": reason,
                "message": message, "observedGeneration": 1,
                "lastTransitionTime": "2026-12-07T00:00:00Z" }] },
        }))
        .unwrap()
    }

    fn graph_of(repositories: Vec<GitRepository>, home: Option<&str>) -> String {
        let shown: Vec<Node> = repositories.iter().map(Node::of).collect();
        let known = repositories
            .into_iter()
            .map(|r| (Node::of(&r), r))
            .collect();
        let graph = Graph {
            known: &known,
            unreadable: &BTreeMap::new(),
            home,
        };
        graph.render(&shown)
    }

    #[test]
    fn a_chain_is_drawn_from_its_top_down_to_what_blocks_it() {
        let drawn = graph_of(
            vec![
                repository(
                    "crds",
                    json!([]),
                    ("False", "HealthCheckFailed", "operator: not ready"),
                ),
                repository(
                    "crs",
                    json!([{ "name": "crds" }]),
                    (
                        "False",
                        "DependencyNotReady",
                        "revision r waits: GitRepository team/crds: Ready=False",
                    ),
                ),
                repository(
                    "app",
                    json!([{ "name": "crs" }, { "apiVersion": "apiextensions.k8s.io/v1",
                              "kind": "CustomResourceDefinition", "name": "widgets.x" }]),
                    (
                        "False",
                        "DependencyNotReady",
                        "revision r waits: GitRepository team/crs",
                    ),
                ),
                repository("other", json!([]), ("True", "Succeeded", "applied")),
            ],
            Some("team"),
        );
        assert_eq!(
            drawn,
            "app ✗ blocked: revision r waits: GitRepository team/crs\n\
             ├── crs ✗ blocked: revision r waits: GitRepository team/crds: Ready=False\n\
             │   └── crds ✗ HealthCheckFailed: operator: not ready\n\
             └── apiextensions.k8s.io/v1 CustomResourceDefinition team/widgets.x (its health gates this one)\n\
             other ✓ Ready\n"
        );
    }

    #[test]
    fn shared_dependencies_cycles_and_missing_ones_are_named() {
        let ok = ("True", "Succeeded", "applied");
        let drawn = graph_of(
            vec![
                repository("a", json!([{ "name": "base" }, { "name": "gone" }]), ok),
                repository("b", json!([{ "name": "base" }]), ok),
                repository("base", json!([]), ok),
                repository("x", json!([{ "name": "y" }]), ok),
                repository("y", json!([{ "name": "x", "namespace": "team" }]), ok),
            ],
            None,
        );
        assert_eq!(
            drawn,
            "team/a ✓ Ready\n\
             ├── team/base ✓ Ready\n\
             └── team/gone ✗ not found\n\
             team/b ✓ Ready\n\
             └── team/base (dependencies drawn above)\n\
             team/x ✓ Ready\n\
             └── team/y ✓ Ready\n    \
             └── team/x ↻ cycle: depends on itself through the above\n"
        );
    }
}
