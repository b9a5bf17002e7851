//! What can go wrong in an apply, worded so an operator can find the manifest at fault.

use std::{fmt, time::Duration};

use super::object::ObjectRef;

/// One object the apiserver (or the engine's own checks) refused, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectFailure {
    /// Where the object came from, as given in [`DesiredObject::origin`](super::DesiredObject).
    pub origin: String,
    pub object: ObjectRef,
    pub reason: String,
}

impl fmt::Display for ObjectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.origin, self.object, self.reason)
    }
}

/// Why an apply stopped.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Objects failed the checks or the server-side dry run; nothing of the stage they belong to
    /// was written (when the unknown kinds or scope errors are found, nothing at all was).
    #[error("{} object(s) failed validation, so nothing of their stage was written:\n{}", .0.len(), lines(.0))]
    Validation(Vec<ObjectFailure>),

    /// Writes failed after the dry run passed (e.g. a concurrent change); other objects of the
    /// stage may have been written.
    #[error("{} object(s) could not be written:\n{}", .0.len(), lines(.0))]
    Write(Vec<ObjectFailure>),

    /// Objects that left the repository could not be deleted.
    #[error("{} object(s) could not be pruned:\n{}", .0.len(), lines(.0))]
    Prune(Vec<ObjectFailure>),

    /// Applied objects did not become healthy.
    #[error("{} object(s) not healthy within {timeout:?}:\n{}", failures.len(), lines(failures))]
    Unhealthy {
        failures: Vec<ObjectFailure>,
        timeout: Duration,
    },

    /// Applied CustomResourceDefinitions did not become Established in time, so their custom
    /// resources cannot be applied yet.
    #[error("CustomResourceDefinition(s) {} not Established within {timeout:?}", names.join(", "))]
    CrdNotEstablished {
        names: Vec<String>,
        timeout: Duration,
    },

    /// The apiserver's discovery endpoints could not be read.
    #[error("API discovery failed: {0}")]
    Discovery(#[source] kube::Error),
}

fn lines(failures: &[ObjectFailure]) -> String {
    let lines: Vec<String> = failures.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// The server's words for a failed request: the Status message when there is one.
pub fn reason_of(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_error_lists_one_failure_per_line() {
        let failure = |name: &str| ObjectFailure {
            origin: "app.yaml: document 1 (line 1)".into(),
            object: ObjectRef {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                namespace: Some("ns".into()),
                name: name.into(),
            },
            reason: "bad".into(),
        };
        let error = ApplyError::Validation(vec![failure("a"), failure("b")]);
        let text = error.to_string();
        assert!(text.contains("\napp.yaml: document 1 (line 1): apps/v1 Deployment ns/a: bad\n"));
        assert!(text.ends_with("app.yaml: document 1 (line 1): apps/v1 Deployment ns/b: bad"));
    }
}
