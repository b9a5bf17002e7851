//! Reading manifest files straight out of a commit's tree objects: no checkout, nothing written
//! to disk, nothing outside the tree reachable. Symlinks are reported, never followed.

use std::path::Path;

use git2::{ObjectType, Oid, Repository, Tree, TreeWalkMode, TreeWalkResult};
use ignore::gitignore::{Gitignore, GitignoreBuilder};

/// File names whose contents are manifests; everything else in the tree is never read.
const MANIFEST_EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

/// The repository's own ignore file, gitignore syntax, at the root of the repository.
pub const IGNORE_FILE: &str = ".driftlessignore";

pub(super) const FILE_MODE_LINK: i32 = 0o120000;
pub(super) const FILE_MODE_SUBMODULE: i32 = 0o160000;

/// Bounds on what one revision may hand to the manifest reader.
#[derive(Clone, Copy, Debug)]
pub struct TreeLimits {
    pub max_file_bytes: u64,
    pub max_total_bytes: u64,
    pub max_files: usize,
}

/// One manifest file, by its path from the repository root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestFile {
    pub path: String,
    pub contents: Vec<u8>,
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
    #[error("reading the tree: {0}")]
    Git(String),
}

impl From<git2::Error> for TreeError {
    fn from(error: git2::Error) -> Self {
        TreeError::Git(error.message().to_owned())
    }
}

/// Reads every manifest file under `path` (the root when empty) of commit `oid`, leaving out
/// files matched by `ignore` patterns or the repository's `.driftlessignore`.
pub fn read_manifest_files(
    repo: &Repository,
    oid: Oid,
    path: &str,
    ignore: &[String],
    limits: TreeLimits,
) -> Result<TreeFiles, TreeError> {
    let root = repo.find_commit(oid)?.tree()?;
    let path = path.trim_matches('/');
    let matcher = ignore_matcher(repo, &root, ignore)?;
    let subtree = subtree_at(repo, &root, path)?;
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };

    let mut found = TreeFiles::default();
    let mut total_bytes = 0u64;
    let mut failure = None;
    subtree
        .walk(TreeWalkMode::PreOrder, |dir, entry| {
            let relative = format!("{prefix}{dir}{}", entry.name().unwrap_or_default());
            let is_dir = entry.kind() == Some(ObjectType::Tree);
            if matcher
                .matched_path_or_any_parents(&relative, is_dir)
                .is_ignore()
            {
                return TreeWalkResult::Skip;
            }
            if matches!(entry.filemode(), FILE_MODE_LINK | FILE_MODE_SUBMODULE) {
                if entry.filemode() == FILE_MODE_SUBMODULE || could_hold_manifests(&relative) {
                    found.skipped.push(relative);
                }
                return TreeWalkResult::Ok;
            }
            if is_dir || !is_manifest(&relative) {
                return TreeWalkResult::Ok;
            }
            match read_blob(
                repo,
                entry.id(),
                relative,
                &mut total_bytes,
                found.files.len(),
                limits,
            ) {
                Ok(file) => {
                    found.files.push(file);
                    TreeWalkResult::Ok
                }
                Err(error) => {
                    failure = Some(error);
                    TreeWalkResult::Abort
                }
            }
        })
        .or_else(|error| {
            if failure.is_some() {
                Ok(())
            } else {
                Err(error)
            }
        })?;
    if let Some(error) = failure {
        return Err(error);
    }
    found.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
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
    path: String,
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
            path,
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
    Ok(ManifestFile { path, contents })
}

fn subtree_at<'r>(
    repo: &'r Repository,
    root: &Tree<'r>,
    path: &str,
) -> Result<Tree<'r>, TreeError> {
    if path.is_empty() {
        return Ok(root.clone());
    }
    let entry = root
        .get_path(Path::new(path))
        .map_err(|_| TreeError::PathNotFound(path.to_owned()))?;
    if entry.kind() != Some(ObjectType::Tree) {
        return Err(TreeError::NotADirectory(path.to_owned()));
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
