//! The Rust-side sandbox rules for kustomize, applied before any process runs: every
//! kustomization reachable from a unit is read from the commit and checked, and the walk yields
//! the only files the build may see.
//!
//! Rules (each refusal names the kustomization file, the field and the entry):
//! - No remote input: URLs, `git::`/`git@`/`ssh://` forms, `github.com/...`-style repository
//!   paths, `?ref=` queries, go-getter `//` subdirectories. kustomize would clone or download
//!   them; driftless renders only what the commit holds.
//! - No absolute path, no path leaving the repository.
//! - Files (patches, generator sources, configurations, CRDs, OpenAPI schemas, replacements)
//!   must be inside the kustomization's own directory, as kustomize's
//!   `LoadRestrictionsRootOnly` demands; bases and components (directories) may be anywhere in
//!   the repository.
//! - No symlink or submodule is referenced or materialized.
//! - No Helm (`helmCharts`, `helmGlobals`, `HelmChartInflationGenerator`).
//! - Generators, transformers and validators must be builtin (`apiVersion: builtin`) and carry
//!   no KRM function annotation; kustomize is also never given `--enable-exec`,
//!   `--enable-alpha-plugins` or `--enable-helm`, so it refuses them a second time.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{
    Refusal, RenderError,
    tree::{self, Entry, Escape, RepositoryTree},
};

/// The names kustomize looks for in a directory, in its order of preference.
pub const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Fields whose entries are bases (directories holding a kustomization) or resource files.
const BASE_FIELDS: [&str; 3] = ["resources", "bases", "components"];
/// Fields whose entries are plugin configurations: files, directories or inline YAML.
const PLUGIN_FIELDS: [&str; 3] = ["generators", "transformers", "validators"];
const HELM_FIELDS: [&str; 3] = ["helmCharts", "helmGlobals", "helmChartInflationGenerator"];
const FUNCTION_ANNOTATIONS: [&str; 2] = ["config.kubernetes.io/function", "config.k8s.io/function"];

/// Largest kustomization or plugin configuration file read for the checks.
const MAX_CHECKED_FILE_BYTES: u64 = 1024 * 1024;

/// Bounds on the files one render may materialize (the source engine's tree limits).
#[derive(Clone, Copy, Debug)]
pub struct InputLimits {
    pub max_file_bytes: u64,
    pub max_total_bytes: u64,
    pub max_files: usize,
}

/// What a unit's build may read: every regular file under every kustomization directory it
/// reaches, by path, with its content address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inputs {
    pub files: BTreeMap<String, String>,
    pub total_bytes: u64,
    /// The unit's kustomization file as edited (or generated), written instead of the commit's.
    pub edited: Option<(String, Vec<u8>)>,
    /// Files that are not the commit's (values read from the cluster), written under the work
    /// directory's `generated/`, by name.
    pub generated: Vec<(String, Vec<u8>)>,
}

impl Inputs {
    /// Adds a file of the commit, within the limits; `unit` names the render in messages.
    pub fn add(
        &mut self,
        path: &str,
        id: &str,
        size: u64,
        limits: InputLimits,
        unit: &str,
    ) -> Result<(), RenderError> {
        let too_large = |reason: String| RenderError::TooLarge {
            unit: unit.to_owned(),
            reason,
        };
        if size > limits.max_file_bytes {
            return Err(too_large(format!(
                "{path}: {size} bytes exceeds the file size limit of {} bytes",
                limits.max_file_bytes
            )));
        }
        if self.files.insert(path.to_owned(), id.to_owned()).is_none() {
            self.total_bytes += size;
        }
        if self.total_bytes > limits.max_total_bytes {
            return Err(too_large(format!(
                "its files exceed the total size limit of {} bytes",
                limits.max_total_bytes
            )));
        }
        if self.files.len() > limits.max_files {
            return Err(too_large(format!("more than {} files", limits.max_files)));
        }
        Ok(())
    }
}

/// Flux-style settings written into the kustomization at a GitRepository's path.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct KustomizationEdits {
    /// Replace the kustomization's `namePrefix` / `nameSuffix`.
    pub name_prefix: Option<String>,
    pub name_suffix: Option<String>,
    /// `images` entries (`name`, `newName`, `newTag`, `digest`), replacing entries of the same
    /// name.
    pub images: Vec<Value>,
    /// `patches` entries (`patch`, `target`), appended.
    pub patches: Vec<Value>,
    /// `components` entries, appended.
    pub components: Vec<String>,
}

impl KustomizationEdits {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Writes the edits into a kustomization document.
    fn apply(&self, fields: &mut serde_json::Map<String, Value>) {
        if let Some(prefix) = &self.name_prefix {
            fields.insert("namePrefix".into(), prefix.clone().into());
        }
        if let Some(suffix) = &self.name_suffix {
            fields.insert("nameSuffix".into(), suffix.clone().into());
        }
        if !self.images.is_empty() {
            let images = list_field(fields, "images");
            for image in &self.images {
                let name = image.get("name");
                match images.iter_mut().find(|i| i.get("name") == name) {
                    Some(existing) => *existing = image.clone(),
                    None => images.push(image.clone()),
                }
            }
        }
        if !self.patches.is_empty() {
            list_field(fields, "patches").extend(self.patches.iter().cloned());
        }
        if !self.components.is_empty() {
            let components = list_field(fields, "components");
            components.extend(self.components.iter().cloned().map(Value::from));
        }
    }
}

/// The list at `key`, created when absent (a non-list value is replaced).
fn list_field<'m>(fields: &'m mut serde_json::Map<String, Value>, key: &str) -> &'m mut Vec<Value> {
    let entry = fields
        .entry(key.to_owned())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !entry.is_array() {
        *entry = Value::Array(Vec::new());
    }
    entry.as_array_mut().expect("just made a list")
}

/// The kustomization file of directory `dir`, if it has one.
pub fn kustomization_file(
    tree: &dyn RepositoryTree,
    dir: &str,
) -> Result<Option<(String, Entry)>, RenderError> {
    for name in KUSTOMIZATION_FILES {
        let path = tree::join(dir, name);
        if let Some(entry) = tree.entry(&path)? {
            return Ok(Some((path, entry)));
        }
    }
    Ok(None)
}

/// Checks the kustomization in `unit` and everything it reaches, and returns the files its
/// build may read.
pub fn collect_inputs(
    tree: &dyn RepositoryTree,
    unit: &str,
    edits: &KustomizationEdits,
    limits: InputLimits,
) -> Result<Inputs, RenderError> {
    let mut walk = Walk {
        tree,
        roots: BTreeSet::new(),
    };
    let edited = if edits.is_empty() {
        walk.visit_root(unit, None)?;
        None
    } else {
        Some(walk.visit_edited_root(unit, edits)?)
    };
    let mut inputs = materializable_files(tree, unit, &walk.roots, limits)?;
    inputs.edited = edited;
    Ok(inputs)
}

/// Flux's generated kustomization for a directory without one: every manifest file below it
/// that holds Kubernetes objects, and every subdirectory kustomization (not descended into).
fn generated_kustomization(
    tree: &dyn RepositoryTree,
    dir: &str,
) -> Result<serde_json::Map<String, Value>, RenderError> {
    let mut resources = Vec::new();
    collect_generated_resources(tree, dir, dir, &mut resources)?;
    let mut fields = serde_json::Map::new();
    fields.insert(
        "apiVersion".into(),
        "kustomize.config.k8s.io/v1beta1".into(),
    );
    fields.insert("kind".into(), "Kustomization".into());
    fields.insert(
        "resources".into(),
        Value::Array(resources.into_iter().map(Value::from).collect()),
    );
    Ok(fields)
}

fn collect_generated_resources(
    tree: &dyn RepositoryTree,
    root: &str,
    dir: &str,
    resources: &mut Vec<String>,
) -> Result<(), RenderError> {
    let relative = |path: &str| {
        path.strip_prefix(root)
            .map(|p| p.trim_start_matches('/'))
            .unwrap_or(path)
            .to_owned()
    };
    for (name, entry) in tree.list(dir)? {
        let path = tree::join(dir, &name);
        match entry {
            Entry::Directory if kustomization_file(tree, &path)?.is_some() => {
                resources.push(relative(&path));
            }
            Entry::Directory => collect_generated_resources(tree, root, &path, resources)?,
            // A file too large to check is listed: kustomize reads it under the tree limits.
            Entry::File { size, .. } if is_manifest_name(&name) => {
                let listed = size > MAX_CHECKED_FILE_BYTES || holds_objects(&tree.read(&path)?);
                if listed {
                    resources.push(relative(&path));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn is_manifest_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".yaml", ".yml", ".json"]
        .iter()
        .any(|e| lower.ends_with(e))
}

/// Whether a file's documents are Kubernetes objects (as Flux decides what to list): a file of
/// other YAML would only fail the build.
fn holds_objects(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let Ok(documents) = parse_yaml("", text) else {
        return true; // listed, so that kustomize reports the broken file
    };
    let mut objects = documents.iter().filter(|d| !d.is_null()).peekable();
    objects.peek().is_some()
        && objects.all(|d| {
            d.get("apiVersion").is_some_and(Value::is_string)
                && d.get("kind").is_some_and(Value::is_string)
        })
}

/// Where a reference was written, for error messages.
#[derive(Clone, Copy)]
struct Site<'a> {
    file: &'a str,
    field: &'a str,
    entry: &'a str,
}

impl Site<'_> {
    fn refuse(&self, reason: Refusal) -> RenderError {
        RenderError::Refused {
            file: self.file.to_owned(),
            field: self.field.to_owned(),
            entry: self.entry.to_owned(),
            reason,
        }
    }
}

struct Walk<'t> {
    tree: &'t dyn RepositoryTree,
    /// Every kustomization directory reached so far.
    roots: BTreeSet<String>,
}

impl Walk<'_> {
    /// Checks the unit's kustomization (or the one generated for it) with the edits written in,
    /// and returns the file to write instead of the commit's.
    fn visit_edited_root(
        &mut self,
        dir: &str,
        edits: &KustomizationEdits,
    ) -> Result<(String, Vec<u8>), RenderError> {
        self.roots.insert(dir.to_owned());
        let (file, mut fields) = match kustomization_file(self.tree, dir)? {
            Some((file, entry)) => {
                let documents = self.read_yaml(&file, &entry)?;
                match <[Value; 1]>::try_from(documents) {
                    Ok([Value::Object(fields)]) => (file, fields),
                    _ => return Err(invalid(&file, "expected exactly one mapping")),
                }
            }
            None => (
                tree::join(dir, KUSTOMIZATION_FILES[0]),
                generated_kustomization(self.tree, dir)?,
            ),
        };
        edits.apply(&mut fields);
        self.check_fields(dir, &file, &fields)?;
        // JSON is YAML: kustomize reads it as the kustomization file it replaces.
        let contents = serde_json::to_vec_pretty(&fields).expect("a JSON map serializes");
        Ok((file, contents))
    }

    /// Checks the kustomization of `dir` (reached from `site`, or the unit itself).
    fn visit_root(&mut self, dir: &str, site: Option<Site<'_>>) -> Result<(), RenderError> {
        if !self.roots.insert(dir.to_owned()) {
            return Ok(()); // kustomize reports cycles itself; the walk only must not loop
        }
        let (file, entry) = match kustomization_file(self.tree, dir)? {
            Some(found) => found,
            None => {
                return Err(match site {
                    Some(site) => site.refuse(Refusal::NotAKustomization),
                    None => RenderError::InvalidKustomization {
                        file: dir.to_owned(),
                        reason: Refusal::NotAKustomization.to_string(),
                    },
                });
            }
        };
        let kustomization = self.read_yaml(&file, &entry)?;
        let [document] = kustomization.as_slice() else {
            return Err(invalid(&file, "expected exactly one YAML document"));
        };
        let Value::Object(fields) = document else {
            return Err(invalid(&file, "not a mapping"));
        };
        self.check_fields(dir, &file, fields)
    }

    fn check_fields(
        &mut self,
        dir: &str,
        file: &str,
        fields: &serde_json::Map<String, Value>,
    ) -> Result<(), RenderError> {
        for field in HELM_FIELDS {
            if fields.get(field).is_some_and(|v| !v.is_null()) {
                let site = Site {
                    file,
                    field,
                    entry: "",
                };
                return Err(site.refuse(Refusal::Helm));
            }
        }
        for field in BASE_FIELDS {
            for entry in strings(fields.get(field), file, field)? {
                self.base_or_file(dir, Site { file, field, entry })?;
            }
        }
        for field in PLUGIN_FIELDS {
            for entry in strings(fields.get(field), file, field)? {
                self.plugin(dir, Site { file, field, entry })?;
            }
        }
        for field in ["configMapGenerator", "secretGenerator"] {
            for generator in items(fields.get(field)) {
                check_generator_files(self.tree, dir, file, field, generator)?;
            }
        }
        for field in ["configurations", "crds"] {
            for entry in strings(fields.get(field), file, field)? {
                file_reference(self.tree, dir, Site { file, field, entry })?;
            }
        }
        for entry in strings(
            fields.get("patchesStrategicMerge"),
            file,
            "patchesStrategicMerge",
        )? {
            if !is_inline(entry) {
                let site = Site {
                    file,
                    field: "patchesStrategicMerge",
                    entry,
                };
                file_reference(self.tree, dir, site)?;
            }
        }
        for field in ["patches", "patchesJson6902", "replacements"] {
            for item in items(fields.get(field)) {
                if let Some(entry) = item.get("path").and_then(Value::as_str) {
                    file_reference(self.tree, dir, Site { file, field, entry })?;
                }
            }
        }
        if let Some(entry) = fields
            .get("openapi")
            .and_then(|o| o.get("path"))
            .and_then(Value::as_str)
        {
            let site = Site {
                file,
                field: "openapi",
                entry,
            };
            file_reference(self.tree, dir, site)?;
        }
        Ok(())
    }

    /// A `resources`/`bases`/`components` entry: a base directory anywhere in the repository,
    /// or a file inside this kustomization's directory.
    fn base_or_file(&mut self, dir: &str, site: Site<'_>) -> Result<Entry, RenderError> {
        let path = local_path(dir, site)?;
        match self.tree.entry(&path)? {
            None => Err(RenderError::NotFound {
                file: site.file.to_owned(),
                field: site.field.to_owned(),
                entry: site.entry.to_owned(),
                path,
            }),
            Some(Entry::Directory) => {
                self.visit_root(&path, Some(site))?;
                Ok(Entry::Directory)
            }
            Some(entry @ Entry::File { .. }) => {
                if !tree::is_within(&path, dir) {
                    return Err(site.refuse(Refusal::OutsideKustomization));
                }
                Ok(entry)
            }
            Some(Entry::Symlink) => Err(site.refuse(Refusal::Symlink)),
            Some(Entry::Submodule) => Err(site.refuse(Refusal::Submodule)),
        }
    }

    /// A generator, transformer or validator: inline YAML, a file of plugin configurations, or
    /// a kustomization directory whose output kustomize itself checks (plugins are disabled).
    fn plugin(&mut self, dir: &str, site: Site<'_>) -> Result<(), RenderError> {
        if is_inline(site.entry) {
            let documents = parse_yaml(site.file, site.entry)?;
            return check_plugin_configs(self.tree, dir, site, &documents);
        }
        let path = local_path(dir, site)?;
        let entry = self.base_or_file(dir, site)?;
        if let Entry::File { .. } = entry {
            let documents = self.read_yaml(&path, &entry)?;
            check_plugin_configs(self.tree, dir, site, &documents)?;
        }
        Ok(())
    }

    fn read_yaml(&self, path: &str, entry: &Entry) -> Result<Vec<Value>, RenderError> {
        match entry {
            Entry::File { size, .. } if *size > MAX_CHECKED_FILE_BYTES => Err(invalid(
                path,
                &format!("{size} bytes, over the limit of {MAX_CHECKED_FILE_BYTES} bytes"),
            )),
            Entry::File { .. } => {
                let bytes = self.tree.read(path)?;
                let text =
                    std::str::from_utf8(&bytes).map_err(|_| invalid(path, "not valid UTF-8"))?;
                parse_yaml(path, text)
            }
            Entry::Symlink => Err(invalid(path, &Refusal::Symlink.to_string())),
            Entry::Submodule => Err(invalid(path, &Refusal::Submodule.to_string())),
            Entry::Directory => Err(invalid(path, "is a directory")),
        }
    }
}

/// Every document of a generators/transformers/validators entry must be a builtin plugin's
/// configuration; the files those configurations name follow the file rules.
fn check_plugin_configs(
    tree: &dyn RepositoryTree,
    dir: &str,
    site: Site<'_>,
    documents: &[Value],
) -> Result<(), RenderError> {
    for document in documents.iter().filter(|d| !d.is_null()) {
        let api_version = document.get("apiVersion").and_then(Value::as_str);
        let kind = document.get("kind").and_then(Value::as_str).unwrap_or("");
        if kind == "HelmChartInflationGenerator" {
            return Err(site.refuse(Refusal::Helm));
        }
        let annotations = document.pointer("/metadata/annotations");
        let has_function = FUNCTION_ANNOTATIONS
            .iter()
            .any(|a| annotations.and_then(|m| m.get(a)).is_some());
        if api_version != Some("builtin") || has_function {
            return Err(site.refuse(Refusal::Plugin));
        }
        let file = site.file;
        let field = site.field;
        for key in ["path"] {
            if let Some(entry) = document.get(key).and_then(Value::as_str) {
                file_reference(tree, dir, Site { file, field, entry })?;
            }
        }
        for entry in strings(document.get("paths"), file, field)? {
            if !is_inline(entry) {
                file_reference(tree, dir, Site { file, field, entry })?;
            }
        }
        if matches!(kind, "ConfigMapGenerator" | "SecretGenerator") {
            check_generator_files(tree, dir, file, field, document)?;
        }
    }
    Ok(())
}

/// `files` (`path` or `key=path`), `envs` and `env` of a ConfigMap or Secret generator.
fn check_generator_files(
    tree: &dyn RepositoryTree,
    dir: &str,
    file: &str,
    field: &str,
    generator: &Value,
) -> Result<(), RenderError> {
    for source in strings(generator.get("files"), file, field)? {
        let entry = source.split_once('=').map_or(source, |(_, path)| path);
        file_reference(tree, dir, Site { file, field, entry })?;
    }
    for entry in strings(generator.get("envs"), file, field)? {
        file_reference(tree, dir, Site { file, field, entry })?;
    }
    if let Some(entry) = generator.get("env").and_then(Value::as_str) {
        file_reference(tree, dir, Site { file, field, entry })?;
    }
    Ok(())
}

/// A file a kustomization loads: local, inside its directory, not a symlink. A missing file is
/// left to kustomize to report.
fn file_reference(tree: &dyn RepositoryTree, dir: &str, site: Site<'_>) -> Result<(), RenderError> {
    let path = local_path(dir, site)?;
    if !tree::is_within(&path, dir) {
        return Err(site.refuse(Refusal::OutsideKustomization));
    }
    match tree.entry(&path)? {
        Some(Entry::Symlink) => Err(site.refuse(Refusal::Symlink)),
        Some(Entry::Submodule) => Err(site.refuse(Refusal::Submodule)),
        _ => Ok(()),
    }
}

/// The repository path of a local reference, or the refusal of a remote or escaping one.
fn local_path(dir: &str, site: Site<'_>) -> Result<String, RenderError> {
    if looks_remote(site.entry) {
        return Err(site.refuse(Refusal::Remote));
    }
    tree::resolve(dir, site.entry.trim()).map_err(|escape| {
        site.refuse(match escape {
            Escape::Absolute => Refusal::Absolute,
            Escape::LeavesRepository => Refusal::LeavesRepository,
        })
    })
}

/// Whether kustomize could take `entry` for a remote file or repository. Deliberately broad: a
/// local path never needs a scheme, an `@host:` part, a query or a `//`.
pub fn looks_remote(entry: &str) -> bool {
    let entry = entry.trim();
    let lower = entry.to_ascii_lowercase();
    const HOSTS: [&str; 5] = [
        "github.com",
        "gitlab.com",
        "bitbucket.org",
        "dev.azure.com",
        "ssh.dev.azure.com",
    ];
    lower.contains("://")
        || lower.starts_with("git::")
        || lower.starts_with("gh:")
        || lower.contains('?')
        || entry.contains("//")
        || is_scp_like(entry)
        || HOSTS
            .iter()
            .any(|host| lower == *host || lower.starts_with(&format!("{host}/")))
        || lower.starts_with("www.")
}

/// `user@host:path`, git's scp-like syntax.
fn is_scp_like(entry: &str) -> bool {
    match (entry.find('@'), entry.find(':')) {
        (Some(at), Some(colon)) => at < colon && !entry[..at].contains('/'),
        _ => false,
    }
}

/// kustomize accepts inline YAML where a path is expected in several fields.
fn is_inline(entry: &str) -> bool {
    entry.contains('\n')
}

fn strings<'v>(
    value: Option<&'v Value>,
    file: &str,
    field: &str,
) -> Result<Vec<&'v str>, RenderError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(one)) => Ok(vec![one.as_str()]),
        Some(Value::Array(entries)) => entries
            .iter()
            .map(|entry| {
                entry
                    .as_str()
                    .ok_or_else(|| invalid(file, &format!("{field}: every entry must be a string")))
            })
            .collect(),
        Some(_) => Err(invalid(file, &format!("{field} must be a list of strings"))),
    }
}

fn items(value: Option<&Value>) -> impl Iterator<Item = &Value> {
    value.and_then(Value::as_array).into_iter().flatten()
}

fn invalid(file: &str, reason: &str) -> RenderError {
    RenderError::InvalidKustomization {
        file: file.to_owned(),
        reason: reason.to_owned(),
    }
}

fn parse_yaml(file: &str, text: &str) -> Result<Vec<Value>, RenderError> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: 256,
            max_depth: 64,
            max_nodes: 200_000,
            max_total_scalar_bytes: 4 * 1024 * 1024,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 10_000,
        },
        with_snippet: false,
    };
    serde_saphyr::from_multiple_with_options::<Value>(text, options)
        .map_err(|error| invalid(file, &format!("invalid YAML: {error}")))
}

/// Every regular file under the reached kustomization directories (nested ones once), within
/// the limits. Symlinks and submodules stay out: nothing in the work directory points anywhere.
fn materializable_files(
    tree: &dyn RepositoryTree,
    unit: &str,
    roots: &BTreeSet<String>,
    limits: InputLimits,
) -> Result<Inputs, RenderError> {
    let mut inputs = Inputs::default();
    let mut covered: Vec<&str> = Vec::new();
    for root in roots {
        if covered.iter().any(|outer| tree::is_within(root, outer)) {
            continue;
        }
        covered.push(root);
    }
    let unit = display_dir(unit);
    for root in covered {
        tree::walk(tree, root, &mut |path, entry| {
            let Entry::File { id, size } = entry else {
                return Ok(());
            };
            inputs.add(path, id, *size, limits, &unit)
        })?;
    }
    Ok(inputs)
}

/// A directory as users write it: `.` for the repository root.
pub fn display_dir(dir: &str) -> String {
    if dir.is_empty() {
        ".".to_owned()
    } else {
        dir.to_owned()
    }
}
