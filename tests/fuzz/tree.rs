//! An in-memory commit tree for the render harnesses, written as text so that mutations of a
//! corpus entry give new trees: each file starts with a line `#> path` (or `#> path -> symlink`,
//! `#> path -> submodule`), followed by its content.

use std::collections::BTreeMap;

use driftless::render::{Entry, EntryName, RenderError, RepoPath, RepositoryTree};
use sha2::{Digest, Sha256};

#[derive(Clone, Debug)]
enum Node {
    File(Vec<u8>),
    Symlink,
    Submodule,
}

#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    nodes: BTreeMap<String, Node>,
}

/// Paths as a commit can hold them once the source engine has read them: `/`-separated
/// components, each a name the source engine accepts.
fn normal(path: &str) -> bool {
    !path.is_empty() && path.split('/').all(|c| EntryName::new(c).is_ok())
}

impl MemoryTree {
    pub fn parse(text: &[u8]) -> MemoryTree {
        let mut tree = MemoryTree::default();
        let mut current: Option<(String, Node)> = None;
        let finish = |tree: &mut MemoryTree, current: Option<(String, Node)>| {
            if let Some((path, node)) = current {
                tree.insert(&path, node);
            }
        };
        for line in text.split_inclusive(|b| *b == b'\n') {
            if let Some(header) = line.strip_prefix(b"#> ") {
                finish(&mut tree, current.take());
                let header = String::from_utf8_lossy(header);
                let header = header.trim_end_matches(['\n', '\r']);
                current = Some(match header.split_once(" -> ") {
                    Some((path, "symlink")) => (path.to_owned(), Node::Symlink),
                    Some((path, "submodule")) => (path.to_owned(), Node::Submodule),
                    _ => (header.to_owned(), Node::File(Vec::new())),
                });
            } else if let Some((_, Node::File(content))) = &mut current {
                content.extend_from_slice(line);
            }
        }
        finish(&mut tree, current);
        tree
    }

    /// Adds a node unless its path is not normal or a file is already where a directory of it
    /// would be (a commit cannot hold both).
    fn insert(&mut self, path: &str, node: Node) {
        if !normal(path) || self.is_dir(path) {
            return;
        }
        let mut prefix = String::new();
        for component in path.split('/') {
            if !prefix.is_empty() {
                if self.nodes.contains_key(&prefix) {
                    return;
                }
                prefix.push('/');
            }
            prefix.push_str(component);
        }
        self.nodes.insert(path.to_owned(), node);
    }

    fn is_dir(&self, path: &str) -> bool {
        if path.is_empty() {
            return true;
        }
        let prefix = format!("{path}/");
        self.nodes
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(key, _)| key.starts_with(&prefix))
    }

    pub fn file(&self, path: &str) -> Option<&[u8]> {
        match self.nodes.get(path) {
            Some(Node::File(content)) => Some(content),
            _ => None,
        }
    }

    /// Every directory of the tree, the root (`""`) first.
    pub fn directories(&self) -> Vec<String> {
        let mut dirs = std::collections::BTreeSet::from([String::new()]);
        for path in self.nodes.keys() {
            let mut end = 0;
            while let Some(slash) = path[end..].find('/') {
                end += slash;
                dirs.insert(path[..end].to_owned());
                end += 1;
            }
        }
        dirs.into_iter().collect()
    }

    pub fn id_of(content: &[u8]) -> String {
        format!("{:x}", Sha256::digest(content))
    }
}

impl RepositoryTree for MemoryTree {
    fn root_id(&self) -> String {
        let mut hasher = Sha256::new();
        for (path, node) in &self.nodes {
            hasher.update(path.as_bytes());
            match node {
                Node::File(content) => hasher.update(Sha256::digest(content)),
                Node::Symlink => hasher.update(b"\0symlink"),
                Node::Submodule => hasher.update(b"\0submodule"),
            }
        }
        format!("{:x}", hasher.finalize())
    }

    fn entry(&self, path: &RepoPath) -> Result<Option<Entry>, RenderError> {
        Ok(self.entry_at(path.as_str()))
    }

    fn list(&self, path: &RepoPath) -> Result<Vec<(EntryName, Entry)>, RenderError> {
        let path = path.as_str();
        if !self.is_dir(path) {
            return Err(RenderError::Tree(format!("{path} is not a directory")));
        }
        let prefix = if path.is_empty() {
            String::new()
        } else {
            format!("{path}/")
        };
        let mut names = std::collections::BTreeSet::new();
        for key in self.nodes.range(prefix.clone()..).map(|(key, _)| key) {
            let Some(rest) = key.strip_prefix(&prefix) else {
                break;
            };
            names.insert(rest.split('/').next().expect("a component").to_owned());
        }
        names
            .into_iter()
            .map(|name| {
                let entry = self
                    .entry_at(&format!("{prefix}{name}"))
                    .expect("listed children exist");
                let name = EntryName::new(&name).expect("stored paths have accepted names");
                Ok((name, entry))
            })
            .collect()
    }

    fn read(&self, path: &RepoPath) -> Result<Vec<u8>, RenderError> {
        self.file(path.as_str())
            .map(<[u8]>::to_vec)
            .ok_or_else(|| RenderError::Tree(format!("{path} is not a file")))
    }
}

impl MemoryTree {
    fn entry_at(&self, path: &str) -> Option<Entry> {
        match self.nodes.get(path) {
            Some(Node::File(content)) => Some(Entry::File {
                id: Self::id_of(content),
                size: content.len() as u64,
            }),
            Some(Node::Symlink) => Some(Entry::Symlink),
            Some(Node::Submodule) => Some(Entry::Submodule),
            None if self.is_dir(path) => Some(Entry::Directory),
            None => None,
        }
    }
}
