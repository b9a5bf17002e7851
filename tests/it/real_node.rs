//! `helm install` as a user runs it, on the test cluster's real node (a kubelet with containerd
//! and runc, `tests/cluster/node.sh`): the controller image built here (`scripts/image.sh`),
//! two replicas under the chart's restricted security context, in each RBAC mode. The pods talk
//! to the apiserver with in-cluster configuration (their projected ServiceAccount token), so
//! every call they make is one the chart's RBAC allows. Checked: the kernel's view of the
//! container (user, capabilities, seccomp, read-only root), the probes, the leader Lease, a
//! Kustomize overlay and a Helm chart rendered by the binaries inside the image, a signed push
//! through the webhook Service, fail-over to the standby replica, `helm upgrade` to a new image
//! while a push arrives, and `driftless uninstall` + `helm uninstall` leaving nothing behind.
//!
//! No kube-proxy runs here: a push goes to the webhook Service's endpoints (the ready pods' IPs,
//! as kube-proxy would pick), reachable from the host over the node's bridge.

use crate::chart::{chart_dir, expect_success, helm, restricted_namespace};
use crate::support;

use std::{
    net::SocketAddr,
    path::PathBuf,
    process::Command,
    sync::OnceLock,
    time::{Duration, Instant},
};

use driftless::api::GitRepository;
use k8s_openapi::api::{
    coordination::v1::Lease,
    core::v1::{ConfigMap, Namespace, Pod},
    discovery::v1::EndpointSlice,
    rbac::v1::{ClusterRole, ClusterRoleBinding},
};
use kube::{
    Api, Client,
    api::{DeleteParams, ListParams},
};
use serde_json::{Value, json};
use support::{
    cluster::{TestNamespace, admin_client, kubeconfig_path, unique_name},
    git::{GitRepos, HttpGitServer, HttpOptions, TestRepo},
    real_node::{ContainerProcess, RealNode, load_image},
    waiting::wait_applied_named,
};

const WEBHOOK_SECRET: &str = "real-node-s3cret";
/// The uid and gid the image and the chart run the controller as.
const NONROOT: &str = "65532";

/// The controller image as `scripts/image.sh` builds it: an OCI archive and its reference.
struct ControllerImage {
    archive: PathBuf,
    repository: String,
    tag: String,
}

/// Built once per test process: from `DRIFTLESS_TEST_IMAGE` (an archive `make image` wrote),
/// else by `scripts/image.sh` around the driftless binary this test run built (same layers and
/// files as the release image; the binary is the test profile's).
fn controller_image() -> &'static ControllerImage {
    static IMAGE: OnceLock<ControllerImage> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let archive = match std::env::var_os("DRIFTLESS_TEST_IMAGE") {
            Some(archive) => PathBuf::from(archive),
            None => {
                let started = Instant::now();
                let output = Command::new("bash")
                    .arg(root.join("scripts/image.sh"))
                    .env("DRIFTLESS_IMAGE_BINARY", env!("CARGO_BIN_EXE_driftless"))
                    .env("DRIFTLESS_IMAGE_DIR", root.join("target/test-image"))
                    .output()
                    .expect("run scripts/image.sh");
                let stdout = expect_success("scripts/image.sh", &output);
                eprintln!("controller image built in {:?}", started.elapsed());
                PathBuf::from(stdout.trim())
            }
        };
        let name_file = archive.with_file_name("name");
        let name = std::fs::read_to_string(&name_file).unwrap_or_else(|error| {
            panic!(
                "{} (written by scripts/image.sh beside the archive): {error}",
                name_file.display()
            )
        });
        let (repository, tag) = name
            .trim()
            .rsplit_once(':')
            .expect("the image name has a tag");
        ControllerImage {
            archive,
            repository: repository.to_owned(),
            tag: tag.to_owned(),
        }
    })
}

#[tokio::test]
async fn helm_install_on_the_real_node_in_cluster_admin_mode() {
    install_and_operate("cluster-admin").await;
}

#[tokio::test]
async fn helm_install_on_the_real_node_in_restricted_mode() {
    install_and_operate("restricted").await;
}

/// Uninstalls the release when a test fails half-way (the test uninstalls it itself otherwise).
struct Release {
    name: String,
    namespace: String,
    installed: bool,
}

impl Drop for Release {
    fn drop(&mut self) {
        if self.installed {
            let _ = helm_in(&self.namespace, &["uninstall", &self.name, "--wait"]);
        }
    }
}

fn helm_in(namespace: &str, args: &[&str]) -> std::process::Output {
    let kubeconfig = kubeconfig_path().to_str().unwrap();
    let mut all = args.to_vec();
    all.extend(["--namespace", namespace, "--kubeconfig", kubeconfig]);
    helm(&all)
}

async fn install_and_operate(mode: &str) {
    let started = Instant::now();
    let step = |what: &str| eprintln!("[{mode} {:>6.1?}] {what}", started.elapsed());
    support::cluster::install_crds().await;
    let admin = admin_client().await;
    let node = RealNode::find(&admin).await;
    let image = controller_image();
    let upgraded_tag = format!("{}-rebuilt", image.tag);
    load_image(
        &image.archive,
        &[&format!("{}:{upgraded_tag}", image.repository)],
    );
    step("image loaded into the node's containerd");

    let namespace = restricted_namespace(&format!("real-node-{mode}")).await;
    let tenant = TestNamespace::create(&format!("real-node-tenant-{mode}")).await;
    let account = (mode == "restricted").then_some("deployer");
    if let Some(account) = account {
        tenant
            .grant_service_account(account, &["configmaps"], &["*"])
            .await;
    }
    let repos = GitRepos::new();
    let repo = repos.create("app");
    let first = commit_app(&repo, "an overlay and a chart", "one");
    let server = HttpGitServer::start(repos.root(), HttpOptions::default().listen_on(node.gateway));
    let url = server.url_for(&repo);

    // helm install, as a user would: the chart's defaults, plus where this cluster's pods run
    // and reach the apiserver, two replicas, and the webhook's shared secret.
    let mut values = node.chart_values();
    merge(
        &mut values,
        json!({
            "replicas": 2,
            "image": { "repository": image.repository, "tag": image.tag },
            "rbac": { "mode": mode },
            "controller": { "watchNamespace": tenant.name },
            "webhook": { "secret": { "create": true, "github": WEBHOOK_SECRET } },
        }),
    );
    let work = tempfile::tempdir().unwrap();
    let values_file = work.path().join("values.json");
    std::fs::write(&values_file, values.to_string()).unwrap();
    let mut release = Release {
        name: unique_name("rn"),
        namespace: namespace.name.clone(),
        installed: true,
    };
    let fullname = format!("{}-driftless", release.name);
    let chart = chart_dir();
    expect_success(
        "helm install",
        &helm_in(
            &namespace.name,
            &[
                "install",
                &release.name,
                chart.to_str().unwrap(),
                "--values",
                values_file.to_str().unwrap(),
                "--wait",
                "--timeout",
                "180s",
            ],
        ),
    );
    step("helm install --wait returned: both replicas Ready");

    let pods = release_pods(&namespace, &release.name).await;
    assert_eq!(pods.len(), 2, "replicas: 2 gives two pods");
    for pod in &pods {
        assert_runs_restricted_on(pod, &node);
    }
    step("both pods run on the real node as 65532, no capabilities, seccomp, read-only root");

    let leader = wait_for_leader(&namespace, &pods, None).await;
    step(&format!("{leader} holds the leader Lease"));

    let repositories = tenant.api::<GitRepository>();
    for (name, spec) in [
        ("overlay", json!({ "path": "deploy/overlay" })),
        ("chart", json!({ "path": "chart", "helm": {} })),
    ] {
        let mut spec = spec;
        merge(&mut spec, json!({ "url": url, "interval": "1h" }));
        if let Some(account) = account {
            spec["serviceAccountName"] = json!(account);
        }
        tenant.create_git_repository(name, spec).await;
    }
    for name in ["overlay", "chart"] {
        wait_applied_named(&tenant, name, &first, Duration::from_secs(120)).await;
    }
    assert_rendered(&tenant, "one").await;
    step("the overlay (kustomize) and the chart (helm) inside the image rendered and applied");

    // The polling interval is an hour: only the push makes the controller fetch again.
    let second = commit_app(&repo, "second", "two");
    push_through_service(&namespace, &fullname, &repo, &url, &second).await;
    for name in ["overlay", "chart"] {
        wait_applied_named(&tenant, name, &second, Duration::from_secs(60)).await;
    }
    assert_rendered(&tenant, "two").await;
    step("a signed push through the webhook Service was applied");

    Api::<Pod>::namespaced(admin.clone(), &namespace.name)
        .delete(&leader, &DeleteParams::default())
        .await
        .expect("delete the leader pod");
    let deleted = Instant::now();
    let new_leader = wait_for_leader(&namespace, &pods, Some(&leader)).await;
    step(&format!(
        "{new_leader} ({}) took the Lease {:?} after the leader pod was deleted",
        if pods.iter().any(|pod| pod_name(pod) == new_leader) {
            "the standby"
        } else {
            "the leader's replacement"
        },
        deleted.elapsed()
    ));
    let third = commit_app(&repo, "third", "three");
    push_through_service(&namespace, &fullname, &repo, &url, &third).await;
    for name in ["overlay", "chart"] {
        wait_applied_named(&tenant, name, &third, Duration::from_secs(60)).await;
    }
    step("the new leader applied the next push");

    // helm upgrade to another image (the same files under another tag: a new pod template),
    // and a push while the pods roll.
    expect_success(
        "helm upgrade",
        &helm_in(
            &namespace.name,
            &[
                "upgrade",
                &release.name,
                chart.to_str().unwrap(),
                "--values",
                values_file.to_str().unwrap(),
                "--set",
                &format!("image.tag={upgraded_tag}"),
            ],
        ),
    );
    let fourth = commit_app(&repo, "fourth", "four");
    push_through_service(&namespace, &fullname, &repo, &url, &fourth).await;
    step("helm upgrade started; a push was accepted during the roll");
    let upgraded = format!("{}:{upgraded_tag}", image.repository);
    let rolled = wait_rolled_to(&namespace, &release.name, &upgraded).await;
    for pod in &rolled {
        assert_runs_restricted_on(pod, &node);
    }
    for name in ["overlay", "chart"] {
        wait_applied_named(&tenant, name, &fourth, Duration::from_secs(120)).await;
    }
    assert_rendered(&tenant, "four").await;
    wait_for_leader(&namespace, &rolled, None).await;
    step("the pods rolled to the new image; the push sent during the roll was applied");
    assert_no_restarts(&namespace, &release.name).await;

    // `driftless uninstall` while the controller runs, then `helm uninstall`.
    let output = Command::new(env!("CARGO_BIN_EXE_driftless"))
        .args(["uninstall", "--namespace", &tenant.name, "--kubeconfig"])
        .arg(kubeconfig_path())
        .output()
        .expect("run driftless uninstall");
    expect_success("driftless uninstall", &output);
    assert!(
        repositories
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "driftless uninstall removed every GitRepository"
    );
    let config_maps = tenant.api::<ConfigMap>();
    for pruned in ["overlay-greeting", "chart-greeting"] {
        assert!(
            config_maps.get_opt(pruned).await.unwrap().is_none(),
            "the controller pruned {pruned} before its GitRepository went"
        );
    }
    expect_success(
        "helm uninstall",
        &helm_in(
            &namespace.name,
            &["uninstall", &release.name, "--wait", "--timeout", "120s"],
        ),
    );
    release.installed = false;
    wait_pods_gone(&namespace, &release.name).await;
    let selector = format!("app.kubernetes.io/instance={}", release.name);
    let cluster_roles = Api::<ClusterRole>::all(admin.clone())
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap();
    let bindings = Api::<ClusterRoleBinding>::all(admin.clone())
        .list(&ListParams::default().labels(&selector))
        .await
        .unwrap();
    assert!(
        cluster_roles.items.is_empty() && bindings.items.is_empty(),
        "helm uninstall removed the release's cluster-wide RBAC"
    );
    for name in [&tenant.name, &namespace.name] {
        delete_and_wait_gone(&admin, name).await;
    }
    step("driftless uninstall + helm uninstall: the pods, RBAC and both namespaces are gone");
}

/// Merges `patch` into `base`, objects key by key.
fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(base), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (base, patch) => *base = patch,
    }
}

/// A Kustomize base and overlay (the overlay prefixes names) and a Helm chart whose value
/// `greeting` lands in its ConfigMap: what each renderer produced is visible in the names.
fn app_files(greeting: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "deploy/base/kustomization.yaml",
            "resources:\n  - configmap.yaml\n".to_owned(),
        ),
        (
            "deploy/base/configmap.yaml",
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: greeting\ndata:\n  greeting: {greeting}\n"
            ),
        ),
        (
            "deploy/overlay/kustomization.yaml",
            "resources:\n  - ../base\nnamePrefix: overlay-\n".to_owned(),
        ),
        (
            "chart/Chart.yaml",
            "apiVersion: v2\nname: greeting\nversion: 0.1.0\n".to_owned(),
        ),
        ("chart/values.yaml", format!("greeting: {greeting}\n")),
        (
            "chart/templates/configmap.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: chart-greeting\n  namespace: {{ .Release.Namespace }}\ndata:\n  greeting: {{ .Values.greeting | quote }}\n".to_owned(),
        ),
    ]
}

/// Commits [`app_files`] with `greeting` on `main`.
fn commit_app(repo: &TestRepo, message: &str, greeting: &str) -> String {
    let files = app_files(greeting);
    let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    repo.commit(message, &files)
}

async fn assert_rendered(tenant: &TestNamespace, greeting: &str) {
    let config_maps = tenant.api::<ConfigMap>();
    for name in ["overlay-greeting", "chart-greeting"] {
        let data = config_maps
            .get(name)
            .await
            .unwrap_or_else(|error| panic!("ConfigMap {name} was applied: {error}"))
            .data
            .unwrap_or_default();
        assert_eq!(
            data.get("greeting").map(String::as_str),
            Some(greeting),
            "ConfigMap {name} holds the rendered value"
        );
    }
}

async fn release_pods(namespace: &TestNamespace, release: &str) -> Vec<Pod> {
    namespace
        .api::<Pod>()
        .list(&ListParams::default().labels(&format!("app.kubernetes.io/instance={release}")))
        .await
        .unwrap()
        .items
}

fn pod_name(pod: &Pod) -> String {
    pod.metadata.name.clone().unwrap_or_default()
}

fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|status| status.conditions.as_ref())
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
}

/// The pod is on the real node, Ready (its readiness probe passed), and the kernel shows its
/// controller process as the chart's security context asks.
fn assert_runs_restricted_on(pod: &Pod, node: &RealNode) {
    let name = pod_name(pod);
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.node_name.as_deref(), Some(node.name.as_str()));
    assert!(is_ready(pod), "pod {name} is Ready");
    assert!(
        spec.containers[0]
            .env
            .iter()
            .flatten()
            .all(|env| env.name != "KUBECONFIG"),
        "pod {name} runs with in-cluster configuration, no kubeconfig"
    );
    assert!(
        spec.volumes
            .iter()
            .flatten()
            .any(
                |volume| volume.projected.as_ref().is_some_and(|projected| projected
                    .sources
                    .iter()
                    .flatten()
                    .any(|source| source.service_account_token.is_some()))
            ),
        "pod {name} has the projected ServiceAccount token"
    );
    let status = pod.status.as_ref().unwrap();
    let container = &status.container_statuses.as_ref().unwrap()[0];
    let process = ContainerProcess::find(container.container_id.as_deref().unwrap());
    let ids = |field: &str| -> Vec<String> {
        process
            .field(field)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(ids("Uid"), [NONROOT; 4], "pod {name}: user 65532");
    assert_eq!(ids("Gid"), [NONROOT; 4], "pod {name}: group 65532");
    assert_eq!(
        process.field("CapEff"),
        "0000000000000000",
        "pod {name}: no capabilities"
    );
    assert_eq!(
        process.field("CapBnd"),
        "0000000000000000",
        "pod {name}: all capabilities dropped"
    );
    assert_eq!(
        process.field("Seccomp"),
        "2",
        "pod {name}: a seccomp filter (RuntimeDefault)"
    );
    assert_eq!(
        process.field("NoNewPrivs"),
        "1",
        "pod {name}: no privilege escalation"
    );
    assert!(
        process.root_mount_options.split(',').any(|o| o == "ro"),
        "pod {name}: read-only root file system, mounted {}",
        process.root_mount_options
    );
}

/// Waits until the leader Lease is held by a pod of `candidates`' ReplicaSets (one of them, or
/// one the Deployment started in place of a deleted one), not `previous`; returns the holder's
/// pod name (the controller's identity is `HOSTNAME_…`). After the leader pod is deleted, the
/// standby and the leader's replacement both ask for the Lease: either may win.
async fn wait_for_leader(
    namespace: &TestNamespace,
    candidates: &[Pod],
    previous: Option<&str>,
) -> String {
    let leases = namespace.api::<Lease>();
    let names: Vec<String> = candidates.iter().map(pod_name).collect();
    let replica_set_of = |pod: &str| {
        pod.rsplit_once('-')
            .map_or(String::new(), |(set, _)| set.to_owned())
    };
    let replica_sets: Vec<String> = names.iter().map(|name| replica_set_of(name)).collect();
    let mut last = None;
    for _ in 0..240 {
        if let Some(lease) = leases.get_opt("driftless-leader").await.unwrap() {
            let holder = lease
                .spec
                .and_then(|spec| spec.holder_identity)
                .unwrap_or_default();
            let pod = holder.split('_').next().unwrap_or_default().to_owned();
            if replica_sets.contains(&replica_set_of(&pod)) && Some(pod.as_str()) != previous {
                return pod;
            }
            last = Some(holder);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("no pod of {names:?} (other than {previous:?}) took the Lease; last holder {last:?}")
}

/// The ready endpoints of the chart's webhook Service, as kube-proxy would route to them.
async fn webhook_endpoints(namespace: &TestNamespace, fullname: &str) -> Vec<SocketAddr> {
    let service = format!("{fullname}-webhook");
    let slices = namespace
        .api::<EndpointSlice>()
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .unwrap();
    let mut addresses = Vec::new();
    for slice in slices.items {
        let port = slice
            .ports
            .iter()
            .flatten()
            .find(|port| port.name.as_deref() == Some("webhook"))
            .and_then(|port| port.port);
        let Some(port) = port else { continue };
        for endpoint in slice.endpoints {
            let ready = endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(false);
            if !ready {
                continue;
            }
            for address in endpoint.addresses {
                if let Ok(ip) = address.parse::<std::net::IpAddr>() {
                    addresses.push(SocketAddr::new(ip, port as u16));
                }
            }
        }
    }
    addresses
}

/// Delivers a signed GitHub push of `after` to the webhook Service, retrying (up to 60 s) while
/// no ready endpoint accepts it, as a Git host retries a failed delivery.
async fn push_through_service(
    namespace: &TestNamespace,
    fullname: &str,
    repo: &TestRepo,
    url: &str,
    after: &str,
) {
    let body = json!({
        "ref": "refs/heads/main",
        "before": "0000000000000000000000000000000000000000",
        "after": after,
        "repository": {
            "name": repo.name(),
            "full_name": format!("test/{}", repo.name()),
            "clone_url": url,
            "html_url": url.trim_end_matches(".git"),
            "default_branch": "main",
        },
    })
    .to_string();
    let mut last = String::from("no ready endpoint");
    for attempt in 0..120 {
        for address in webhook_endpoints(namespace, fullname).await {
            let delivery = format!("{after}-{attempt}");
            let body = body.clone();
            let sent = tokio::task::spawn_blocking(move || {
                support::webhook::github_push_to(
                    address,
                    "/hooks/github",
                    WEBHOOK_SECRET.as_bytes(),
                    &delivery,
                    body.as_bytes(),
                )
            })
            .await
            .unwrap();
            match sent {
                Ok((status, _)) if (200..300).contains(&status) => return,
                Ok((status, response)) => last = format!("{address}: {status} {response}"),
                Err(error) => last = format!("{address}: {error}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("no endpoint of {fullname}-webhook accepted the push of {after}: {last}");
}

/// Waits until every pod of the release runs `image` and two are Ready; returns them.
async fn wait_rolled_to(namespace: &TestNamespace, release: &str, image: &str) -> Vec<Pod> {
    let mut last = Vec::new();
    for _ in 0..360 {
        let pods = release_pods(namespace, release).await;
        let rolled = pods.len() == 2
            && pods.iter().all(|pod| {
                is_ready(pod)
                    && pod.spec.as_ref().unwrap().containers[0].image.as_deref() == Some(image)
            });
        if rolled {
            return pods;
        }
        last = pods
            .iter()
            .map(|pod| {
                format!(
                    "{} {:?} ready={}",
                    pod_name(pod),
                    pod.spec.as_ref().unwrap().containers[0].image,
                    is_ready(pod)
                )
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the release did not roll to {image}; pods: {last:?}");
}

/// The liveness probe never restarted a container.
async fn assert_no_restarts(namespace: &TestNamespace, release: &str) {
    for pod in release_pods(namespace, release).await {
        let restarts: i32 = pod
            .status
            .as_ref()
            .and_then(|status| status.container_statuses.as_ref())
            .iter()
            .flat_map(|statuses| statuses.iter())
            .map(|status| status.restart_count)
            .sum();
        assert_eq!(restarts, 0, "pod {} restarted", pod_name(&pod));
    }
}

async fn wait_pods_gone(namespace: &TestNamespace, release: &str) {
    for _ in 0..240 {
        if release_pods(namespace, release).await.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the release's pods were not removed from the real node");
}

/// Deletes namespace `name` and waits until it is gone: nothing (no finalizer) holds it.
async fn delete_and_wait_gone(client: &Client, name: &str) {
    let namespaces = Api::<Namespace>::all(client.clone());
    let _ = namespaces.delete(name, &DeleteParams::background()).await;
    for _ in 0..240 {
        if namespaces.get_opt(name).await.unwrap().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let left = namespaces.get(name).await.unwrap();
    panic!("namespace {name} is stuck: {:?}", left.status);
}
