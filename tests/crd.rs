//! The GitRepository CRD: `crds/` matches the Rust types, and the real apiserver accepts the
//! CRD (its CEL rules compile) and rejects nonsense specs at admission.

mod support;

use driftless::api::GitRepository;
use kube::api::PostParams;
use serde_json::json;
use support::cluster::TestNamespace;

const CRD_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crds/driftless.dev_gitrepositories.yaml"
);

#[test]
fn crds_directory_is_up_to_date_with_the_rust_types() {
    let committed = std::fs::read_to_string(CRD_FILE).expect("crds/ holds the GitRepository CRD");
    assert!(
        committed == driftless::api::crd_yaml(),
        "{CRD_FILE} differs from `driftless crd`; regenerate it with `make crds`"
    );
}

async fn create(namespace: &TestNamespace, spec: serde_json::Value) -> Result<(), kube::Error> {
    let object: GitRepository = serde_json::from_value(json!({
        "apiVersion": "driftless.dev/v1alpha1",
        "kind": "GitRepository",
        "metadata": { "name": support::cluster::unique_name("repo") },
        "spec": spec,
    }))
    .expect("a GitRepository literal");
    namespace
        .api::<GitRepository>()
        .create(&PostParams::default(), &object)
        .await
        .map(|_| ())
}

#[tokio::test]
async fn apiserver_accepts_valid_specs_and_rejects_nonsense() {
    support::cluster::install_crds().await;
    let namespace = TestNamespace::create("crd-admission").await;

    for valid in [
        json!({ "url": "https://example.com/org/repo.git" }),
        json!({ "url": "ssh://git@example.com/org/repo.git", "ref": { "tag": "v1.0.0" } }),
        json!({ "url": "git@example.com:org/repo.git", "ref": { "semver": ">=1.0.0" }, "interval": "1m30s" }),
        json!({ "url": "http://127.0.0.1/repo", "ref": { "branch": "main", "commit": "0123456789abcdef0123456789abcdef01234567" } }),
    ] {
        create(&namespace, valid.clone())
            .await
            .unwrap_or_else(|error| panic!("{valid} should be accepted: {error}"));
    }

    for (invalid, reason) in [
        (
            json!({ "url": "ftp://example.com/repo" }),
            "url must start with",
        ),
        (
            json!({ "url": "https://example.com/r", "ref": { "branch": "main", "tag": "v1" } }),
            "ref takes one of",
        ),
        (
            json!({ "url": "https://example.com/r", "interval": "-5m" }),
            "interval must be",
        ),
        (
            json!({ "url": "https://example.com/r", "ref": { "commit": "abc" } }),
            "commit must be",
        ),
    ] {
        let error = create(&namespace, invalid.clone())
            .await
            .expect_err(&format!("{invalid} should be rejected"));
        assert!(error.to_string().contains(reason), "{invalid}: {error}");
    }
}

#[tokio::test]
async fn kubectl_explain_shows_the_field_descriptions() {
    support::cluster::install_crds().await;
    let output = std::process::Command::new(support::cluster::binaries_dir().join("kubectl"))
        .args(["explain", "gitrepository.spec"])
        .env("KUBECONFIG", support::cluster::kubeconfig_path())
        .output()
        .expect("kubectl runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "URL of the repository",
        "Which revision to follow",
        "secretRef",
        "gitignore-style",
    ] {
        assert!(
            text.contains(expected),
            "kubectl explain lacks {expected:?}:\n{text}"
        );
    }
}
