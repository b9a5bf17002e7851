//! Kustomization walking and the directory layout, through an in-memory commit: whatever the
//! kustomizations say, the walk ends, stays within the input limits, and every input it names
//! is a regular file of the commit with the content address the commit gives it.

use driftless::render::kustomization::{collect_inputs, kustomization_file};
use driftless::render::layout::layout;
use driftless::render::{InputLimits, KustomizationEdits, RepoPath};
use proptest::prelude::*;
use serde_json::Value;

use crate::support::{config, each_entry, mutated, timed};
use crate::tree::MemoryTree;

const PARSER: &str = "kustomization";

const TOKENS: &[&[u8]] = &[
    b"\n#> ",
    b"\n#> kustomization.yaml\n",
    b"\n#> x/kustomization.yaml\nresources: [../]\n",
    b" -> symlink\n",
    b" -> submodule\n",
    b"../",
    b"./",
    b"/",
    b"resources:\n  - ",
    b"components: [",
    b"bases: [",
    b"patches:\n  - path: ",
    b"configMapGenerator:\n  - files: [",
    b"generators: [",
    b"helmCharts: []\n",
    b"https://",
    b"&a ",
    b"*a",
    b"\n---\n",
];

fn limits() -> InputLimits {
    InputLimits {
        max_file_bytes: 64 * 1024,
        max_total_bytes: 256 * 1024,
        max_files: 64,
        max_kustomizations: 64,
    }
}

fn edits(prefix: Option<String>) -> KustomizationEdits {
    KustomizationEdits {
        name_prefix: prefix,
        images: vec![serde_json::json!({"name": "nginx", "newTag": "1.27"})],
        components: vec!["../components/monitoring".into()],
        ..KustomizationEdits::default()
    }
}

/// More units than any corpus tree holds: the walk's own bound is fuzzed elsewhere.
const MAX_UNITS: usize = 1_000;

/// Every directory of the tree as a path inside the revision.
fn units_of(tree: &MemoryTree) -> Vec<RepoPath> {
    tree.directories()
        .iter()
        .map(|dir| RepoPath::parse(dir).expect("the tree holds only accepted names"))
        .collect()
}

fn check(text: &[u8], prefix: Option<String>) {
    let tree = MemoryTree::parse(text);
    // The layout: sorted units, each with its kustomization file, none inside another.
    for path in units_of(&tree) {
        let Ok(found) = timed("layout", || layout(&tree, &path, MAX_UNITS)) else {
            continue;
        };
        let mut sorted = found.units.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted, found.units,
            "units under {path:?} are not sorted and distinct"
        );
        for unit in &found.units {
            assert!(unit.is_within(&path), "unit {unit:?} is outside {path:?}");
            assert!(
                matches!(kustomization_file(&tree, unit), Ok(Some(_))),
                "unit {unit:?} has no kustomization file"
            );
            for other in &found.units {
                assert!(
                    other == unit || !other.is_within(unit),
                    "unit {other:?} is inside unit {unit:?}"
                );
            }
        }
    }
    // The inputs of every directory, as a unit, with and without the spec's edits.
    for unit in units_of(&tree) {
        for edits in [KustomizationEdits::default(), edits(prefix.clone())] {
            let result = timed("collect_inputs", || {
                collect_inputs(&tree, &unit, &edits, limits())
            });
            let Ok(inputs) = result else { continue };
            let mut total = 0;
            for (path, id) in &inputs.files {
                let content = tree
                    .file(path.as_str())
                    .unwrap_or_else(|| panic!("input {path:?} of {unit:?} is not a file"));
                assert_eq!(*id, MemoryTree::id_of(content), "{path}: wrong content id");
                total += content.len() as u64;
            }
            assert_eq!(inputs.total_bytes, total, "{unit:?}: total_bytes is off");
            assert!(inputs.total_bytes <= limits().max_total_bytes);
            assert!(inputs.files.len() <= limits().max_files);
            match (&inputs.edited, edits.is_empty()) {
                (None, true) => {}
                (Some((file, contents)), false) => {
                    let parent = file.parent().unwrap_or_default();
                    assert_eq!(
                        parent, unit,
                        "the edited kustomization {file:?} is elsewhere"
                    );
                    let value: Value = serde_json::from_slice(contents)
                        .unwrap_or_else(|e| panic!("{file}: edited file is not JSON: {e}"));
                    assert!(value.is_object(), "{file}: edited file is not a mapping");
                    if let Some(prefix) = &edits.name_prefix {
                        assert_eq!(value["namePrefix"].as_str(), Some(prefix.as_str()));
                    }
                }
                (edited, _) => panic!("{unit:?}: edited {edited:?} with edits {edits:?}"),
            }
        }
    }
}

#[test]
fn corpus_kustomizations_walk_within_limits() {
    each_entry(PARSER, |text| check(text, Some("prod-".into())));
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_kustomizations_walk_within_limits(
        text in mutated(PARSER, TOKENS),
        prefix in proptest::option::of(any::<String>()),
    ) {
        check(&text, prefix);
    }
}
