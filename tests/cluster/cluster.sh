#!/usr/bin/env bash
# The test cluster: a real control plane (etcd, kube-apiserver with RBAC, kube-controller-manager,
# kube-scheduler) and kwok with two simulated nodes, started on loopback by kwokctl's binary
# runtime from the binaries build.sh makes, and one real node (node.sh: a kubelet with
# containerd and runc), tainted so that only pods that tolerate it run there.
#
#   cluster.sh up          start (or reuse) the cluster; prints the kubeconfig path
#   cluster.sh down        stop every process the cluster started, by pid, and forget it
#   cluster.sh kubeconfig  print the kubeconfig path (fails when the cluster is not serving)
#   cluster.sh bin         print the directory of the built binaries (kubectl, helm, ...)
#   cluster.sh load-image ARCHIVE [REFERENCE...]  import an OCI image archive into the real
#                          node's containerd (no registry here), tagged with each REFERENCE too
#   cluster.sh container-pid ID   the host pid of a container on the real node (kernel checks)
#   cluster.sh restart-apiserver  kill kube-apiserver and start it again with the same command
#                          line (for tests of what a controller does when the apiserver goes away)
#   cluster.sh stop-apiserver / start-apiserver   the same in two steps, for a test that acts
#                          while the apiserver is down
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

cache_root=${DRIFTLESS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/driftless}
name=${DRIFTLESS_CLUSTER_NAME:-driftless-test}
export KWOK_WORKDIR="$cache_root/kwok"
cluster_dir="$KWOK_WORKDIR/clusters/$name"
kubeconfig="$cache_root/$name.kubeconfig"

log() { echo "cluster.sh: $*" >&2; }

node() {
  NAME=$name CLUSTER_DIR=$cluster_dir KUBECONFIG_PATH=$kubeconfig BIN=$bin CACHE_ROOT=$cache_root \
    bash "$here/node.sh" "$@"
}

binaries() {
  bin=$("$here/build.sh")
  export PATH="$bin:$PATH" # kwokctl downloads its own kubectl unless one is first on PATH
}

serving() {
  [[ -f "$kubeconfig" ]] && kubectl --kubeconfig "$kubeconfig" get --raw /readyz >/dev/null 2>&1
}

# Every process the cluster started is still running (a dead controller-manager leaves an
# apiserver that answers but Deployments that never roll out).
all_running() {
  local pid_file
  for pid_file in "$cluster_dir"/pids/*.pid; do
    [[ -f "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null || return 1
  done
}

create() {
  log "creating cluster $name (state in $cluster_dir)"
  node down
  kwokctl delete cluster --name "$name" >/dev/null 2>&1 || true
  rm -f "$kubeconfig"
  # The real node's pods reach the apiserver at the node's gateway address: its certificate
  # must name that address too.
  local config="$KWOK_WORKDIR/$name.kwokctl.yaml"
  mkdir -p "$KWOK_WORKDIR"
  { cat "$here/kwokctl.yaml"; printf '  kubeApiserverCertSANs:\n    - %s\n' "$(node gateway)"; } >"$config"
  # kwok fakes the status of the nodes it manages and of their pods: only its own nodes (the
  # annotation `kwokctl scale node` puts on them), never the real one.
  kwokctl create cluster --name "$name" --runtime binary \
    --config "$config" \
    --kube-apiserver-binary "$bin/kube-apiserver" \
    --kube-controller-manager-binary "$bin/kube-controller-manager" \
    --kube-scheduler-binary "$bin/kube-scheduler" \
    --kwok-controller-binary "$bin/kwok" \
    --etcd-binary "$bin/etcd" \
    --kube-authorization \
    --disable-qps-limits \
    --extra-args etcd=unsafe-no-fsync=true \
    --extra-args kwok-controller=manage-all-nodes=false \
    --extra-args kwok-controller=manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --kubeconfig "$kubeconfig" \
    --wait 180s >&2
  kwokctl scale node --name "$name" --replicas 2 >&2
  kubectl --kubeconfig "$kubeconfig" wait --for=condition=Ready node --all --timeout=120s >&2
  # Pods need a ServiceAccount; the controller-manager creates "default" shortly after start.
  until kubectl --kubeconfig "$kubeconfig" -n default get serviceaccount default >/dev/null 2>&1; do sleep 0.5; done
  node up
}

# The apiserver's certificate names the real node's gateway (clusters created before the real
# node existed do not).
certificate_names_gateway() {
  openssl x509 -noout -ext subjectAltName -in "$cluster_dir/pki/admin.crt" 2>/dev/null |
    grep -q "IP Address:$(node gateway)\b"
}

up() {
  binaries
  if serving && all_running; then
    if node running; then
      log "cluster $name is already serving"
    elif certificate_names_gateway; then
      node up
    else
      log "cluster $name serves but was made without the real node; creating it again"
      create
    fi
  else
    create
  fi
  echo "$kubeconfig"
}

down() {
  binaries
  node down
  local pids=()
  if [[ -d "$cluster_dir/pids" ]]; then
    for f in "$cluster_dir"/pids/*.pid; do
      [[ -f "$f" ]] && pids+=("$(cat "$f")")
    done
  fi
  kwokctl delete cluster --name "$name" >&2 || true
  for pid in "${pids[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      log "process $pid survived kwokctl delete; killing it"
      kill "$pid" 2>/dev/null || true
      sleep 1
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  rm -f "$kubeconfig"
  log "cluster $name is down (${#pids[@]} processes stopped)"
}

# Kills one control-plane process (a crash, not a graceful stop: that is what the tests want to
# survive), keeping its command line to start it again.
stop_component() {
  local name=$1 pid_file="$cluster_dir/pids/$1.pid" pid
  pid=$(cat "$pid_file")
  [[ -r "/proc/$pid/cmdline" ]] || { log "$name ($pid) is not running"; return 1; }
  cp "/proc/$pid/cmdline" "$cluster_dir/pids/$name.cmdline"
  kill -9 "$pid"
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  log "$name ($pid) killed"
}

# Starts a control-plane process stopped by stop_component, with the same command line.
start_component() {
  local name=$1 pid_file="$cluster_dir/pids/$1.pid" saved="$cluster_dir/pids/$1.cmdline"
  local -a command
  [[ -f "$saved" ]] || { log "$name was not stopped by this script"; return 1; }
  mapfile -d '' -t command <"$saved"
  (
    cd "$cluster_dir"
    nohup "${command[@]}" >>"$cluster_dir/logs/$name.log" 2>&1 </dev/null &
    echo $! >"$pid_file"
  )
  rm -f "$saved"
  log "$name started: pid $(cat "$pid_file")"
}

restart_component() {
  stop_component "$1"
  start_component "$1"
}

stop_apiserver() {
  binaries
  stop_component kube-apiserver
  if serving; then log "kube-apiserver still answers after the kill"; return 1; fi
}

start_apiserver() {
  binaries
  start_component kube-apiserver
  until serving; do sleep 0.2; done
  # The controller-manager and scheduler hold leader Leases on the apiserver; after an outage
  # they may give up and exit, so they are restarted too, leaving a control plane that works.
  restart_component kube-controller-manager
  restart_component kube-scheduler
  log "kube-apiserver serving again"
}

restart_apiserver() {
  stop_apiserver
  start_apiserver
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  kubeconfig)
    binaries
    serving || { log "cluster $name is not serving; run: $0 up"; exit 1; }
    echo "$kubeconfig"
    ;;
  bin) binaries && echo "$bin" ;;
  restart-apiserver) restart_apiserver ;;
  stop-apiserver) stop_apiserver ;;
  start-apiserver) start_apiserver ;;
  load-image) shift && binaries && node load "$@" ;;
  container-pid) binaries && node container-pid "${2:?container ID}" ;;
  *) echo "usage: $0 up|down|kubeconfig|bin|restart-apiserver|stop-apiserver|start-apiserver|load-image ARCHIVE [REFERENCE...]|container-pid ID" >&2; exit 2 ;;
esac
