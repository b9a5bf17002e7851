//! Between the source and the manifests: kustomize units under `spec.path` are rendered, plain
//! manifest files pass through. The glue between [`crate::source`]'s commit snapshots and
//! [`crate::render`]'s tree views lives here, so neither module knows the other.

use std::sync::Arc;

use crate::{
    api::GitRepositorySpec,
    manifests::Manifest,
    render::{
        Entry, KustomizationEdits, RenderError, RenderErrors, RenderOptions, Renderer,
        RepositoryTree, TreeSource,
    },
    source::{
        Artifact, Snapshot,
        snapshot::{OpenSnapshot, SnapshotEntry},
    },
};

/// The manifest streams of a revision: plain files outside every unit, then one rendered
/// stream per unit, named `<unit> (kustomize build)` in error messages.
pub(super) struct ManifestInputs<'a> {
    plain: Vec<(&'a str, &'a [u8])>,
    rendered: Vec<(String, Arc<[u8]>)>,
    renderer: Option<String>,
}

impl ManifestInputs<'_> {
    /// `kustomize <version>` when anything was rendered.
    pub(super) fn renderer(&self) -> Option<String> {
        self.renderer.clone()
    }

    pub(super) fn files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.plain.iter().copied().chain(
            self.rendered
                .iter()
                .map(|(name, output)| (name.as_str(), &output[..])),
        )
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
        .map(|file| (file.path.as_str(), file.contents.as_slice()))
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
