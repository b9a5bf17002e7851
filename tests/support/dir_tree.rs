//! A directory of the test's file system standing in for a commit's tree, so renderer tests
//! need no git repository.

use std::path::{Path, PathBuf};

use driftless::render::{Entry, EntryName, RenderError, RepoPath, RepositoryTree, TreeSource};
use sha2::{Digest, Sha256};

pub struct DirTree {
    pub root: PathBuf,
}

impl TreeSource for DirTree {
    fn open(&self) -> Result<Box<dyn RepositoryTree + '_>, RenderError> {
        Ok(Box::new(OpenDirTree {
            root: self.root.clone(),
            id: content_id(&self.root),
        }))
    }
}

struct OpenDirTree {
    root: PathBuf,
    id: String,
}
/// A digest of every path and file under `dir`, standing in for git's tree id.
fn content_id(dir: &Path) -> String {
    let mut hasher = Sha256::new();
    let mut files = Vec::new();
    collect_files(dir, &mut files);
    for file in files {
        hasher.update(file.to_string_lossy().as_bytes());
        if let Ok(bytes) = std::fs::read(&file) {
            hasher.update(&bytes);
        }
    }
    format!("{:x}", hasher.finalize())
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() && !path.is_symlink() {
            collect_files(&path, files);
        } else {
            files.push(path);
        }
    }
}

impl OpenDirTree {
    fn kind(path: &Path) -> Option<Entry> {
        let metadata = std::fs::symlink_metadata(path).ok()?;
        Some(if metadata.is_symlink() {
            Entry::Symlink
        } else if metadata.is_dir() {
            Entry::Directory
        } else {
            let bytes = std::fs::read(path).ok()?;
            Entry::File {
                id: format!("{:x}", Sha256::digest(&bytes)),
                size: metadata.len(),
            }
        })
    }
}

impl RepositoryTree for OpenDirTree {
    fn root_id(&self) -> String {
        self.id.clone()
    }

    fn entry(&self, path: &RepoPath) -> Result<Option<Entry>, RenderError> {
        Ok(Self::kind(&path.under(&self.root)))
    }

    fn list(&self, path: &RepoPath) -> Result<Vec<(EntryName, Entry)>, RenderError> {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(path.under(&self.root))
            .map_err(|e| RenderError::Tree(e.to_string()))?
        {
            let entry = entry.map_err(|e| RenderError::Tree(e.to_string()))?;
            let raw = entry.file_name();
            let name =
                EntryName::from_bytes(std::os::unix::ffi::OsStrExt::as_bytes(raw.as_os_str()))
                    .map_err(|rule| {
                        RenderError::Tree(format!("{}: {rule}", raw.to_string_lossy()))
                    })?;
            if let Some(kind) = Self::kind(&entry.path()) {
                entries.push((name, kind));
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(entries)
    }

    fn read(&self, path: &RepoPath) -> Result<Vec<u8>, RenderError> {
        std::fs::read(path.under(&self.root)).map_err(|e| RenderError::Tree(e.to_string()))
    }
}
