//! The custom resource types that users write and the controller reports on.

mod alerts;
mod commit_status;
mod dependency;
mod duration;
mod git_repository;
mod health_checks;
mod helm;
mod keys;
mod kustomize;
mod preview;
mod validation;

pub use alerts::{AlertEvent, AlertSeverity, AlertSpec, AlertType};
pub use commit_status::{CommitStatusProvider, CommitStatusSpec};
pub use dependency::{
    DependenciesReady, Dependency, DependencyPolicy, GIT_REPOSITORY_API_VERSION,
    GIT_REPOSITORY_KIND,
};
pub use duration::{
    DurationError, MAX_INTERVAL, MAX_TIMEOUT, format_duration, parse_bounded_duration,
    parse_duration,
};
pub use git_repository::*;
pub use health_checks::{
    HealthCheckExpr, HealthCheckReference, MAX_EXPRESSION_LENGTH, MAX_HEALTH_CHECK_EXPRS,
    MAX_HEALTH_CHECKS,
};
pub use helm::{HelmSpec, ValuesReference};
pub use keys::*;
pub use kustomize::{
    CommonMetadata, ImageOverride, PatchSpec, PatchTarget, PostBuild, SubstituteReference,
};
pub use preview::{PreviewCommentMode, PreviewSpec};
pub use validation::{FieldError, InvalidSpec, validate, validate_spec};

use kube::CustomResourceExt;

/// The CustomResourceDefinitions driftless installs, as one multi-document YAML stream, exactly
/// as `driftless crd` prints it and as `crds/` and the Helm chart ship it.
pub fn crd_yaml() -> String {
    let crd = GitRepository::crd();
    let body = serde_saphyr::to_string(&crd).expect("a CRD always serializes to YAML");
    format!("---\n{body}")
}
