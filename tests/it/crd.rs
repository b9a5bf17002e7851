//! The GitRepository CRD: `crds/` matches the Rust types, and the real apiserver accepts the
//! CRD (its CEL rules compile) and rejects nonsense specs at admission.

use crate::support;

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
    let _bounds = DURATION_BOUNDS.lock().await;
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

/// Held by the tests that change the installed CRD's duration bounds or depend on them.
static DURATION_BOUNDS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn durations_beyond_their_bounds_are_rejected_at_admission() {
    let _bounds = DURATION_BOUNDS.lock().await;
    support::cluster::install_crds().await;
    let namespace = TestNamespace::create("crd-durations").await;
    let url = "https://example.com/org/repo.git";
    for valid in [
        json!({ "url": url, "interval": "720h", "retryInterval": "719h60m", "timeout": "1h" }),
        json!({ "url": url, "interval": "1.5h", "timeout": "59m59.5s" }),
    ] {
        create(&namespace, valid.clone())
            .await
            .unwrap_or_else(|error| panic!("{valid} should be accepted: {error}"));
    }
    for (field, value) in [
        // Parsed with floating point, this panicked the controller (and passed the pattern).
        ("interval", "99999999999999999999h"),
        ("interval", "720h1ms"),
        ("retryInterval", "721h"),
        ("retryInterval", "99999999999999999999h"),
        ("timeout", "1h0.001s"),
        ("timeout", "99999999999999999999h"),
    ] {
        let spec = json!({ "url": url, field: value });
        let error = create(&namespace, spec.clone())
            .await
            .expect_err(&format!("{spec} should be rejected"));
        eprintln!("{field}: {value}: {error}");
        assert!(error.to_string().contains(field), "{spec}: {error}");
    }
}

/// Kills the controller process when the test ends, also on panic.
struct ChildProcess(std::process::Child);

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The CRD as an older release shipped it: the duration pattern without the upper bounds.
fn crd_without_duration_bounds() -> serde_json::Value {
    use kube::CustomResourceExt;
    let mut crd = serde_json::to_value(GitRepository::crd()).unwrap();
    let spec = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    for field in ["interval", "retryInterval", "timeout"] {
        for rule in spec[field]["x-kubernetes-validations"]
            .as_array_mut()
            .unwrap()
        {
            let text = rule["rule"].as_str().unwrap();
            let (start, end) = (
                text.find("self.matches('^").expect("the duration pattern"),
                text.find(" && duration(")
                    .expect("a duration bound to remove"),
            );
            rule["rule"] = json!(text[start..end]);
        }
    }
    crd
}

#[tokio::test]
async fn out_of_range_durations_stored_before_the_bound_stall_and_the_controller_stays_up() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::{
        Api, CustomResourceExt,
        api::{Patch, PatchParams},
    };
    let _bounds = DURATION_BOUNDS.lock().await;
    support::cluster::install_crds().await;
    let namespace = TestNamespace::create("crd-stored-durations").await;
    let crds: Api<CustomResourceDefinition> = Api::all(namespace.client.clone());
    // Other modules' tests install the CRD as they start: not while the old schema stands.
    let old_schema = support::cluster::CRD_SCHEMA.write().await;
    crds.patch(
        GitRepository::crd_name(),
        &PatchParams::apply("driftless-test").force(),
        &Patch::Apply(crd_without_duration_bounds()),
    )
    .await
    .unwrap();
    let absurd = [
        (
            "absurd-interval",
            json!({ "interval": "99999999999999999999h" }),
        ),
        (
            "absurd-retry",
            json!({ "retryInterval": "99999999999999999999h" }),
        ),
        ("long-timeout", json!({ "timeout": "2h" })),
    ];
    let api = namespace.api::<GitRepository>();
    for (name, extra) in &absurd {
        let mut spec = json!({ "url": "https://example.invalid/repo.git" });
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let object: GitRepository = serde_json::from_value(json!({
            "apiVersion": "driftless.dev/v1alpha1", "kind": "GitRepository",
            "metadata": { "name": name }, "spec": spec,
        }))
        .unwrap();
        // The schema change takes a moment to reach the apiserver's validators.
        let mut created = Err(None);
        for _ in 0..50 {
            match api.create(&PostParams::default(), &object).await {
                Ok(_) => {
                    created = Ok(());
                    break;
                }
                Err(error) => {
                    created = Err(Some(error));
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
            }
        }
        created.unwrap_or_else(|error| panic!("store {name} under the old schema: {error:?}"));
    }
    drop(old_schema);
    support::cluster::install_crds().await;

    let cache = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut controller = ChildProcess(
        std::process::Command::new(env!("CARGO_BIN_EXE_driftless"))
            .args([
                "controller",
                "--namespace",
                &namespace.name,
                "--disable-webhook",
            ])
            .args(["--metrics-bind-address", &format!("127.0.0.1:{port}")])
            .arg("--git-cache-dir")
            .arg(cache.path())
            .env("KUBECONFIG", support::cluster::kubeconfig_path())
            .spawn()
            .expect("the driftless binary starts"),
    );
    for (name, _) in &absurd {
        let mut last = None;
        let mut stalled = None;
        for _ in 0..240 {
            let object = api.get(name).await.unwrap();
            let conditions = object.status.clone().unwrap_or_default().conditions;
            stalled = conditions
                .iter()
                .find(|c| c.type_ == "Stalled" && c.status == "True")
                .cloned();
            if stalled.is_some() {
                break;
            }
            last = Some(conditions);
            assert!(
                controller.0.try_wait().unwrap().is_none(),
                "the controller exited on {name}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
        let stalled = stalled.unwrap_or_else(|| panic!("{name} never Stalled: {last:#?}"));
        eprintln!("{name}: {}", stalled.message);
        assert_eq!(stalled.reason, "InvalidSpec", "{}", stalled.message);
        assert!(stalled.message.contains("spec."), "{}", stalled.message);
    }
    assert!(
        controller.0.try_wait().unwrap().is_none(),
        "the controller process stays up"
    );
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::io::Write::write_all(&mut stream, b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    let mut health = String::new();
    std::io::Read::read_to_string(&mut stream, &mut health).unwrap();
    assert!(health.contains(" 200 "), "{health}");
    for (name, _) in &absurd {
        let _ = api.delete(name, &Default::default()).await;
    }
    for _ in 0..120 {
        if api
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// The Rust rules that guard `driftless build --spec-file` and the controller
/// ([`driftless::api::validate_spec`]) are admission's: a table of specs, each submitted to the
/// real apiserver (a server-side dry-run create, so its CEL rules and OpenAPI bounds run) and
/// to the Rust function; the verdicts agree, and each field the Rust side names is one the
/// apiserver names.
#[tokio::test]
async fn admission_and_the_rust_rules_agree_on_every_spec() {
    use driftless::api::{InvalidSpec, validate, validate_spec};
    let _bounds = DURATION_BOUNDS.lock().await;
    support::cluster::install_crds().await;
    let namespace = TestNamespace::create("crd-agreement").await;
    let api = namespace.api::<GitRepository>();
    let url = "https://example.com/org/repo.git";
    let long = |n: usize| "a".repeat(n);
    let with = |extra: serde_json::Value| {
        let mut spec = json!({ "url": url });
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        spec
    };
    let helm = |fields: serde_json::Value| with(json!({ "helm": fields }));
    let values_files = |count: usize| {
        json!(
            (0..count)
                .map(|i| format!("v/{i}.yaml"))
                .collect::<Vec<_>>()
        )
    };
    let specs = [
        // Valid, several at the edge of a bound.
        json!({ "url": url }),
        json!({ "url": "git@example.com:org/repo.git" }),
        json!({ "url": "ssh://git@example.com/org/repo.git", "ref": { "tag": "v1" } }),
        with(
            json!({ "ref": { "branch": "main", "commit": "0123456789abcdef0123456789abcdef01234567" } }),
        ),
        with(json!({ "interval": "720h", "retryInterval": "719h60m", "timeout": "59m59.5s" })),
        with(json!({ "interval": "1.5h", "timeout": "1h" })),
        helm(json!({ "releaseName": long(53), "namespace": long(63), "chart": "charts/..app" })),
        helm(json!({ "chart": "a/b..c/d", "valuesFiles": values_files(32) })),
        helm(
            json!({ "valuesFrom": [{ "kind": "Secret", "name": long(253), "valuesKey": long(253) }] }),
        ),
        with(
            json!({ "postBuild": { "substituteFrom": [{ "kind": "ConfigMap", "name": "vars" }] } }),
        ),
        with(json!({ "namePrefix": "p-", "images": [{ "name": "nginx" }] })),
        // Flag-shaped values that would reach helm's command line.
        helm(json!({ "releaseName": "--post-renderer=/bin/sh" })),
        helm(json!({ "namespace": "--kubeconfig=/etc/passwd" })),
        helm(json!({ "releaseName": "-x" })),
        // Lengths, counts and patterns.
        helm(json!({ "releaseName": long(54) })),
        helm(json!({ "releaseName": "Web" })),
        helm(json!({ "namespace": long(64) })),
        helm(json!({ "chart": "../outside" })),
        helm(json!({ "chart": "/abs" })),
        helm(json!({ "chart": "a/../../b" })),
        helm(json!({ "chart": "a/.." })),
        helm(json!({ "chart": long(1025) })),
        helm(json!({ "valuesFiles": values_files(33) })),
        helm(json!({ "valuesFiles": ["ok.yaml", "x/../../y.yaml"] })),
        helm(json!({ "valuesFiles": ["/etc/passwd"] })),
        helm(json!({ "valuesFiles": [long(1025)] })),
        helm(json!({ "valuesFrom": [{ "kind": "Pod", "name": "x" }] })),
        helm(json!({ "valuesFrom": [{ "kind": "Secret", "name": long(254) }] })),
        helm(json!({ "valuesFrom": [{ "kind": "Secret", "name": "x", "valuesKey": long(254) }] })),
        with(json!({ "postBuild": { "substituteFrom": [{ "kind": "secret", "name": "x" }] } })),
        // The URL forms.
        json!({ "url": "ftp://example.com/repo" }),
        json!({ "url": "file:///etc" }),
        json!({ "url": "git@example.com:/abs" }),
        json!({ "url": "git@example.com:a\nb" }),
        json!({ "url": "git@example.com:\nb" }),
        json!({ "url": "--upload-pack=touch /tmp/x" }),
        // References.
        with(json!({ "ref": { "tag": "v1", "semver": ">=1" } })),
        with(json!({ "ref": { "branch": "main", "tag": "v1" } })),
        with(json!({ "ref": { "commit": "0123456789ABCDEF0123456789ABCDEF01234567" } })),
        with(json!({ "ref": { "commit": "abc" } })),
        // Durations: the pattern, the digit runs, the bounds, zero.
        with(json!({ "interval": "0s" })),
        with(json!({ "timeout": "0ms" })),
        with(json!({ "interval": "-5m" })),
        with(json!({ "interval": ".5s" })),
        with(json!({ "interval": "1.s" })),
        with(json!({ "interval": "721h" })),
        with(json!({ "interval": "1234567s" })),
        with(json!({ "interval": "99999999999999999999h" })),
        with(json!({ "interval": "1h1m1s1ms1h1m1s1m" })),
        with(json!({ "retryInterval": "1d" })),
        with(json!({ "timeout": "1h0.001s" })),
        // Commit status: the address, the context and the link.
        with(
            json!({ "commitStatus": { "provider": "gitea", "secretRef": { "name": "t" }, "address": "https://git.example.com", "context": long(255), "targetURL": format!("https://{}", long(2040)) } }),
        ),
        with(json!({ "commitStatus": { "provider": "github", "secretRef": { "name": "t" } } })),
        with(
            json!({ "commitStatus": { "provider": "gitlab", "secretRef": { "name": "t" }, "address": "ftp://git.example.com" } }),
        ),
        with(
            json!({ "commitStatus": { "provider": "gitlab", "secretRef": { "name": "t" }, "address": format!("https://{}", long(2041)) } }),
        ),
        with(
            json!({ "commitStatus": { "provider": "bitbucket", "secretRef": { "name": "t" }, "context": long(256) } }),
        ),
        with(
            json!({ "commitStatus": { "provider": "gitea", "secretRef": { "name": "t" }, "context": "" } }),
        ),
        with(
            json!({ "commitStatus": { "provider": "gitea", "secretRef": { "name": "t" }, "context": "a\nb" } }),
        ),
        with(
            json!({ "commitStatus": { "provider": "forgejo", "secretRef": { "name": "t" }, "targetURL": "javascript:alert(1)" } }),
        ),
        // Alerts: the types, the events, the counts.
        with(
            json!({ "alerts": [{ "type": "slack", "secretRef": { "name": "s" } },
                               { "type": "cloudevents", "secretRef": { "name": "c" }, "severity": "error",
                                 "events": ["Applied", "Failed", "DriftCorrected", "Pruned", "Stalled"] }] }),
        ),
        with(
            json!({ "alerts": [{ "type": "webhook", "secretRef": { "name": "w" },
                                 "events": ["Applied", "Applied", "Failed", "Pruned", "Stalled", "DriftCorrected"] }] }),
        ),
        with(
            json!({ "alerts": (0..9).map(|_| json!({ "type": "discord", "secretRef": { "name": "d" } })).collect::<Vec<_>>() }),
        ),
        // dependsOn: the defaults, other kinds, and their bounds.
        with(json!({ "dependsOn": [
            { "name": "crds" },
            { "name": "crs", "namespace": "platform", "policy": "Always" },
            { "name": "widgets.example.com", "apiVersion": "apiextensions.k8s.io/v1",
              "kind": "CustomResourceDefinition", "policy": "UntilReady" },
        ] })),
        with(
            json!({ "dependsOn": (0..64).map(|i| json!({ "name": format!("d{i}") })).collect::<Vec<_>>() }),
        ),
        with(
            json!({ "dependsOn": (0..65).map(|i| json!({ "name": format!("d{i}") })).collect::<Vec<_>>() }),
        ),
        with(json!({ "dependsOn": [{ "name": "" }] })),
        with(json!({ "dependsOn": [{ "name": long(254) }] })),
        with(json!({ "dependsOn": [{ "name": "x", "kind": "HelmRelease" }] })),
        with(json!({ "dependsOn": [{ "name": "x", "apiVersion": "helm.toolkit.fluxcd.io/v2" }] })),
        with(json!({ "dependsOn": [{ "name": "x", "namespace": "Team_A" }] })),
        with(json!({ "dependsOn": [{ "name": "x", "namespace": long(64) }] })),
        with(json!({ "dependsOn": [{ "name": "x", "apiVersion": "v1", "kind": long(64) }] })),
        // healthChecks, healthCheckExprs and readyExpr: their bounds.
        with(json!({ "dependsOn": [{ "name": "x", "readyExpr": "dep.status.ready == true" }] })),
        with(json!({ "dependsOn": [{ "name": "x", "readyExpr": "" }] })),
        with(json!({ "dependsOn": [{ "name": "x", "readyExpr": long(1025) }] })),
        with(json!({ "healthChecks": [
            { "apiVersion": "apps/v1", "kind": "Deployment", "name": "web" },
            { "apiVersion": "v1", "kind": "Namespace", "name": "x", "namespace": "team-a" },
        ] })),
        with(
            json!({ "healthChecks": (0..64).map(|i| json!({ "apiVersion": "v1", "kind": "ConfigMap", "name": format!("c{i}") })).collect::<Vec<_>>() }),
        ),
        with(
            json!({ "healthChecks": (0..65).map(|i| json!({ "apiVersion": "v1", "kind": "ConfigMap", "name": format!("c{i}") })).collect::<Vec<_>>() }),
        ),
        with(json!({ "healthChecks": [{ "apiVersion": "", "kind": "ConfigMap", "name": "c" }] })),
        with(json!({ "healthChecks": [{ "apiVersion": "v1", "kind": long(64), "name": "c" }] })),
        with(
            json!({ "healthChecks": [{ "apiVersion": "v1", "kind": "ConfigMap", "name": "c", "namespace": long(64) }] }),
        ),
        with(
            json!({ "healthCheckExprs": [{ "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "current": long(1024), "inProgress": "false", "failed": "false" }] }),
        ),
        with(
            json!({ "healthCheckExprs": [{ "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "current": long(1025) }] }),
        ),
        with(
            json!({ "healthCheckExprs": [{ "apiVersion": "a/v1", "kind": "A", "current": "true",
            "failed": "" }] }),
        ),
        with(
            json!({ "healthCheckExprs": [{ "apiVersion": "a/v1", "kind": "A", "current": "true",
            "inProgress": long(1025) }] }),
        ),
        with(
            json!({ "healthCheckExprs": (0..32).map(|_| json!({ "apiVersion": "a/v1", "kind": "A", "current": "true" })).collect::<Vec<_>>() }),
        ),
        with(
            json!({ "healthCheckExprs": (0..33).map(|_| json!({ "apiVersion": "a/v1", "kind": "A", "current": "true" })).collect::<Vec<_>>() }),
        ),
        // Helm with the Kustomize fields.
        with(json!({ "helm": {}, "namePrefix": "p-" })),
        with(json!({ "helm": {}, "components": ["c"] })),
        with(json!({ "helm": {}, "images": [{ "name": "nginx", "newTag": "1" }] })),
        // Several rules at once.
        with(
            json!({ "url": "ftp://x", "interval": "0s", "helm": { "releaseName": "A", "chart": "/x" } }),
        ),
    ];
    let mut refused = 0;
    for spec in specs {
        let object: GitRepository = serde_json::from_value(json!({
            "apiVersion": "driftless.dev/v1alpha1", "kind": "GitRepository",
            "metadata": { "name": "agreement" }, "spec": spec,
        }))
        .expect("a GitRepository literal");
        let dry_run = PostParams {
            dry_run: true,
            field_manager: None,
        };
        let admitted = api.create(&dry_run, &object).await;
        let checked = validate_spec(&object.spec);
        match (&admitted, &checked) {
            (Ok(_), Ok(())) => {}
            (Err(kube::Error::Api(status)), Err(InvalidSpec(errors))) if status.code == 422 => {
                refused += 1;
                for error in errors {
                    assert!(
                        status.message.contains(&format!("{}:", error.field)),
                        "{spec}: the apiserver does not name {}: {}",
                        error.field,
                        status.message
                    );
                }
            }
            _ => panic!("{spec}: the apiserver says {admitted:?}, the Rust rules {checked:?}"),
        }
        // The whole object's check adds only the name's rule, which this name passes.
        assert_eq!(validate(&object).is_ok(), checked.is_ok(), "{spec}");
    }
    assert!(
        refused >= 40,
        "the table refuses what it means to: {refused}"
    );

    // Object names reach helm as the default release name: the apiserver's name rule.
    for (name, valid) in [
        ("web.prod", true),
        (long(253).as_str(), true),
        ("--post-renderer=/bin/sh", false),
        ("Web", false),
        (long(254).as_str(), false),
        ("a_b", false),
    ] {
        let object: GitRepository = serde_json::from_value(json!({
            "apiVersion": "driftless.dev/v1alpha1", "kind": "GitRepository",
            "metadata": { "name": name }, "spec": { "url": url },
        }))
        .unwrap();
        let dry_run = PostParams {
            dry_run: true,
            field_manager: None,
        };
        let admitted = api.create(&dry_run, &object).await.is_ok();
        assert_eq!(admitted, valid, "{name}: the apiserver");
        assert_eq!(validate(&object).is_ok(), valid, "{name}: the Rust rules");
    }
}
