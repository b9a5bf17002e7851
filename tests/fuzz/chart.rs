//! Chart layout (a chart directory of the commit, its vendored dependencies, values files) and
//! the filtering of helm's output, through an in-memory commit.

use driftless::render::helm::{collect_chart_inputs, drop_unapplied_hooks};
use driftless::render::{ChartRequest, InputLimits, RepoPath, ValuesDocument};
use proptest::prelude::*;

use crate::support::{config, each_entry, mutated, timed};
use crate::tree::MemoryTree;

const PARSER: &str = "chart";

const TOKENS: &[&[u8]] = &[
    b"\n#> ",
    b"\n#> chart/Chart.yaml\nname: c\n",
    b"\n#> chart/charts/",
    b" -> symlink\n",
    b" -> submodule\n",
    b"dependencies:\n  - name: ",
    b".tgz",
    b"-1.0.0",
    b"\n---\n",
    b"helm.sh/hook: ",
    b"test",
    b"pre-install",
    b"&a ",
    b"*a",
];

fn limits() -> InputLimits {
    InputLimits {
        max_file_bytes: 64 * 1024,
        max_total_bytes: 256 * 1024,
        max_files: 64,
        max_kustomizations: 64,
    }
}

const VALUES_FILES: &[&str] = &[
    "env/prod-values.yaml",
    "chart/values.yaml",
    "./env/../env/prod-values.yaml",
    "../outside.yaml",
    "/etc/passwd",
    "chart/templates/link.yaml",
    "missing.yaml",
];

fn check(text: &[u8], values_files: &[&str]) {
    let tree = MemoryTree::parse(text);
    for chart in tree.directories() {
        let request = ChartRequest {
            chart: chart.clone(),
            release_name: "release".into(),
            namespace: "default".into(),
            values_files: values_files.iter().map(|f| f.to_string()).collect(),
            values_documents: vec![ValuesDocument {
                origin: "ConfigMap/values".into(),
                contents: "replicaCount: 5\n".into(),
            }],
            ..ChartRequest::default()
        };
        let result = timed("collect_chart_inputs", || {
            collect_chart_inputs(&tree, &request, limits())
        });
        let Ok(inputs) = result else { continue };
        let mut total = 0;
        for (path, id) in &inputs.files {
            let content = tree
                .file(path.as_str())
                .unwrap_or_else(|| panic!("input {path:?} of chart {chart:?} is not a file"));
            assert_eq!(*id, MemoryTree::id_of(content), "{path}: wrong content id");
            total += content.len() as u64;
            let a_values_file = values_files
                .iter()
                .any(|f| RepoPath::parse(f).as_ref() == Ok(path));
            let chart_dir = RepoPath::parse(&chart).expect("the tree holds only accepted names");
            assert!(
                path.is_within(&chart_dir) || a_values_file,
                "input {path:?} is neither in chart {chart:?} nor a values file"
            );
        }
        assert_eq!(inputs.total_bytes, total);
        assert!(inputs.total_bytes <= limits().max_total_bytes);
        assert!(inputs.files.len() <= limits().max_files);
        assert_eq!(inputs.generated.len(), 1);
    }
    // Helm's output filter: idempotent, only ever removes, and keeps hook-free text as it is.
    let dropped = timed("drop_unapplied_hooks", || drop_unapplied_hooks(text));
    assert!(dropped.len() <= text.len());
    assert_eq!(
        drop_unapplied_hooks(&dropped),
        dropped,
        "the filter is not idempotent"
    );
    if !text.windows(13).any(|w| w == b"helm.sh/hook:")
        && !text.windows(14).any(|w| w == b"helm.sh/hook\":")
        && !text.windows(5).any(|w| w == b"hook")
    {
        assert_eq!(dropped, text, "text without hooks was changed");
    }
}

#[test]
fn corpus_charts_keep_their_inputs_inside() {
    each_entry(PARSER, |text| check(text, &VALUES_FILES[..2]));
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_charts_keep_their_inputs_inside(
        text in mutated(PARSER, TOKENS),
        values_files in proptest::sample::subsequence(VALUES_FILES, 0..4),
    ) {
        check(&text, &values_files);
    }
}
