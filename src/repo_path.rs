//! A path inside a revision, and the one rule for the names it is made of.
//!
//! A commit's tree is tenant input: libgit2 reads tree objects without git's fsck, so a commit
//! made with `git hash-object --literally` (or served by a host that does not fsck) can hold
//! entries named `..`, `.`, `.git`, an empty name or one with `/` in it. Joined onto a work
//! directory, such a name leads outside it. Every name read from a tree becomes an
//! [`EntryName`] (or the revision fails naming the entry), and every path from the repository
//! root is a [`RepoPath`] of such names: only normal components, so joining one onto a
//! directory ([`RepoPath::under`]) can never leave that directory.
//!
//! Refused, as git's fsck refuses them (`fsck.c`, `path.c`): empty names, names holding `/` or
//! NUL, `.` and `..`, `.git` in any case, its NTFS aliases (`git~1`, `.git` followed by dots or
//! spaces, or by an alternate data stream `:…`, or a `\` part) and its HFS+ aliases (`.git` with
//! code points HFS+ ignores, such as U+200C, inside). Names that are not UTF-8 are refused too:
//! every path driftless shows, matches and hands to a renderer is text.

use std::{
    fmt,
    path::{Path, PathBuf},
};

/// Why a tree entry's name is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameRule {
    #[error("the name is empty")]
    Empty,
    #[error("the name contains '/'")]
    Slash,
    #[error("the name contains a NUL byte")]
    Nul,
    #[error("the name is not UTF-8")]
    NotUtf8,
    #[error("the name is '.'")]
    Dot,
    #[error("the name is '..'")]
    DotDot,
    #[error("the name is .git (in some letter case), which git itself refuses")]
    DotGit,
    #[error("the name is an NTFS alias of .git, which git's fsck refuses")]
    NtfsDotGit,
    #[error("the name is an HFS+ alias of .git, which git's fsck refuses")]
    HfsDotGit,
}

/// A tree entry whose name is refused: the whole revision is refused with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("tree entry {path:?} is refused: {rule}")]
pub struct BadEntry {
    /// The entry's path from the repository root (a name that is not UTF-8 shown lossily).
    pub path: String,
    pub rule: NameRule,
}

/// One checked component of a path: a name a tree may hold and a file system may be given.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryName(String);

impl EntryName {
    /// The name as a tree stores it (raw bytes), checked.
    pub fn from_bytes(name: &[u8]) -> Result<Self, NameRule> {
        if name.contains(&0) {
            return Err(NameRule::Nul);
        }
        let name = std::str::from_utf8(name).map_err(|_| NameRule::NotUtf8)?;
        Self::new(name)
    }

    /// `name`, checked.
    pub fn new(name: &str) -> Result<Self, NameRule> {
        check_name(name)?;
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EntryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for EntryName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for EntryName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for EntryName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// The rules of git's fsck for one tree entry name.
fn check_name(name: &str) -> Result<(), NameRule> {
    if name.is_empty() {
        return Err(NameRule::Empty);
    }
    if name.contains('\0') {
        return Err(NameRule::Nul);
    }
    if name.contains('/') {
        return Err(NameRule::Slash);
    }
    match name {
        "." => return Err(NameRule::Dot),
        ".." => return Err(NameRule::DotDot),
        _ => {}
    }
    if name.eq_ignore_ascii_case(".git") {
        return Err(NameRule::DotGit);
    }
    if is_ntfs_dot_git(name) {
        return Err(NameRule::NtfsDotGit);
    }
    if is_hfs_dot_git(name) {
        return Err(NameRule::HfsDotGit);
    }
    Ok(())
}

/// git's `is_ntfs_dotgit`: the part before the first `\` or `:` is `.git` or its 8.3 short
/// name `git~1` (any case), followed by nothing but spaces and dots, which NTFS drops.
fn is_ntfs_dot_git(name: &str) -> bool {
    let part = name.split(['\\', ':']).next().unwrap_or_default();
    let only_spaces_and_dots = |rest: &str| rest.bytes().all(|b| b == b' ' || b == b'.');
    [".git", "git~1"].iter().any(|alias| {
        part.len() >= alias.len()
            && part.is_char_boundary(alias.len())
            && part[..alias.len()].eq_ignore_ascii_case(alias)
            && only_spaces_and_dots(&part[alias.len()..])
    })
}

/// Code points HFS+ leaves out when it compares names (git's `next_hfs_char`).
const HFS_IGNORED: [char; 16] = [
    '\u{200c}', '\u{200d}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}',
    '\u{202e}', '\u{206a}', '\u{206b}', '\u{206c}', '\u{206d}', '\u{206e}', '\u{206f}', '\u{feff}',
];

/// git's `is_hfs_dotgit`: `.git` in any ASCII case once the ignored code points are left out.
fn is_hfs_dot_git(name: &str) -> bool {
    let folded: String = name.chars().filter(|c| !HFS_IGNORED.contains(c)).collect();
    folded.eq_ignore_ascii_case(".git")
}

/// Why a reference written in the repository (a kustomization entry, `spec.path`) does not
/// resolve to a path inside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escape {
    Absolute,
    LeavesRepository,
    /// A component is a name no tree entry may have.
    Name(NameRule),
}

impl fmt::Display for Escape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Escape::Absolute => f.write_str("absolute paths are not allowed"),
            Escape::LeavesRepository => f.write_str("the path leaves the repository"),
            Escape::Name(rule) => write!(f, "a component is refused: {rule}"),
        }
    }
}

impl std::error::Error for Escape {}

/// A path from the repository root made only of [`EntryName`]s, `/`-separated; the root is
/// empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoPath(String);

impl RepoPath {
    /// The repository root.
    pub fn root() -> Self {
        Self(String::new())
    }

    /// A path as a user writes it (`spec.path`, `--path` of the command line): resolved
    /// lexically from the root, so `./apps/` is `apps`; absolute, climbing or refused names are
    /// an error.
    pub fn parse(path: &str) -> Result<Self, Escape> {
        Self::root().resolve(path)
    }

    /// `reference`, written in a file of this directory, as a path from the root, purely
    /// lexically (as kustomize does before it looks at the file system). A reference that is
    /// absolute, climbs above the root or names a refused entry is refused: nothing outside
    /// the repository may be read, whatever the work directory's surroundings hold.
    pub fn resolve(&self, reference: &str) -> Result<Self, Escape> {
        if reference.starts_with('/') || reference.starts_with('\\') {
            return Err(Escape::Absolute);
        }
        let mut parts: Vec<&str> = self.components().collect();
        for part in reference.split('/') {
            match part {
                "" | "." => {}
                ".." => {
                    if parts.pop().is_none() {
                        return Err(Escape::LeavesRepository);
                    }
                }
                other => {
                    check_name(other).map_err(Escape::Name)?;
                    parts.push(other);
                }
            }
        }
        Ok(Self(parts.join("/")))
    }

    /// This directory's entry `name`.
    pub fn join(&self, name: &EntryName) -> Self {
        if self.0.is_empty() {
            Self(name.0.clone())
        } else {
            Self(format!("{}/{}", self.0, name.0))
        }
    }

    /// The directory holding this path; `None` for the root.
    pub fn parent(&self) -> Option<Self> {
        if self.0.is_empty() {
            return None;
        }
        Some(Self(
            self.0
                .rsplit_once('/')
                .map_or(String::new(), |(dir, _)| dir.to_owned()),
        ))
    }

    /// The last component; `None` for the root.
    pub fn name(&self) -> Option<&str> {
        if self.0.is_empty() {
            return None;
        }
        Some(self.0.rsplit_once('/').map_or(self.0.as_str(), |(_, n)| n))
    }

    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|part| !part.is_empty())
    }

    /// How many directories deep the path is (the root: 0).
    pub fn depth(&self) -> usize {
        self.components().count()
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether this path is `dir` or below it.
    pub fn is_within(&self, dir: &RepoPath) -> bool {
        dir.0.is_empty()
            || self.0 == dir.0
            || (self.0.starts_with(&dir.0) && self.0.as_bytes().get(dir.0.len()) == Some(&b'/'))
    }

    /// The path below `base`, one component at a time: never above or beside `base`.
    pub fn under(&self, base: &Path) -> PathBuf {
        let mut path = base.to_owned();
        for part in self.components() {
            path.push(part);
        }
        path
    }

    /// The path from the root, `/`-separated (`""` for the root).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path as users write it: `.` for the root.
    pub fn display(&self) -> &str {
        if self.0.is_empty() { "." } else { &self.0 }
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RepoPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for RepoPath {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for RepoPath {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl serde::Serialize for RepoPath {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// `dir/name` for messages about an entry whose name was refused (so not an [`EntryName`]).
pub fn describe_entry(dir: &RepoPath, raw_name: &[u8]) -> String {
    let name = String::from_utf8_lossy(raw_name);
    if dir.is_root() {
        name.into_owned()
    } else {
        format!("{dir}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(name: &str) -> NameRule {
        EntryName::new(name).expect_err(name)
    }

    #[test]
    fn plain_names_are_accepted() {
        for name in [
            "app.yaml",
            "kustomization.yaml",
            ".gitignore",
            ".github",
            ".gitx",
            "git",
            "git~2",
            "...",
            ".. x",
            "a b",
            "naïve",
            "x.git",
            "\u{200c}app",
        ] {
            assert_eq!(EntryName::new(name).map(|n| n.0), Ok(name.to_owned()));
        }
    }

    #[test]
    fn fsck_refuses_empty_slash_nul_dot_and_dot_dot() {
        assert_eq!(refused(""), NameRule::Empty);
        assert_eq!(refused("a/b"), NameRule::Slash);
        assert_eq!(refused("/"), NameRule::Slash);
        assert_eq!(refused("a\0b"), NameRule::Nul);
        assert_eq!(EntryName::from_bytes(b"a\0b"), Err(NameRule::Nul));
        assert_eq!(refused("."), NameRule::Dot);
        assert_eq!(refused(".."), NameRule::DotDot);
    }

    #[test]
    fn dot_git_is_refused_in_every_case() {
        for name in [".git", ".GIT", ".Git", ".gIT"] {
            assert_eq!(refused(name), NameRule::DotGit, "{name}");
        }
    }

    #[test]
    fn ntfs_aliases_of_dot_git_are_refused() {
        for name in [
            "git~1",
            "GIT~1",
            ".git.",
            ".git ",
            ".git . .",
            "git~1 .",
            ".git::$INDEX_ALLOCATION",
            ".GIT:stream",
            ".git\\config",
            ".git. \\hooks",
        ] {
            assert_eq!(refused(name), NameRule::NtfsDotGit, "{name:?}");
        }
        for name in [".gitx", ".git.x", "git~10", "x\\.git", "git~1x"] {
            assert!(EntryName::new(name).is_ok(), "{name:?}");
        }
    }

    #[test]
    fn hfs_aliases_of_dot_git_are_refused() {
        for name in [
            ".g\u{200c}it",
            "\u{feff}.git",
            ".git\u{200d}",
            ".\u{206a}G\u{202e}I\u{200f}T",
        ] {
            assert_eq!(refused(name), NameRule::HfsDotGit, "{name:?}");
        }
        assert!(
            EntryName::new(".g\u{2000}it").is_ok(),
            "not an ignored code point"
        );
    }

    #[test]
    fn names_that_are_not_utf8_are_refused() {
        assert_eq!(
            EntryName::from_bytes(b"caf\xe9.yaml"),
            Err(NameRule::NotUtf8)
        );
        assert_eq!(
            EntryName::from_bytes("café.yaml".as_bytes()).map(|n| n.0),
            Ok("café.yaml".into())
        );
    }

    #[test]
    fn references_resolve_lexically_inside_the_repository() {
        let prod = RepoPath::parse("apps/prod").unwrap();
        assert_eq!(prod.resolve("../base").unwrap().as_str(), "apps/base");
        assert_eq!(
            prod.resolve("./a//b/./c.yaml").unwrap().as_str(),
            "apps/prod/a/b/c.yaml"
        );
        assert_eq!(RepoPath::parse("apps/..").unwrap(), RepoPath::root());
        assert_eq!(RepoPath::parse("./deploy/").unwrap().as_str(), "deploy");
        assert_eq!(prod.resolve("../../.."), Err(Escape::LeavesRepository));
        assert_eq!(
            prod.resolve("b/../../../../etc/passwd"),
            Err(Escape::LeavesRepository)
        );
        assert_eq!(prod.resolve("/etc/passwd"), Err(Escape::Absolute));
        assert_eq!(prod.resolve("\\etc"), Err(Escape::Absolute));
        assert_eq!(
            prod.resolve("x/.git/config"),
            Err(Escape::Name(NameRule::DotGit))
        );
        assert_eq!(
            RepoPath::parse("git~1/hooks"),
            Err(Escape::Name(NameRule::NtfsDotGit))
        );
    }

    #[test]
    fn a_path_joined_under_a_directory_stays_below_it() {
        let base = Path::new("/work/repo");
        let path = RepoPath::root()
            .join(&EntryName::new("a").unwrap())
            .join(&EntryName::new("b.yaml").unwrap());
        assert_eq!(path.as_str(), "a/b.yaml");
        assert_eq!(path.under(base), Path::new("/work/repo/a/b.yaml"));
        assert_eq!(RepoPath::root().under(base), base);
        assert!(
            path.under(base)
                .components()
                .all(|c| !matches!(c, std::path::Component::ParentDir))
        );
    }

    #[test]
    fn within_means_the_directory_or_below() {
        let path = |p: &str| RepoPath::parse(p).unwrap();
        assert!(path("a/b").is_within(&path("a")) && path("a").is_within(&path("a")));
        assert!(path("x").is_within(&RepoPath::root()));
        assert!(!path("ab").is_within(&path("a")) && !path("a").is_within(&path("a/b")));
    }

    #[test]
    fn parents_names_and_depth() {
        let path = RepoPath::parse("a/b/c").unwrap();
        assert_eq!(path.parent().unwrap().as_str(), "a/b");
        assert_eq!(path.name(), Some("c"));
        assert_eq!(path.depth(), 3);
        assert_eq!(
            RepoPath::parse("a").unwrap().parent(),
            Some(RepoPath::root())
        );
        assert_eq!(RepoPath::root().parent(), None);
        assert_eq!(RepoPath::root().display(), ".");
    }

    #[test]
    fn refused_entries_are_named_with_their_directory() {
        let dir = RepoPath::parse("apps").unwrap();
        let error = BadEntry {
            path: describe_entry(&dir, b".."),
            rule: NameRule::DotDot,
        };
        assert_eq!(
            error.to_string(),
            "tree entry \"apps/..\" is refused: the name is '..'"
        );
    }
}
