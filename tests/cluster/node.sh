#!/usr/bin/env bash
# The test cluster's one real node: a kubelet of the pinned Kubernetes version (built by
# build.sh) with Debian's containerd and runc, beside kwok's simulated nodes. Called by
# cluster.sh, which exports NAME, CLUSTER_DIR, KUBECONFIG_PATH, BIN and CACHE_ROOT.
#
#   node.sh up     start containerd and the kubelet (idempotent); waits until the node is Ready
#   node.sh down   stop the node's pods, the kubelet, containerd and the apiserver forwarder by
#                  pid, unmount what they mounted, delete the bridge
#   node.sh running   exit status: every process of the node runs
#   node.sh gateway   print the address pods reach the host (and the apiserver) at
#   node.sh load ARCHIVE [REFERENCE...]  import an OCI archive into the node's containerd,
#                     tag it with each REFERENCE too; prints the archive's own reference
#   node.sh container-pid ID   the host pid of a container's main process
#
# Networking: pods on this node get their own network namespace on a CNI bridge
# (containernetworking-plugins' `bridge` + `host-local`) whose host side, GATEWAY, is also the
# node's InternalIP. There is no kube-proxy: the apiserver listens on loopback only, so a
# forwarder (socat) listens on GATEWAY:<apiserver port> and the apiserver's certificate names
# GATEWAY (cluster.sh adds it), which is what a pod's in-cluster configuration points at
# (KUBERNETES_SERVICE_HOST/PORT). The node carries the annotation `driftless.dev/apiserver-from-pods`
# with that address, so tests find it in the cluster itself.
#
# The node is tainted and labelled `driftless.dev/real-node`: only pods that tolerate it land
# here (the workloads other tests apply use images nobody can pull here; they stay on kwok).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${NAME:?} ${CLUSTER_DIR:?} ${KUBECONFIG_PATH:?} ${BIN:?} ${CACHE_ROOT:?}"

log() { echo "node.sh: $*" >&2; }

node_dir="$CLUSTER_DIR/real-node"
node_name="$NAME-real-node"
pids="$node_dir/pids"
socket="$node_dir/containerd.sock"
# One /24, one bridge and a few ports per cluster name, so that two clusters (each with a
# kubelet) never share them.
index=$(($(printf %s "$NAME" | cksum | cut -d' ' -f1) % 200 + 20))
bridge="driftless$index"
subnet="10.217.$index.0/24"
gateway="10.217.$index.1"
kubelet_port=$((12000 + index * 2))
kubelet_healthz_port=$((kubelet_port + 1))
label=driftless.dev/real-node
pause_image=localhost/driftless/pause:1

kubectl() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH" "$@"; }
ctr() { command ctr --address "$socket" --namespace k8s.io "$@"; }

apiserver_port() {
  local server
  server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
  echo "${server##*:}"
}

running() {
  local process
  for process in containerd kubelet forwarder; do
    [[ -f "$pids/$process.pid" ]] && kill -0 "$(cat "$pids/$process.pid")" 2>/dev/null || return 1
  done
}

# The sandbox ("pause") image cannot be pulled here: built once with buildah from scratch and
# busybox-static, kept as an OCI archive in the cache.
pause_archive() {
  local archive="$CACHE_ROOT/images/pause-busybox.oci.tar"
  if [[ ! -f $archive ]]; then
    log "building the pause image (once per machine; cached in $archive)"
    mkdir -p "$(dirname "$archive")"
    local container
    container=$(buildah from scratch)
    buildah copy "$container" /bin/busybox /busybox >/dev/null
    # Sleeps until told to stop; PID 1 has no default signal handlers, hence the trap.
    buildah config --entrypoint '["/busybox", "sh", "-c", "trap \"exit 0\" TERM INT; while :; do /busybox sleep 3600 & wait; done"]' "$container"
    buildah commit --quiet "$container" driftless-pause >/dev/null
    buildah rm "$container" >/dev/null
    buildah push --quiet driftless-pause "oci-archive:$archive.tmp:$pause_image" >/dev/null
    buildah rmi driftless-pause >/dev/null
    mv "$archive.tmp" "$archive"
  fi
  echo "$archive"
}

write_containerd_config() {
  mkdir -p "$node_dir/containerd" "$node_dir/cni/conf" "$node_dir/cni/ipam"
  cat >"$node_dir/containerd/config.toml" <<EOF
# containerd for the test cluster's real node: its own root, state and socket, so that it
# shares nothing with any other containerd on the machine.
version = 2
root = "$node_dir/containerd/root"
state = "$node_dir/containerd/state"

[grpc]
  address = "$socket"

[plugins."io.containerd.grpc.v1.cri"]
  # Built locally (pause_archive in node.sh): no registry is reachable from here.
  sandbox_image = "$pause_image"
  # This machine refuses lowering oom_score_adj; without this every sandbox fails with
  # "runc create failed: ... can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    # Plain directory copies: no overlay mounts that a failed stop could leave behind.
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # The kubelet uses the cgroupfs driver (no systemd here); both must agree.
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$node_dir/cni/conf"
EOF
  cat >"$node_dir/cni/conf/10-driftless.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "driftless-$NAME",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "dataDir": "$node_dir/cni/ipam",
        "ranges": [[{ "subnet": "$subnet", "gateway": "$gateway" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    }
  ]
}
EOF
}

write_kubelet_config() {
  mkdir -p "$node_dir/kubelet"
  cat >"$node_dir/kubelet/config.yaml" <<EOF
# The kubelet of the test cluster's real node. Every setting below that is not a path is one
# this machine needs; each says why.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$socket
# Reachable from the apiserver (and from the node's pods) only: the bridge's host address.
address: $gateway
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $kubelet_healthz_port
# A test node: the apiserver's connections (logs, exec) carry no client certificate, so they
# are let in anonymously; only the host and the node's own pods reach this address.
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
# The machine mounts cgroups in hybrid mode (v1 controllers plus the unified hierarchy);
# Kubernetes 1.35 refuses cgroup v1 unless told not to.
failCgroupV1: false
# No systemd runs here to manage cgroups.
cgroupDriver: cgroupfs
# Nested QoS cgroups and node-allocatable enforcement need cgroup writes this machine does
# not grant a kubelet; pods run in flat cgroups, limits are still set per container.
cgroupsPerQOS: false
enforceNodeAllocatable: []
# The machine may have swap; the kubelet would refuse to start.
failSwapOn: false
# No per-pod ephemeral-storage accounting and no eviction: the machine is shared and its disk
# usage says nothing about this node's pods.
localStorageCapacityIsolation: false
evictionHard: {}
# Images arrive by import (no registry): never garbage-collect one, it could not come back.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
registerWithTaints:
  - key: $label
    value: "true"
    effect: NoSchedule
podLogsDir: $node_dir/pod-logs
volumePluginDir: $node_dir/kubelet/volume-plugins
EOF
}

start_process() { # name, log file, command...
  local process=$1 logfile=$2
  shift 2
  nohup "$@" >>"$logfile" 2>&1 </dev/null &
  echo $! >"$pids/$process.pid"
}

up() {
  if running; then
    log "real node $node_name is already running"
    return
  fi
  [[ $(id -u) -eq 0 ]] || { log "the real node needs root (containerd, runc, network namespaces)"; exit 1; }
  local tool
  for tool in containerd runc ctr buildah socat ip /bin/busybox /usr/lib/cni/bridge; do
    command -v "$tool" >/dev/null || { log "'$tool' is missing: run tests/prereqs.sh"; exit 1; }
  done
  # The pause image holds nothing but busybox: it must be the static build.
  if ldd /bin/busybox >/dev/null 2>&1; then
    log "/bin/busybox is dynamically linked: install busybox-static (tests/prereqs.sh)"
    exit 1
  fi
  down_quietly
  log "starting real node $node_name (state in $node_dir)"
  mkdir -p "$pids" "$node_dir/logs"
  local archive
  archive=$(pause_archive)

  # The bridge exists before the first pod, so that the forwarder and the kubelet can listen on
  # its address; the CNI bridge plugin adopts it.
  ip link add name "$bridge" type bridge
  ip addr add "$gateway/24" dev "$bridge"
  ip link set "$bridge" up

  write_containerd_config
  start_process containerd "$node_dir/logs/containerd.log" containerd --config "$node_dir/containerd/config.toml"
  local waited=0
  until ctr version >/dev/null 2>&1; do
    sleep 0.2
    ((++waited < 150)) || { log "containerd did not start; see $node_dir/logs/containerd.log"; exit 1; }
  done
  ctr images import --snapshotter native "$archive" >/dev/null

  local port
  port=$(apiserver_port)
  start_process forwarder "$node_dir/logs/forwarder.log" \
    socat "TCP-LISTEN:$port,bind=$gateway,fork,reuseaddr" "TCP:127.0.0.1:$port"

  write_kubelet_config
  start_process kubelet "$node_dir/logs/kubelet.log" "$BIN/kubelet" \
    --config "$node_dir/kubelet/config.yaml" \
    --kubeconfig "$KUBECONFIG_PATH" \
    --root-dir "$node_dir/kubelet/root" \
    --cert-dir "$node_dir/kubelet/pki" \
    --hostname-override "$node_name" \
    --node-ip "$gateway" \
    --node-labels "$label=true"
  waited=0
  until kubectl get node "$node_name" >/dev/null 2>&1; do
    sleep 0.5
    kill -0 "$(cat "$pids/kubelet.pid")" 2>/dev/null || { log "the kubelet exited; see $node_dir/logs/kubelet.log"; exit 1; }
    ((++waited < 120)) || { log "the kubelet did not register; see $node_dir/logs/kubelet.log"; exit 1; }
  done
  kubectl annotate --overwrite node "$node_name" "driftless.dev/apiserver-from-pods=$gateway:$port" >&2
  kubectl wait --for=condition=Ready "node/$node_name" --timeout=120s >&2
  log "real node $node_name is Ready (pods on $subnet, apiserver for pods at $gateway:$port)"
}

# Everything below runs also on a half-started node, and never fails.
stop_pid() { # name: stops the process recorded in pids/NAME.pid and waits for it
  local file="$pids/$1.pid" pid
  [[ -f $file ]] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    local waited=0
    while kill -0 "$pid" 2>/dev/null && ((waited++ < 100)); do sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

# The pods' containers, stopped through containerd while it still runs, so that their shims
# exit and their network namespaces are released by the CNI plugin.
stop_pods() {
  [[ -S $socket ]] && ctr version >/dev/null 2>&1 || return 0
  local task
  for task in $(ctr tasks ls -q 2>/dev/null); do
    ctr tasks kill --signal SIGKILL "$task" >/dev/null 2>&1 || true
  done
  sleep 0.5
  for task in $(ctr tasks ls -q 2>/dev/null); do
    ctr tasks delete --force "$task" >/dev/null 2>&1 || true
  done
}

# Shims started by this node's containerd (their command line names its socket) outlive it.
stop_shims() {
  local pid
  for pid in $(pgrep -f -- "-address $socket" || true); do
    kill -9 "$pid" 2>/dev/null || true
  done
}

# Mounts under the node's directory (projected token volumes, sandbox /dev/shm, rootfs binds),
# deepest first.
unmount_all() {
  local mount
  awk -v dir="$node_dir/" 'index($2, dir) == 1 { print $2 }' /proc/self/mounts | sort -r |
    while read -r mount; do umount -l "$mount" 2>/dev/null || true; done
}

# Network namespaces of this node's pods left by a stop that could not go through the CNI
# plugin: the ones with an interface on this node's subnet.
release_network_namespaces() {
  local netns
  for netns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    if ip -n "$netns" -4 addr show 2>/dev/null | grep -q "inet 10\.217\.$index\."; then
      ip netns delete "$netns" 2>/dev/null || true
    fi
  done
}

down_quietly() {
  stop_pid kubelet
  stop_pods
  stop_pid containerd
  stop_shims
  stop_pid forwarder
  release_network_namespaces
  unmount_all
  ip link show "$bridge" >/dev/null 2>&1 && ip link delete "$bridge" 2>/dev/null || true
  rm -rf "$node_dir"
}

down() {
  [[ -d $node_dir ]] || return 0
  down_quietly
  log "real node $node_name is down"
}

# Imports an OCI archive into the node's containerd (no registry: pods use these images with
# imagePullPolicy Never or IfNotPresent), then tags it with every further reference given.
load() {
  local archive=$1 imported tag
  shift
  running || { log "real node $node_name is not running: run cluster.sh up"; exit 1; }
  imported=$(ctr images import --snapshotter native "$archive" | awk '/^unpacking/ { print $2 }' | head -n1)
  [[ -n $imported ]] || { log "no image found in $archive"; exit 1; }
  for tag in "$@"; do
    ctr images tag --force "$imported" "$tag" >/dev/null
  done
  echo "$imported"
}

# The host pid of a container's main process (ID as the kubelet reports it, without
# "containerd://").
container_pid() {
  local pid
  pid=$(ctr tasks ls 2>/dev/null | awk -v id="$1" '$1 == id { print $2 }')
  [[ -n $pid ]] || { log "no running task $1 in the node's containerd"; exit 1; }
  echo "$pid"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  running) running ;;
  gateway) echo "$gateway" ;;
  load) shift && load "$@" ;;
  container-pid) container_pid "${2:?container ID}" ;;
  *) echo "usage: $0 up|down|running|gateway|load ARCHIVE [REFERENCE...]|container-pid ID" >&2; exit 2 ;;
esac
