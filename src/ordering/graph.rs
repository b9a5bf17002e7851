//! The graph of `spec.dependsOn` between GitRepositories: its edges and the cycle through one
//! of them.

use std::{collections::HashSet, fmt};

use kube::ResourceExt;

use crate::api::GitRepository;

/// A GitRepository in the graph.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Node {
    pub namespace: String,
    pub name: String,
}

impl Node {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    pub fn of(repository: &GitRepository) -> Self {
        Self::new(
            repository.namespace().unwrap_or_default(),
            repository.name_any(),
        )
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The GitRepositories `repository` depends on (other kinds are not part of the graph: they
/// cannot depend back).
pub fn dependencies_of(repository: &GitRepository) -> Vec<Node> {
    let own = repository.namespace().unwrap_or_default();
    repository
        .spec
        .depends_on
        .iter()
        .filter(|dependency| dependency.is_git_repository())
        .map(|dependency| Node::new(dependency.namespace_or(&own), &dependency.name))
        .collect()
}

/// Whether `dependent` names `dependency` in its `spec.dependsOn`.
pub fn is_dependent_of(dependent: &GitRepository, dependency: &Node) -> bool {
    dependencies_of(dependent).contains(dependency)
}

/// A cycle of dependencies that leads from `start` back to it, as the list of nodes from
/// `start` to the last one before `start` again; `None` when there is none. Each node is
/// entered once, so the walk ends on any graph.
pub fn cycle_through(start: &Node, dependencies: impl Fn(&Node) -> Vec<Node>) -> Option<Vec<Node>> {
    let mut entered = HashSet::new();
    // Depth-first, with the path to the node on top kept beside the stack of what is left.
    let mut stack: Vec<(Node, Vec<Node>)> = vec![(start.clone(), vec![start.clone()])];
    while let Some((node, path)) = stack.pop() {
        for next in dependencies(&node) {
            if &next == start {
                return Some(path);
            }
            if entered.insert(next.clone()) {
                let mut longer = path.clone();
                longer.push(next.clone());
                stack.push((next, longer));
            }
        }
    }
    None
}

/// `a → b → c → a`.
pub fn describe_cycle(cycle: &[Node]) -> String {
    let mut names: Vec<String> = cycle.iter().map(ToString::to_string).collect();
    if let Some(first) = names.first().cloned() {
        names.push(first);
    }
    names.join(" → ")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn graph(edges: &[(&str, &str)]) -> impl Fn(&Node) -> Vec<Node> {
        let mut map: HashMap<Node, Vec<Node>> = HashMap::new();
        for (from, to) in edges {
            map.entry(Node::new("ns", *from))
                .or_default()
                .push(Node::new("ns", *to));
        }
        move |node| map.get(node).cloned().unwrap_or_default()
    }

    fn names(cycle: Option<Vec<Node>>) -> Option<Vec<String>> {
        cycle.map(|nodes| nodes.into_iter().map(|n| n.name).collect())
    }

    #[test]
    fn a_chain_has_no_cycle() {
        let edges = graph(&[("app", "crs"), ("crs", "crds")]);
        assert_eq!(cycle_through(&Node::new("ns", "app"), &edges), None);
    }

    #[test]
    fn a_cycle_through_the_start_is_named_in_order() {
        let edges = graph(&[("a", "b"), ("b", "c"), ("c", "a")]);
        assert_eq!(
            names(cycle_through(&Node::new("ns", "a"), &edges)),
            Some(vec!["a".into(), "b".into(), "c".into()])
        );
        let cycle = cycle_through(&Node::new("ns", "b"), &edges).unwrap();
        assert_eq!(describe_cycle(&cycle), "ns/b → ns/c → ns/a → ns/b");
    }

    #[test]
    fn depending_on_oneself_is_a_cycle() {
        let edges = graph(&[("a", "a")]);
        assert_eq!(
            names(cycle_through(&Node::new("ns", "a"), &edges)),
            Some(vec!["a".into()])
        );
    }

    #[test]
    fn a_cycle_downstream_is_not_the_start_s_own() {
        // `app` waits on `b`, which is in a cycle with `c`: `b` and `c` are Stalled, and `app`
        // is blocked by `b`, not in a cycle itself.
        let edges = graph(&[("app", "b"), ("b", "c"), ("c", "b")]);
        assert_eq!(cycle_through(&Node::new("ns", "app"), &edges), None);
    }

    #[test]
    fn diamonds_are_walked_once_and_end() {
        let edges = graph(&[("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "e")]);
        assert_eq!(cycle_through(&Node::new("ns", "a"), &edges), None);
    }
}
