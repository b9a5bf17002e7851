//! The client commands: what people run against a cluster (`get`, `reconcile`, `suspend`,
//! `resume`, `events`, `tree`) and without one (`build`). They use the library code the
//! controller uses, so what they show is what the controller does.
//!
//! Conventions, as kubectl's: tables and machine output (`-o yaml|json`) on stdout, progress on
//! stderr and only on a terminal, colours only on a terminal and never with `NO_COLOR`.

mod build;
mod check;
mod connect;
mod dependency_tree;
mod diff;
mod error;
mod events;
mod get;
mod objects;
mod output;
mod reconcile;
mod tree;
mod uninstall;

use std::process::ExitCode;

use clap::{Args, Subcommand};

pub use build::BuildArgs;
pub use build::read_spec;
pub use connect::ClusterArgs;
pub use diff::DiffArgs;
pub use error::CliError;
pub use get::GetArgs;
pub use reconcile::ReconcileArgs;
pub use tree::TreeArgs;
pub use uninstall::UninstallArgs;

/// The commands for people and CI, next to the controller's own.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// List GitRepositories with their revision, readiness and objects.
    Get(GetArgs),
    /// Ask for a reconcile now; with --wait, follow it until Ready or failure.
    Reconcile(ReconcileArgs),
    /// Stop reconciling a GitRepository; the cluster keeps what was applied.
    Suspend(ObjectArgs),
    /// Reconcile a suspended GitRepository again, starting now.
    Resume(ObjectArgs),
    /// The Kubernetes events of a GitRepository, oldest first.
    Events(ObjectArgs),
    /// The objects a GitRepository applied, by namespace and kind, with their health; without
    /// a name, the dependency graph of the GitRepositories and what blocks each.
    Tree(TreeArgs),
    /// Render a local checkout offline, as the controller would, and print the objects.
    Build(BuildArgs),
    /// What applying a revision would create, change and prune (exit 0: nothing, 1: changes).
    Diff(DiffArgs),
    /// Preflight: CRD, controller, your rights, ServiceAccounts; each line ✓ or ✗ with the fix.
    Check(NamespaceArgs),
    /// Delete every GitRepository (pruning, or orphaning with --keep-objects) before the
    /// controller is removed, so nothing stays Terminating.
    Uninstall(UninstallArgs),
}

/// Commands that act on a namespace, not on one object.
#[derive(Args, Debug)]
pub struct NamespaceArgs {
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// One GitRepository by name.
#[derive(Args, Debug)]
pub struct ObjectArgs {
    /// Name of the GitRepository.
    pub name: String,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Durations as the CRD spells them: `90s`, `5m`, `1h30m`.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    crate::api::parse_duration(text).map_err(|e| e.to_string())
}

/// Runs a client command; failures are printed on stderr. Exit codes: 0 success, 1 failure
/// (for `reconcile --wait`: the reconcile failed), 2 the command could not do its work.
pub async fn run(command: ClientCommand) -> ExitCode {
    let result = match command {
        ClientCommand::Get(args) => get::run(args).await,
        ClientCommand::Reconcile(args) => reconcile::run(args).await,
        ClientCommand::Suspend(args) => reconcile::suspend(args, true).await,
        ClientCommand::Resume(args) => reconcile::suspend(args, false).await,
        ClientCommand::Events(args) => events::run(args).await,
        ClientCommand::Tree(args) => tree::run(args).await,
        ClientCommand::Build(args) => build::run(args).await,
        ClientCommand::Check(args) => check::run(args).await,
        ClientCommand::Diff(args) => diff::run(args).await,
        ClientCommand::Uninstall(args) => uninstall::run(args).await,
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("{}", output::failure_line(&error.to_string()));
            error.exit_code()
        }
    }
}
