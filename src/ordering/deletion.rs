//! Deletion in reverse order: a dependency deleted together with its dependents prunes its
//! objects only once theirs are gone, so a CRD outlives its custom resources and an operator
//! outlives the objects it finalizes.
//!
//! "Together" means the dependent is being deleted as well and has not pruned yet. A dependent
//! that stays (not being deleted) never holds the dependency's deletion: deleting a dependency
//! is a user's explicit wish, and waiting for a dependent nobody deletes would wait forever.
//! Its objects may then lose what they need; the controller says so in an Event.

use super::Node;

/// Where one dependent of a GitRepository being deleted stands, as the API shows it now (a
/// dependent already gone is not listed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DependentState {
    /// Being deleted and its objects not pruned yet.
    Deleting,
    /// Not being deleted.
    Staying,
}

/// What a GitRepository being deleted does about its dependents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeletionOrder {
    /// Prune now. `left` are the dependents that stay, whose objects may need what is pruned.
    Proceed { left: Vec<Node> },
    /// Prune once these dependents, being deleted too, are gone.
    Wait { on: Vec<Node> },
}

/// The rule above, over the dependents found.
pub fn deletion_order(
    dependents: impl IntoIterator<Item = (Node, DependentState)>,
) -> DeletionOrder {
    let (mut deleting, mut staying) = (Vec::new(), Vec::new());
    for (node, state) in dependents {
        match state {
            DependentState::Deleting => deleting.push(node),
            DependentState::Staying => staying.push(node),
        }
    }
    deleting.sort();
    staying.sort();
    if deleting.is_empty() {
        DeletionOrder::Proceed { left: staying }
    } else {
        DeletionOrder::Wait { on: deleting }
    }
}

impl DeletionOrder {
    /// What the status and the Event say: the dependents waited for, or those left behind;
    /// `None` when there is nothing to say.
    pub fn message(&self) -> Option<String> {
        match self {
            DeletionOrder::Wait { on } => Some(format!(
                "deleted; pruning waits until its dependents being deleted too have pruned \
                 theirs: GitRepository {}",
                list(on)
            )),
            DeletionOrder::Proceed { left } if left.is_empty() => None,
            DeletionOrder::Proceed { left } => Some(format!(
                "deleted and pruned while GitRepository {} still depend{} on it (not being \
                 deleted); their objects may need what was pruned",
                list(left),
                if left.len() == 1 { "s" } else { "" }
            )),
        }
    }
}

fn list(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(Node::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> Node {
        Node::new("ns", name)
    }

    #[test]
    fn no_dependents_prune_at_once() {
        let order = deletion_order([]);
        assert_eq!(order, DeletionOrder::Proceed { left: vec![] });
        assert_eq!(order.message(), None);
    }

    #[test]
    fn a_dependent_being_deleted_holds_the_prune() {
        let order = deletion_order([
            (node("crs"), DependentState::Deleting),
            (node("app"), DependentState::Deleting),
        ]);
        assert_eq!(
            order,
            DeletionOrder::Wait {
                on: vec![node("app"), node("crs")]
            }
        );
        assert!(
            order
                .message()
                .unwrap()
                .ends_with("GitRepository ns/app, ns/crs"),
            "{:?}",
            order.message()
        );
    }

    #[test]
    fn a_dependent_that_stays_never_holds_it_but_is_named() {
        let order = deletion_order([(node("app"), DependentState::Staying)]);
        assert_eq!(
            order,
            DeletionOrder::Proceed {
                left: vec![node("app")]
            }
        );
        let message = order.message().unwrap();
        assert!(
            message.contains("GitRepository ns/app still depends"),
            "{message}"
        );
    }

    #[test]
    fn those_being_deleted_are_waited_for_even_when_others_stay() {
        let order = deletion_order([
            (node("app"), DependentState::Staying),
            (node("crs"), DependentState::Deleting),
        ]);
        assert_eq!(
            order,
            DeletionOrder::Wait {
                on: vec![node("crs")]
            }
        );
    }
}
