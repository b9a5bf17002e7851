//! The client commands: what people run against a cluster (`get`, `reconcile`, `suspend`,
//! `resume`, `events`, `tree`) and without one (`build`). They use the library code the
//! controller uses, so what they show is what the controller does.
//!
//! Conventions, as kubectl's: tables and machine output (`-o yaml|json`) on stdout, progress on
//! stderr and only on a terminal, colours only on a terminal and never with `NO_COLOR`.

mod build;
mod connect;
mod error;
mod events;
mod get;
mod output;
mod reconcile;
mod tree;

use std::process::ExitCode;

use clap::{Args, Subcommand};

pub use build::BuildArgs;
pub use connect::ClusterArgs;
pub use error::CliError;
pub use get::GetArgs;
pub use reconcile::ReconcileArgs;

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
    /// The objects a GitRepository applied, by namespace and kind, with their health.
    Tree(ObjectArgs),
    /// Render a local checkout offline, as the controller would, and print the objects.
    Build(BuildArgs),
}

/// One GitRepository by name.
#[derive(Args, Debug)]
pub struct ObjectArgs {
    /// Name of the GitRepository.
    pub name: String,
    #[command(flatten)]
    pub cluster: ClusterArgs,
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
        ClientCommand::Build(args) => build::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("{}", output::failure_line(&error.to_string()));
            error.exit_code()
        }
    }
}
