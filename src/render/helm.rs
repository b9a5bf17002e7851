//! Helm charts kept in the repository, rendered with the pinned upstream `helm template`.
//!
//! Checked in Rust before anything runs: the chart and every values file are inside the
//! repository, no file of the chart is a symlink or submodule, and every dependency that
//! `Chart.yaml` lists is vendored in the chart's `charts/` (driftless never runs
//! `helm dependency build`: fetching is code execution's and the network's door). The command
//! line never enables DNS lookups, and helm's configuration, cache and plugin directories all
//! point into the empty work directory, so no user configuration or repository list is read.
//!
//! Hooks, as Argo CD treats them: a template annotated with an install or upgrade hook
//! (`pre-install`, `post-install`, `pre-upgrade`, `post-upgrade`, and Helm 2's `crd-install`) is
//! kept in the output (the controller runs install/upgrade hooks in their phases, see
//! `crate::ordering`); one whose hooks are all of other phases
//! (`test`, `test-success`, `test-failure`, `pre-delete`, `post-delete`, `pre-rollback`,
//! `post-rollback`) is never applied.

use std::{ffi::OsString, path::Path};

use serde::{Deserialize, Serialize};

use super::{
    InputLimits, Refusal, RenderError,
    binary::{self},
    kustomization::refusal_of,
    kustomization::{Inputs, display_dir},
    sandbox::{ProcessLimits, WorkDir},
    tree::{self, Entry, EntryName, RepoPath, RepositoryTree},
};

pub const RENDERER: &str = "helm";

/// The version driftless is tested against and ships in its image; another v3 runs with a
/// warning, anything else is refused.
pub const PINNED_VERSION: &str = "v3.22.0";

/// The hook phases whose objects are applied with the revision; every other hook is dropped.
const APPLIED_HOOKS: &[&str] = &[
    "pre-install",
    "post-install",
    "pre-upgrade",
    "post-upgrade",
    "crd-install",
];

const HOOK_ANNOTATION: &str = "helm.sh/hook";

/// Ends the flags of a cobra command line (helm's and kustomize's): what follows is
/// positional, however it is spelled.
pub(super) const END_OF_FLAGS: &str = "--";

/// The cluster a chart is rendered for, as `.Capabilities` shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// The API server's version, e.g. `v1.35.4`.
    pub kube_version: String,
    /// Every `group/version` and `group/version/Kind` the cluster serves (`v1`, `v1/Pod` for
    /// the core group), sorted.
    pub api_versions: Vec<String>,
}

/// A values document that is not a file of the commit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ValuesDocument {
    /// Where it came from, as messages name it: `Secret team-a/app key values.yaml`.
    pub origin: String,
    pub contents: String,
}

/// One `helm template` run: what a `GitRepository`'s `spec.helm` asks for, resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ChartRequest {
    /// The chart's directory from the repository root (`""` for the root).
    pub chart: String,
    pub release_name: String,
    pub namespace: String,
    /// Values files of the commit, from the repository root, in merge order.
    pub values_files: Vec<String>,
    /// Merged after the files, in order (`valuesFrom`, then inline values).
    pub values_documents: Vec<ValuesDocument>,
    pub include_crds: bool,
    pub skip_tests: bool,
    /// Without them helm renders for its built-in defaults.
    pub capabilities: Option<Capabilities>,
}

impl ChartRequest {
    /// The chart as messages name it.
    pub fn display_chart(&self) -> String {
        display_dir(&self.chart)
    }
}

/// A usable helm binary.
#[derive(Clone, Debug)]
pub struct Helm {
    pub binary: std::path::PathBuf,
    pub version: String,
}

impl Helm {
    /// Finds the binary (`binary`, or `helm` on `PATH`) and checks that it is helm v3.
    pub async fn locate(
        binary: Option<&Path>,
        work_parent: Option<&Path>,
    ) -> Result<Self, RenderError> {
        let expected = binary::Expected {
            renderer: RENDERER,
            flag: "--helm-binary",
            version_args: &["version", "--short"],
            major: "v3",
            pinned: PINNED_VERSION,
        };
        let (binary, version) = binary::locate(&expected, binary, work_parent).await?;
        Ok(Self { binary, version })
    }

    /// `helm template` for the request, the values in merge order, and nothing that would
    /// enable DNS lookups, fetch dependencies or read a repository.
    ///
    /// No value can be read as a flag: every flag's value is joined to it (`--namespace=x`:
    /// helm's flag parser takes what follows `=` as the value, whatever it starts with), and
    /// the release name and chart come after `--`, which ends helm's flags, so a name such as
    /// `--post-renderer=/bin/sh` stays a (refused) name.
    pub fn template_args(request: &ChartRequest) -> Vec<OsString> {
        let mut args: Vec<String> = vec![
            "template".into(),
            format!("--namespace={}", request.namespace),
        ];
        if let Some(capabilities) = &request.capabilities {
            args.push(format!("--kube-version={}", capabilities.kube_version));
            for version in &capabilities.api_versions {
                args.push(format!("--api-versions={version}"));
            }
        }
        if request.include_crds {
            args.push("--include-crds".into());
        }
        if request.skip_tests {
            args.push("--skip-tests".into());
        }
        for file in &request.values_files {
            args.push(format!("--values={}", local(file)));
        }
        for index in 0..request.values_documents.len() {
            args.push(format!("--values=../generated/{}", generated_name(index)));
        }
        args.push(END_OF_FLAGS.into());
        args.push(request.release_name.clone());
        args.push(local(&request.chart));
        args.into_iter().map(OsString::from).collect()
    }

    /// Renders the request in `work` (whose `repo/` holds the chart and values files, and
    /// `generated/` the values documents) and drops the hooks that are never applied.
    pub async fn template(
        &self,
        request: &ChartRequest,
        work: &WorkDir,
        limits: &ProcessLimits,
    ) -> Result<Vec<u8>, RenderError> {
        let args = Self::template_args(request);
        let env = environment(&work.home());
        let output = binary::render(
            RENDERER,
            &request.display_chart(),
            &self.binary,
            &args,
            &env,
            work,
            limits,
        )
        .await
        .map_err(|error| name_documents(error, request))?;
        Ok(drop_unapplied_hooks(&output))
    }
}

/// `./path` (or `.`): helm takes a bare name for a repository chart, never a local path.
fn local(path: &str) -> String {
    if path.is_empty() {
        ".".into()
    } else {
        format!("./{path}")
    }
}

/// A name driftless writes itself, as a path component.
fn known(name: &'static str) -> EntryName {
    EntryName::new(name).expect("a constant name is a valid entry name")
}

fn generated_name(index: usize) -> String {
    format!("values-{index}.yaml")
}

/// helm's directories, all inside the work directory's empty home: no user configuration,
/// repository list, registry login, plugin or kubeconfig is ever read.
fn environment(home: &Path) -> Vec<(OsString, OsString)> {
    let under = |name: &str| home.join(name).into_os_string();
    vec![
        ("HELM_CACHE_HOME".into(), under("cache")),
        ("HELM_CONFIG_HOME".into(), under("config")),
        ("HELM_DATA_HOME".into(), under("data")),
        ("HELM_PLUGINS".into(), under("plugins")),
        ("HELM_REPOSITORY_CONFIG".into(), under("repositories.yaml")),
        ("HELM_REPOSITORY_CACHE".into(), under("repository")),
        ("HELM_REGISTRY_CONFIG".into(), under("registry.json")),
        ("KUBECONFIG".into(), under("kubeconfig")),
    ]
}

/// A values document's origin instead of its generated file name in helm's message.
fn name_documents(error: RenderError, request: &ChartRequest) -> RenderError {
    let RenderError::Failed {
        renderer,
        unit,
        mut message,
    } = error
    else {
        return error;
    };
    for (index, document) in request.values_documents.iter().enumerate() {
        let generated = format!("<generated>/{}", generated_name(index));
        message = message.replace(&generated, &document.origin);
    }
    RenderError::Failed {
        renderer,
        unit,
        message,
    }
}

/// The documents of helm's output without those whose hooks are never applied; every other
/// document is kept byte for byte.
pub fn drop_unapplied_hooks(output: &[u8]) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(output) else {
        return output.to_vec();
    };
    let mut kept = String::with_capacity(text.len());
    for document in split_documents(text) {
        if !is_unapplied_hook(document) {
            kept.push_str(document);
        }
    }
    kept.into_bytes()
}

/// The stream cut before each `---` line, so every piece but the first starts with one.
fn split_documents(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if offset > start && line.trim_end() == "---" {
            pieces.push(&text[start..offset]);
            start = offset;
        }
        offset += line.len();
    }
    pieces.push(&text[start..]);
    pieces
}

#[derive(Deserialize, Default)]
struct HookProbe {
    #[serde(default)]
    metadata: Option<HookMetadata>,
}

#[derive(Deserialize, Default)]
struct HookMetadata {
    #[serde(default)]
    annotations: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

fn is_unapplied_hook(document: &str) -> bool {
    let Ok(probe) = serde_saphyr::from_str::<Option<HookProbe>>(document) else {
        return false; // the manifest reader reports it
    };
    let hooks = probe
        .and_then(|p| p.metadata)
        .and_then(|m| m.annotations)
        .and_then(|a| a.get(HOOK_ANNOTATION).cloned());
    match hooks {
        Some(serde_json::Value::String(hooks)) => !hooks
            .split(',')
            .map(str::trim)
            .any(|hook| APPLIED_HOOKS.contains(&hook)),
        _ => false,
    }
}

/// The files one `helm template` run reads: the chart directory and the values files, within
/// the limits, after the sandbox rules.
pub fn collect_chart_inputs(
    tree: &dyn RepositoryTree,
    request: &ChartRequest,
    limits: InputLimits,
) -> Result<Inputs, RenderError> {
    let chart = request.display_chart();
    let invalid = |reason: String| RenderError::InvalidChart {
        chart: chart.clone(),
        reason,
    };
    let chart_dir = RepoPath::parse(&request.chart)
        .map_err(|escape| invalid(format!("the chart's directory: {escape}")))?;
    match tree.entry(&chart_dir)? {
        Some(Entry::Directory) => {}
        None => return Err(invalid("the directory does not exist in the commit".into())),
        Some(_) => return Err(invalid("it is not a directory".into())),
    }
    let chart_file = chart_dir.join(&known("Chart.yaml"));
    let Some(Entry::File { size, .. }) = tree.entry(&chart_file)? else {
        return Err(invalid(
            "the directory has no Chart.yaml (is helm.chart or path set to the chart's directory?)"
                .into(),
        ));
    };
    if size > 1024 * 1024 {
        return Err(invalid("Chart.yaml is larger than 1 MiB".into()));
    }
    let mut inputs = Inputs::default();
    tree::walk(tree, &chart_dir, &mut |path, entry| match entry {
        Entry::File { id, size } => inputs.add(path, id, *size, limits, &chart),
        Entry::Symlink => Err(invalid(format!(
            "{path} is a symlink, and symlinks are not followed (commit the file itself)"
        ))),
        Entry::Submodule => Err(invalid(format!(
            "{path} is a submodule, and submodules are not fetched (vendor its files)"
        ))),
        Entry::Directory => Ok(()),
    })?;
    check_dependencies_vendored(tree, &chart_dir, &chart)?;
    for file in &request.values_files {
        let path = values_file(tree, file)?;
        if let Some(Entry::File { id, size }) = tree.entry(&path)? {
            inputs.add(&path, &id, size, limits, &chart)?;
        }
    }
    inputs.generated = request
        .values_documents
        .iter()
        .enumerate()
        .map(|(index, document)| {
            (
                generated_name(index),
                document.contents.clone().into_bytes(),
            )
        })
        .collect();
    Ok(inputs)
}

/// A `valuesFiles` entry as a path from the root, refused unless it is a regular file of the
/// commit.
fn values_file(tree: &dyn RepositoryTree, entry: &str) -> Result<RepoPath, RenderError> {
    let refused = |reason: Refusal| RenderError::Refused {
        file: "spec.helm".into(),
        field: "valuesFiles".into(),
        entry: entry.to_owned(),
        reason,
    };
    let path = RepoPath::parse(entry).map_err(|escape| refused(refusal_of(escape)))?;
    match tree.entry(&path)? {
        Some(Entry::File { .. }) => Ok(path),
        Some(Entry::Symlink) => Err(refused(Refusal::Symlink)),
        Some(Entry::Submodule) => Err(refused(Refusal::Submodule)),
        Some(Entry::Directory) | None => Err(RenderError::NotFound {
            file: "spec.helm".into(),
            field: "valuesFiles".into(),
            entry: entry.to_owned(),
            path: path.as_str().to_owned(),
        }),
    }
}

#[derive(Deserialize, Default)]
struct ChartFile {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    dependencies: Option<Vec<Dependency>>,
}

#[derive(Deserialize)]
struct Dependency {
    name: String,
}

/// Every dependency of `Chart.yaml` is in `charts/`: a directory whose `Chart.yaml` has its
/// name, or a `<name>-<version>.tgz` archive.
fn check_dependencies_vendored(
    tree: &dyn RepositoryTree,
    chart_dir: &RepoPath,
    chart: &str,
) -> Result<(), RenderError> {
    let invalid = |reason: String| RenderError::InvalidChart {
        chart: chart.to_owned(),
        reason,
    };
    let dependencies = read_chart_file(tree, chart_dir, chart)?
        .dependencies
        .unwrap_or_default();
    if dependencies.is_empty() {
        return Ok(());
    }
    let vendored_dir = chart_dir.join(&known("charts"));
    let mut vendored = Vec::new();
    let mut archives = Vec::new();
    if tree.entry(&vendored_dir)? == Some(Entry::Directory) {
        for (name, entry) in tree.list(&vendored_dir)? {
            match entry {
                Entry::Directory => {
                    let dir = vendored_dir.join(&name);
                    if let Ok(file) = read_chart_file(tree, &dir, chart) {
                        vendored.extend(file.name);
                    }
                }
                Entry::File { .. } if name.as_str().ends_with(".tgz") => {
                    archives.push(name.as_str().to_owned())
                }
                _ => {}
            }
        }
    }
    for dependency in dependencies {
        let archived = archives.iter().any(|archive| {
            archive
                .strip_prefix(&format!("{}-", dependency.name))
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit() || c == 'v'))
        });
        if !archived && !vendored.contains(&dependency.name) {
            return Err(invalid(format!(
                "dependency {:?} of Chart.yaml is missing from {}/: driftless never runs \
                 `helm dependency build` or fetches charts, so dependencies must be vendored \
                 (commit the dependency's chart directory or its .tgz into charts/)",
                dependency.name,
                vendored_dir.display()
            )));
        }
    }
    Ok(())
}

fn read_chart_file(
    tree: &dyn RepositoryTree,
    dir: &RepoPath,
    chart: &str,
) -> Result<ChartFile, RenderError> {
    let path = dir.join(&known("Chart.yaml"));
    let bytes = tree.read(&path)?;
    let text = String::from_utf8_lossy(&bytes);
    serde_saphyr::from_str::<ChartFile>(&text).map_err(|error| RenderError::InvalidChart {
        chart: chart.to_owned(),
        reason: format!("{path}: invalid YAML: {error}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ChartRequest {
        ChartRequest {
            chart: "charts/app".into(),
            release_name: "web".into(),
            namespace: "team-a".into(),
            values_files: vec!["env/prod.yaml".into()],
            values_documents: vec![ValuesDocument {
                origin: "Secret team-a/web key values.yaml".into(),
                contents: "replicas: 2".into(),
            }],
            include_crds: true,
            skip_tests: true,
            capabilities: Some(Capabilities {
                kube_version: "v1.35.4".into(),
                api_versions: vec!["apps/v1".into(), "apps/v1/Deployment".into()],
            }),
        }
    }

    #[test]
    fn the_command_line_never_enables_dns_or_dependency_fetching() {
        let args: Vec<String> = Helm::template_args(&request())
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args,
            [
                "template",
                "--namespace=team-a",
                "--kube-version=v1.35.4",
                "--api-versions=apps/v1",
                "--api-versions=apps/v1/Deployment",
                "--include-crds",
                "--skip-tests",
                "--values=./env/prod.yaml",
                "--values=../generated/values-0.yaml",
                "--",
                "web",
                "./charts/app",
            ]
        );
        for refused in ["--enable-dns", "--dependency-update", "--repo", "--devel"] {
            assert!(!args.iter().any(|a| a.starts_with(refused)), "{refused}");
        }
        let root = ChartRequest {
            chart: String::new(),
            ..request()
        };
        assert_eq!(
            Helm::template_args(&root).last(),
            Some(&OsString::from("."))
        );
    }

    #[test]
    fn hooks_of_other_phases_than_install_and_upgrade_are_dropped() {
        let stream = "---\n# Source: app/templates/deploy.yaml\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n\
---\n# Source: app/templates/test.yaml\napiVersion: v1\nkind: Pod\nmetadata:\n  name: web-test\n  annotations:\n    helm.sh/hook: test\n\
---\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  annotations:\n    \"helm.sh/hook\": pre-install,pre-upgrade\n\
---\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: cleanup\n  annotations:\n    helm.sh/hook: pre-delete, post-delete\n\
---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: old-test\n  annotations:\n    helm.sh/hook: test-success\n";
        let kept = String::from_utf8(drop_unapplied_hooks(stream.as_bytes())).unwrap();
        assert!(kept.contains("name: web\n"), "{kept}");
        assert!(kept.contains("name: migrate"), "{kept}");
        for dropped in ["web-test", "cleanup", "old-test"] {
            assert!(!kept.contains(dropped), "{dropped} kept: {kept}");
        }
        assert!(kept.starts_with("---\n# Source: app/templates/deploy.yaml\n"));
    }

    #[test]
    fn documents_split_only_at_separator_lines() {
        let pieces = split_documents("a: 1\n---\nb: |\n  ---\n---\nc: 3\n");
        assert_eq!(pieces, ["a: 1\n", "---\nb: |\n  ---\n", "---\nc: 3\n"]);
    }
}
