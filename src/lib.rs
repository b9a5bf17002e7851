//! driftless: a GitOps reconciliation controller for Kubernetes.
//!
//! Dependencies point one way: [`controller`] composes [`source`] (git), [`revision`] (a
//! revision's objects: [`render`] for Kustomize, [`manifests`] for YAML) and [`apply`]
//! (server-side apply, inventory, prune, health); [`webhook`] only turns verified pushes into
//! reconcile requests; [`cli`] composes the same pieces for people and CI. None of the lower
//! modules knows about the controller or the CLI. [`repo_path`] is the ground vocabulary of paths
//! inside a revision that source, render, manifests and the CLI share.

pub mod alerts;
pub mod api;
pub mod apply;
pub mod cli;
pub mod commit_status;
pub mod controller;
pub mod expressions;
pub mod manifests;
pub mod memory;
pub mod ordering;
pub mod preview;
pub mod render;
pub mod repo_path;
pub mod revision;
pub mod source;
pub mod sync;
pub mod telemetry;
pub mod webhook;

/// The version of this build, as `driftless version` prints it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
