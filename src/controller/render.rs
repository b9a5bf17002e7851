//! Between the source and the manifests: kustomize units under `spec.path` are rendered, plain
//! manifest files pass through. The glue between [`crate::source`]'s commit snapshots and
//! [`crate::render`]'s tree views lives here, so neither module knows the other.

use std::{borrow::Cow, collections::BTreeMap, sync::Arc};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};

use crate::{
    api::GitRepositorySpec,
    manifests::Manifest,
    render::{
        Entry, KustomizationEdits, RenderError, RenderErrors, RenderOptions, Renderer,
        RepositoryTree, TreeSource, substitute::substitute_stream,
    },
    source::{
        Artifact, Snapshot,
        snapshot::{OpenSnapshot, SnapshotEntry},
    },
};

/// The manifest streams of a revision: plain files outside every unit, then one rendered
/// stream per unit, named `<unit> (kustomize build)` in error messages.
pub(super) struct ManifestInputs<'a> {
    plain: Vec<(&'a str, Cow<'a, [u8]>)>,
    rendered: Vec<(String, Arc<[u8]>)>,
    renderer: Option<String>,
}

impl ManifestInputs<'_> {
    /// `kustomize <version>` when anything was rendered.
    pub(super) fn renderer(&self) -> Option<String> {
        self.renderer.clone()
    }

    pub(super) fn files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.plain
            .iter()
            .map(|(name, contents)| (*name, contents.as_ref()))
            .chain(
                self.rendered
                    .iter()
                    .map(|(name, output)| (name.as_str(), &output[..])),
            )
    }

    /// `spec.postBuild`: substitutes the variables in every stream (text that is not UTF-8 is
    /// left to the manifest reader to report).
    fn substitute(&mut self, variables: &BTreeMap<String, String>) -> Result<(), String> {
        for (name, contents) in &mut self.plain {
            if let Ok(text) = std::str::from_utf8(contents) {
                let text = substitute_stream(name, text, variables).map_err(|e| e.to_string())?;
                *contents = Cow::Owned(text.into_bytes());
            }
        }
        for (name, output) in &mut self.rendered {
            if let Ok(text) = std::str::from_utf8(output) {
                let text = substitute_stream(name, text, variables).map_err(|e| e.to_string())?;
                *output = Arc::from(text.into_bytes());
            }
        }
        Ok(())
    }
}

/// Renders the units under the spec's `path` and collects what the manifest reader reads.
pub(super) async fn manifest_inputs<'a>(
    renderer: &Renderer,
    artifact: &'a Artifact,
    spec: &GitRepositorySpec,
) -> Result<ManifestInputs<'a>, RenderErrors> {
    let source = Arc::new(GitTree(artifact.snapshot.clone()));
    let path = spec.path.as_deref().unwrap_or_default();
    let rendered = renderer.render(source, path, &render_options(spec)).await?;
    let plain = artifact
        .files
        .iter()
        .filter(|file| rendered.layout.unit_of(&file.path).is_none())
        .map(|file| (file.path.as_str(), Cow::Borrowed(file.contents.as_slice())))
        .collect();
    let rendered: Vec<(String, Arc<[u8]>)> = rendered
        .units
        .into_iter()
        .map(|unit| {
            let dir = if unit.dir.is_empty() { "." } else { &unit.dir };
            (format!("{dir} (kustomize build)"), unit.output)
        })
        .collect();
    let renderer = match renderer.kustomize() {
        Ok(kustomize) if !rendered.is_empty() => Some(format!("kustomize {}", kustomize.version)),
        _ => None,
    };
    Ok(ManifestInputs {
        plain,
        rendered,
        renderer,
    })
}

/// `spec.postBuild`: reads the variables (with the GitRepository's ServiceAccount when it
/// names one) and substitutes them in every stream.
pub(super) async fn substitute(
    inputs: &mut ManifestInputs<'_>,
    spec: &GitRepositorySpec,
    namespace: &str,
    context: &super::Context,
) -> Result<(), String> {
    let Some(post_build) = &spec.post_build else {
        return Ok(());
    };
    let client = reader_client(spec, namespace, context)?;
    let mut variables = BTreeMap::new();
    for source in &post_build.substitute_from {
        variables.extend(read_variables(&client, namespace, source).await?);
    }
    variables.extend(post_build.substitute.clone());
    inputs.substitute(&variables)
}

/// Whether `spec.postBuild.substituteFrom` reads Secret `name` (its change then re-runs the
/// GitRepository).
pub(super) fn substitutes_from_secret(spec: &GitRepositorySpec, name: &str) -> bool {
    spec.post_build.as_ref().is_some_and(|post_build| {
        post_build
            .substitute_from
            .iter()
            .any(|source| source.kind == "Secret" && source.name == name)
    })
}

fn reader_client(
    spec: &GitRepositorySpec,
    namespace: &str,
    context: &super::Context,
) -> Result<Client, String> {
    let Some(account) = &spec.service_account_name else {
        return Ok(context.client.clone());
    };
    let mut config = context.config.clone();
    config.auth_info.impersonate = Some(format!("system:serviceaccount:{namespace}:{account}"));
    Client::try_from(config).map_err(|e| format!("impersonating ServiceAccount {account}: {e}"))
}

async fn read_variables(
    client: &Client,
    namespace: &str,
    source: &crate::api::SubstituteReference,
) -> Result<BTreeMap<String, String>, String> {
    let what = format!(
        "postBuild.substituteFrom {} {namespace}/{}",
        source.kind, source.name
    );
    let missing = |found: Result<Option<BTreeMap<String, String>>, kube::Error>| match found {
        Ok(Some(data)) => Ok(data),
        Ok(None) if source.optional == Some(true) => Ok(BTreeMap::new()),
        Ok(None) => Err(format!(
            "{what}: not found (set optional: true to allow that)"
        )),
        Err(error) => Err(format!("{what}: {error}")),
    };
    if source.kind == "Secret" {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let found = secrets.get_opt(&source.name).await.map(|secret| {
            secret.map(|s| {
                s.data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect()
            })
        });
        missing(found)
    } else {
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let found = configmaps
            .get_opt(&source.name)
            .await
            .map(|c| c.map(|c| c.data.unwrap_or_default()));
        missing(found)
    }
}

/// The spec's Kustomize fields as edits of the kustomization at its path.
fn render_options(spec: &GitRepositorySpec) -> RenderOptions {
    RenderOptions {
        kustomization: KustomizationEdits {
            name_prefix: spec.name_prefix.clone(),
            name_suffix: spec.name_suffix.clone(),
            images: spec.images.iter().map(json).collect(),
            patches: spec.patches.iter().map(json).collect(),
            components: spec.components.clone(),
        },
    }
}

fn json(value: &impl serde::Serialize) -> serde_json::Value {
    serde_json::to_value(value).expect("API types serialize to JSON")
}

/// `spec.commonMetadata`: labels and annotations on every object's own metadata.
pub(super) fn apply_common_metadata(manifests: &mut [Manifest], spec: &GitRepositorySpec) {
    let Some(common) = &spec.common_metadata else {
        return;
    };
    for manifest in manifests {
        let metadata = &mut manifest.object.metadata;
        if !common.labels.is_empty() {
            let labels = metadata.labels.get_or_insert_with(Default::default);
            labels.extend(common.labels.clone());
        }
        if !common.annotations.is_empty() {
            let annotations = metadata.annotations.get_or_insert_with(Default::default);
            annotations.extend(common.annotations.clone());
        }
    }
}

struct GitTree(Snapshot);

impl TreeSource for GitTree {
    fn open(&self) -> Result<Box<dyn RepositoryTree + '_>, RenderError> {
        let opened = self.0.open().map_err(tree_error)?;
        Ok(Box::new(OpenGitTree {
            opened,
            root: self.0.tree.clone(),
        }))
    }
}

struct OpenGitTree {
    opened: OpenSnapshot,
    root: String,
}

impl RepositoryTree for OpenGitTree {
    fn root_id(&self) -> String {
        self.root.clone()
    }

    fn entry(&self, path: &str) -> Result<Option<Entry>, RenderError> {
        Ok(self.opened.entry(path).map_err(tree_error)?.map(entry))
    }

    fn list(&self, path: &str) -> Result<Vec<(String, Entry)>, RenderError> {
        let entries = self.opened.list(path).map_err(tree_error)?;
        Ok(entries
            .into_iter()
            .map(|(name, kind)| (name, entry(kind)))
            .collect())
    }

    fn read(&self, path: &str) -> Result<Vec<u8>, RenderError> {
        self.opened.read(path).map_err(tree_error)
    }
}

fn entry(kind: SnapshotEntry) -> Entry {
    match kind {
        SnapshotEntry::Directory => Entry::Directory,
        SnapshotEntry::File { id, size } => Entry::File { id, size },
        SnapshotEntry::Symlink => Entry::Symlink,
        SnapshotEntry::Submodule => Entry::Submodule,
    }
}

fn tree_error(error: impl std::fmt::Display) -> RenderError {
    RenderError::Tree(error.to_string())
}
