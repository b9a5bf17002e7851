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
    tree::{self, Entry, RepositoryTree},
};

/// The units under a path, sorted, none inside another.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layout {
    pub units: Vec<String>,
}

impl Layout {
    /// The unit that renders `file`, if any: such a file is not a plain manifest.
    pub fn unit_of(&self, file: &str) -> Option<&str> {
        self.units
            .iter()
            .map(String::as_str)
            .find(|unit| tree::is_within(file, unit))
    }
}

/// Finds the units under `path` (a directory of the commit, `""` for the root).
pub fn layout(tree: &dyn RepositoryTree, path: &str) -> Result<Layout, RenderError> {
    let path = path.trim_matches('/');
    let mut units = Vec::new();
    find_units(tree, path, &mut units)?;
    Ok(Layout { units })
}

fn find_units(
    tree: &dyn RepositoryTree,
    dir: &str,
    units: &mut Vec<String>,
) -> Result<(), RenderError> {
    if kustomization_file(tree, dir)?.is_some() {
        units.push(dir.to_owned());
        return Ok(());
    }
    for (name, entry) in tree.list(dir)? {
        if entry == Entry::Directory {
            find_units(tree, &tree::join(dir, &name), units)?;
        }
    }
    Ok(())
}
