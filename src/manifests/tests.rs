use std::time::{Duration, Instant};

use super::*;

fn read(files: &[(&str, &str)]) -> Result<Vec<Manifest>, ManifestErrors> {
    read_with(files, &Budget::default())
}

fn read_with(files: &[(&str, &str)], budget: &Budget) -> Result<Vec<Manifest>, ManifestErrors> {
    read_manifests(
        files.iter().map(|(path, text)| (*path, text.as_bytes())),
        budget,
    )
}

fn errors(files: &[(&str, &str)]) -> Vec<String> {
    errors_with(files, &Budget::default())
}

fn errors_with(files: &[(&str, &str)], budget: &Budget) -> Vec<String> {
    let error = read_with(files, budget).expect_err("manifests should be rejected");
    error.0.iter().map(ToString::to_string).collect()
}

fn ids(manifests: &[Manifest]) -> Vec<String> {
    manifests.iter().map(|m| m.id.to_string()).collect()
}

/// (file, document, line, list item) of each manifest.
fn places(manifests: &[Manifest]) -> Vec<(&str, usize, usize, Option<usize>)> {
    manifests
        .iter()
        .map(|m| {
            let p = m.position;
            (m.file.as_str(), p.document, p.line, p.list_item)
        })
        .collect()
}

fn config_map(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n")
}

const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: team-a
  labels:
    app: web
spec:
  replicas: 2
";

#[test]
fn multi_document_yaml_yields_every_object_with_its_document_and_line() {
    let text = format!(
        "{DEPLOYMENT}---\n{}---\n{}",
        config_map("a"),
        config_map("b")
    );
    let manifests = read(&[("app.yaml", &text)]).unwrap();
    assert_eq!(
        ids(&manifests),
        ["apps/Deployment team-a/web", "ConfigMap a", "ConfigMap b"]
    );
    assert_eq!(
        places(&manifests),
        [
            ("app.yaml", 1, 1, None),
            ("app.yaml", 2, 11, None),
            ("app.yaml", 3, 16, None)
        ]
    );
}

#[test]
fn manifest_carries_identity_and_the_whole_object() {
    let manifests = read(&[("app.yaml", DEPLOYMENT)]).unwrap();
    let manifest = &manifests[0];
    assert_eq!(
        manifest.id,
        ObjectId {
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            namespace: Some("team-a".into()),
            name: "web".into(),
        }
    );
    let object = &manifest.object;
    assert_eq!(object.metadata.name.as_deref(), Some("web"));
    assert_eq!(object.metadata.namespace.as_deref(), Some("team-a"));
    assert_eq!(object.metadata.labels.as_ref().unwrap()["app"], "web");
    assert_eq!(object.types.as_ref().unwrap().api_version, "apps/v1");
    assert_eq!(object.data["spec"]["replicas"], 2);
}

#[test]
fn empty_comment_only_and_null_documents_are_skipped_but_counted() {
    let text = format!(
        "# leading comment\n---\n---\n# only a comment\n---\nnull\n---\n~\n---\n{}",
        config_map("a")
    );
    let manifests = read(&[("app.yaml", &text)]).unwrap();
    assert_eq!(ids(&manifests), ["ConfigMap a"]);
    assert_eq!(places(&manifests), [("app.yaml", 5, 10, None)]);
}

#[test]
fn file_of_only_comments_yields_nothing() {
    let manifests = read(&[("empty.yaml", "# nothing here\n"), ("blank.yaml", "")]).unwrap();
    assert!(manifests.is_empty());
}

#[test]
fn list_is_expanded_into_its_items_at_the_position_of_the_list() {
    let text = format!(
        "{}---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata:\n    name: team-a\n- {}",
        config_map("first"),
        config_map("second").replace('\n', "\n  ")
    );
    let manifests = read(&[("list.yaml", &text)]).unwrap();
    assert_eq!(
        ids(&manifests),
        ["ConfigMap first", "Namespace team-a", "ConfigMap second"]
    );
    assert_eq!(
        places(&manifests),
        [
            ("list.yaml", 1, 1, None),
            ("list.yaml", 2, 6, Some(0)),
            ("list.yaml", 2, 6, Some(1))
        ]
    );
}

#[test]
fn typed_lists_are_expanded_and_empty_lists_yield_nothing() {
    let text = format!(
        "apiVersion: v1\nkind: ConfigMapList\nitems:\n- {}---\napiVersion: v1\nkind: List\nitems: []\n---\napiVersion: v1\nkind: List\n",
        config_map("a").trim_end().replace('\n', "\n  ") + "\n"
    );
    let manifests = read(&[("lists.yaml", &text)]).unwrap();
    assert_eq!(ids(&manifests), ["ConfigMap a"]);
}

#[test]
fn list_item_errors_name_the_item() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {}\n- just a string\n";
    assert_eq!(
        errors(&[("list.yaml", text)]),
        [
            "list.yaml: document 1 (line 1), items[0]: missing metadata.name",
            "list.yaml: document 1 (line 1), items[1]: document is a string, not a Kubernetes object (a mapping)",
        ]
    );
}

#[test]
fn list_with_items_that_are_not_a_list_is_an_error() {
    let text = "apiVersion: v1\nkind: List\nitems: {}\n";
    assert_eq!(
        errors(&[("list.yaml", text)]),
        ["list.yaml: document 1 (line 1): List has `items` that is not a list"]
    );
}

#[test]
fn kustomization_files_and_documents_are_skipped_but_flux_kustomizations_are_not() {
    let kustomization = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- app.yaml\n";
    let flux = "apiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata:\n  name: apps\n  namespace: flux-system\n";
    let files = [
        ("base/kustomization.yaml", "not even: [valid yaml"),
        ("overlay/kustomization.yml", kustomization),
        ("other.yaml", kustomization),
        ("flux.yaml", flux),
    ];
    let manifests = read(&files).unwrap();
    assert_eq!(
        ids(&manifests),
        ["kustomize.toolkit.fluxcd.io/Kustomization flux-system/apps"]
    );
}

#[test]
fn missing_identity_fields_are_all_reported_with_file_document_and_line() {
    let text = format!(
        "{}---\n# a comment line\nkind: ConfigMap\nmetadata:\n  labels: {{}}\n",
        config_map("ok")
    );
    assert_eq!(
        errors(&[("deploy/app.yaml", &text)]),
        [
            "deploy/app.yaml: document 2 (line 7): missing apiVersion",
            "deploy/app.yaml: document 2 (line 7): missing metadata.name",
        ]
    );
}

#[test]
fn identity_fields_must_be_non_empty_strings() {
    let text = "apiVersion: 1\nkind: \"\"\nmetadata:\n  name: [a]\n  namespace: 3\n";
    assert_eq!(
        errors(&[("bad.yaml", text)]),
        [
            "bad.yaml: document 1 (line 1): apiVersion must be a non-empty string",
            "bad.yaml: document 1 (line 1): kind must be a non-empty string",
            "bad.yaml: document 1 (line 1): metadata.name must be a non-empty string",
            "bad.yaml: document 1 (line 1): metadata.namespace must be a non-empty string",
        ]
    );
}

#[test]
fn malformed_api_version_is_an_error() {
    let text = "apiVersion: apps/v1/extra\nkind: Deployment\nmetadata:\n  name: web\n";
    assert_eq!(
        errors(&[("bad.yaml", text)]),
        [
            "bad.yaml: document 1 (line 1): invalid apiVersion \"apps/v1/extra\": expected `version` or `group/version`"
        ]
    );
}

#[test]
fn metadata_of_the_wrong_shape_is_an_error() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  labels: [x]\n";
    let errors = errors(&[("bad.yaml", text)]);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("bad.yaml: document 1 (line 1): invalid metadata: "),
        "{errors:?}"
    );
}

#[test]
fn a_document_that_is_not_a_mapping_is_an_error() {
    assert_eq!(
        errors(&[("bad.yaml", "- a\n- b\n")]),
        [
            "bad.yaml: document 1 (line 1): document is a sequence, not a Kubernetes object (a mapping)"
        ]
    );
}

#[test]
fn the_same_object_twice_is_an_error_naming_both_places() {
    let second = format!("{}---\n{DEPLOYMENT}", config_map("other"));
    let errors = errors(&[("base/app.yaml", DEPLOYMENT), ("overlay/app.yaml", &second)]);
    assert_eq!(
        errors,
        [
            "overlay/app.yaml: document 2 (line 6): apps/Deployment team-a/web is defined twice; first in base/app.yaml: document 1 (line 1)"
        ]
    );
}

#[test]
fn identity_ignores_the_version_but_not_namespace_or_kind() {
    let v1 = config_map("a");
    let other_version = v1.replace("apiVersion: v1", "apiVersion: v2");
    let namespaced = format!("{v1}  namespace: team-a\n");
    let secret = v1.replace("ConfigMap", "Secret");
    let files = [
        ("1.yaml", v1.as_str()),
        ("2.yaml", namespaced.as_str()),
        ("3.yaml", secret.as_str()),
    ];
    assert_eq!(read(&files).unwrap().len(), 3);
    let errors = errors(&[("1.yaml", &v1), ("2.yaml", &other_version)]);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].contains("ConfigMap a is defined twice"),
        "{errors:?}"
    );
}

#[test]
fn yaml_syntax_error_names_its_document_and_line() {
    let text = format!(
        "{}---\napiVersion: v1\nkind: [ConfigMap\nmetadata: {{}}\n",
        config_map("a")
    );
    let errors = read(&[("broken.yaml", &text)]).unwrap_err().0;
    assert_eq!(errors.len(), 1);
    let error = &errors[0];
    assert_eq!(error.file, "broken.yaml");
    let position = error.position.unwrap();
    assert_eq!((position.document, position.line), (2, 8));
    assert!(matches!(error.problem, Problem::InvalidYaml(_)));
    let text = error.to_string();
    assert!(
        text.starts_with("broken.yaml: document 2 (line 8): invalid YAML: "),
        "{text}"
    );
    assert!(text.contains("line 8, column"), "{text}");
}

#[test]
fn duplicate_yaml_keys_are_an_error() {
    let text = "apiVersion: v1\nkind: ConfigMap\nkind: Secret\nmetadata:\n  name: a\n";
    let errors = errors(&[("dup.yaml", text)]);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("dup.yaml: document 1 (line 3): invalid YAML: duplicate mapping key"),
        "{errors:?}"
    );
}

/// Nine levels of nine aliases: 9^9 (387 million) strings if expanded.
fn billion_laughs() -> String {
    let mut text = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lol\ndata:\n");
    text.push_str("  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for pair in names.windows(2) {
        let (previous, name) = (pair[0], pair[1]);
        let aliases = vec![format!("*{previous}"); 9].join(", ");
        text.push_str(&format!("  {name}: &{name} [{aliases}]\n"));
    }
    text
}

#[test]
fn billion_laughs_is_refused_instead_of_expanded() {
    let started = Instant::now();
    let errors = read(&[("lol.yaml", &billion_laughs())]).unwrap_err().0;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(errors.len(), 1);
    assert!(
        matches!(errors[0].problem, Problem::ResourceLimit(_)),
        "{errors:?}"
    );
    let text = errors[0].to_string();
    assert!(text.starts_with("lol.yaml: document 1 (line "), "{text}");
    assert!(
        text.contains("exceeds a resource limit: alias replay limit exceeded"),
        "{text}"
    );
}

#[test]
fn node_budget_also_bounds_alias_expansion() {
    let budget = Budget {
        max_alias_expansion: usize::MAX,
        max_nodes: 10_000,
        ..Budget::default()
    };
    let errors = errors_with(&[("lol.yaml", &billion_laughs())], &budget);
    assert!(errors[0].contains("exceeds a resource limit"), "{errors:?}");
    assert!(errors[0].contains("Nodes"), "{errors:?}");
}

#[test]
fn deep_nesting_is_refused() {
    let depth = Budget::default().max_depth + 1;
    let text = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: deep\ndata: {}1{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let errors = errors(&[("deep.yaml", &text)]);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0]
            .starts_with("deep.yaml: document 1 (line 5): refused, it exceeds a resource limit: "),
        "{errors:?}"
    );
    assert!(errors[0].contains("Depth"), "{errors:?}");
}

#[test]
fn deep_json_is_refused_like_deep_yaml() {
    let budget = Budget {
        max_depth: 5,
        ..Budget::default()
    };
    let text =
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "x": [[[[[1]]]]]}"#;
    assert_eq!(
        errors_with(&[("deep.json", text)], &budget),
        [
            "deep.json: document 1 (line 1): refused, it exceeds a resource limit: nesting depth 6 is over the limit of 5"
        ]
    );
}

#[test]
fn too_many_documents_are_refused() {
    let budget = Budget {
        max_documents: 2,
        ..Budget::default()
    };
    let text = "a: 1\n---\nb: 2\n---\nc: 3\n";
    let errors = errors_with(&[("many.yaml", text)], &budget);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].contains("exceeds a resource limit"), "{errors:?}");
}

#[test]
fn oversized_and_non_utf8_files_are_refused_before_parsing() {
    let budget = Budget {
        max_file_bytes: 10,
        ..Budget::default()
    };
    let error = read_manifests(
        [
            ("big.yaml", "x".repeat(11).as_bytes()),
            ("latin1.yaml", b"a: caf\xe9\n".as_slice()),
        ],
        &budget,
    )
    .unwrap_err();
    let errors: Vec<String> = error.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        errors,
        [
            "big.yaml: file is 11 bytes, over the limit of 10 bytes",
            "latin1.yaml: file is not valid UTF-8 (first invalid byte at offset 6)",
        ]
    );
}

#[test]
fn json_files_are_parsed_as_json() {
    let text = r#"{
  "apiVersion": "apps/v1",
  "kind": "Deployment",
  "metadata": {"name": "web", "namespace": "team-a"}
}
{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}}
null
"#;
    let manifests = read(&[("app.json", text)]).unwrap();
    assert_eq!(
        ids(&manifests),
        ["apps/Deployment team-a/web", "Namespace team-a"]
    );
    assert_eq!(
        places(&manifests),
        [("app.json", 1, 1, None), ("app.json", 2, 6, None)]
    );
}

#[test]
fn json_syntax_error_has_line_and_column() {
    let text = "{\n  \"apiVersion\": \"v1\",\n  \"kind\": ConfigMap\n}\n";
    assert_eq!(
        errors(&[("bad.json", text)]),
        ["bad.json: document 1 (line 3): invalid JSON: expected value at line 3, column 11"]
    );
}

#[test]
fn objects_come_out_in_file_then_document_order() {
    let first = format!("{}---\n{}", config_map("zz"), config_map("yy"));
    let second = format!("{}---\n{}", config_map("b"), config_map("a"));
    let manifests = read(&[("b.yaml", &first), ("a.yaml", &second)]).unwrap();
    assert_eq!(
        ids(&manifests),
        ["ConfigMap zz", "ConfigMap yy", "ConfigMap b", "ConfigMap a"]
    );
}

#[test]
fn errors_of_all_files_are_collected() {
    let errors = read(&[
        ("a.yaml", "kind: ConfigMap\nmetadata:\n  name: a\n"),
        ("b.yaml", "key: [unclosed\n"),
        ("c.yaml", &config_map("fine")),
        ("d.json", "{"),
    ])
    .unwrap_err();
    let files: Vec<&str> = errors.0.iter().map(|e| e.file.as_str()).collect();
    assert_eq!(files, ["a.yaml", "b.yaml", "d.json"]);
    let text = errors.to_string();
    assert!(
        text.starts_with(
            "3 manifest errors:\n  a.yaml: document 1 (line 1): missing apiVersion\n  b.yaml: "
        ),
        "{text}"
    );
    assert_eq!(text.lines().count(), 4, "{text}");
}

#[test]
fn octal_file_modes_mean_what_kubectl_reads() {
    let text =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\nspec:\n  defaultMode: 0644\n";
    let manifests = read(&[("mode.yaml", text)]).unwrap();
    assert_eq!(manifests[0].object.data["spec"]["defaultMode"], 420);
}

/// A ConfigMap whose `data` holds `copies` aliases of one anchored string of `anchor_bytes`.
fn amplified(name: &str, anchor_bytes: usize, copies: usize) -> String {
    let mut text = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  k0: &big {}\n",
        "x".repeat(anchor_bytes)
    );
    for copy in 1..copies {
        text.push_str(&format!("  k{copy}: *big\n"));
    }
    text
}

#[test]
fn files_within_their_own_limits_cannot_add_up_past_the_revision_budget() {
    // 40 MiB of text each once expanded: under the 64 MiB a file may hold, but two of them are
    // over the revision's 64 MiB. The second file is refused, named, and the third not read.
    let one = amplified("one", 1024 * 1024, 40);
    let two = amplified("two", 1024 * 1024, 40);
    let three = amplified("three", 16, 2);
    let started = Instant::now();
    let errors = read(&[("a.yaml", &one), ("b.yaml", &two), ("c.yaml", &three)])
        .unwrap_err()
        .0;
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].file, "b.yaml");
    assert!(
        matches!(errors[0].problem, Problem::RevisionLimit(_)),
        "{errors:?}"
    );
    let text = errors[0].to_string();
    assert!(
        text.contains(
            "refused, the revision's files together exceed its budget of 2000000 nodes and \
             67108864 bytes of text (aliases expanded), which ran out in this file"
        ),
        "{text}"
    );
    assert!(read(&[("a.yaml", &one), ("c.yaml", &three)]).is_ok());
}

#[test]
fn the_revision_node_budget_counts_every_file() {
    let budget = Budget {
        max_revision_nodes: 40,
        ..Budget::default()
    };
    let file = |name: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  a: x\n  b: y\n  c: z\n"
        )
    };
    let (one, two, three) = (file("one"), file("two"), file("three"));
    // 17 nodes each (keys count): two fit, the third runs the budget out.
    assert!(read_with(&[("1.yaml", &one), ("2.yaml", &two)], &budget).is_ok());
    let errors = errors_with(
        &[("1.yaml", &one), ("2.yaml", &two), ("3.yaml", &three)],
        &budget,
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("3.yaml: "),
        "the file where the budget ran out is named: {errors:?}"
    );
    assert!(errors[0].contains("budget of 40 nodes"), "{errors:?}");
}

#[test]
fn json_files_count_toward_the_revision_budget() {
    let budget = Budget {
        max_revision_nodes: 20,
        ..Budget::default()
    };
    let json = |name: &str| {
        format!(
            r#"{{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {{"name": "{name}"}}, "data": {{"a": "1"}}}}"#
        )
    };
    let (one, two) = (json("one"), json("two"));
    let errors = errors_with(&[("1.json", &one), ("2.json", &two)], &budget);
    assert_eq!(
        errors,
        [
            "2.json: refused, the revision's files together exceed its budget of 20 nodes and \
          67108864 bytes of text (aliases expanded), which ran out in this file"
        ]
    );
}
