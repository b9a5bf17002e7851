//! `driftless build`: the objects a revision of a local checkout yields, offline.
//!
//! The commit is read through the same tree rules and manifest checks as the controller (no
//! working-tree files: what is built is what a push would send), so a CI job can refuse a
//! broken revision before it is merged. Namespaces are not defaulted here: that needs the
//! cluster's discovery and happens at apply time.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Args, ValueEnum};
use git2::Repository;

use super::CliError;
use crate::{
    api::GitRepository,
    manifests::{self, Manifest},
    source::{Limits, ManifestFile, tree},
};

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// A directory inside the local git checkout.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Directory of the manifests in the repository (default: the spec file's `path`, else the
    /// repository root).
    #[arg(long)]
    pub path: Option<String>,
    /// The commit to build: a branch, tag, or SHA (default: HEAD).
    #[arg(long, default_value = "HEAD")]
    pub revision: String,
    /// A GitRepository manifest whose `path` and `ignore` apply, as the controller reads them.
    #[arg(long)]
    pub spec_file: Option<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = BuildFormat::Yaml)]
    pub output: BuildFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BuildFormat {
    Yaml,
    Json,
}

pub fn run(args: BuildArgs) -> Result<ExitCode, CliError> {
    let objects = build(&args)?;
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

/// The manifests of the revision, or the controller's own error messages.
pub fn build(args: &BuildArgs) -> Result<Vec<Manifest>, CliError> {
    let spec = args.spec_file.as_ref().map(read_spec).transpose()?;
    let path = args
        .path
        .clone()
        .or_else(|| spec.as_ref().and_then(|s| s.spec.path.clone()))
        .unwrap_or_default();
    let ignore = spec.map(|s| s.spec.ignore).unwrap_or_default();
    let files = read_commit(&args.dir, &args.revision, &path, &ignore)?;
    read_objects(&files)
}

/// The manifest files under `path` of a commit of the checkout holding `dir`, by the
/// controller's tree rules.
pub fn read_commit(
    dir: &Path,
    revision: &str,
    path: &str,
    ignore: &[String],
) -> Result<Vec<ManifestFile>, CliError> {
    let repository = Repository::discover(dir).map_err(|e| CliError::NotARepository {
        path: dir.display().to_string(),
        reason: e.message().to_owned(),
    })?;
    let commit = repository
        .revparse_single(revision)
        .and_then(|object| object.peel_to_commit())
        .map_err(|e| CliError::Revision {
            revision: revision.to_owned(),
            reason: e.message().to_owned(),
        })?;
    let files = tree::read_manifest_files(
        &repository,
        commit.id(),
        path,
        ignore,
        Limits::default().tree,
    )?;
    // As the controller: a link or submodule that may stand for manifests fails the revision
    // rather than silently dropping (and then pruning) what it held.
    if !files.skipped.is_empty() {
        return Err(CliError::SkippedPaths(files.skipped.join(", ")));
    }
    Ok(files.files)
}

/// Manifest files to objects, with the controller's checks.
pub fn read_objects(files: &[ManifestFile]) -> Result<Vec<Manifest>, CliError> {
    let contents = files
        .iter()
        .map(|f| (f.path.as_str(), f.contents.as_slice()));
    Ok(manifests::read_manifests(
        contents,
        &manifests::Budget::default(),
    )?)
}

fn read_spec(path: &PathBuf) -> Result<GitRepository, CliError> {
    let fail = |reason: String| CliError::SpecFile {
        spec_file: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    serde_saphyr::from_str(&text).map_err(|e| fail(format!("not a GitRepository: {e}")))
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
