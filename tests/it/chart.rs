//! The Helm chart (`charts/driftless/`): `helm lint`, `helm template` with several value sets
//! checked object by object, the values schema rejecting wrong types, the CRD copy identical to
//! the generated one, and `helm install` into the real test cluster in both RBAC modes, with the
//! installed ServiceAccount's token proving what the controller may and may not do.

use crate::support;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{ConfigMap, Namespace, Pod, Service, ServiceAccount},
    rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
    config::AuthInfo,
};
use serde_json::{Value, json};
use support::cluster::{TestNamespace, admin_config, binaries_dir, kubeconfig_path, unique_name};

pub(crate) fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/driftless")
}

pub(crate) fn helm(args: &[&str]) -> Output {
    let helm = binaries_dir().join("helm");
    Command::new(&helm)
        .args(args)
        // Keep helm's caches and config out of the user's home and the repository.
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("driftless-helm/cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("driftless-helm/config"),
        )
        .env(
            "HELM_DATA_HOME",
            std::env::temp_dir().join("driftless-helm/data"),
        )
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", helm.display()))
}

pub(crate) fn expect_success(what: &str, output: &Output) -> String {
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("helm prints UTF-8")
}

/// `helm template` with `--set` style arguments; the rendered objects, comments skipped.
fn render(sets: &[&str]) -> Vec<Value> {
    let chart = chart_dir();
    let mut args = vec![
        "template",
        "rel",
        chart.to_str().unwrap(),
        "--namespace",
        "driftless-system",
    ];
    for set in sets {
        args.push("--set");
        args.push(set);
    }
    let output = helm(&args);
    let text = expect_success(&format!("helm template {sets:?}"), &output);
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|error| panic!("helm template printed invalid YAML: {error}\n{text}"));
    documents.into_iter().filter(|doc| !doc.is_null()).collect()
}

/// `helm template` with a values file holding `values` (YAML), for lists of objects `--set`
/// cannot spell.
fn render_values(values: &str) -> Result<Vec<Value>, String> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), values).unwrap();
    let chart = chart_dir();
    let output = helm(&[
        "template",
        "rel",
        chart.to_str().unwrap(),
        "--namespace",
        "driftless-system",
        "-f",
        file.path().to_str().unwrap(),
    ]);
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    let text = String::from_utf8(output.stdout).expect("helm prints UTF-8");
    let documents: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|error| panic!("helm template printed invalid YAML: {error}\n{text}"));
    Ok(documents.into_iter().filter(|doc| !doc.is_null()).collect())
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| {
            let present: Vec<String> = objects
                .iter()
                .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
                .collect();
            panic!("no {kind} {name} in the rendered chart; it has {present:?}")
        })
}

fn kinds(objects: &[Value], kind: &str) -> Vec<Value> {
    objects
        .iter()
        .filter(|o| o["kind"] == kind)
        .cloned()
        .collect()
}

fn container(objects: &[Value]) -> &Value {
    &find(objects, "Deployment", "rel-driftless")["spec"]["template"]["spec"]["containers"][0]
}

fn args(objects: &[Value]) -> Vec<String> {
    container(objects)["args"]
        .as_array()
        .expect("the container has args")
        .iter()
        .map(|arg| arg.as_str().expect("args are strings").to_owned())
        .collect()
}

fn has_cluster_admin_binding(objects: &[Value]) -> bool {
    objects.iter().any(|o| {
        (o["kind"] == "ClusterRoleBinding" || o["kind"] == "RoleBinding")
            && o["roleRef"]["name"] == "cluster-admin"
    })
}

/// The rules that grant `verb` on `resource` in any ClusterRole or Role.
fn grants(objects: &[Value], resource: &str, verb: &str) -> bool {
    objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "Role")
        .flat_map(|o| o["rules"].as_array().cloned().unwrap_or_default())
        .any(|rule| {
            let has = |field: &str, value: &str| {
                rule[field]
                    .as_array()
                    .is_some_and(|values| values.iter().any(|v| v == value || v == "*"))
            };
            has("resources", resource) && has("verbs", verb)
        })
}

#[test]
fn chart_app_version_is_the_crate_version() {
    let chart: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(chart_dir().join("Chart.yaml")).expect("Chart.yaml"),
    )
    .expect("Chart.yaml is YAML");
    assert_eq!(
        chart["appVersion"],
        driftless::VERSION,
        "Chart.yaml appVersion must follow Cargo.toml's version"
    );
    assert_eq!(chart["name"], "driftless");
}

#[test]
fn chart_crd_is_the_generated_crd() {
    let generated = driftless::api::crd_yaml();
    let in_chart =
        std::fs::read_to_string(chart_dir().join("crds/driftless.dev_gitrepositories.yaml"))
            .expect("the chart ships the CRD in crds/");
    let top_level = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/driftless.dev_gitrepositories.yaml"),
    )
    .expect("crds/ holds the CRD");
    assert!(
        in_chart == generated,
        "charts/driftless/crds/ differs from `driftless crd`; run `make crds` and copy \
         crds/driftless.dev_gitrepositories.yaml into charts/driftless/crds/"
    );
    assert!(
        in_chart == top_level,
        "charts/driftless/crds/ differs from crds/"
    );
    let entries: Vec<_> = std::fs::read_dir(chart_dir().join("crds"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(entries.len(), 1, "the chart's crds/ holds only the CRD");
}

#[test]
fn helm_lint_passes_for_default_and_full_values() {
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();
    expect_success("helm lint", &helm(&["lint", "--strict", chart]));
    expect_success(
        "helm lint with every option on",
        &helm(&[
            "lint",
            "--strict",
            chart,
            "--set",
            "rbac.mode=restricted,webhook.secret.create=true,webhook.secret.github=s3cret,\
             webhook.ingress.enabled=true,webhook.ingress.host=hooks.example.com,\
             networkPolicy.enabled=true,metrics.serviceMonitor.enabled=true,\
             networkPolicy.metrics.from[0].namespaceSelector.matchLabels.team=monitoring,\
             metrics.objectLabels=false,rbac.impersonateNamespaces={team-a}",
        ]),
    );
}

#[test]
fn default_values_render_a_hardened_leader_elected_controller() {
    let objects = render(&[]);
    let deployment = find(&objects, "Deployment", "rel-driftless");
    assert_eq!(deployment["metadata"]["namespace"], "driftless-system");
    assert_eq!(deployment["spec"]["replicas"], 1);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "rel-driftless");

    // Restricted Pod Security Standard, at pod and container level.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = container(&objects);
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");

    // The read-only root file system gets writable emptyDirs for the git cache and /tmp.
    let volume = |name: &str| {
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
            .clone()
    };
    let mount = |path: &str| {
        container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("nothing mounted at {path}"))["name"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(volume(&mount("/var/cache/driftless/git"))["emptyDir"].is_object());
    assert!(volume(&mount("/tmp"))["emptyDir"].is_object());

    // Probes on the metrics port.
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "metrics");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "metrics");
    let port = |name: &str| {
        container["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no container port {name}"))["containerPort"]
            .clone()
    };
    assert_eq!(port("metrics"), 8080);
    assert_eq!(port("webhook"), 9292);
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());
    assert_eq!(
        container["image"],
        format!("ghcr.io/driftless-dev/driftless:{}", driftless::VERSION)
    );

    // Flags, and the namespace from the downward API.
    let args = args(&objects);
    assert_eq!(args[0], "controller");
    for expected in [
        "--leader-elect",
        "--log-format=json",
        "--git-cache-dir=/var/cache/driftless/git",
        "--metrics-bind-address=0.0.0.0:8080",
        "--webhook-bind-address=0.0.0.0:9292",
        "--default-interval=5m",
        "--concurrency=8",
        "--max-fetch-bytes=536870912",
        "--git-cache-max-age=24h",
        "--git-cache-max-bytes=1610612736",
    ] {
        assert!(
            args.iter().any(|a| a == expected),
            "{expected} missing in {args:?}"
        );
    }
    assert!(
        !args.iter().any(|a| a.starts_with("--webhook-secrets-dir")),
        "no webhook Secret is configured by default, so none is mounted"
    );
    let pod_namespace = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "POD_NAMESPACE")
        .expect("POD_NAMESPACE is set");
    assert_eq!(
        pod_namespace["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );

    // Services: webhook and metrics, each selecting the controller pods.
    let labels = &deployment["spec"]["selector"]["matchLabels"];
    let webhook = find(&objects, "Service", "rel-driftless-webhook");
    assert_eq!(webhook["spec"]["ports"][0]["targetPort"], "webhook");
    assert_eq!(&webhook["spec"]["selector"], labels);
    let metrics = find(&objects, "Service", "rel-driftless-metrics");
    assert_eq!(metrics["spec"]["ports"][0]["targetPort"], "metrics");
    assert_eq!(&metrics["spec"]["selector"], labels);

    // RBAC: its own resources, Secrets read-only, Events, leases in its namespace, and by
    // default cluster-admin for applying.
    find(&objects, "ServiceAccount", "rel-driftless");
    assert!(has_cluster_admin_binding(&objects));
    assert!(!grants(&objects, "serviceaccounts", "impersonate"));
    let own = find(&objects, "ClusterRole", "rel-driftless-controller");
    let rules = own["rules"].as_array().unwrap();
    let rule_for = |resource: &str| {
        rules
            .iter()
            .find(|r| r["resources"].as_array().is_some_and(|x| x[0] == resource))
            .unwrap_or_else(|| panic!("no rule for {resource}: {rules:?}"))
    };
    assert_eq!(
        rule_for("gitrepositories")["apiGroups"],
        json!(["driftless.dev"])
    );
    assert_eq!(
        rule_for("gitrepositories")["verbs"],
        json!(["get", "list", "watch", "patch"]),
        "the controller watches and patches GitRepositories; it never creates or deletes one"
    );
    assert_eq!(
        rule_for("gitrepositories/status")["verbs"],
        json!(["patch"])
    );
    // Secrets and ConfigMaps: credentials, webhook tokens, substituteFrom, helm.valuesFrom.
    assert!(
        rules
            .iter()
            .any(|r| r["resources"] == json!(["secrets", "configmaps"])
                && r["verbs"] == json!(["get", "list", "watch"]))
    );
    assert!(
        rules
            .iter()
            .any(|r| r["apiGroups"] == json!(["events.k8s.io"])
                && r["verbs"] == json!(["create", "patch"]))
    );
    let leases = find(&objects, "Role", "rel-driftless-leader-election");
    assert_eq!(leases["metadata"]["namespace"], "driftless-system");
    assert_eq!(leases["rules"][0]["resources"], json!(["leases"]));
    assert_eq!(
        leases["rules"][0]["verbs"],
        json!(["get", "create", "update"])
    );
    find(&objects, "RoleBinding", "rel-driftless-leader-election");

    // The NetworkPolicy is on by default: the webhook port open to every source (Git hosts
    // deliver from anywhere), the metrics port to none, no other port.
    let policy = find(&objects, "NetworkPolicy", "rel-driftless");
    assert_eq!(
        policy["spec"]["ingress"],
        json!([{ "ports": [{ "port": "webhook", "protocol": "TCP" }] }]),
        "{policy}"
    );
    assert!(
        !args.iter().any(|a| a == "--metrics-without-object-labels"),
        "metrics name their objects unless told not to"
    );

    // Optional objects stay off by default.
    for kind in ["Ingress", "ServiceMonitor", "Secret"] {
        assert!(
            kinds(&objects, kind).is_empty(),
            "{kind} rendered by default"
        );
    }
}

#[test]
fn restricted_mode_impersonates_and_never_binds_cluster_admin() {
    let objects = render(&["rbac.mode=restricted"]);
    assert!(
        !has_cluster_admin_binding(&objects),
        "restricted mode must not bind cluster-admin"
    );
    assert!(grants(&objects, "serviceaccounts", "impersonate"));
    assert!(
        !grants(&objects, "users", "impersonate") && !grants(&objects, "groups", "impersonate"),
        "impersonating ServiceAccounts needs no rights on users or groups"
    );
    // Nothing but its own resources otherwise: no wildcard, no write outside driftless.dev.
    let cluster_roles = kinds(&objects, "ClusterRole");
    assert!(
        !cluster_roles.is_empty(),
        "the chart renders no ClusterRole to check"
    );
    for role in cluster_roles {
        for rule in role["rules"].as_array().unwrap() {
            assert!(
                !rule["resources"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|v| v == "*")),
                "wildcard rule in {role}"
            );
        }
    }
    assert!(!grants(&objects, "deployments", "create"));
    assert!(!grants(&objects, "secrets", "create"));
    assert!(
        !grants(&objects, "secrets", "get") && !grants(&objects, "configmaps", "get"),
        "restricted mode reads every tenant Secret and ConfigMap as the tenant"
    );
    assert!(
        grants(&objects, "secrets", "list") && grants(&objects, "secrets", "watch"),
        "the metadata watches remain"
    );
    assert!(!grants(&objects, "gitrepositories", "create"));
    assert!(!grants(&objects, "gitrepositories", "delete"));
    assert!(!grants(&objects, "leases", "delete"));
    assert!(
        !grants(&objects, "events", "delete") && !grants(&objects, "namespaces", "list"),
        "nothing beyond the rules the chart explains"
    );
    let binding = find(&objects, "ClusterRoleBinding", "rel-driftless-impersonate");
    assert_eq!(binding["subjects"][0]["name"], "rel-driftless");
    assert_eq!(binding["subjects"][0]["namespace"], "driftless-system");
    let restricted = args(&objects);
    assert!(
        restricted.iter().any(|a| a == "--require-service-account"),
        "restricted mode never applies with the controller's identity: {restricted:?}"
    );
    assert!(
        !restricted
            .iter()
            .any(|a| a.starts_with("--default-service-account"))
    );
    let cluster_admin = args(&render(&[]));
    assert!(
        !cluster_admin
            .iter()
            .any(|a| a == "--require-service-account")
    );
    // Impersonation bound only in the namespaces named, or the one watched.
    for (sets, namespaces) in [
        (
            vec![
                "rbac.mode=restricted",
                "rbac.impersonateNamespaces={team-a,team-b}",
            ],
            vec!["team-a", "team-b"],
        ),
        (
            vec!["rbac.mode=restricted", "controller.watchNamespace=team-c"],
            vec!["team-c"],
        ),
    ] {
        let objects = render(&sets);
        let bindings: Vec<String> = kinds(&objects, "RoleBinding")
            .into_iter()
            .filter(|b| b["roleRef"]["name"] == "rel-driftless-impersonate")
            .map(|b| b["metadata"]["namespace"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(bindings, namespaces, "{sets:?}");
        assert!(
            !kinds(&objects, "ClusterRoleBinding")
                .iter()
                .any(|b| b["roleRef"]["name"] == "rel-driftless-impersonate"),
            "{sets:?}: no cluster-wide impersonation"
        );
    }

    let with_default = args(&render(&[
        "rbac.mode=restricted",
        "controller.defaultServiceAccount=deployer",
    ]));
    assert!(
        with_default
            .iter()
            .any(|a| a == "--default-service-account=deployer"),
        "{with_default:?}"
    );
}

#[test]
fn values_become_flags_and_replicas() {
    let objects = render(&[
        "replicas=3",
        "leaderElection.enabled=false",
        "controller.concurrency=3",
        "controller.defaultInterval=90s",
        "controller.logFormat=text",
        "controller.watchNamespace=team-a",
        "controller.maxManifestFiles=200",
        "webhook.port=9000",
        "webhook.rateLimit=3",
        "webhook.headerTimeout=5s",
        "metrics.port=9100",
        "controller.extraArgs={--git-stall-timeout=10s}",
        "controller.commitStatusAllowedHosts={api.github.example.com,git.example.org}",
        "controller.allowCrossNamespaceDependencies=true",
        "image.tag=dev",
    ]);
    let deployment = find(&objects, "Deployment", "rel-driftless");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let args = args(&objects);
    for expected in [
        "--concurrency=3",
        "--default-interval=90s",
        "--log-format=text",
        "--namespace=team-a",
        "--max-manifest-files=200",
        "--webhook-bind-address=0.0.0.0:9000",
        "--webhook-rate-limit=3",
        "--webhook-rate-burst=50",
        "--webhook-header-timeout=5s",
        "--webhook-body-timeout=30s",
        "--webhook-max-body-bytes=3145728",
        "--webhook-body-budget-bytes=33554432",
        "--webhook-max-in-flight-deliveries=32",
        "--webhook-reload-interval=10s",
        "--metrics-bind-address=0.0.0.0:9100",
        "--git-stall-timeout=10s",
        "--commit-status-allowed-hosts=api.github.example.com,git.example.org",
        "--allow-cross-namespace-dependencies",
    ] {
        assert!(
            args.iter().any(|a| a == expected),
            "{expected} missing in {args:?}"
        );
    }
    assert!(!args.iter().any(|a| a == "--leader-elect"));
    assert_eq!(
        container(&objects)["image"],
        "ghcr.io/driftless-dev/driftless:dev"
    );
}

#[test]
fn optional_objects_render_when_enabled() {
    let objects = render(&[
        "webhook.secret.create=true",
        "webhook.secret.github=gh-secret",
        "webhook.secret.gitlab=gl-secret",
        "webhook.ingress.enabled=true",
        "webhook.ingress.host=hooks.example.com",
        "webhook.ingress.className=nginx",
        "metrics.serviceMonitor.enabled=true",
        "networkPolicy.enabled=true",
        "networkPolicy.metrics.from[0].namespaceSelector.matchLabels.team=monitoring",
    ]);
    let secret = find(&objects, "Secret", "rel-driftless-webhook");
    assert_eq!(
        secret["stringData"],
        json!({ "github": "gh-secret", "gitlab": "gl-secret" })
    );
    let args = args(&objects);
    assert!(
        args.iter()
            .any(|a| a == "--webhook-secrets-dir=/etc/driftless/webhook")
    );
    let pod = &find(&objects, "Deployment", "rel-driftless")["spec"]["template"]["spec"];
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["secret"]["secretName"] == "rel-driftless-webhook")
    );
    assert!(
        container(&objects)["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["mountPath"] == "/etc/driftless/webhook" && m["readOnly"] == true)
    );

    let ingress = find(&objects, "Ingress", "rel-driftless-webhook");
    assert_eq!(ingress["spec"]["ingressClassName"], "nginx");
    let rule = &ingress["spec"]["rules"][0];
    assert_eq!(rule["host"], "hooks.example.com");
    assert_eq!(rule["http"]["paths"][0]["path"], "/hooks/");
    assert_eq!(
        rule["http"]["paths"][0]["backend"]["service"]["name"],
        "rel-driftless-webhook"
    );

    let monitor = find(&objects, "ServiceMonitor", "rel-driftless");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    let metrics_service = find(&objects, "Service", "rel-driftless-metrics");
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(
            &metrics_service["metadata"]["labels"][key], value,
            "the ServiceMonitor selects the metrics Service"
        );
    }
    assert_ne!(
        find(&objects, "Service", "rel-driftless-webhook")["metadata"]["labels"]["app.kubernetes.io/part-of"],
        "driftless-metrics",
        "the ServiceMonitor must not scrape the webhook Service"
    );

    let policy = find(&objects, "NetworkPolicy", "rel-driftless");
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress"]));
    let ports: Vec<&Value> = policy["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rule| &rule["ports"][0]["port"])
        .collect();
    assert_eq!(ports, [&json!("webhook"), &json!("metrics")]);

    // A referenced Secret is mounted and none is created.
    let objects = render(&["webhook.secret.existingSecret=my-hooks"]);
    assert!(kinds(&objects, "Secret").is_empty());
    let pod = &find(&objects, "Deployment", "rel-driftless")["spec"]["template"]["spec"];
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["secret"]["secretName"] == "my-hooks")
    );
}

#[test]
fn the_network_policy_admits_only_the_peers_the_values_name() {
    let ingress = |values: &str| {
        let objects = render_values(values).unwrap_or_else(|e| panic!("{values}: {e}"));
        find(&objects, "NetworkPolicy", "rel-driftless")["spec"]["ingress"].clone()
    };
    let webhook_only = json!([{ "ports": [{ "port": "webhook", "protocol": "TCP" }] }]);
    assert_eq!(ingress(""), webhook_only, "defaults");

    let monitoring = json!({ "namespaceSelector": { "matchLabels": {
        "kubernetes.io/metadata.name": "monitoring" } } });
    let ingress_nginx = json!({ "namespaceSelector": { "matchLabels": {
        "kubernetes.io/metadata.name": "ingress-nginx" } } });
    let named = ingress(
        "networkPolicy:\n  webhook:\n    fromAnywhere: false\n    from:\n      - namespaceSelector:\n          matchLabels:\n            kubernetes.io/metadata.name: ingress-nginx\n  metrics:\n    from:\n      - namespaceSelector:\n          matchLabels:\n            kubernetes.io/metadata.name: monitoring\n",
    );
    assert_eq!(
        named,
        json!([
            { "ports": [{ "port": "webhook", "protocol": "TCP" }], "from": [ingress_nginx] },
            { "ports": [{ "port": "metrics", "protocol": "TCP" }], "from": [monitoring] },
        ])
    );

    // Nothing named: every ingress refused (the list is empty, not absent).
    let closed = ingress("networkPolicy:\n  webhook:\n    fromAnywhere: false\n");
    assert_eq!(closed, json!([]));
    let no_webhook = ingress("webhook:\n  enabled: false\n");
    assert_eq!(
        no_webhook,
        json!([]),
        "no webhook receiver, no webhook port"
    );

    let objects = render_values("networkPolicy:\n  enabled: false\n").unwrap();
    assert!(kinds(&objects, "NetworkPolicy").is_empty());

    let objects = render_values("metrics:\n  objectLabels: false\n").unwrap();
    assert!(
        args(&objects)
            .iter()
            .any(|a| a == "--metrics-without-object-labels")
    );
}

#[test]
fn schema_and_templates_reject_wrong_values() {
    let chart = chart_dir();
    for (set, why) in [
        ("replicas=two", "at '/replicas'"),
        ("rbac.mode=admin", "rbac"),
        ("controller.concurrency=many", "concurrency"),
        ("controller.logFormat=xml", "logFormat"),
        ("controller.defaultInterval=5 minutes", "defaultInterval"),
        ("webhook.port=70000", "port"),
        ("leaderElection.enabled=maybe", "enabled"),
        ("replica=2", "replica"),
        ("webhook.secret.create=true", "no provider secret"),
        ("webhook.ingress.enabled=true", "webhook.ingress.host"),
        (
            "webhook.tls.clientCA.configMapName=git-hosts-ca",
            "needs webhook.tls.secretName",
        ),
        (
            "webhook.tls.secretName=t,webhook.tls.clientCA.configMapName=a,webhook.tls.clientCA.secretName=b",
            "not both",
        ),
        ("webhook.maxInFlightDeliveries=0", "maxInFlightDeliveries"),
        ("webhook.reloadInterval=often", "reloadInterval"),
        ("networkPolicy.webhookFrom={}", "webhookFrom"),
        ("networkPolicy.metrics.from=everyone", "from"),
        ("metrics.objectLabels=sometimes", "objectLabels"),
        (
            "metrics.serviceMonitor.enabled=true",
            "needs networkPolicy.metrics.from",
        ),
    ] {
        let output = helm(&["template", "rel", chart.to_str().unwrap(), "--set", set]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "helm template accepted {set}, which it must reject"
        );
        assert!(
            stderr.contains(why),
            "rejecting {set}, helm should say why ({why}); it said: {stderr}"
        );
    }
}

/// Uninstalls the release (its cluster-scoped RBAC included) when the test ends, also on panic.
struct Release {
    name: String,
    namespace: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        let kubeconfig = kubeconfig_path().to_str().unwrap().to_owned();
        let output = helm(&[
            "uninstall",
            &self.name,
            "--namespace",
            &self.namespace,
            "--kubeconfig",
            &kubeconfig,
            "--wait",
            "--timeout",
            "60s",
        ]);
        if !output.status.success() {
            eprintln!(
                "could not uninstall {}: {}",
                self.name,
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// A test namespace whose Pod Security admission enforces the restricted profile.
pub(crate) async fn restricted_namespace(test: &str) -> TestNamespace {
    let namespace = TestNamespace::create(test).await;
    Api::<Namespace>::all(namespace.client.clone())
        .patch(
            &namespace.name,
            &PatchParams::apply("driftless-test"),
            &Patch::Apply(json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": namespace.name,
                    "labels": { "pod-security.kubernetes.io/enforce": "restricted" },
                },
            })),
        )
        .await
        .expect("label the namespace for restricted Pod Security");
    namespace
}

/// Installs the chart into a fresh namespace whose Pod Security admission enforces the
/// restricted profile, waits for the controller pod to run (kwok runs it), and checks the
/// objects. Returns the namespace, the release and a client holding the chart
/// ServiceAccount's token.
async fn install(rbac_mode: &str) -> (TestNamespace, Release, Client) {
    support::cluster::install_crds().await;
    let namespace = restricted_namespace(&format!("chart-{rbac_mode}")).await;

    let release = Release {
        name: unique_name("drift"),
        namespace: namespace.name.clone(),
    };
    let chart = chart_dir();
    let kubeconfig = kubeconfig_path().to_str().unwrap().to_owned();
    // The CRD exists already (install_crds above; it is cluster-wide and shared by every
    // test), so helm skips its crds/ directory: installing on a fresh cluster creates it.
    expect_success(
        "helm install",
        &helm(&[
            "install",
            &release.name,
            chart.to_str().unwrap(),
            "--namespace",
            &namespace.name,
            "--kubeconfig",
            &kubeconfig,
            "--set",
            &format!(
                "rbac.mode={rbac_mode},webhook.secret.create=true,webhook.secret.github=s3cret,\
                 networkPolicy.metrics.from[0].namespaceSelector.matchLabels.team=monitoring"
            ),
            "--wait",
            "--timeout",
            "120s",
        ]),
    );
    let fullname = format!("{}-driftless", release.name);

    let deployment: Deployment = namespace.api().get(&fullname).await.unwrap();
    assert_eq!(
        deployment.status.and_then(|s| s.ready_replicas),
        Some(1),
        "helm --wait returned, so the Deployment is ready"
    );
    let pods = namespace
        .api::<Pod>()
        .list(
            &ListParams::default().labels(&format!("app.kubernetes.io/instance={}", release.name)),
        )
        .await
        .unwrap();
    assert_eq!(pods.items.len(), 1);
    assert_eq!(
        pods.items[0].status.as_ref().unwrap().phase.as_deref(),
        Some("Running"),
        "the pod passed restricted Pod Security admission and runs"
    );
    namespace
        .api::<ServiceAccount>()
        .get(&fullname)
        .await
        .unwrap();
    for service in ["webhook", "metrics"] {
        namespace
            .api::<Service>()
            .get(&format!("{fullname}-{service}"))
            .await
            .unwrap();
    }
    namespace
        .api::<k8s_openapi::api::core::v1::Secret>()
        .get(&format!("{fullname}-webhook"))
        .await
        .unwrap();
    // On by default, as the apiserver stored it: the webhook port from anywhere, the metrics
    // port from the named peers only.
    let policy = namespace
        .api::<k8s_openapi::api::networking::v1::NetworkPolicy>()
        .get(&fullname)
        .await
        .unwrap();
    let policy = serde_json::to_value(policy.spec.unwrap()).unwrap();
    assert_eq!(policy["policyTypes"], json!(["Ingress"]));
    assert_eq!(
        policy["ingress"],
        json!([
            { "ports": [{ "port": "webhook", "protocol": "TCP" }] },
            {
                "ports": [{ "port": "metrics", "protocol": "TCP" }],
                "from": [{ "namespaceSelector": { "matchLabels": { "team": "monitoring" } } }],
            },
        ]),
        "{policy}"
    );
    namespace
        .api::<Role>()
        .get(&format!("{fullname}-leader-election"))
        .await
        .unwrap();
    namespace
        .api::<RoleBinding>()
        .get(&format!("{fullname}-leader-election"))
        .await
        .unwrap();
    let cluster_roles: Api<ClusterRole> = Api::all(namespace.client.clone());
    cluster_roles
        .get(&format!("{fullname}-controller"))
        .await
        .unwrap();
    let bindings: Api<ClusterRoleBinding> = Api::all(namespace.client.clone());
    let apply_binding = match rbac_mode {
        "restricted" => format!("{fullname}-impersonate"),
        _ => format!("{fullname}-cluster-admin"),
    };
    bindings.get(&apply_binding).await.unwrap();

    let token = service_account_token(&namespace.name, &fullname);
    let mut config = admin_config().await;
    config.auth_info = AuthInfo {
        token: Some(token.into()),
        ..Default::default()
    };
    let controller = Client::try_from(config).unwrap();
    (namespace, release, controller)
}

fn service_account_token(namespace: &str, account: &str) -> String {
    let output = Command::new(binaries_dir().join("kubectl"))
        .args(["--kubeconfig", kubeconfig_path().to_str().unwrap()])
        .args(["-n", namespace, "create", "token", account, "--duration=1h"])
        .output()
        .expect("run kubectl create token");
    expect_success("kubectl create token", &output)
        .trim()
        .to_owned()
}

/// A client acting as the chart's ServiceAccount (its `token`) impersonating `user`.
async fn impersonating(user: &str, token: &str) -> Client {
    let mut config = admin_config().await;
    config.auth_info = AuthInfo {
        token: Some(token.to_owned().into()),
        impersonate: Some(user.to_owned()),
        ..Default::default()
    };
    Client::try_from(config).unwrap()
}

fn config_map(name: &str) -> ConfigMap {
    serde_json::from_value(json!({ "metadata": { "name": name }, "data": { "k": "v" } })).unwrap()
}

fn is_forbidden(result: Result<ConfigMap, kube::Error>) -> bool {
    matches!(result, Err(kube::Error::Api(status)) if status.code == 403)
}

/// What the controller needs in every mode: its resources cluster-wide, Secrets read-only,
/// its lease, Events.
async fn assert_controller_basics(namespace: &TestNamespace, controller: &Client) {
    let repositories: Api<driftless::api::GitRepository> = Api::all(controller.clone());
    repositories
        .list(&ListParams::default())
        .await
        .expect("the controller lists GitRepositories in every namespace");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::all(controller.clone());
    secrets
        .list(&ListParams::default().limit(1))
        .await
        .expect("the controller reads Secrets");
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(controller.clone(), &namespace.name);
    let lease = leases
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": "driftless-leader" } })).unwrap(),
        )
        .await
        .expect("the controller creates its leader-election Lease in its namespace");
    leases
        .replace("driftless-leader", &PostParams::default(), &lease)
        .await
        .expect("the controller renews its Lease");
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(controller.clone(), &namespace.name);
    events
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": unique_name("ev") },
                "eventTime": "2026-01-01T00:00:00.000000Z",
                "reportingController": "driftless.dev/controller",
                "reportingInstance": "test",
                "action": "Apply",
                "reason": "Applied",
                "type": "Normal",
                "regarding": { "kind": "ConfigMap", "name": "app", "namespace": namespace.name, "apiVersion": "v1" },
            }))
            .unwrap(),
        )
        .await
        .expect("the controller records Events");
    let namespaces: Api<Namespace> = Api::all(controller.clone());
    namespaces
        .get(&namespace.name)
        .await
        .expect("the controller reads Namespaces");
}

#[tokio::test]
async fn helm_install_in_cluster_admin_mode_may_apply_anything() {
    let (namespace, _release, controller) = install("cluster-admin").await;
    assert_controller_basics(&namespace, &controller).await;
    let elsewhere = TestNamespace::create("chart-elsewhere").await;
    Api::<ConfigMap>::namespaced(controller.clone(), &elsewhere.name)
        .create(&PostParams::default(), &config_map("applied"))
        .await
        .expect("in cluster-admin mode the controller applies into any namespace");
    Api::<ClusterRole>::all(controller.clone())
        .list(&ListParams::default().limit(1))
        .await
        .expect("and cluster-scoped objects");
}

#[tokio::test]
async fn helm_install_in_restricted_mode_applies_only_as_the_tenant() {
    let (namespace, release, controller) = install("restricted").await;
    assert_controller_basics(&namespace, &controller).await;
    let token = service_account_token(&namespace.name, &format!("{}-driftless", release.name));

    // A tenant whose ServiceAccount may manage ConfigMaps in its own namespace only.
    let tenant = TestNamespace::create("chart-tenant").await;
    let other = TestNamespace::create("chart-other").await;
    tenant
        .grant_service_account(
            "deployer",
            &["configmaps"],
            &["get", "list", "create", "patch", "delete"],
        )
        .await;

    // On its own, the controller may apply nothing.
    assert!(
        is_forbidden(
            Api::<ConfigMap>::namespaced(controller.clone(), &tenant.name)
                .create(&PostParams::default(), &config_map("own-rights"))
                .await
        ),
        "in restricted mode the controller must not write with its own rights"
    );

    // Impersonating the tenant (as it does for spec.serviceAccountName), it may do what the
    // tenant may, and nothing more. RBAC takes a moment to see new bindings: retry briefly.
    let as_tenant = impersonating(
        &format!("system:serviceaccount:{}:deployer", tenant.name),
        &token,
    )
    .await;
    let tenant_config_maps: Api<ConfigMap> = Api::namespaced(as_tenant.clone(), &tenant.name);
    let mut created = Err(None);
    for _ in 0..50 {
        match tenant_config_maps
            .create(&PostParams::default(), &config_map("as-tenant"))
            .await
        {
            Ok(object) => {
                created = Ok(object);
                break;
            }
            Err(error) => {
                created = Err(Some(error));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let created = created.unwrap_or_else(|error| {
        panic!("impersonating the tenant, the controller may create its ConfigMaps: {error:?}")
    });
    assert_eq!(created.name_any(), "as-tenant");
    assert!(
        is_forbidden(
            Api::<ConfigMap>::namespaced(as_tenant.clone(), &other.name)
                .create(&PostParams::default(), &config_map("escape"))
                .await
        ),
        "the tenant's ServiceAccount may not write into another namespace"
    );
    let deployments: Api<Deployment> = Api::namespaced(as_tenant.clone(), &tenant.name);
    assert!(
        matches!(deployments.list(&ListParams::default()).await, Err(kube::Error::Api(s)) if s.code == 403),
        "nor beyond its Role"
    );

    // Impersonating anyone but a ServiceAccount is refused.
    let as_admin = impersonating("kubernetes-admin", &token).await;
    assert!(
        is_forbidden(
            Api::<ConfigMap>::namespaced(as_admin, &other.name)
                .create(&PostParams::default(), &config_map("as-admin"))
                .await
        ),
        "the controller may impersonate ServiceAccounts only"
    );
    tenant_config_maps
        .delete("as-tenant", &DeleteParams::default())
        .await
        .unwrap();
}

/// Kills the controller process when the test ends, also on panic.
struct ChildProcess(std::process::Child);

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The driftless binary running as the chart's ServiceAccount (its token in a kubeconfig of
/// its own), with leader election in the release namespace, watching `watched` only.
fn controller_as_service_account(
    release_namespace: &str,
    token: &str,
    watched: &str,
    work: &Path,
    extra_args: &[String],
) -> ChildProcess {
    let mut kubeconfig: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(kubeconfig_path()).expect("read the admin kubeconfig"),
    )
    .expect("the kubeconfig is YAML");
    for user in kubeconfig["users"]
        .as_array_mut()
        .expect("kubeconfig users")
    {
        user["user"] = json!({ "token": token });
    }
    let path = work.join("kubeconfig");
    std::fs::write(&path, serde_json::to_vec(&kubeconfig).unwrap()).unwrap();
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    ChildProcess(
        Command::new(env!("CARGO_BIN_EXE_driftless"))
            .args(["controller", "--log-format", "json", "--leader-elect"])
            .args(["--namespace", watched])
            .args(["--controller-namespace", release_namespace])
            .args([
                "--metrics-bind-address",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .arg("--disable-webhook")
            .arg("--git-cache-dir")
            .arg(work.join("cache"))
            .args(extra_args)
            .env("KUBECONFIG", &path)
            .stdout(std::fs::File::create(work.join("controller.log")).unwrap())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("the driftless binary starts"),
    )
}

/// Waits up to 60 s until GitRepository `name`'s Ready condition has `status`; returns its
/// message and the applied revision.
async fn wait_ready(
    namespace: &TestNamespace,
    name: &str,
    status: &str,
    work: &Path,
) -> (String, Option<String>) {
    let api: Api<driftless::api::GitRepository> = namespace.api();
    let mut last = None;
    for _ in 0..300 {
        if let Ok(object) = api.get(name).await {
            let state = object.status.clone().unwrap_or_default();
            if let Some(ready) = state.conditions.iter().find(|c| c.type_ == "Ready") {
                if ready.status == status {
                    return (ready.message.clone(), state.last_applied_revision);
                }
            }
            last = Some(state);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = std::fs::read_to_string(work.join("controller.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(20).collect();
    panic!(
        "GitRepository {name} never became Ready={status}; last status: {last:?}\n\
         controller log (last lines, newest first):\n{}",
        tail.join("\n")
    )
}

fn git_repository(
    name: &str,
    url: &str,
    service_account: Option<&str>,
) -> driftless::api::GitRepository {
    let mut spec = json!({ "url": url, "path": "deploy", "interval": "1m" });
    if let Some(account) = service_account {
        spec["serviceAccountName"] = json!(account);
    }
    serde_json::from_value(json!({
        "apiVersion": "driftless.dev/v1alpha1",
        "kind": "GitRepository",
        "metadata": { "name": name },
        "spec": spec,
    }))
    .unwrap()
}

fn config_map_manifest(namespace: &str, name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {namespace}\ndata:\n  greeting: hello\n"
    )
}

#[tokio::test]
async fn the_controller_with_the_charts_rights_reconciles_in_both_rbac_modes() {
    use support::git::{GitRepos, HttpGitServer, HttpOptions};

    for mode in ["cluster-admin", "restricted"] {
        let (namespace, release, _controller_client) = install(mode).await;
        let token = service_account_token(&namespace.name, &format!("{}-driftless", release.name));
        let tenant = TestNamespace::create(&format!("chart-e2e-{mode}")).await;
        let other = TestNamespace::create("chart-e2e-other").await;
        if mode == "restricted" {
            tenant
                .grant_service_account("deployer", &["configmaps"], &["*"])
                .await;
        }

        let repos = GitRepos::new();
        let own = repos.create("own");
        let own_commit = own.commit(
            "a ConfigMap in the tenant's namespace",
            &[(
                "deploy/cm.yaml",
                &config_map_manifest(&tenant.name, "greeting"),
            )],
        );
        let escape = repos.create("escape");
        escape.commit(
            "a ConfigMap in someone else's namespace",
            &[(
                "deploy/cm.yaml",
                &config_map_manifest(&other.name, "intruder"),
            )],
        );
        let server = HttpGitServer::start(repos.root(), HttpOptions::default());
        let work = tempfile::tempdir().unwrap();
        let _controller = controller_as_service_account(
            &namespace.name,
            &token,
            &tenant.name,
            work.path(),
            &tenancy_args(mode),
        );

        let account = (mode == "restricted").then_some("deployer");
        let repositories = tenant.api::<driftless::api::GitRepository>();
        repositories
            .create(
                &PostParams::default(),
                &git_repository("own", &server.url_for(&own), account),
            )
            .await
            .unwrap();
        repositories
            .create(
                &PostParams::default(),
                &git_repository("escape", &server.url_for(&escape), account),
            )
            .await
            .unwrap();

        let (_, revision) = wait_ready(&tenant, "own", "True", work.path()).await;
        assert!(
            revision.is_some_and(|r| r.ends_with(&own_commit)),
            "{mode}: the controller applied the commit"
        );
        tenant
            .api::<ConfigMap>()
            .get("greeting")
            .await
            .unwrap_or_else(|e| panic!("{mode}: the ConfigMap was applied: {e}"));

        match mode {
            "cluster-admin" => {
                wait_ready(&tenant, "escape", "True", work.path()).await;
                other
                    .api::<ConfigMap>()
                    .get("intruder")
                    .await
                    .expect("cluster-admin mode applies into any namespace");
            }
            _ => {
                let (message, _) = wait_ready(&tenant, "escape", "False", work.path()).await;
                eprintln!("restricted mode, GitRepository escape: {message}");
                assert!(
                    message.contains("forbidden") || message.contains("Forbidden"),
                    "restricted mode: the tenant's ServiceAccount may not write into another \
                     namespace, and the status says so: {message}"
                );
                let intruder = other.api::<ConfigMap>().get_opt("intruder").await;
                assert!(
                    matches!(intruder, Ok(None)),
                    "restricted mode must not apply outside the tenant's rights: {intruder:?}"
                );
            }
        }
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(namespace.client.clone(), &namespace.name);
        leases
            .get("driftless-leader")
            .await
            .expect("the controller took its leader Lease in the release namespace");
        // Delete while the controller runs, so that its finalizer does not hold the namespace.
        for name in ["own", "escape"] {
            let _ = repositories.delete(name, &DeleteParams::default()).await;
        }
        for _ in 0..150 {
            if repositories
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .is_empty()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        drop(release);
    }
}

/// The flags the chart renders for `rbac.mode` that decide whose identity applies.
fn tenancy_args(rbac_mode: &str) -> Vec<String> {
    args(&render(&[&format!("rbac.mode={rbac_mode}")]))
        .into_iter()
        .filter(|a| a.contains("-service-account"))
        .collect()
}

fn git_repository_manifest(namespace: &str, name: &str) -> String {
    format!(
        "apiVersion: driftless.dev/v1alpha1\nkind: GitRepository\nmetadata:\n  name: {name}\n  \
         namespace: {namespace}\nspec:\n  url: https://example.invalid/takeover.git\n  \
         serviceAccountName: default\n"
    )
}

#[tokio::test]
async fn restricted_mode_never_applies_a_repository_without_a_service_account() {
    use support::git::{GitRepos, HttpGitServer, HttpOptions};

    let (namespace, release, _controller_client) = install("restricted").await;
    let token = service_account_token(&namespace.name, &format!("{}-driftless", release.name));
    let tenant = TestNamespace::create("chart-tenant-a").await;
    let victim = TestNamespace::create("chart-tenant-b").await;
    let repos = GitRepos::new();
    // A GitRepository and a ConfigMap for the other tenant's namespace; and a GitRepository
    // alone, which the controller's own rights (create on GitRepositories everywhere) would
    // let through.
    let mixed = repos.create("mixed");
    mixed.commit(
        "take over the other namespace",
        &[
            (
                "deploy/repository.yaml",
                &git_repository_manifest(&victim.name, "hijack"),
            ),
            (
                "deploy/cm.yaml",
                &config_map_manifest(&victim.name, "intruder"),
            ),
        ],
    );
    let lone = repos.create("lone");
    lone.commit(
        "a GitRepository for the other namespace",
        &[(
            "deploy/repository.yaml",
            &git_repository_manifest(&victim.name, "hijack-alone"),
        )],
    );
    let server = HttpGitServer::start(repos.root(), HttpOptions::default());
    let work = tempfile::tempdir().unwrap();
    let tenancy = tenancy_args("restricted");
    assert_eq!(tenancy, ["--require-service-account"]);
    let _controller =
        controller_as_service_account(&namespace.name, &token, &tenant.name, work.path(), &tenancy);
    let repositories = tenant.api::<driftless::api::GitRepository>();
    for (name, repo) in [("mixed", &mixed), ("lone", &lone)] {
        repositories
            .create(
                &PostParams::default(),
                &git_repository(name, &server.url_for(repo), None),
            )
            .await
            .unwrap();
    }

    for name in ["mixed", "lone"] {
        let (message, revision) = wait_ready(&tenant, name, "False", work.path()).await;
        eprintln!("restricted mode, {name} without a ServiceAccount: {message}");
        assert!(
            message.contains("spec.serviceAccountName is not set"),
            "{name}: {message}"
        );
        assert_eq!(revision, None, "{name}: nothing was applied");
        let object = repositories.get(name).await.unwrap();
        let stalled = object
            .status
            .unwrap_or_default()
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Stalled")
            .unwrap_or_else(|| panic!("{name} is Stalled"));
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", "ServiceAccountRequired")
        );
    }
    let planted = victim
        .api::<driftless::api::GitRepository>()
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        planted.items.is_empty(),
        "nothing may appear in the other tenant's namespace: {:?}",
        planted
            .items
            .iter()
            .map(|r| r.name_any())
            .collect::<Vec<_>>()
    );
    assert!(
        victim
            .api::<ConfigMap>()
            .get_opt("intruder")
            .await
            .unwrap()
            .is_none()
    );
    for name in ["mixed", "lone"] {
        let _ = repositories.delete(name, &DeleteParams::default()).await;
    }
    for _ in 0..150 {
        if repositories
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(release);
}

#[test]
fn webhook_tls_and_disabling_the_webhook() {
    let objects = render(&["webhook.tls.secretName=hooks-tls"]);
    let tls = args(&objects);
    for expected in [
        "--webhook-tls-cert=/etc/driftless/webhook-tls/tls.crt",
        "--webhook-tls-key=/etc/driftless/webhook-tls/tls.key",
    ] {
        assert!(
            tls.iter().any(|a| a == expected),
            "{expected} missing in {tls:?}"
        );
    }
    let pod = &find(&objects, "Deployment", "rel-driftless")["spec"]["template"]["spec"];
    assert!(
        pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["secret"]["secretName"] == "hooks-tls")
    );

    assert!(
        !tls.iter().any(|a| a.starts_with("--webhook-client-ca")),
        "no client CA unless asked for: {tls:?}"
    );

    for (source, volume_key, name_key) in [
        ("configMapName", "configMap", "name"),
        ("secretName", "secret", "secretName"),
    ] {
        let objects = render(&[
            "webhook.tls.secretName=hooks-tls",
            &format!("webhook.tls.clientCA.{source}=git-hosts-ca"),
            "webhook.tls.clientCA.key=bundle.pem",
        ]);
        let mutual = args(&objects);
        let flag = "--webhook-client-ca=/etc/driftless/webhook-client-ca/bundle.pem";
        assert!(
            mutual.iter().any(|a| a == flag),
            "{flag} missing in {mutual:?}"
        );
        let pod = &find(&objects, "Deployment", "rel-driftless")["spec"]["template"]["spec"];
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "webhook-client-ca")
            .unwrap_or_else(|| panic!("no client CA volume from {source}"));
        assert_eq!(volume[volume_key][name_key], "git-hosts-ca", "{volume:?}");
        let mounts = pod["containers"][0]["volumeMounts"].as_array().unwrap();
        assert!(
            mounts.iter().any(|m| m["name"] == "webhook-client-ca"
                && m["mountPath"] == "/etc/driftless/webhook-client-ca"
                && m["readOnly"] == true),
            "{mounts:?}"
        );
    }

    let objects = render(&[
        "webhook.enabled=false",
        "webhook.ingress.enabled=true",
        "webhook.ingress.host=hooks.example.com",
    ]);
    let disabled = args(&objects);
    assert!(disabled.iter().any(|a| a == "--disable-webhook"));
    assert!(!disabled.iter().any(|a| a.starts_with("--webhook-")));
    assert!(kinds(&objects, "Ingress").is_empty());
    assert!(
        !objects
            .iter()
            .any(|o| o["kind"] == "Service" && o["metadata"]["name"] == "rel-driftless-webhook")
    );
    find(&objects, "Service", "rel-driftless-metrics");
}

#[test]
fn every_flag_the_chart_renders_is_one_the_binary_accepts() {
    for sets in [
        vec![],
        vec!["webhook.enabled=false", "leaderElection.enabled=false"],
        vec![
            "webhook.tls.secretName=hooks-tls",
            "webhook.tls.clientCA.configMapName=git-hosts-ca",
            "webhook.secret.existingSecret=hooks",
        ],
        vec![
            "rbac.mode=restricted",
            "controller.defaultServiceAccount=deployer",
        ],
        vec![
            "webhook.secret.existingSecret=hooks",
            "controller.watchNamespace=team-a",
            "controller.logFormat=text",
            "controller.logLevel=debug",
            "metrics.objectLabels=false",
        ],
    ] {
        let rendered = args(&render(&sets));
        // clap parses (and validates) every argument before it acts on the trailing --help,
        // so an unknown flag or a bad value fails here instead of in a crash-looping pod.
        let output = Command::new(env!("CARGO_BIN_EXE_driftless"))
            .args(&rendered)
            .arg("--help")
            .output()
            .expect("run driftless");
        assert!(
            output.status.success(),
            "driftless rejects the chart's arguments {rendered:?}:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
