//! A fetched commit's whole tree, for renderers that read beyond `spec.path` (a kustomize
//! overlay's `../base`) and files other than manifests (generator sources). Reads go to the
//! cached bare repository's objects; nothing is checked out. Ignore rules apply as for the
//! manifest files: an ignored path looks absent. Paths are [`RepoPath`]s and names
//! [`EntryName`]s: a name git's fsck refuses is an error naming the entry, never handed on.

use std::path::{Path, PathBuf};

use git2::{ObjectType, Oid, Repository, Tree};
use ignore::gitignore::Gitignore;
use sha2::{Digest, Sha256};

use super::tree::{self, TreeError};
use crate::repo_path::{BadEntry, EntryName, RepoPath, describe_entry};

/// Where a commit's tree can be opened again, on any thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub(super) repo_dir: PathBuf,
    pub commit: String,
    /// The id of the commit's root tree.
    pub tree: String,
    pub(super) ignore: Vec<String>,
}

/// What a tree entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotEntry {
    Directory,
    File { id: String, size: u64 },
    Symlink,
    Submodule,
}

/// An opened [`Snapshot`]: a repository handle, for one thread.
pub struct OpenSnapshot {
    repo: Repository,
    tree: Oid,
    matcher: Gitignore,
}

impl Snapshot {
    /// Names what this snapshot shows: the commit's tree as its ignore patterns leave it
    /// (`.driftlessignore` is part of the tree). Equal ids list and read the same files; two
    /// GitRepositories on one commit with different `spec.ignore` get different ids, so a
    /// render remembered for one is never handed to the other.
    pub fn view_id(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.tree.as_bytes());
        for pattern in &self.ignore {
            // Length-prefixed: no two pattern lists hash alike.
            hasher.update((pattern.len() as u64).to_be_bytes());
            hasher.update(pattern.as_bytes());
        }
        hasher
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// Whether the tree at `path` differs between commit `earlier` and this snapshot's commit
    /// (compared by tree id: nothing is read below it); `None` when `earlier` is not in the
    /// cache. Absent in both counts as unchanged.
    pub fn path_changed_since(&self, earlier: &str, path: &str) -> Result<Option<bool>, TreeError> {
        let repo = Repository::open_bare(&self.repo_dir)?;
        let Ok(earlier) = Oid::from_str(earlier) else {
            return Ok(None);
        };
        let Ok(earlier) = repo.find_commit(earlier) else {
            return Ok(None);
        };
        let now = repo.find_tree(Oid::from_str(&self.tree)?)?;
        let id_at = |root: &Tree<'_>| -> Option<Oid> {
            let path = path.trim_matches('/');
            if path.is_empty() {
                Some(root.id())
            } else {
                root.get_path(Path::new(path)).ok().map(|entry| entry.id())
            }
        };
        Ok(Some(id_at(&earlier.tree()?) != id_at(&now)))
    }

    pub fn open(&self) -> Result<OpenSnapshot, TreeError> {
        let repo = Repository::open_bare(&self.repo_dir)?;
        let tree = Oid::from_str(&self.tree)?;
        let matcher = {
            let root = repo.find_tree(tree)?;
            tree::ignore_matcher(&repo, &root, &self.ignore)?
        };
        Ok(OpenSnapshot {
            repo,
            tree,
            matcher,
        })
    }
}

impl OpenSnapshot {
    fn root(&self) -> Result<Tree<'_>, TreeError> {
        Ok(self.repo.find_tree(self.tree)?)
    }

    fn ignored(&self, path: &RepoPath, is_dir: bool) -> bool {
        !path.is_root()
            && self
                .matcher
                .matched_path_or_any_parents(path.as_str(), is_dir)
                .is_ignore()
    }

    /// The entry at `path` (the root: the root directory), `None` when absent or ignored.
    pub fn entry(&self, path: &RepoPath) -> Result<Option<SnapshotEntry>, TreeError> {
        if path.is_root() {
            return Ok(Some(SnapshotEntry::Directory));
        }
        let root = self.root()?;
        let Ok(entry) = root.get_path(Path::new(path.as_str())) else {
            return Ok(None);
        };
        let kind = self.kind_of(entry.filemode(), entry.kind(), entry.id())?;
        if self.ignored(path, kind == SnapshotEntry::Directory) {
            return Ok(None);
        }
        Ok(Some(kind))
    }

    /// The entries of directory `path`, sorted by name (git's tree order), ignored ones left out.
    pub fn list(&self, path: &RepoPath) -> Result<Vec<(EntryName, SnapshotEntry)>, TreeError> {
        let root = self.root()?;
        let dir = if path.is_root() {
            root
        } else {
            let entry = root
                .get_path(Path::new(path.as_str()))
                .map_err(|_| TreeError::PathNotFound(path.as_str().to_owned()))?;
            if entry.kind() != Some(ObjectType::Tree) {
                return Err(TreeError::NotADirectory(path.as_str().to_owned()));
            }
            self.repo.find_tree(entry.id())?
        };
        let mut entries = Vec::new();
        for entry in dir.iter() {
            let name = EntryName::from_bytes(entry.name_bytes()).map_err(|rule| BadEntry {
                path: describe_entry(path, entry.name_bytes()),
                rule,
            })?;
            let kind = self.kind_of(entry.filemode(), entry.kind(), entry.id())?;
            if !self.ignored(&path.join(&name), kind == SnapshotEntry::Directory) {
                entries.push((name, kind));
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(entries)
    }

    /// The content of the regular file at `path`.
    pub fn read(&self, path: &RepoPath) -> Result<Vec<u8>, TreeError> {
        match self.entry(path)? {
            Some(SnapshotEntry::File { id, .. }) => {
                Ok(self.repo.find_blob(Oid::from_str(&id)?)?.content().to_vec())
            }
            _ => Err(TreeError::PathNotFound(path.as_str().to_owned())),
        }
    }

    fn kind_of(
        &self,
        mode: i32,
        kind: Option<ObjectType>,
        id: Oid,
    ) -> Result<SnapshotEntry, TreeError> {
        Ok(match (mode, kind) {
            (tree::FILE_MODE_LINK, _) => SnapshotEntry::Symlink,
            (tree::FILE_MODE_SUBMODULE, _) => SnapshotEntry::Submodule,
            (_, Some(ObjectType::Tree)) => SnapshotEntry::Directory,
            _ => {
                // The header gives the size without inflating the object.
                let (size, _) = self.repo.odb()?.read_header(id)?;
                SnapshotEntry::File {
                    id: id.to_string(),
                    size: size as u64,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bare repository with one commit per entry of `commits`, each holding those files.
    fn repository(commits: &[&[(&str, &str)]]) -> (tempfile::TempDir, Vec<Snapshot>) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let signature = git2::Signature::now("test", "test@example.invalid").unwrap();
        let mut parent: Option<Oid> = None;
        let mut snapshots = Vec::new();
        for files in commits {
            let mut index = git2::Index::new().unwrap();
            for (path, text) in *files {
                let blob = repo.blob(text.as_bytes()).unwrap();
                let mut entry = git2::IndexEntry {
                    ctime: git2::IndexTime::new(0, 0),
                    mtime: git2::IndexTime::new(0, 0),
                    dev: 0,
                    ino: 0,
                    mode: 0o100644,
                    uid: 0,
                    gid: 0,
                    file_size: text.len() as u32,
                    id: blob,
                    flags: 0,
                    flags_extended: 0,
                    path: path.as_bytes().to_vec(),
                };
                entry.flags = path.len() as u16;
                index.add(&entry).unwrap();
            }
            let tree = index.write_tree_to(&repo).unwrap();
            let parents: Vec<git2::Commit<'_>> = parent
                .iter()
                .map(|p| repo.find_commit(*p).unwrap())
                .collect();
            let parents: Vec<&git2::Commit<'_>> = parents.iter().collect();
            let tree_object = repo.find_tree(tree).unwrap();
            let commit = repo
                .commit(None, &signature, &signature, "c", &tree_object, &parents)
                .unwrap();
            parent = Some(commit);
            snapshots.push(Snapshot {
                repo_dir: dir.path().to_owned(),
                commit: commit.to_string(),
                tree: tree.to_string(),
                ignore: Vec::new(),
            });
        }
        (dir, snapshots)
    }

    #[test]
    fn a_path_changed_when_its_tree_id_differs() {
        let (_dir, snapshots) = repository(&[
            &[("apps/a/cm.yaml", "1"), ("apps/b/cm.yaml", "1")],
            &[("apps/a/cm.yaml", "2"), ("apps/b/cm.yaml", "1")],
        ]);
        let (first, second) = (&snapshots[0], &snapshots[1]);
        let changed = |path| second.path_changed_since(&first.commit, path).unwrap();
        assert_eq!(changed("apps/a"), Some(true));
        assert_eq!(changed("apps/b"), Some(false));
        assert_eq!(changed("apps/missing"), Some(false), "absent in both");
        assert_eq!(changed(""), Some(true), "the root holds the change");
        let unknown = "0123456789012345678901234567890123456789";
        assert_eq!(second.path_changed_since(unknown, "apps/a").unwrap(), None);
    }
}
