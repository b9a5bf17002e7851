//! Why a render failed, in words that name the file, the field and the entry to fix. Paths are
//! always repository-relative: the private work directory never appears in a message.

use std::time::Duration;

/// A failed render. Cloneable, because one render's result is shared by every GitRepository
/// that asked for the same input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A sandbox rule refused the input before any process ran.
    #[error("{file}: {field} entry {entry:?} is refused: {reason}")]
    Refused {
        file: String,
        field: String,
        entry: String,
        reason: Refusal,
    },
    /// A `resources`/`components` entry names nothing in the commit.
    #[error("{file}: {field} entry {entry:?}: {path:?} does not exist in the commit")]
    NotFound {
        file: String,
        field: String,
        entry: String,
        path: String,
    },
    #[error("{file}: {reason}")]
    InvalidKustomization { file: String, reason: String },
    /// A chart that `helm template` must not or cannot be run on.
    #[error("helm chart {chart}: {reason}")]
    InvalidChart { chart: String, reason: String },
    /// The renderer's binary is missing or unusable; only objects that need it fail.
    #[error("{renderer} is not available ({reason}); plain YAML renders without it")]
    Unavailable { renderer: String, reason: String },
    /// The renderer ran and said no; `message` is its error output, paths made relative.
    #[error("`{renderer} {} {unit}` failed: {message}", verb(renderer))]
    Failed {
        renderer: String,
        unit: String,
        message: String,
    },
    #[error(
        "`{renderer} {} {unit}` took longer than {after:?} and was stopped",
        verb(renderer)
    )]
    TimedOut {
        renderer: String,
        unit: String,
        after: Duration,
    },
    #[error(
        "`{renderer} {} {unit}` printed more than {limit} bytes and was stopped",
        verb(renderer)
    )]
    OutputTooLarge {
        renderer: String,
        unit: String,
        limit: usize,
    },
    /// The unit's input is larger than the tree limits allow.
    #[error("{unit}: {reason}")]
    TooLarge { unit: String, reason: String },
    /// The unit reaches (or the path holds) more kustomizations than one render may check.
    #[error(
        "{unit}: more than {limit} kustomizations (the limit is --max-kustomizations); \
         nothing was rendered"
    )]
    TooManyKustomizations { unit: String, limit: usize },
    #[error("reading the commit: {0}")]
    Tree(String),
    /// Preparing the work directory or starting the process failed (a controller-side problem,
    /// not the commit's).
    #[error("{0}")]
    Sandbox(String),
}

impl RenderError {
    /// Whether the same input would fail the same way again, so the failure may be cached: a
    /// timeout or a local I/O problem may heal, a refused or broken kustomization does not.
    pub fn is_deterministic(&self) -> bool {
        !matches!(
            self,
            RenderError::TimedOut { .. }
                | RenderError::Tree(_)
                | RenderError::Sandbox(_)
                | RenderError::Unavailable { .. }
        )
    }

    /// Whether only a change to the commit can fix it (the object is then Stalled until then).
    pub fn needs_new_commit(&self) -> bool {
        matches!(
            self,
            RenderError::Refused { .. }
                | RenderError::NotFound { .. }
                | RenderError::InvalidKustomization { .. }
                | RenderError::InvalidChart { .. }
                | RenderError::Failed { .. }
                | RenderError::OutputTooLarge { .. }
                | RenderError::TooLarge { .. }
                | RenderError::TooManyKustomizations { .. }
        )
    }

    /// The metric outcome of this failure.
    pub fn outcome(&self) -> &'static str {
        match self {
            RenderError::Refused { .. }
            | RenderError::NotFound { .. }
            | RenderError::InvalidKustomization { .. }
            | RenderError::InvalidChart { .. }
            | RenderError::TooLarge { .. }
            | RenderError::TooManyKustomizations { .. } => "refused",
            RenderError::TimedOut { .. } => "timeout",
            RenderError::OutputTooLarge { .. } => "output_too_large",
            RenderError::Unavailable { .. } => "unavailable",
            RenderError::Failed { .. } | RenderError::Tree(_) | RenderError::Sandbox(_) => "error",
        }
    }
}

/// The subcommand a renderer's messages name: `kustomize build`, `helm template`.
fn verb(renderer: &str) -> &'static str {
    if renderer == super::helm::RENDERER {
        "template"
    } else {
        "build"
    }
}

/// Why a sandbox rule refused an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "remote resources are not allowed (driftless renders only what the commit holds: \
         vendor the remote base into the repository)"
    )]
    Remote,
    #[error("absolute paths are not allowed")]
    Absolute,
    #[error("the path leaves the repository")]
    LeavesRepository,
    /// A component of the path is a name no tree entry may have (`.git`, an alias of it).
    #[error("{0}")]
    BadName(crate::repo_path::NameRule),
    #[error(
        "the file is outside the kustomization's directory (kustomize's \
         LoadRestrictionsRootOnly; list its directory as a base instead)"
    )]
    OutsideKustomization,
    #[error("it is a symlink, and symlinks are not followed")]
    Symlink,
    #[error("it is a submodule, and submodules are not fetched")]
    Submodule,
    #[error("Helm charts are not rendered through kustomize")]
    Helm,
    #[error(
        "only kustomize's builtin generators and transformers run (apiVersion: builtin); \
         exec plugins and KRM functions are never enabled"
    )]
    Plugin,
    #[error("the directory has no kustomization.yaml, kustomization.yml or Kustomization")]
    NotAKustomization,
}
