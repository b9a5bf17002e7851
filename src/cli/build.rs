//! `driftless build`: the objects a revision yields, without a cluster.
//!
//! A commit of a local checkout (no working-tree files: what is built is what a push would
//! send) or a fetched remote revision goes through the controller's own tree rules, renderers
//! and manifest checks, so a CI job can refuse a broken revision before it is merged.
//! Namespaces are not defaulted here: that needs the cluster's discovery and happens at apply
//! time.

use std::{collections::BTreeMap, path::PathBuf, process::ExitCode};

use clap::{Args, ValueEnum};

use super::{
    CliError,
    objects::{self, RenderArgs},
};
use crate::{
    api::{self, GitReference, GitRepository, GitRepositorySpec},
    manifests::Manifest,
    revision::ChartContext,
};

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// A directory inside the local git checkout (ignored with --repo).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Build a remote repository instead, fetched as the controller fetches it (public, or
    /// with credentials in the URL).
    #[arg(long)]
    pub repo: Option<String>,
    /// With --repo: the branch to build (default: the remote's HEAD).
    #[arg(long = "ref", requires = "repo")]
    pub branch: Option<String>,
    /// Directory of the manifests in the repository (default: the spec file's `path`, else the
    /// repository root).
    #[arg(long)]
    pub path: Option<String>,
    /// The commit of the local checkout to build: a branch, tag, or SHA.
    #[arg(long, default_value = "HEAD", conflicts_with = "repo")]
    pub revision: String,
    /// A GitRepository manifest whose `path`, `ignore` and rendering fields (`namePrefix`,
    /// `images`, `patches`, `postBuild.substitute`, `commonMetadata`, ...) apply, as the
    /// controller reads them.
    #[arg(long)]
    pub spec_file: Option<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = BuildFormat::Yaml)]
    pub output: BuildFormat,
    #[command(flatten)]
    pub render: RenderArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BuildFormat {
    Yaml,
    Json,
}

pub async fn run(args: BuildArgs) -> Result<ExitCode, CliError> {
    let objects = build(&args).await?;
    let text = match args.output {
        BuildFormat::Json => {
            let items: Vec<_> = objects.iter().map(|m| &m.object).collect();
            let list = serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items });
            serde_json::to_string_pretty(&list)
                .map(|s| s + "\n")
                .map_err(|e| CliError::Output(e.to_string()))?
        }
        BuildFormat::Yaml => yaml_stream(&objects)?,
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// The objects of the revision, or the controller's own error messages.
pub async fn build(args: &BuildArgs) -> Result<Vec<Manifest>, CliError> {
    let repository = match &args.spec_file {
        Some(file) => Some(read_spec(file)?),
        None => None,
    };
    let chart = offline_chart_context(repository.as_ref());
    let mut spec = repository.map(|r| r.spec).unwrap_or_default();
    if let Some(path) = &args.path {
        spec.path = Some(path.clone());
    }
    let renderer = args.render.renderer().await;
    let variables = offline_variables(&spec);
    match &args.repo {
        Some(url) => {
            spec.url = url.clone();
            if let Some(branch) = &args.branch {
                spec.reference = Some(GitReference {
                    branch: Some(branch.clone()),
                    ..GitReference::default()
                });
            }
            let fetched = objects::fetched_revision(&spec, url, None).await?;
            eprintln!("built revision {}", fetched.artifact.revision);
            objects::objects_of(
                &fetched.artifact,
                &spec,
                &renderer,
                &chart,
                variables.as_ref(),
            )
            .await
        }
        None => {
            let artifact = objects::local_revision(&args.dir, &args.revision, &spec)?;
            objects::objects_of(&artifact, &spec, &renderer, &chart, variables.as_ref()).await
        }
    }
}

/// Offline, only `postBuild.substitute` is known; `substituteFrom` objects live in the cluster
/// (`driftless diff` reads them).
fn offline_variables(spec: &GitRepositorySpec) -> Option<BTreeMap<String, String>> {
    let post_build = spec.post_build.as_ref()?;
    if !post_build.substitute_from.is_empty() {
        eprintln!(
            "warning: postBuild.substituteFrom is read from the cluster and not by build; \
             `driftless diff` substitutes it"
        );
    }
    Some(post_build.substitute.clone())
}

/// Offline, a chart renders for helm's default capabilities, with the spec file's name and
/// namespace as release name and namespace; `valuesFrom` lives in the cluster (`driftless
/// diff` reads it).
fn offline_chart_context(repository: Option<&GitRepository>) -> ChartContext {
    let helm = repository.and_then(|r| r.spec.helm.as_ref());
    if helm.is_some_and(|helm| !helm.values_from.is_empty()) {
        eprintln!(
            "warning: helm.valuesFrom is read from the cluster and not by build; \
             `driftless diff` merges it"
        );
    }
    let metadata = repository.map(|r| &r.metadata);
    let spec = repository.map(|r| &r.spec);
    ChartContext {
        release_name: metadata
            .and_then(|m| m.name.clone())
            .unwrap_or_else(|| "release".into()),
        namespace: spec
            .and_then(|s| s.target_namespace.clone())
            .or_else(|| metadata.and_then(|m| m.namespace.clone()))
            .unwrap_or_else(|| "default".into()),
        values_from: Vec::new(),
        capabilities: None,
    }
}

/// Reads a `--spec-file`: a GitRepository manifest, or the reason it is not one.
pub fn read_spec(path: &PathBuf) -> Result<GitRepository, CliError> {
    let fail = |reason: String| CliError::SpecFile {
        spec_file: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let options = crate::manifests::Budget::default().yaml_options();
    let repository: GitRepository = serde_saphyr::from_str_with_options(&text, options)
        .map_err(|e| fail(format!("not a GitRepository: {e}")))?;
    // No apiserver admitted this file: its rules are checked here, before any value of it can
    // reach git or a renderer's command line.
    api::validate(&repository).map_err(|e| fail(format!("refused by the CRD's rules: {e}")))?;
    Ok(repository)
}

fn yaml_stream(objects: &[Manifest]) -> Result<String, CliError> {
    let mut out = String::new();
    for manifest in objects {
        let body = serde_saphyr::to_string(&manifest.object)
            .map_err(|e| CliError::Output(e.to_string()))?;
        out.push_str("---\n");
        out.push_str(&format!("# Source: {}\n", manifest.file));
        out.push_str(&body);
    }
    Ok(out)
}
