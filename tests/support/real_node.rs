//! The test cluster's real node (`tests/cluster/node.sh`): a kubelet with containerd and runc
//! beside the kwok nodes, tainted and labelled `driftless.dev/real-node`, its pods on a CNI
//! bridge. No kube-proxy runs: pods reach the apiserver through the node's gateway address
//! (annotation `driftless.dev/apiserver-from-pods`), and the host reaches pods at their IPs.

use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
    process::Command,
};

use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client, api::ListParams};
use serde_json::{Value, json};

/// Label and taint key of the real node.
pub const LABEL: &str = "driftless.dev/real-node";
/// The node annotation naming where pods reach the apiserver.
const APISERVER_ANNOTATION: &str = "driftless.dev/apiserver-from-pods";

/// The real node as the tests use it.
pub struct RealNode {
    pub name: String,
    /// The host's address on the pods' bridge: the node's InternalIP, where test servers
    /// listen so that pods reach them.
    pub gateway: IpAddr,
    /// The apiserver as pods reach it (KUBERNETES_SERVICE_HOST/PORT).
    pub apiserver: SocketAddr,
}

impl RealNode {
    /// The cluster's real node; panics (never skips) when there is none or it is not Ready.
    pub async fn find(client: &Client) -> Self {
        let nodes: Api<Node> = Api::all(client.clone());
        let found = nodes
            .list(&ListParams::default().labels(&format!("{LABEL}=true")))
            .await
            .expect("list the cluster's nodes");
        let [node] = found.items.as_slice() else {
            panic!(
                "the test cluster has {} nodes labelled {LABEL}=true, not one: \
                 `tests/cluster/cluster.sh up` starts the real node (see node.sh and its logs \
                 under the cluster's directory)",
                found.items.len()
            )
        };
        let name = node.metadata.name.clone().unwrap_or_default();
        let ready = node
            .status
            .as_ref()
            .and_then(|status| status.conditions.as_ref())
            .is_some_and(|conditions| {
                conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            });
        assert!(ready, "the real node {name} is not Ready");
        let apiserver: SocketAddr = node
            .metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(APISERVER_ANNOTATION))
            .and_then(|address| address.parse().ok())
            .unwrap_or_else(|| panic!("node {name} has no {APISERVER_ANNOTATION} address"));
        Self {
            name,
            gateway: apiserver.ip(),
            apiserver,
        }
    }

    /// Chart values that put the controller's pods on this node and point their in-cluster
    /// configuration at the apiserver (no kube-proxy serves the `kubernetes` Service here).
    pub fn chart_values(&self) -> Value {
        json!({
            "nodeSelector": { LABEL: "true" },
            "tolerations": [{ "key": LABEL, "operator": "Exists", "effect": "NoSchedule" }],
            "controller": {
                "extraEnv": [
                    { "name": "KUBERNETES_SERVICE_HOST", "value": self.apiserver.ip().to_string() },
                    { "name": "KUBERNETES_SERVICE_PORT", "value": self.apiserver.port().to_string() },
                ],
            },
        })
    }
}

/// Imports the OCI archive at `archive` into the real node's containerd, tagged with each of
/// `references` too; returns the archive's own reference.
pub fn load_image(archive: &Path, references: &[&str]) -> String {
    let mut args = vec![archive.to_str().expect("a UTF-8 path")];
    args.extend(references);
    cluster_script("load-image", &args)
}

/// Runs `cluster.sh VERB ARGS...`; its stdout, trimmed.
fn cluster_script(verb: &str, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/cluster.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg(verb)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", script.display()));
    assert!(
        output.status.success(),
        "`cluster.sh {verb} {}` failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// What the kernel says about a container's main process on this host.
#[derive(Debug)]
pub struct ContainerProcess {
    pub pid: u32,
    /// `/proc/PID/status`: `Uid:`, `CapEff:`, `Seccomp:`, `NoNewPrivs:` ...
    pub status: String,
    /// Mount options of the container's root filesystem, as its own mount namespace sees it.
    pub root_mount_options: String,
}

impl ContainerProcess {
    /// The main process of container `container_id` (`containerd://ID` as the kubelet reports
    /// it), as the node's containerd names it.
    pub fn find(container_id: &str) -> Self {
        let id = container_id.rsplit("://").next().expect("a container ID");
        let pid: u32 = cluster_script("container-pid", &[id])
            .parse()
            .expect("cluster.sh container-pid prints a pid");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
        // mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS ...; the last mount on "/" wins.
        let root_mount_options = mountinfo
            .lines()
            .rev()
            .find_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                (fields.get(4) == Some(&"/")).then(|| fields[5].to_owned())
            })
            .unwrap_or_default();
        Self {
            pid,
            status,
            root_mount_options,
        }
    }

    /// The value of `field` in `/proc/PID/status`, e.g. `Seccomp` → `2`.
    pub fn field(&self, field: &str) -> &str {
        self.status
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{field}:")))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {field} in /proc/{}/status", self.pid))
    }
}
