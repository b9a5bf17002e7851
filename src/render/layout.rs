//! The directory rule: which parts of `spec.path` are kustomize units and which are plain
//! manifests.
//!
//! - A directory holding `kustomization.yaml`, `kustomization.yml` or `Kustomization` is one
//!   unit, rendered by `kustomize build`; nothing in it is read as a plain manifest.
//! - When `spec.path` itself is such a directory, it is the only unit.
//! - Otherwise, as Flux's generated kustomization does: every manifest file under the path is
//!   plain, except below a subdirectory that holds a kustomization file; that subdirectory is a
//!   unit and is not descended into.

use super::{
    RenderError,
    kustomization::kustomization_file,
    tree::{Entry, RepoPath, RepositoryTree},
};

/// The units under a path, sorted, none inside another.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    pub units: Vec<RepoPath>,
}

impl Layout {
    /// The unit that renders `file`, if any: such a file is not a plain manifest.
    pub fn unit_of(&self, file: &RepoPath) -> Option<&RepoPath> {
        self.units.iter().find(|unit| file.is_within(unit))
    }
}

/// Finds the units under `path` (a directory of the commit, the root for the whole
/// repository); more than `max_units` is refused (each unit is one renderer process).
/// Iterative: the repository decides how deep its directories go.
pub fn layout(
    tree: &dyn RepositoryTree,
    path: &RepoPath,
    max_units: usize,
) -> Result<Layout, RenderError> {
    let mut units = Vec::new();
    let mut pending = vec![path.clone()];
    while let Some(dir) = pending.pop() {
        if kustomization_file(tree, &dir)?.is_some() {
            units.push(dir);
            if units.len() > max_units {
                return Err(RenderError::TooManyKustomizations {
                    unit: path.display().to_owned(),
                    limit: max_units,
                });
            }
            continue;
        }
        for (name, entry) in tree.list(&dir)?.into_iter().rev() {
            if entry == Entry::Directory {
                pending.push(dir.join(&name));
            }
        }
    }
    units.sort();
    Ok(Layout { units })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::tree::EntryName;

    /// `width` directories under the root, each a kustomize unit.
    struct Units {
        width: usize,
    }

    impl RepositoryTree for Units {
        fn root_id(&self) -> String {
            "units".into()
        }

        fn entry(&self, path: &RepoPath) -> Result<Option<Entry>, RenderError> {
            Ok(match (path.depth(), path.name()) {
                (0, _) => Some(Entry::Directory),
                (1, Some(name)) if name.starts_with('u') => Some(Entry::Directory),
                (2, Some("kustomization.yaml")) => Some(Entry::File {
                    id: "k".into(),
                    size: 1,
                }),
                _ => None,
            })
        }

        fn list(&self, path: &RepoPath) -> Result<Vec<(EntryName, Entry)>, RenderError> {
            assert!(path.is_root(), "a unit is not descended into");
            Ok((0..self.width)
                .map(|i| {
                    (
                        EntryName::new(&format!("u{i:05}")).unwrap(),
                        Entry::Directory,
                    )
                })
                .collect())
        }

        fn read(&self, _: &RepoPath) -> Result<Vec<u8>, RenderError> {
            Ok(b"{}".to_vec())
        }
    }

    #[test]
    fn more_units_than_the_limit_are_refused_naming_it() {
        let error = layout(&Units { width: 3_000 }, &RepoPath::root(), 1_000).unwrap_err();
        assert_eq!(
            error,
            RenderError::TooManyKustomizations {
                unit: ".".into(),
                limit: 1_000
            }
        );
        let found = layout(&Units { width: 1_000 }, &RepoPath::root(), 1_000).unwrap();
        assert_eq!(found.units.len(), 1_000);
        assert_eq!(found.units[0], "u00000");
    }
}
