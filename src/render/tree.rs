//! What a renderer may see of a commit: a read-only view of its tree, by paths from the
//! repository root. The render module knows nothing of git; the controller hands it a view
//! backed by the source engine's cache.

use super::RenderError;

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

/// A commit's tree as a renderer reads it. Paths are `/`-separated, relative to the repository
/// root, without `.` or `..` components; the root is `""`. Files matched by the repository's
/// ignore rules are absent, as if they were not committed.
pub trait RepositoryTree {
    /// The content address of the tree as this view shows it, ignore rules applied: equal ids
    /// mean equal visible files. The render cache keys on it, so a view that hides files must
    /// not share an id with one that shows them (the raw git tree id is not enough).
    fn root_id(&self) -> String;

    /// The entry at `path`, or `None` when nothing is there.
    fn entry(&self, path: &str) -> Result<Option<Entry>, RenderError>;

    /// The direct children of directory `path`, by name, sorted by name.
    fn list(&self, path: &str) -> Result<Vec<(String, Entry)>, RenderError>;

    /// The content of the regular file at `path`.
    fn read(&self, path: &str) -> Result<Vec<u8>, RenderError>;
}

/// Opens a [`RepositoryTree`] on the thread that calls it. Views backed by libgit2 are not
/// `Sync`, so each blocking render step opens its own.
pub trait TreeSource: Send + Sync {
    fn open(&self) -> Result<Box<dyn RepositoryTree + '_>, RenderError>;
}

/// Every file (and refused entry) under `dir`, depth first, with paths from the root.
pub fn walk(
    tree: &dyn RepositoryTree,
    dir: &str,
    visit: &mut dyn FnMut(&str, &Entry) -> Result<(), RenderError>,
) -> Result<(), RenderError> {
    for (name, entry) in tree.list(dir)? {
        let path = join(dir, &name);
        if entry == Entry::Directory {
            walk(tree, &path, visit)?;
        } else {
            visit(&path, &entry)?;
        }
    }
    Ok(())
}

/// `dir/name`, or `name` at the root.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}

/// The directory holding `path` (`""` for a file at the root).
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// Why a relative reference cannot be resolved inside the repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    Absolute,
    LeavesRepository,
}

/// Resolves `reference`, written in a file of directory `dir`, to a path from the repository
/// root, purely lexically (as kustomize does before it looks at the file system). A reference
/// that is absolute or climbs above the root is refused: nothing outside the repository may be
/// read, whatever the work directory's surroundings hold.
pub fn resolve(dir: &str, reference: &str) -> Result<String, Escape> {
    if reference.starts_with('/') || reference.starts_with('\\') {
        return Err(Escape::Absolute);
    }
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in reference.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(Escape::LeavesRepository);
                }
            }
            other => parts.push(other),
        }
    }
    Ok(parts.join("/"))
}

/// Whether `path` is `dir` or below it.
pub fn is_within(path: &str, dir: &str) -> bool {
    dir.is_empty() || path == dir || path.starts_with(&format!("{dir}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_lexically_inside_the_repository() {
        assert_eq!(resolve("apps/prod", "../base"), Ok("apps/base".into()));
        assert_eq!(
            resolve("apps/prod", "./a//b/./c.yaml"),
            Ok("apps/prod/a/b/c.yaml".into())
        );
        assert_eq!(resolve("apps", ".."), Ok(String::new()));
        assert_eq!(resolve("", "x"), Ok("x".into()));
        assert_eq!(resolve("apps", "../.."), Err(Escape::LeavesRepository));
        assert_eq!(
            resolve("a", "b/../../../etc/passwd"),
            Err(Escape::LeavesRepository)
        );
        assert_eq!(resolve("a", "/etc/passwd"), Err(Escape::Absolute));
    }

    #[test]
    fn within_means_the_directory_or_below() {
        assert!(is_within("a/b", "a") && is_within("a", "a") && is_within("x", ""));
        assert!(!is_within("ab", "a") && !is_within("a", "a/b"));
    }
}
