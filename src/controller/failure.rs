//! Why a reconcile stopped, in the words of its `Ready` condition: each step's error becomes a
//! [`Failure`] with the [`Reason`] naming the step, a message the user can act on, and whether
//! only the user can fix it (Stalled) or a retry may (Failed).

use kube::ResourceExt;

use crate::{
    api::InventoryEntry,
    apply::{ApplyError, DesiredObject},
    render::RenderErrors,
    source::{Artifact, SourceError, SourceErrorKind},
};

use super::conditions::Reason;

/// Why a reconcile stopped, in the words of its `Ready` condition.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) reason: Reason,
    pub(super) message: String,
    /// True when only a change by the user can help.
    pub(super) stalled: bool,
    /// The revision the failure belongs to, when one was fetched.
    pub(super) revision: Option<String>,
    /// The inventory to record although the reconcile failed (objects were applied).
    pub(super) inventory: Option<Vec<InventoryEntry>>,
}

impl Failure {
    pub(super) fn new(reason: Reason, message: impl ToString) -> Self {
        Self {
            reason,
            message: message.to_string(),
            stalled: false,
            revision: None,
            inventory: None,
        }
    }

    pub(super) fn stalled(mut self) -> Self {
        self.stalled = true;
        self
    }

    pub(super) fn at(mut self, revision: &str) -> Self {
        self.revision = Some(revision.to_owned());
        self
    }

    /// Records `inventory` although the reconcile failed: objects were applied.
    pub(super) fn keeping(mut self, inventory: Vec<InventoryEntry>) -> Self {
        self.inventory = Some(inventory);
        self
    }
}

/// A fetch that failed: Stalled when only a change of the spec or the Secret can fix it.
pub(super) fn source_failure(error: &SourceError) -> Failure {
    let failure = Failure::new(Reason::GitOperationFailed, error);
    if needs_user_change(&error.kind) {
        failure.stalled()
    } else {
        failure
    }
}

/// Errors that a retry cannot fix: the spec, the Secret or the commit must change.
fn needs_user_change(kind: &SourceErrorKind) -> bool {
    matches!(
        kind,
        SourceErrorKind::InvalidUrl(_)
            | SourceErrorKind::Credentials(_)
            | SourceErrorKind::CredentialsRequired
            | SourceErrorKind::KnownHostsRequired
            | SourceErrorKind::HostKey(_)
    ) || matches!(kind, SourceErrorKind::Tree(tree) if tree.refuses_commit())
}

/// A unit that did not render: nothing of the revision is applied.
pub(super) fn render_failure(artifact: &Artifact, errors: &RenderErrors) -> Failure {
    let failure = Failure::new(
        Reason::BuildFailed,
        format!("revision {}: {errors}", artifact.revision),
    )
    .at(&artifact.revision);
    if errors.need_new_commit() {
        failure.stalled()
    } else {
        failure
    }
}

/// `spec.postBuild` variables that could not be read or substituted.
pub(super) fn substitution_failure(revision: &str, error: impl std::fmt::Display) -> Failure {
    Failure::new(Reason::BuildFailed, format!("revision {revision}: {error}")).at(revision)
}

/// Files that are not valid manifests.
pub(super) fn manifest_failure(revision: &str, errors: impl std::fmt::Display) -> Failure {
    Failure::new(
        Reason::ManifestInvalid,
        format!("revision {revision}: {errors}"),
    )
    .at(revision)
}

/// Objects whose ordering annotations (waves, hooks) are not understood, each described by
/// [`annotation_problem`]: only a new commit helps.
pub(super) fn refuse_annotations(revision: &str, problems: &[String]) -> Result<(), Failure> {
    if problems.is_empty() {
        return Ok(());
    }
    Err(manifest_failure(revision, problems.join("; ")).stalled())
}

/// One entry of [`refuse_annotations`]: the object, the file it came from, what is wrong.
pub(super) fn annotation_problem(object: &DesiredObject, error: impl std::fmt::Display) -> String {
    format!("{} ({}): {error}", object.object.name_any(), object.origin)
}

/// An apply the API server refused: ValidationFailed when it refused the objects themselves.
pub(super) fn apply_failure(revision: &str, error: &ApplyError) -> Failure {
    let reason = match error {
        ApplyError::Validation(_) => Reason::ValidationFailed,
        _ => Reason::ApplyFailed,
    };
    Failure::new(reason, format!("revision {revision}: {error}")).at(revision)
}

/// A symlink or submodule is not followed; reading on without it would prune what it held
/// while reporting success, so the revision fails unless the path is ignored explicitly.
pub(super) fn refuse_skipped_paths(revision: &str, skipped: &[String]) -> Result<(), Failure> {
    if skipped.is_empty() {
        return Ok(());
    }
    Err(Failure::new(
        Reason::ManifestInvalid,
        format!(
            "revision {}: {} not followed (symlinks and submodules are never read): {}; \
             nothing was applied or pruned. Remove them, or list them in spec.ignore or \
             .driftlessignore",
            revision,
            if skipped.len() == 1 { "path" } else { "paths" },
            skipped.join(", ")
        ),
    )
    .at(revision))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skipped_path_fails_the_revision_naming_it() {
        let skipped = vec!["deploy/link.yaml".to_owned()];
        let failure = refuse_skipped_paths("main@sha1:0123", &skipped).unwrap_err();
        assert_eq!(failure.reason, Reason::ManifestInvalid);
        assert!(
            failure.message.contains("deploy/link.yaml"),
            "{}",
            failure.message
        );
        assert!(
            failure.message.contains("spec.ignore"),
            "{}",
            failure.message
        );
        assert!(refuse_skipped_paths("main@sha1:0123", &[]).is_ok());
    }
}
