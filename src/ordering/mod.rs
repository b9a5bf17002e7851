//! Ordering between GitRepositories (`spec.dependsOn`): the dependency graph and its cycles,
//! when a dependency counts as ready, whether a dependent may apply, and when a dependency
//! being deleted may prune; and inside one
//! revision, its apply waves and hooks. Pure functions over
//! the API types; the controller reads the objects and acts on the answers, this module
//! knows nothing about it.

mod deletion;
mod gate;
mod graph;
mod hooks;
mod readiness;
mod waves;

pub use deletion::{DeletionOrder, DependentState, deletion_order};
pub use gate::{Blocker, Gate, cross_namespace_refused, decide, needs_check};
pub use graph::{Node, cycle_through, dependencies_of, describe_cycle, is_dependent_of};
pub use hooks::{DeletePolicy, InvalidHook, Phase, Role, delete_policy_of, hook_weight, role_of};
pub use readiness::{Readiness, git_repository_readiness, readiness_key};
pub use waves::{InvalidWave, split_waves, wave_of};

/// An object's annotations from `(key, value)` pairs, for the tests of the annotation readers.
#[cfg(test)]
fn test_annotations(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
