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
    tree::{Entry, EntryName, Escape, RepoPath, RepositoryTree},
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

/// Bounds on the files one render may materialize (the source engine's tree limits), and on
/// the kustomizations one render may check.
#[derive(Clone, Copy, Debug)]
pub struct InputLimits {
    pub max_file_bytes: u64,
    pub max_total_bytes: u64,
    pub max_files: usize,
    /// Kustomizations one unit may reach through its bases and components, and kustomize
    /// units one path may hold.
    pub max_kustomizations: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 4 * 1024 * 1024,
            max_total_bytes: 64 * 1024 * 1024,
            max_files: 10_000,
            max_kustomizations: 1_000,
        }
    }
}

/// What a unit's build may read: every regular file under every kustomization directory it
/// reaches, by path, with its content address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inputs {
    pub files: BTreeMap<RepoPath, String>,
    pub total_bytes: u64,
    /// The unit's kustomization file as edited (or generated), written instead of the commit's.
    pub edited: Option<(RepoPath, Vec<u8>)>,
    /// Files that are not the commit's (values read from the cluster), written under the work
    /// directory's `generated/`, by name.
    pub generated: Vec<(String, Vec<u8>)>,
}

impl Inputs {
    /// Adds a file of the commit, within the limits; `unit` names the render in messages.
    pub fn add(
        &mut self,
        path: &RepoPath,
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
        if self.files.insert(path.clone(), id.to_owned()).is_none() {
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

/// A name driftless writes itself, as a path component.
fn known(name: &'static str) -> EntryName {
    EntryName::new(name).expect("a constant name is a valid entry name")
}

/// The kustomization file of directory `dir`, if it has one.
pub fn kustomization_file(
    tree: &dyn RepositoryTree,
    dir: &RepoPath,
) -> Result<Option<(RepoPath, Entry)>, RenderError> {
    for name in KUSTOMIZATION_FILES {
        let path = dir.join(&known(name));
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
    unit: &RepoPath,
    edits: &KustomizationEdits,
    limits: InputLimits,
) -> Result<Inputs, RenderError> {
    let mut walk = Walk {
        tree,
        unit,
        max_kustomizations: limits.max_kustomizations,
        roots: BTreeSet::new(),
        pending: Vec::new(),
    };
    walk.roots.insert(unit.clone());
    let edited = if edits.is_empty() {
        walk.visit_root(unit, None)?;
        None
    } else {
        Some(walk.visit_edited_root(unit, edits)?)
    };
    // Bases are checked from a work list, not by recursion: a chain of kustomizations each
    // naming the next is as long as the repository makes it.
    while let Some(base) = walk.pending.pop() {
        let site = Site {
            file: &base.file,
            field: &base.field,
            entry: &base.entry,
        };
        walk.visit_root(&base.dir, Some(site))?;
    }
    let mut inputs = materializable_files(tree, unit, &walk.roots, limits)?;
    inputs.edited = edited;
    Ok(inputs)
}

/// Flux's generated kustomization for a directory without one: every manifest file below it
/// that holds Kubernetes objects, and every subdirectory kustomization (not descended into).
fn generated_kustomization(
    tree: &dyn RepositoryTree,
    dir: &RepoPath,
) -> Result<serde_json::Map<String, Value>, RenderError> {
    let mut resources = Vec::new();
    collect_generated_resources(tree, dir, &mut resources)?;
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

/// Iterative, in name order: the repository decides how deep its directories go.
fn collect_generated_resources(
    tree: &dyn RepositoryTree,
    root: &RepoPath,
    resources: &mut Vec<String>,
) -> Result<(), RenderError> {
    let relative = |path: &RepoPath| {
        path.as_str()
            .strip_prefix(root.as_str())
            .map(|p| p.trim_start_matches('/'))
            .unwrap_or(path.as_str())
            .to_owned()
    };
    let mut pending = vec![(root.clone(), tree.list(root)?.into_iter())];
    while let Some((dir, entries)) = pending.last_mut() {
        let Some((name, entry)) = entries.next() else {
            pending.pop();
            continue;
        };
        let path = dir.join(&name);
        match entry {
            Entry::Directory if kustomization_file(tree, &path)?.is_some() => {
                resources.push(relative(&path));
            }
            Entry::Directory => {
                let children = tree.list(&path)?.into_iter();
                pending.push((path, children));
            }
            // A file too large to check is listed: kustomize reads it under the tree limits.
            Entry::File { size, .. } if is_manifest_name(name.as_str()) => {
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

/// A base directory reached but not checked yet, and where it was named.
struct PendingBase {
    dir: RepoPath,
    file: String,
    field: String,
    entry: String,
}

struct Walk<'t> {
    tree: &'t dyn RepositoryTree,
    /// The unit the walk checks, for messages.
    unit: &'t RepoPath,
    max_kustomizations: usize,
    /// Every kustomization directory reached so far (checked, or waiting in `pending`).
    roots: BTreeSet<RepoPath>,
    pending: Vec<PendingBase>,
}

impl Walk<'_> {
    /// Checks the unit's kustomization (or the one generated for it) with the edits written in,
    /// and returns the file to write instead of the commit's.
    fn visit_edited_root(
        &mut self,
        dir: &RepoPath,
        edits: &KustomizationEdits,
    ) -> Result<(RepoPath, Vec<u8>), RenderError> {
        let (file, mut fields) = match kustomization_file(self.tree, dir)? {
            Some((file, entry)) => {
                let documents = self.read_yaml(&file, &entry)?;
                match <[Value; 1]>::try_from(documents) {
                    Ok([Value::Object(fields)]) => (file, fields),
                    _ => return Err(invalid(file.as_str(), "expected exactly one mapping")),
                }
            }
            None => (
                dir.join(&known(KUSTOMIZATION_FILES[0])),
                generated_kustomization(self.tree, dir)?,
            ),
        };
        edits.apply(&mut fields);
        self.check_fields(dir, &file, &fields)?;
        // JSON is YAML: kustomize reads it as the kustomization file it replaces.
        let contents = serde_json::to_vec_pretty(&fields).expect("a JSON map serializes");
        Ok((file, contents))
    }

    /// Checks the kustomization of `dir` (reached from `site`, or the unit itself); the bases
    /// it names join the work list.
    fn visit_root(&mut self, dir: &RepoPath, site: Option<Site<'_>>) -> Result<(), RenderError> {
        let (file, entry) = match kustomization_file(self.tree, dir)? {
            Some(found) => found,
            None => {
                return Err(match site {
                    Some(site) => site.refuse(Refusal::NotAKustomization),
                    None => RenderError::InvalidKustomization {
                        file: dir.display().to_owned(),
                        reason: Refusal::NotAKustomization.to_string(),
                    },
                });
            }
        };
        let kustomization = self.read_yaml(&file, &entry)?;
        let [document] = kustomization.as_slice() else {
            return Err(invalid(file.as_str(), "expected exactly one YAML document"));
        };
        let Value::Object(fields) = document else {
            return Err(invalid(file.as_str(), "not a mapping"));
        };
        self.check_fields(dir, &file, fields)
    }

    /// A base directory named at `site`: checked later from the work list, once however often
    /// it is named (kustomize reports cycles itself; the walk only must not loop), within the
    /// budget of kustomizations.
    fn reach(&mut self, dir: RepoPath, site: Site<'_>) -> Result<(), RenderError> {
        if self.roots.contains(&dir) {
            return Ok(());
        }
        if self.roots.len() >= self.max_kustomizations {
            return Err(RenderError::TooManyKustomizations {
                unit: self.unit.display().to_owned(),
                limit: self.max_kustomizations,
            });
        }
        self.roots.insert(dir.clone());
        self.pending.push(PendingBase {
            dir,
            file: site.file.to_owned(),
            field: site.field.to_owned(),
            entry: site.entry.to_owned(),
        });
        Ok(())
    }

    fn check_fields(
        &mut self,
        dir: &RepoPath,
        file: &RepoPath,
        fields: &serde_json::Map<String, Value>,
    ) -> Result<(), RenderError> {
        let file = file.as_str();
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
    fn base_or_file(&mut self, dir: &RepoPath, site: Site<'_>) -> Result<Entry, RenderError> {
        let path = local_path(dir, site)?;
        match self.tree.entry(&path)? {
            None => Err(RenderError::NotFound {
                file: site.file.to_owned(),
                field: site.field.to_owned(),
                entry: site.entry.to_owned(),
                path: path.as_str().to_owned(),
            }),
            Some(Entry::Directory) => {
                self.reach(path, site)?;
                Ok(Entry::Directory)
            }
            Some(entry @ Entry::File { .. }) => {
                if !path.is_within(dir) {
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
    fn plugin(&mut self, dir: &RepoPath, site: Site<'_>) -> Result<(), RenderError> {
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

    fn read_yaml(&self, path: &RepoPath, entry: &Entry) -> Result<Vec<Value>, RenderError> {
        let (read, path) = (path, path.as_str());
        match entry {
            Entry::File { size, .. } if *size > MAX_CHECKED_FILE_BYTES => Err(invalid(
                path,
                &format!("{size} bytes, over the limit of {MAX_CHECKED_FILE_BYTES} bytes"),
            )),
            Entry::File { .. } => {
                let bytes = self.tree.read(read)?;
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
    dir: &RepoPath,
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
    dir: &RepoPath,
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
fn file_reference(
    tree: &dyn RepositoryTree,
    dir: &RepoPath,
    site: Site<'_>,
) -> Result<(), RenderError> {
    let path = local_path(dir, site)?;
    if !path.is_within(dir) {
        return Err(site.refuse(Refusal::OutsideKustomization));
    }
    match tree.entry(&path)? {
        Some(Entry::Symlink) => Err(site.refuse(Refusal::Symlink)),
        Some(Entry::Submodule) => Err(site.refuse(Refusal::Submodule)),
        _ => Ok(()),
    }
}

/// The repository path of a local reference, or the refusal of a remote or escaping one.
fn local_path(dir: &RepoPath, site: Site<'_>) -> Result<RepoPath, RenderError> {
    if looks_remote(site.entry) {
        return Err(site.refuse(Refusal::Remote));
    }
    dir.resolve(site.entry.trim())
        .map_err(|escape| site.refuse(refusal_of(escape)))
}

/// The refusal of a reference that does not resolve inside the repository.
pub fn refusal_of(escape: Escape) -> Refusal {
    match escape {
        Escape::Absolute => Refusal::Absolute,
        Escape::LeavesRepository => Refusal::LeavesRepository,
        Escape::Name(rule) => Refusal::BadName(rule),
    }
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
    unit: &RepoPath,
    roots: &BTreeSet<RepoPath>,
    limits: InputLimits,
) -> Result<Inputs, RenderError> {
    let mut inputs = Inputs::default();
    let mut covered: Vec<&RepoPath> = Vec::new();
    for root in roots {
        if covered.iter().any(|outer| root.is_within(outer)) {
            continue;
        }
        covered.push(root);
    }
    let unit = unit.display();
    for root in covered {
        super::tree::walk(tree, root, &mut |path, entry| {
            let Entry::File { id, size } = entry else {
                return Ok(());
            };
            inputs.add(path, id, *size, limits, unit)
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A commit's tree from `(path, content)` pairs; directories are implied by the paths.
    struct MemoryTree {
        files: BTreeMap<String, String>,
        /// Every directory's children, by name.
        children: BTreeMap<String, BTreeSet<String>>,
    }

    impl MemoryTree {
        fn new(files: impl IntoIterator<Item = (String, String)>) -> Self {
            let files: BTreeMap<String, String> = files.into_iter().collect();
            let mut children: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for file in files.keys() {
                let mut dir = String::new();
                for part in file.split('/') {
                    children
                        .entry(dir.clone())
                        .or_default()
                        .insert(part.to_owned());
                    dir = if dir.is_empty() {
                        part.to_owned()
                    } else {
                        format!("{dir}/{part}")
                    };
                }
            }
            Self { files, children }
        }
    }

    impl RepositoryTree for MemoryTree {
        fn root_id(&self) -> String {
            "memory".into()
        }

        fn entry(&self, path: &RepoPath) -> Result<Option<Entry>, RenderError> {
            if let Some(content) = self.files.get(path.as_str()) {
                return Ok(Some(Entry::File {
                    id: format!("{:x}", content.len()),
                    size: content.len() as u64,
                }));
            }
            let is_dir = path.is_root() || self.children.contains_key(path.as_str());
            Ok(is_dir.then_some(Entry::Directory))
        }

        fn list(&self, path: &RepoPath) -> Result<Vec<(EntryName, Entry)>, RenderError> {
            let names = self
                .children
                .get(path.as_str())
                .cloned()
                .unwrap_or_default();
            names
                .into_iter()
                .map(|name| {
                    let name = EntryName::new(&name).unwrap();
                    let entry = self.entry(&path.join(&name))?.unwrap();
                    Ok((name, entry))
                })
                .collect()
        }

        fn read(&self, path: &RepoPath) -> Result<Vec<u8>, RenderError> {
            Ok(self.files[path.as_str()].clone().into_bytes())
        }
    }

    const CONFIG_MAP: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n";

    /// `deploy/` names `chain/k0`, which names `k1`, ... down to `k{length - 1}`.
    fn chain(length: usize) -> MemoryTree {
        let mut files = vec![(
            "deploy/kustomization.yaml".to_owned(),
            "resources:\n- ../chain/k0\n".to_owned(),
        )];
        for i in 0..length - 1 {
            files.push((
                format!("chain/k{i}/kustomization.yaml"),
                format!("resources:\n- ../k{}\n", i + 1),
            ));
        }
        files.push((
            format!("chain/k{}/kustomization.yaml", length - 1),
            "resources:\n- cm.yaml\n".to_owned(),
        ));
        files.push((format!("chain/k{}/cm.yaml", length - 1), CONFIG_MAP.into()));
        MemoryTree::new(files)
    }

    /// `deploy/` names `width` bases side by side.
    fn fan_out(width: usize) -> MemoryTree {
        let bases: String = (0..width).map(|i| format!("- ../wide/b{i}\n")).collect();
        let mut files = vec![(
            "deploy/kustomization.yaml".to_owned(),
            format!("resources:\n{bases}"),
        )];
        for i in 0..width {
            files.push((
                format!("wide/b{i}/kustomization.yaml"),
                format!("namePrefix: b{i}-\n"),
            ));
        }
        MemoryTree::new(files)
    }

    fn limits(max_kustomizations: usize) -> InputLimits {
        InputLimits {
            max_kustomizations,
            ..InputLimits::default()
        }
    }

    fn deploy() -> RepoPath {
        RepoPath::parse("deploy").unwrap()
    }

    /// Runs `work` on a thread with a small stack: a walk that recursed per kustomization
    /// would overflow it (an abort of the whole process, not a panic).
    fn on_small_stack<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(work)
            .unwrap()
            .join()
            .unwrap()
    }

    #[test]
    fn a_3000_deep_chain_is_refused_naming_the_limit() {
        let error = on_small_stack(|| {
            collect_inputs(&chain(3_000), &deploy(), &Default::default(), limits(1_000))
        })
        .unwrap_err();
        assert_eq!(
            error,
            RenderError::TooManyKustomizations {
                unit: "deploy".into(),
                limit: 1_000
            }
        );
        assert!(
            error.to_string().contains("--max-kustomizations"),
            "{error}"
        );
        assert!(error.needs_new_commit());
    }

    #[test]
    fn a_3000_deep_chain_within_the_limit_is_walked_without_recursion() {
        let inputs = on_small_stack(|| {
            collect_inputs(
                &chain(3_000),
                &deploy(),
                &Default::default(),
                limits(10_000),
            )
        })
        .unwrap();
        assert!(
            inputs
                .files
                .contains_key(&RepoPath::parse("chain/k2999/cm.yaml").unwrap())
        );
        assert_eq!(inputs.files.len(), 3_002);
    }

    #[test]
    fn a_wide_fan_out_of_bases_is_refused_naming_the_limit() {
        let error = collect_inputs(
            &fan_out(3_000),
            &deploy(),
            &Default::default(),
            limits(1_000),
        )
        .unwrap_err();
        assert!(
            matches!(
                error,
                RenderError::TooManyKustomizations { limit: 1_000, .. }
            ),
            "{error}"
        );
        let inputs =
            collect_inputs(&fan_out(500), &deploy(), &Default::default(), limits(1_000)).unwrap();
        assert_eq!(inputs.files.len(), 501);
    }

    #[test]
    fn a_cycle_of_bases_ends_the_walk() {
        let tree = MemoryTree::new([
            ("a/kustomization.yaml".into(), "resources:\n- ../b\n".into()),
            ("b/kustomization.yaml".into(), "resources:\n- ../a\n".into()),
        ]);
        let unit = RepoPath::parse("a").unwrap();
        let inputs = collect_inputs(&tree, &unit, &Default::default(), limits(10)).unwrap();
        assert_eq!(inputs.files.len(), 2);
    }

    #[test]
    fn a_generated_kustomization_lists_a_deep_tree_without_recursion() {
        let deep = "d/".repeat(3_000);
        let tree = MemoryTree::new([(format!("deploy/{deep}cm.yaml"), CONFIG_MAP.into())]);
        let fields = on_small_stack(move || generated_kustomization(&tree, &deploy())).unwrap();
        assert_eq!(
            fields["resources"],
            serde_json::json!([format!("{deep}cm.yaml")])
        );
    }

    #[test]
    fn a_reference_to_a_name_git_refuses_is_refused() {
        let tree = MemoryTree::new([(
            "deploy/kustomization.yaml".into(),
            "resources:\n- .git/config\n".into(),
        )]);
        let error = collect_inputs(&tree, &deploy(), &Default::default(), limits(10)).unwrap_err();
        assert!(
            matches!(
                error,
                RenderError::Refused {
                    reason: Refusal::BadName(crate::repo_path::NameRule::DotGit),
                    ..
                }
            ),
            "{error}"
        );
    }
}
