//! A revision's desired objects: the kustomize units under `spec.path` rendered, plain
//! manifest files passed through, `spec.postBuild` variables substituted, the manifests read
//! and `spec.commonMetadata` set. The controller and the command line (`driftless build`,
//! `driftless diff`) both go through here, so a preview is what the controller applies. The
//! glue between [`crate::source`]'s commit snapshots and [`crate::render`]'s tree views lives
//! here, so neither of those knows the other.

use std::{borrow::Cow, collections::BTreeMap, sync::Arc};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};

use crate::{
    api::{GitRepositorySpec, PostBuild},
    apply::DesiredObject,
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

/// How a rendered stream is named after its unit, in error messages and manifest origins.
const RENDERED_SUFFIX: &str = " (kustomize build)";

/// The manifests as the apply engine takes them: each with its origin, and marked when
/// kustomize rendered it (see [`DesiredObject::rendered`]).
pub fn desired_objects(manifests: Vec<Manifest>) -> Vec<DesiredObject> {
    manifests
        .into_iter()
        .map(|m| DesiredObject {
            origin: format!("{}: {}", m.file, m.position),
            rendered: m.file.ends_with(RENDERED_SUFFIX),
            object: m.object,
        })
        .collect()
}

/// The manifest streams of a revision: plain files outside every unit, then one rendered
/// stream per unit, named `<unit> (kustomize build)` in error messages.
pub struct ManifestInputs<'a> {
    plain: Vec<(&'a str, Cow<'a, [u8]>)>,
    rendered: Vec<(String, Arc<[u8]>)>,
    renderer: Option<String>,
}

impl ManifestInputs<'_> {
    /// `kustomize <version>` when anything was rendered.
    pub fn renderer(&self) -> Option<String> {
        self.renderer.clone()
    }

    pub fn files(&self) -> impl Iterator<Item = (&str, &[u8])> {
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
    pub fn substitute(&mut self, variables: &BTreeMap<String, String>) -> Result<(), String> {
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
pub async fn manifest_inputs<'a>(
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
            (format!("{dir}{RENDERED_SUFFIX}"), unit.output)
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

/// `spec.postBuild`'s variables: those of each `substituteFrom` object in order (read with
/// `client`, which the caller chooses: the GitRepository's ServiceAccount when it names one),
/// then `substitute`, which overrides them all.
pub async fn read_variables(
    client: &Client,
    namespace: &str,
    post_build: &PostBuild,
) -> Result<BTreeMap<String, String>, String> {
    let mut variables = BTreeMap::new();
    for source in &post_build.substitute_from {
        variables.extend(read_variables_of(client, namespace, source).await?);
    }
    variables.extend(post_build.substitute.clone());
    Ok(variables)
}

async fn read_variables_of(
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
pub fn apply_common_metadata(manifests: &mut [Manifest], spec: &GitRepositorySpec) {
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
