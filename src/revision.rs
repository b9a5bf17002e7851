//! A revision's desired objects: the chart of `spec.helm` rendered, or else the kustomize units
//! under `spec.path` rendered and plain manifest files passed through; then `spec.postBuild`
//! variables substituted, the manifests read and `spec.commonMetadata` set. The controller and the command line (`driftless build`,
//! `driftless diff`) both go through here, so a preview is what the controller applies. The
//! glue between [`crate::source`]'s commit snapshots and [`crate::render`]'s tree views lives
//! here, so neither of those knows the other.

use std::{borrow::Cow, collections::BTreeMap, sync::Arc};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};

use crate::{
    api::{GitRepositorySpec, HelmSpec, PostBuild, ValuesReference},
    apply::DesiredObject,
    manifests::{Budget, Manifest, ManifestSource},
    render::{
        Capabilities, ChartRequest, Entry, KustomizationEdits, RenderError, RenderErrors,
        RenderOptions, Renderer, RepositoryTree, TreeSource, ValuesDocument,
        substitute::{Allowance, substitute_stream},
    },
    repo_path::{EntryName, RepoPath},
    source::{
        Artifact, Snapshot,
        snapshot::{OpenSnapshot, SnapshotEntry},
    },
};

/// How a rendered stream is named after its unit, in error messages and manifest origins.
const RENDERED_SUFFIX: &str = " (kustomize build)";
/// How a rendered chart's stream is named.
const TEMPLATED_SUFFIX: &str = " (helm template)";

/// The manifests as the apply engine takes them: each with its origin, and marked when
/// a renderer made it (see [`DesiredObject::rendered`]; Helm, like kustomize, cannot know
/// which custom kinds are cluster-scoped, and helm's own installs drop their namespace).
pub fn desired_objects(manifests: Vec<Manifest>) -> Vec<DesiredObject> {
    manifests
        .into_iter()
        .map(|m| DesiredObject {
            origin: format!("{}: {}", m.file, m.position),
            rendered: m.file.ends_with(RENDERED_SUFFIX) || m.file.ends_with(TEMPLATED_SUFFIX),
            object: m.object,
        })
        .collect()
}

/// What rendering `spec.helm` takes from outside the commit.
#[derive(Clone, Debug, Default)]
pub struct ChartContext {
    /// The GitRepository's name: the default release name.
    pub release_name: String,
    /// The target namespace: the default release namespace.
    pub namespace: String,
    /// `spec.helm.valuesFrom`'s documents, read by [`read_values_from`].
    pub values_from: Vec<ValuesDocument>,
    /// The cluster's; without them helm renders for its defaults (`driftless build`).
    pub capabilities: Option<Capabilities>,
}

/// The manifest streams of a revision: plain files outside every unit, then one rendered
/// stream per unit, named `<unit> (kustomize build)` in error messages.
pub struct ManifestInputs<'a> {
    plain: Vec<PlainFile<'a>>,
    rendered: Vec<RenderedStream>,
    renderer: Option<String>,
}

/// A manifest file passed through as committed, unless `postBuild` substituted in it.
struct PlainFile<'a> {
    path: &'a str,
    contents: Cow<'a, [u8]>,
    /// What identifies `contents` for the parse cache: the git blob id while they are the
    /// committed bytes (nothing to hash), else their digest.
    key: Cow<'a, str>,
}

/// A renderer's output, named after its unit or chart.
struct RenderedStream {
    name: String,
    output: Arc<[u8]>,
    /// The digest of `output`, for the parse cache.
    key: String,
}

impl RenderedStream {
    fn new(name: String, output: Arc<[u8]>) -> Self {
        let key = content_key(&output);
        Self { name, output, key }
    }
}

/// A content address for bytes that are no committed blob (rendered or substituted), in a
/// namespace of its own beside git's blob ids.
fn content_key(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

impl ManifestInputs<'_> {
    /// `kustomize <version>` when anything was rendered.
    pub fn renderer(&self) -> Option<String> {
        self.renderer.clone()
    }

    pub fn files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.sources().map(|source| (source.file, source.bytes))
    }

    /// [`Self::files`] with the blob id of each file still as committed, for the parse cache.
    pub fn sources(&self) -> impl Iterator<Item = ManifestSource<'_>> {
        self.plain
            .iter()
            .map(|file| ManifestSource {
                file: file.path,
                bytes: file.contents.as_ref(),
                blob: Some(file.key.as_ref()),
            })
            .chain(self.rendered.iter().map(|stream| ManifestSource {
                file: stream.name.as_str(),
                bytes: &stream.output[..],
                blob: Some(stream.key.as_str()),
            }))
    }

    /// `spec.postBuild`: substitutes the variables in every stream (text that is not UTF-8 is
    /// left to the manifest reader to report), within `budget`: no stream grows past the
    /// largest file the reader accepts, nor all of them together past the revision's budget.
    pub fn substitute(
        &mut self,
        variables: &BTreeMap<String, String>,
        budget: &Budget,
    ) -> Result<(), String> {
        let mut allowance = Allowance::new(budget);
        let mut run = |name: &str, text: &str| {
            substitute_stream(name, text, variables, budget, &mut allowance)
                .map(String::into_bytes)
                .map_err(|e| e.to_string())
        };
        for file in &mut self.plain {
            if let Ok(text) = std::str::from_utf8(&file.contents) {
                let substituted = run(file.path, text)?;
                if substituted.as_slice() != file.contents.as_ref() {
                    file.key = Cow::Owned(content_key(&substituted));
                    file.contents = Cow::Owned(substituted);
                }
            }
        }
        for stream in &mut self.rendered {
            if let Ok(text) = std::str::from_utf8(&stream.output) {
                let substituted = run(stream.name.as_str(), text)?;
                if substituted.as_slice() != &stream.output[..] {
                    *stream = RenderedStream::new(stream.name.clone(), Arc::from(substituted));
                }
            }
        }
        Ok(())
    }
}

/// Renders the spec's chart, or the units under its `path`, and collects what the manifest
/// reader reads.
pub async fn manifest_inputs<'a>(
    renderer: &Renderer,
    artifact: &'a Artifact,
    spec: &GitRepositorySpec,
    chart: &ChartContext,
) -> Result<ManifestInputs<'a>, RenderErrors> {
    if let Some(helm) = &spec.helm {
        return chart_inputs(renderer, artifact, spec, helm, chart).await;
    }
    let source = Arc::new(GitTree(artifact.snapshot.clone()));
    let path = spec.path.as_deref().unwrap_or_default();
    let rendered = renderer.render(source, path, &render_options(spec)).await?;
    let plain = artifact
        .files
        .iter()
        .filter(|file| rendered.layout.unit_of(&file.path).is_none())
        .map(|file| PlainFile {
            path: file.path.as_str(),
            contents: Cow::Borrowed(file.contents.as_slice()),
            key: Cow::Borrowed(file.blob.as_str()),
        })
        .collect();
    let rendered: Vec<RenderedStream> = rendered
        .units
        .into_iter()
        .map(|unit| {
            let dir = if unit.dir.is_empty() { "." } else { &unit.dir };
            RenderedStream::new(format!("{dir}{RENDERED_SUFFIX}"), unit.output)
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

/// The chart rendered alone: the files under `path` are the chart's templates, not manifests.
async fn chart_inputs<'a>(
    renderer: &Renderer,
    artifact: &'a Artifact,
    spec: &GitRepositorySpec,
    helm: &HelmSpec,
    context: &ChartContext,
) -> Result<ManifestInputs<'a>, RenderErrors> {
    let request = chart_request(spec, helm, context);
    let source = Arc::new(GitTree(artifact.snapshot.clone()));
    let unit = renderer.render_chart(source, &request).await?;
    let version = renderer
        .helm()
        .map(|h| h.version.clone())
        .unwrap_or_default();
    Ok(ManifestInputs {
        plain: Vec::new(),
        rendered: vec![RenderedStream::new(
            format!("{}{TEMPLATED_SUFFIX}", request.display_chart()),
            unit.output,
        )],
        renderer: Some(format!("helm {version}")),
    })
}

/// `spec.helm` with its defaults filled in: the chart at `path`, the object's name as the
/// release, the target namespace, values files then `valuesFrom` then inline values.
pub fn chart_request(
    spec: &GitRepositorySpec,
    helm: &HelmSpec,
    context: &ChartContext,
) -> ChartRequest {
    let chart = helm
        .chart
        .as_deref()
        .or(spec.path.as_deref())
        .unwrap_or_default()
        .trim_matches('/')
        .to_owned();
    let mut values_documents = context.values_from.clone();
    if let Some(values) = &helm.values {
        values_documents.push(ValuesDocument {
            origin: "spec.helm.values".into(),
            contents: values.to_string(),
        });
    }
    ChartRequest {
        chart,
        release_name: helm
            .release_name
            .clone()
            .unwrap_or_else(|| context.release_name.clone()),
        namespace: helm
            .namespace
            .clone()
            .unwrap_or_else(|| context.namespace.clone()),
        values_files: helm.values_files.clone(),
        values_documents,
        include_crds: helm.include_crds(),
        skip_tests: helm.skip_tests(),
        capabilities: context.capabilities.clone(),
    }
}

/// `spec.helm.valuesFrom`'s documents in order, read with `client` (the account the revision
/// is applied as, as for `postBuild.substituteFrom`).
pub async fn read_values_from(
    client: &Client,
    namespace: &str,
    references: &[ValuesReference],
) -> Result<Vec<ValuesDocument>, String> {
    let mut documents = Vec::new();
    for reference in references {
        let origin = format!(
            "helm.valuesFrom {} {namespace}/{} key {}",
            reference.kind,
            reference.name,
            reference.key()
        );
        let optional = reference.optional == Some(true);
        let data = read_data(client, namespace, &reference.kind, &reference.name)
            .await
            .map_err(|error| format!("{origin}: {error}"))?;
        let value = match data {
            Some(mut data) => data.remove(reference.key()),
            None if optional => None,
            None => {
                return Err(format!(
                    "{origin}: the {} does not exist (set optional: true to allow that)",
                    reference.kind
                ));
            }
        };
        match value {
            Some(contents) => documents.push(ValuesDocument { origin, contents }),
            None if optional => {}
            None => {
                return Err(format!(
                    "{origin}: the {} has no such key (set optional: true to allow that)",
                    reference.kind
                ));
            }
        }
    }
    Ok(documents)
}

/// The string data of ConfigMap or Secret `name` (a Secret's values decoded as UTF-8), `None`
/// when it does not exist.
async fn read_data(
    client: &Client,
    namespace: &str,
    kind: &str,
    name: &str,
) -> Result<Option<BTreeMap<String, String>>, kube::Error> {
    if kind == "Secret" {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        Ok(secrets.get_opt(name).await?.map(|secret| {
            secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                .collect()
        }))
    } else {
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        Ok(configmaps
            .get_opt(name)
            .await?
            .map(|c| c.data.unwrap_or_default()))
    }
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
    missing(read_data(client, namespace, &source.kind, &source.name).await)
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
            view_id: self.0.view_id(),
        }))
    }
}

struct OpenGitTree {
    opened: OpenSnapshot,
    /// The tree as the ignore rules leave it, not the raw tree id: the render cache keys on it.
    view_id: String,
}

impl RepositoryTree for OpenGitTree {
    fn root_id(&self) -> String {
        self.view_id.clone()
    }

    fn entry(&self, path: &RepoPath) -> Result<Option<Entry>, RenderError> {
        Ok(self.opened.entry(path).map_err(tree_error)?.map(entry))
    }

    fn list(&self, path: &RepoPath) -> Result<Vec<(EntryName, Entry)>, RenderError> {
        let entries = self.opened.list(path).map_err(tree_error)?;
        Ok(entries
            .into_iter()
            .map(|(name, kind)| (name, entry(kind)))
            .collect())
    }

    fn read(&self, path: &RepoPath) -> Result<Vec<u8>, RenderError> {
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
