//! Reading and validating the YAML and JSON manifests of a revision.
//!
//! The source engine hands over the files of a revision (already filtered to `*.yaml`,
//! `*.yml` and `*.json`, sorted, ignore rules applied); this module turns them into
//! [`Manifest`]s or reports every problem at once. It takes plain `(path, bytes)` pairs and
//! knows nothing of git, so that the controller composes both and dependencies point one way.
//!
//! Rules:
//! - A YAML file is a stream of documents separated by `---`. Empty documents, documents
//!   holding only comments, and `null` documents are skipped, but still counted, so that
//!   "document 3" in an error matches what a user counts in the file.
//! - A `.json` file is parsed as JSON (a value, or several concatenated values as `kubectl`
//!   accepts), even though YAML would accept it too: JSON errors then speak JSON.
//! - A `List` document (`kind: List`, or any `*List` kind with an `items` array) stands for
//!   its items; each item keeps the file, document and line of the list plus its index.
//! - kustomize input is not applied: a file named `kustomization.yaml`,
//!   `kustomization.yml` or `Kustomization` is skipped whole, and so is any document of
//!   kind `Kustomization` in `kustomize.config.k8s.io`. Building overlays comes later.
//! - Every object needs `apiVersion`, `kind` and `metadata.name` as non-empty strings, and
//!   its `metadata` must have the shape Kubernetes defines.
//! - An object (group, kind, namespace as written, name) defined twice is an error naming
//!   both places: applying both would make the result depend on file order. An object
//!   without a namespace and one with the namespace it will default to cannot be told apart
//!   here; the apply engine sees that.
//! - Parsing runs within a [`Budget`] (file size, alias expansion, nesting depth, node and
//!   document counts), so a hostile commit is refused instead of exhausting memory.
//! - The files of one revision together stay within the revision's budget (nodes and text,
//!   aliases expanded); the file in which it runs out gets the error, and later files are not
//!   read.
//! - A file with a syntax error or over budget contributes one error and no objects.
//!
//! Errors name the file, the document and the line (`deploy/app.yaml: document 2 (line 17):
//! missing metadata.name`). Objects come out in file order, then document order.

mod budget;
mod cache;
mod error;
mod object;
mod parse;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::collections::hash_map::Entry;

pub use budget::Budget;
use budget::RevisionUsage;
pub use cache::ParsedCache;
use cache::ParsedFile;
pub use error::{Duplicate, ManifestError, ManifestErrors, Position, Problem};
pub use object::{Manifest, ObjectId};

/// Reads every manifest of a revision, or returns every problem found in any of them.
///
/// `files` are `(path, contents)` pairs in the order objects should come out.
pub fn read_manifests<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    budget: &Budget,
) -> Result<Vec<Manifest>, ManifestErrors> {
    let sources = files.into_iter().map(|(file, bytes)| ManifestSource {
        file,
        bytes,
        blob: None,
    });
    read_manifests_cached(sources, budget, None).map(|read| read.manifests)
}

/// One file to read: its path, its bytes, and a content address of those bytes when the
/// caller has one (the git blob id of committed bytes, a digest of rendered ones): the key of
/// the parse cache.
#[derive(Clone, Copy, Debug)]
pub struct ManifestSource<'a> {
    pub file: &'a str,
    pub bytes: &'a [u8],
    pub blob: Option<&'a str>,
}

/// The objects of a revision, and how many files were parsed or taken from the cache.
#[derive(Debug)]
pub struct ReadManifests {
    pub manifests: Vec<Manifest>,
    pub parsed_files: u64,
    pub cached_files: u64,
}

/// [`read_manifests`], taking the objects of files with a blob id from `cache` when it holds
/// them, and keeping those it parses without a problem there.
pub fn read_manifests_cached<'a>(
    files: impl IntoIterator<Item = ManifestSource<'a>>,
    budget: &Budget,
    cache: Option<&ParsedCache>,
) -> Result<ReadManifests, ManifestErrors> {
    let mut manifests = Vec::new();
    let mut errors = Vec::new();
    let mut usage = RevisionUsage::default();
    let (mut parsed_files, mut cached_files) = (0, 0);
    for ManifestSource { file, bytes, blob } in files {
        if is_kustomization_file(file) {
            tracing::debug!(file, "skipping a kustomization file");
            continue;
        }
        let cached = cache
            .zip(blob)
            .and_then(|(cache, blob)| cache.get(blob, file));
        if let Some(cached) = cached {
            usage.add_usage(cached.usage);
            if usage.over(budget) {
                let message = RevisionUsage::exhausted(budget, None);
                errors.push(ManifestError::in_file(
                    file,
                    Problem::RevisionLimit(message),
                ));
                break;
            }
            cached_files += 1;
            manifests.extend(cached.manifests.iter().cloned());
            continue;
        }
        parsed_files += 1;
        let allowance = usage.allowance(budget);
        match parse::parse_file(file, bytes, &allowance) {
            Ok(documents) => {
                let mut file_usage = RevisionUsage::default();
                documents.iter().for_each(|d| file_usage.add(&d.value));
                usage.add_usage(file_usage);
                if usage.over(budget) {
                    let message = RevisionUsage::exhausted(budget, None);
                    errors.push(ManifestError::in_file(
                        file,
                        Problem::RevisionLimit(message),
                    ));
                    // Every later file would fail the same way: one error says it all.
                    break;
                }
                let (first_object, errors_before) = (manifests.len(), errors.len());
                for document in documents {
                    object::collect_document(file, document, &mut manifests, &mut errors);
                }
                if let (Some(cache), Some(blob)) = (cache, blob)
                    && errors.len() == errors_before
                {
                    let parsed = ParsedFile {
                        manifests: manifests[first_object..].to_vec(),
                        usage: file_usage,
                    };
                    cache.insert(blob, file, bytes.len(), parsed);
                }
            }
            Err(error)
                if RevisionUsage::lowers(&allowance, budget) && error.is_resource_limit() =>
            {
                errors.push(error.into_revision_limit(budget));
                break;
            }
            Err(error) => errors.push(error),
        }
    }
    errors.extend(duplicates(&manifests));
    if errors.is_empty() {
        Ok(ReadManifests {
            manifests,
            parsed_files,
            cached_files,
        })
    } else {
        Err(ManifestErrors(errors))
    }
}

/// The names kustomize looks for in a directory.
fn is_kustomization_file(file: &str) -> bool {
    let name = file.rsplit('/').next().unwrap_or(file);
    matches!(
        name,
        "kustomization.yaml" | "kustomization.yml" | "Kustomization"
    )
}

/// One error per repeated object, at the repetition, naming the first definition.
fn duplicates(manifests: &[Manifest]) -> Vec<ManifestError> {
    let mut first_seen = HashMap::new();
    let mut errors = Vec::new();
    for manifest in manifests {
        match first_seen.entry(manifest.id.identity()) {
            Entry::Vacant(entry) => {
                entry.insert(manifest);
            }
            Entry::Occupied(entry) => {
                let first = *entry.get();
                let problem = Problem::Duplicate(Box::new(Duplicate {
                    id: manifest.id.clone(),
                    first_file: first.file.clone(),
                    first: first.position,
                }));
                errors.push(ManifestError::at(
                    &manifest.file,
                    manifest.position,
                    problem,
                ));
            }
        }
    }
    errors
}
