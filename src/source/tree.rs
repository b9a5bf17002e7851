//! Reading manifest files straight out of a commit's tree objects: no checkout, nothing written
//! to disk, nothing outside the tree reachable. Symlinks are reported, never followed.
//!
//! Before anything of a commit is read, its whole tree is checked once ([`check_tree`]): every
//! entry's name by the rules of [`crate::repo_path`], and the number of entries, directories
//! and the nesting depth against [`TreeLimits`]. Walks are iterative, with an explicit stack:
//! a repository decides how deep its trees go, so no walk recurses on it.

use std::{
    collections::HashSet,
    path::Path,
    sync::{Mutex, OnceLock},
};

use git2::{ObjectType, Oid, Repository, Tree};
use ignore::gitignore::{Gitignore, GitignoreBuilder};

use crate::repo_path::{BadEntry, EntryName, Escape, RepoPath, describe_entry};

/// File names whose contents are manifests; everything else in the tree is never read.
const MANIFEST_EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// The repository's own ignore file, gitignore syntax, at the root of the repository.
pub const IGNORE_FILE: &str = ".driftlessignore";

pub(super) const FILE_MODE_LINK: i32 = 0o120000;
pub(super) const FILE_MODE_SUBMODULE: i32 = 0o160000;

/// Bounds on what one revision may hand to the manifest reader, and on the shape of its tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TreeLimits {
    pub max_file_bytes: u64,
    pub max_total_bytes: u64,
    pub max_files: usize,
    /// Entries (files, directories, links) in the commit's whole tree, counted by path: a
    /// subtree listed twice counts twice.
    pub max_entries: usize,
    /// Directories in the commit's whole tree, counted by path.
    pub max_directories: usize,
    /// Directories nested in one another, from the root.
    pub max_depth: usize,
}

impl Default for TreeLimits {
    fn default() -> Self {
        Self {
            max_file_bytes: 4 * 1024 * 1024,
            max_total_bytes: 64 * 1024 * 1024,
            max_files: 10_000,
            max_entries: 200_000,
            max_directories: 50_000,
            max_depth: 128,
        }
    }
}

/// One manifest file, by its path from the repository root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestFile {
    pub path: RepoPath,
    pub contents: Vec<u8>,
    /// The git blob id of `contents` (40 hex digits): content-addressed, so two files with the
    /// same id hold the same bytes, whichever repository or tenant they came from.
    pub blob: String,
}

/// The manifest files under a path of a commit.
#[derive(Clone, Debug, Default)]
pub struct TreeFiles {
    /// In a stable order: sorted by path.
    pub files: Vec<ManifestFile>,
    /// Submodules, and symlinks that may stand for manifests (a manifest file name, or no
    /// extension: perhaps a directory), under the path and not ignored; they are not followed.
    pub skipped: Vec<String>,
}

/// Why the files could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TreeError {
    #[error("path {0:?} does not exist in the commit")]
    PathNotFound(String),
    #[error("path {0:?} is a file, not a directory")]
    NotADirectory(String),
    #[error("{path}: {size} bytes exceeds the file size limit of {limit} bytes")]
    FileTooLarge { path: String, size: u64, limit: u64 },
    #[error("manifests exceed the total size limit of {limit} bytes")]
    TotalTooLarge { limit: u64 },
    #[error("more than {limit} manifest files")]
    TooManyFiles { limit: usize },
    #[error("ignore pattern {pattern:?}: {reason}")]
    BadIgnorePattern { pattern: String, reason: String },
    /// A name git's fsck refuses: the whole revision is refused, nothing of it is read.
    #[error("{0}; nothing of the revision is read")]
    BadEntry(#[from] BadEntry),
    #[error("path {path:?}: {reason}")]
    BadPath { path: String, reason: Escape },
    #[error("the commit's tree holds more than {limit} entries (--max-tree-entries)")]
    TooManyEntries { limit: usize },
    #[error("the commit's tree holds more than {limit} directories (--max-tree-directories)")]
    TooManyDirectories { limit: usize },
    #[error("{path}: directories nested more than {limit} deep (--max-tree-depth)")]
    TooDeep { path: String, limit: usize },
    #[error("reading the tree: {0}")]
    Git(String),
}

impl TreeError {
    /// Whether the commit itself is refused: only a new commit (or new limits) helps.
    pub fn refuses_commit(&self) -> bool {
        matches!(
            self,
            TreeError::BadEntry(_)
                | TreeError::TooManyEntries { .. }
                | TreeError::TooManyDirectories { .. }
                | TreeError::TooDeep { .. }
        )
    }
}

impl From<git2::Error> for TreeError {
    fn from(error: git2::Error) -> Self {
        TreeError::Git(error.message().to_owned())
    }
}

/// Reads every manifest file under `path` (the root when empty) of commit `oid`, leaving out
/// files matched by `ignore` patterns or the repository's `.driftlessignore`. The commit's tree
/// must have passed [`check_tree`].
pub fn read_manifest_files(
    repo: &Repository,
    oid: Oid,
    path: &str,
    ignore: &[String],
    limits: TreeLimits,
) -> Result<TreeFiles, TreeError> {
    let root = repo.find_commit(oid)?.tree()?;
    let path = parse_path(path)?;
    let matcher = ignore_matcher(repo, &root, ignore)?;
    let subtree = subtree_at(repo, &root, &path)?;

    let mut found = TreeFiles::default();
    let mut total_bytes = 0u64;
    let mut pending = vec![(path, subtree)];
    while let Some((dir, tree)) = pending.pop() {
        for entry in tree.iter() {
            let name = EntryName::from_bytes(entry.name_bytes()).map_err(|rule| BadEntry {
                path: describe_entry(&dir, entry.name_bytes()),
                rule,
            })?;
            let relative = dir.join(&name);
            let is_dir = entry.kind() == Some(ObjectType::Tree);
            if matcher
                .matched_path_or_any_parents(relative.as_str(), is_dir)
                .is_ignore()
            {
                continue;
            }
            if matches!(entry.filemode(), FILE_MODE_LINK | FILE_MODE_SUBMODULE) {
                if entry.filemode() == FILE_MODE_SUBMODULE
                    || could_hold_manifests(relative.as_str())
                {
                    found.skipped.push(relative.as_str().to_owned());
                }
                continue;
            }
            if is_dir {
                pending.push((relative, repo.find_tree(entry.id())?));
                continue;
            }
            if !is_manifest(relative.as_str()) {
                continue;
            }
            let file = read_blob(
                repo,
                entry.id(),
                relative,
                &mut total_bytes,
                found.files.len(),
                limits,
            )?;
            found.files.push(file);
        }
    }
    found.files.sort_by(|a, b| a.path.cmp(&b.path));
    found.skipped.sort();
    Ok(found)
}

/// `spec.path` as a path inside the revision.
pub(super) fn parse_path(path: &str) -> Result<RepoPath, TreeError> {
    RepoPath::parse(path).map_err(|reason| TreeError::BadPath {
        path: path.to_owned(),
        reason,
    })
}

/// Checks every entry of tree `root`, iteratively: each name by git's fsck rules, and the
/// number of entries and directories and their depth against `limits`. A tree that passed is
/// remembered, so each distinct tree is walked once per process.
pub fn check_tree(repo: &Repository, root: Oid, limits: TreeLimits) -> Result<(), TreeError> {
    if checked_trees().contains(&(root, limits)) {
        return Ok(());
    }
    let mut entries = 0usize;
    let mut directories = 0usize;
    let mut pending = vec![(RepoPath::root(), root)];
    while let Some((dir, id)) = pending.pop() {
        let tree = repo.find_tree(id)?;
        entries += tree.len();
        if entries > limits.max_entries {
            return Err(TreeError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        for entry in tree.iter() {
            let name = EntryName::from_bytes(entry.name_bytes()).map_err(|rule| BadEntry {
                path: describe_entry(&dir, entry.name_bytes()),
                rule,
            })?;
            if entry.kind() != Some(ObjectType::Tree) {
                continue;
            }
            directories += 1;
            if directories > limits.max_directories {
                return Err(TreeError::TooManyDirectories {
                    limit: limits.max_directories,
                });
            }
            let path = dir.join(&name);
            if path.depth() > limits.max_depth {
                return Err(TreeError::TooDeep {
                    path: path.as_str().to_owned(),
                    limit: limits.max_depth,
                });
            }
            pending.push((path, entry.id()));
        }
    }
    checked_trees().remember((root, limits));
    Ok(())
}

/// Trees that passed [`check_tree`], by id and the limits they passed under.
struct CheckedTrees(Mutex<HashSet<(Oid, TreeLimits)>>);

/// More than this many remembered trees and the memory starts over.
const MAX_REMEMBERED_TREES: usize = 4096;

impl CheckedTrees {
    fn contains(&self, key: &(Oid, TreeLimits)) -> bool {
        crate::sync::lock(&self.0).contains(key)
    }

    fn remember(&self, key: (Oid, TreeLimits)) {
        let mut trees = crate::sync::lock(&self.0);
        if trees.len() >= MAX_REMEMBERED_TREES {
            trees.clear();
        }
        trees.insert(key);
    }
}

fn checked_trees() -> &'static CheckedTrees {
    static TREES: OnceLock<CheckedTrees> = OnceLock::new();
    TREES.get_or_init(|| CheckedTrees(Mutex::new(HashSet::new())))
}

fn is_manifest(path: &str) -> bool {
    Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| MANIFEST_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// A symlink named like a manifest, or without an extension (it may point to a directory), may
/// stand for manifests; one named `README.md` cannot.
fn could_hold_manifests(path: &str) -> bool {
    is_manifest(path) || Path::new(path).extension().is_none()
}

fn read_blob(
    repo: &Repository,
    id: Oid,
    path: RepoPath,
    total_bytes: &mut u64,
    files_so_far: usize,
    limits: TreeLimits,
) -> Result<ManifestFile, TreeError> {
    if files_so_far >= limits.max_files {
        return Err(TreeError::TooManyFiles {
            limit: limits.max_files,
        });
    }
    // The header gives the size without inflating the object: a huge blob is refused unread.
    let (size, _) = repo.odb()?.read_header(id)?;
    let size = size as u64;
    if size > limits.max_file_bytes {
        return Err(TreeError::FileTooLarge {
            path: path.as_str().to_owned(),
            size,
            limit: limits.max_file_bytes,
        });
    }
    *total_bytes += size;
    if *total_bytes > limits.max_total_bytes {
        return Err(TreeError::TotalTooLarge {
            limit: limits.max_total_bytes,
        });
    }
    let contents = repo.find_blob(id)?.content().to_vec();
    Ok(ManifestFile {
        path,
        contents,
        blob: id.to_string(),
    })
}

fn subtree_at<'r>(
    repo: &'r Repository,
    root: &Tree<'r>,
    path: &RepoPath,
) -> Result<Tree<'r>, TreeError> {
    if path.is_root() {
        return Ok(root.clone());
    }
    let entry = root
        .get_path(Path::new(path.as_str()))
        .map_err(|_| TreeError::PathNotFound(path.as_str().to_owned()))?;
    if entry.kind() != Some(ObjectType::Tree) {
        return Err(TreeError::NotADirectory(path.as_str().to_owned()));
    }
    Ok(repo.find_tree(entry.id())?)
}

/// Combines the `spec.ignore` patterns with the repository's `.driftlessignore`; both match
/// paths from the repository root, as `.gitignore` at the root would.
pub(super) fn ignore_matcher(
    repo: &Repository,
    root: &Tree<'_>,
    patterns: &[String],
) -> Result<Gitignore, TreeError> {
    let mut builder = GitignoreBuilder::new("");
    if let Some(entry) = root.get_name(IGNORE_FILE) {
        let blob = repo.find_blob(entry.id())?;
        for line in String::from_utf8_lossy(blob.content()).lines() {
            add_pattern(&mut builder, line)?;
        }
    }
    for pattern in patterns {
        add_pattern(&mut builder, pattern)?;
    }
    builder.build().map_err(|e| TreeError::BadIgnorePattern {
        pattern: String::new(),
        reason: e.to_string(),
    })
}

fn add_pattern(builder: &mut GitignoreBuilder, pattern: &str) -> Result<(), TreeError> {
    builder
        .add_line(None, pattern)
        .map(|_| ())
        .map_err(|e| TreeError::BadIgnorePattern {
            pattern: pattern.to_owned(),
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yaml_and_json_files_are_manifests() {
        assert!(is_manifest("a/b.yaml") && is_manifest("c.YML") && is_manifest("d.json"));
        assert!(!is_manifest("README.md") && !is_manifest("yaml") && !is_manifest("x.yaml.bak"));
    }

    #[test]
    fn symlinks_that_may_stand_for_manifests_are_told_apart() {
        assert!(could_hold_manifests("deploy/app.yaml") && could_hold_manifests("deploy/common"));
        assert!(!could_hold_manifests("deploy/README.md") && !could_hold_manifests("x.txt"));
    }
}
