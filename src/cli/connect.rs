//! The cluster a client command talks to, chosen as kubectl chooses it.

use clap::Args;
use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};

use super::CliError;

/// `--kubeconfig`, `--context` and `-n` as kubectl reads them; `KUBECONFIG` is honoured.
#[derive(Args, Debug, Clone, Default)]
pub struct ClusterArgs {
    /// Path of the kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else in-cluster).
    #[arg(long, global = true)]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The kubeconfig context to use (default: the current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Namespace of the GitRepository (default: the context's namespace).
    #[arg(short, long, global = true)]
    pub namespace: Option<String>,
}

/// A client and the namespace commands act in.
pub struct Connection {
    pub client: Client,
    pub namespace: String,
}

pub async fn connect(args: &ClusterArgs) -> Result<Connection, CliError> {
    let config = config(args).await?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config).map_err(CliError::Client)?;
    Ok(Connection { client, namespace })
}

async fn config(args: &ClusterArgs) -> Result<Config, CliError> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    if let Some(path) = &args.kubeconfig {
        let kubeconfig = Kubeconfig::read_from(path)?;
        return Ok(Config::from_custom_kubeconfig(kubeconfig, &options).await?);
    }
    if args.context.is_some() {
        return Ok(Config::from_kubeconfig(&options).await?);
    }
    Ok(Config::infer().await?)
}
