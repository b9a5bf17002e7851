//! Manifest files (YAML and JSON, multi-document, anchors and aliases): whatever the bytes,
//! reading stays within the budget it is given, and what it accepts prints and reads back the
//! same (`driftless build` prints what the controller applies).

use driftless::manifests::{Budget, Manifest, read_manifests};
use proptest::prelude::*;
use serde_json::Value;

use crate::support::{config, each_entry, mutated, timed};

const PARSER: &str = "manifests";

const TOKENS: &[&[u8]] = &[
    b"\n---\n",
    b"\n...\n",
    b"&a ",
    b"*a",
    b"[*a,*a,*a,*a,*a,*a,*a,*a]",
    b"<<: *a\n",
    b"[",
    b"{",
    b": ",
    b"\n  - ",
    b"!!binary ",
    b"!!str ",
    b"? ",
    b"|\n  ",
    b">-\n  ",
    b"\"\\u0000\"",
    b"0644",
    b"~",
    b"\t",
    b"kind: List\nitems:\n- ",
    b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
    b"{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"j\"}}",
];

/// A budget small enough that mutated alias chains and nesting reach its limits quickly.
fn small_budget() -> Budget {
    Budget {
        max_file_bytes: 256 * 1024,
        max_documents: 32,
        max_depth: 24,
        max_nodes: 20_000,
        max_alias_expansion: 5_000,
        max_scalar_bytes: 512 * 1024,
        max_revision_nodes: 30_000,
        max_revision_scalar_bytes: 768 * 1024,
    }
}

/// Nodes (as the revision usage counts them: values, plus one per key) and depth of `value`.
fn measure(value: &Value) -> (usize, usize) {
    let mut nodes = 0;
    let mut deepest = 0;
    let mut pending = vec![(value, 1)];
    while let Some((value, depth)) = pending.pop() {
        nodes += 1;
        deepest = deepest.max(depth);
        match value {
            Value::Array(items) => pending.extend(items.iter().map(|v| (v, depth + 1))),
            Value::Object(fields) => {
                nodes += fields.len();
                pending.extend(fields.values().map(|v| (v, depth + 1)));
            }
            _ => {}
        }
    }
    (nodes, deepest)
}

fn read(files: &[(&str, &[u8])], budget: &Budget) -> Result<Vec<Manifest>, String> {
    timed("read_manifests", || {
        read_manifests(files.iter().copied(), budget).map_err(|e| e.to_string())
    })
}

fn objects(manifests: &[Manifest]) -> Vec<Value> {
    manifests
        .iter()
        .map(|m| serde_json::to_value(&m.object).expect("an object serializes"))
        .collect()
}

fn check(bytes: &[u8]) {
    let budget = small_budget();
    let files = [("app/manifest.yaml", bytes), ("app/again.yaml", bytes)];
    let result = read(&files[..1], &budget);
    // The same input gives the same answer.
    let again = read(&files[..1], &budget);
    assert_eq!(
        result.as_ref().map(|m| objects(m)),
        again.as_ref().map(|m| objects(m)),
        "reading is not deterministic"
    );
    if let Ok(manifests) = &result {
        let mut total_nodes = 0;
        for object in objects(manifests) {
            let (nodes, depth) = measure(&object);
            total_nodes += nodes;
            assert!(
                depth <= budget.max_depth + 1,
                "an accepted object is {depth} deep, over the depth budget"
            );
        }
        assert!(
            total_nodes <= budget.max_revision_nodes,
            "accepted objects hold {total_nodes} nodes, over the revision budget"
        );
        // The printed stream (what `driftless build` writes) reads back to the same objects.
        let mut printed = String::new();
        for manifest in manifests {
            printed.push_str("---\n");
            printed.push_str(&serde_saphyr::to_string(&manifest.object).expect("prints"));
        }
        let reread = read(&[("printed.yaml", printed.as_bytes())], &Budget::default())
            .unwrap_or_else(|e| panic!("the printed objects do not read back: {e}\n{printed}"));
        assert_eq!(
            objects(&reread),
            objects(manifests),
            "the printed objects read back different:\n{printed}"
        );
    }
    // Two copies of one file: twice the usage, so never accepted past the revision budget,
    // and every object of the first is a duplicate in the second.
    if let Ok(both) = read(&files, &budget) {
        let once = result.as_ref().expect("one copy is accepted when two are");
        assert!(once.is_empty(), "duplicated objects were accepted");
        assert!(both.is_empty());
    }
}

#[test]
fn corpus_manifests_read_within_budget() {
    each_entry(PARSER, check);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_manifests_read_within_budget(bytes in mutated(PARSER, TOKENS)) {
        check(&bytes);
    }
}
