//! Every integration test in one binary, one module per topic: kube, git2 and axum are linked
//! once instead of once per topic, which dominates `cargo test` on a small machine.
//! Run one topic with `cargo test --test it kustomize::`.
//!
//! `apiserver_restart` is ignored in a plain run because it restarts the apiserver every other
//! test uses; `tests/run.sh` runs it alone, after everything else.

#[path = "../support/mod.rs"]
mod support;

mod alerts;
mod apiserver_restart;
mod apply;
mod chart;
mod cli;
mod commit_status;
mod control_plane;
mod controller;
mod crd;
mod examples;
mod git_transport;
mod helm;
mod hostile;
mod kustomize;
mod operations;
mod ordering;
mod preview;
mod real_content;
mod real_node;
mod source;
mod source_credentials;
mod webhooks;
