//! What a renderer may see of a commit: a read-only view of its tree, by paths from the
//! repository root. The render module knows nothing of git; the controller hands it a view
//! backed by the source engine's cache.

use super::RenderError;
pub use crate::repo_path::{EntryName, Escape, RepoPath};

/// One entry of a commit's tree. Symlinks and submodules are listed so that a reference to one
/// can be refused by name; their targets are never read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Directory,
    /// A regular file (executable or not): its content address and its size in bytes.
    File {
        id: String,
        size: u64,
    },
    Symlink,
    Submodule,
}

/// A commit's tree as a renderer reads it, by [`RepoPath`]s from the repository root (the
/// root is [`RepoPath::root`]); names are [`EntryName`]s, checked where the tree was read.
/// Files matched by the repository's ignore rules are absent, as if they were not committed.
pub trait RepositoryTree {
    /// The content address of the tree as this view shows it, ignore rules applied: equal ids
    /// mean equal visible files. The render cache keys on it, so a view that hides files must
    /// not share an id with one that shows them (the raw git tree id is not enough).
    fn root_id(&self) -> String;

    /// The entry at `path`, or `None` when nothing is there.
    fn entry(&self, path: &RepoPath) -> Result<Option<Entry>, RenderError>;

    /// The direct children of directory `path`, by name, sorted by name.
    fn list(&self, path: &RepoPath) -> Result<Vec<(EntryName, Entry)>, RenderError>;

    /// The content of the regular file at `path`.
    fn read(&self, path: &RepoPath) -> Result<Vec<u8>, RenderError>;
}

/// Opens a [`RepositoryTree`] on the thread that calls it. Views backed by libgit2 are not
/// `Sync`, so each blocking render step opens its own.
pub trait TreeSource: Send + Sync {
    fn open(&self) -> Result<Box<dyn RepositoryTree + '_>, RenderError>;
}

/// Every file (and refused entry) under `dir`, depth first in name order, with paths from the
/// root. Iterative: the repository decides how deep its directories go, so the walk keeps its
/// own stack rather than the thread's.
pub fn walk(
    tree: &dyn RepositoryTree,
    dir: &RepoPath,
    visit: &mut dyn FnMut(&RepoPath, &Entry) -> Result<(), RenderError>,
) -> Result<(), RenderError> {
    let mut pending = vec![(dir.clone(), tree.list(dir)?.into_iter())];
    while let Some((dir, entries)) = pending.last_mut() {
        let Some((name, entry)) = entries.next() else {
            pending.pop();
            continue;
        };
        let path = dir.join(&name);
        if entry == Entry::Directory {
            let children = tree.list(&path)?.into_iter();
            pending.push((path, children));
        } else {
            visit(&path, &entry)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A tree of directories only, `depth` deep, with one file at the bottom.
    struct Chain {
        depth: usize,
    }

    impl RepositoryTree for Chain {
        fn root_id(&self) -> String {
            "chain".into()
        }

        fn entry(&self, _: &RepoPath) -> Result<Option<Entry>, RenderError> {
            Ok(Some(Entry::Directory))
        }

        fn list(&self, path: &RepoPath) -> Result<Vec<(EntryName, Entry)>, RenderError> {
            let name = |n: &str| EntryName::new(n).unwrap();
            Ok(if path.depth() < self.depth {
                vec![(name("d"), Entry::Directory)]
            } else {
                vec![(
                    name("f.yaml"),
                    Entry::File {
                        id: "1".into(),
                        size: 1,
                    },
                )]
            })
        }

        fn read(&self, _: &RepoPath) -> Result<Vec<u8>, RenderError> {
            Ok(Vec::new())
        }
    }

    #[test]
    fn a_walk_through_a_deep_tree_keeps_its_own_stack() {
        // On a 64 KiB stack, 5,000 levels would overflow if each took a frame.
        let found = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(|| {
                let tree = Chain { depth: 5_000 };
                let mut found = BTreeMap::new();
                walk(&tree, &RepoPath::root(), &mut |path, entry| {
                    found.insert(path.depth(), entry.clone());
                    Ok(())
                })
                .unwrap();
                found
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found.keys().next(), Some(&5_001));
    }
}
