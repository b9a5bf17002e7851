//! The objects of files already read, by git blob id, so that a push changing one file of a
//! repository parses that file and not the others.
//!
//! Why sharing is safe across GitRepositories and tenants: the key is the blob id, which git
//! computes from the bytes themselves (libgit2 hashes with collision detection), or for bytes
//! that are no committed blob (a renderer's output, a file after `postBuild` substitution)
//! their SHA-256, in a `sha256:` namespace of its own; and the file's path, which the objects
//! name as their origin. What is cached is a pure function of those
//! two: nothing a tenant's settings change (variables, common metadata, namespaces, owner
//! labels) is applied before caching; each reader gets its own copy to change. So one tenant
//! can only ever be served the objects of bytes it holds itself.
//!
//! Bounded by the size of the files cached (their YAML bytes, not the parsed objects, which
//! take a few times more); the least recently used files go first.

use std::{collections::HashMap, sync::Arc, sync::Mutex};

use super::{Manifest, budget::RevisionUsage};
use crate::sync::lock;

/// Default bound: the YAML bytes of the files whose objects are kept.
pub const DEFAULT_MAX_BYTES: usize = 8 * 1024 * 1024;

/// Parsed files by blob id and path, shared by every reconcile of the process.
pub struct ParsedCache {
    max_bytes: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    entries: HashMap<(String, String), Entry>,
    bytes: usize,
    clock: u64,
}

struct Entry {
    parsed: Arc<ParsedFile>,
    size: usize,
    last_used: u64,
}

/// The objects of one file that read without a problem, and the budget they used.
pub(super) struct ParsedFile {
    pub(super) manifests: Vec<Manifest>,
    pub(super) usage: RevisionUsage,
}

impl Default for ParsedCache {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BYTES)
    }
}

impl ParsedCache {
    /// A cache keeping the objects of at most `max_bytes` of files (0: keeps nothing).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            state: Mutex::default(),
        }
    }

    /// How many files and how many of their bytes the cache holds.
    pub fn len_and_bytes(&self) -> (usize, usize) {
        let state = lock(&self.state);
        (state.entries.len(), state.bytes)
    }

    pub(super) fn get(&self, blob: &str, file: &str) -> Option<Arc<ParsedFile>> {
        let mut state = lock(&self.state);
        state.clock += 1;
        let now = state.clock;
        let entry = state.entries.get_mut(&(blob.to_owned(), file.to_owned()))?;
        entry.last_used = now;
        Some(entry.parsed.clone())
    }

    pub(super) fn insert(&self, blob: &str, file: &str, size: usize, parsed: ParsedFile) {
        if size > self.max_bytes {
            return;
        }
        let mut state = lock(&self.state);
        state.clock += 1;
        let now = state.clock;
        let key = (blob.to_owned(), file.to_owned());
        if let Some(old) = state.entries.remove(&key) {
            state.bytes -= old.size;
        }
        while state.bytes + size > self.max_bytes {
            let Some(oldest) = state
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            if let Some(evicted) = state.entries.remove(&oldest) {
                state.bytes -= evicted.size;
            }
        }
        state.bytes += size;
        state.entries.insert(
            key,
            Entry {
                parsed: Arc::new(parsed),
                size,
                last_used: now,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests::{Budget, ManifestSource, read_manifests_cached};

    const CONFIGMAP: &str =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  k: v\n";
    const OTHER: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n";

    fn read(cache: &ParsedCache, files: &[(&str, &str, &str)]) -> (Vec<String>, u64, u64) {
        let sources = files.iter().map(|(file, text, blob)| ManifestSource {
            file,
            bytes: text.as_bytes(),
            blob: Some(blob),
        });
        let read = read_manifests_cached(sources, &Budget::default(), Some(cache)).unwrap();
        let names = read
            .manifests
            .iter()
            .map(|m| format!("{} {}", m.file, m.id))
            .collect();
        (names, read.parsed_files, read.cached_files)
    }

    #[test]
    fn a_file_already_read_is_not_parsed_again() {
        let cache = ParsedCache::default();
        let files = [("a.yaml", CONFIGMAP, "blob-a"), ("b.yaml", OTHER, "blob-b")];
        let (first, parsed, cached) = read(&cache, &files);
        assert_eq!((parsed, cached), (2, 0));
        let (again, parsed, cached) = read(&cache, &files);
        assert_eq!((parsed, cached), (0, 2));
        assert_eq!(again, first, "the same objects, in the same order");
    }

    #[test]
    fn only_the_changed_blob_is_parsed() {
        let cache = ParsedCache::default();
        read(
            &cache,
            &[("a.yaml", CONFIGMAP, "blob-a"), ("b.yaml", OTHER, "blob-b")],
        );
        let changed = OTHER.replace("name: b", "name: c");
        let files = [
            ("a.yaml", CONFIGMAP, "blob-a"),
            ("b.yaml", &changed, "blob-c"),
        ];
        let (names, parsed, cached) = read(&cache, &files);
        assert_eq!((parsed, cached), (1, 1));
        assert_eq!(names[1], "b.yaml ConfigMap c");
    }

    #[test]
    fn the_same_blob_at_another_path_names_its_own_file() {
        let cache = ParsedCache::default();
        read(&cache, &[("a.yaml", CONFIGMAP, "blob-a")]);
        let (names, parsed, _) = read(&cache, &[("elsewhere/a.yaml", CONFIGMAP, "blob-a")]);
        assert_eq!(parsed, 1);
        assert_eq!(names, ["elsewhere/a.yaml ConfigMap a"]);
    }

    #[test]
    fn files_with_problems_are_not_kept() {
        let cache = ParsedCache::default();
        let broken = "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n";
        let sources = [ManifestSource {
            file: "broken.yaml",
            bytes: broken.as_bytes(),
            blob: Some("blob-x"),
        }];
        assert!(read_manifests_cached(sources, &Budget::default(), Some(&cache)).is_err());
        assert_eq!(cache.len_and_bytes(), (0, 0));
    }

    #[test]
    fn the_least_recently_used_files_go_first_past_the_bound() {
        let cache = ParsedCache::new(CONFIGMAP.len() * 2);
        read(&cache, &[("1.yaml", CONFIGMAP, "b1")]);
        read(&cache, &[("2.yaml", CONFIGMAP, "b2")]);
        read(&cache, &[("1.yaml", CONFIGMAP, "b1")]);
        read(&cache, &[("3.yaml", CONFIGMAP, "b3")]);
        assert_eq!(cache.len_and_bytes(), (2, CONFIGMAP.len() * 2));
        let (_, parsed, cached) = read(&cache, &[("1.yaml", CONFIGMAP, "b1")]);
        assert_eq!((parsed, cached), (0, 1), "used last, kept");
        let (_, parsed, _) = read(&cache, &[("2.yaml", CONFIGMAP, "b2")]);
        assert_eq!(parsed, 1, "the least recently used went");
    }
}
