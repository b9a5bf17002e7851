#!/usr/bin/env bash
# make demo: a local control plane, the driftless controller, a Git repository served over
# smart HTTP, the quickstart applied from it, then a commit pushed and the cluster converging.
#
# Idempotent: run it again and it reuses the cluster and the built binaries, recreates the Git
# repository and moves the same GitRepository to it. The cluster keeps running afterwards
# (`make cluster-down` stops it); the controller and the git server stop when this script ends.
set -Eeuo pipefail
repo_root=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo_root"

work="$repo_root/.work/demo"
namespace=driftless-demo
name=quickstart
pids=()
demo_name="make demo"
# shellcheck source=demo-common.sh
source scripts/demo-common.sh
on_error() {
  local status=$? line=$1
  printf '\n\033[1;31mmake demo FAILED (exit %s) at scripts/demo.sh line %s\033[0m\n' "$status" "$line" >&2
  if [[ -f "$work/controller.log" ]]; then
    echo "--- last lines of the controller log ($work/controller.log) ---" >&2
    tail -n 30 "$work/controller.log" >&2
  fi
}
trap 'on_error $LINENO' ERR
trap stop_background EXIT
trap 'exit 130' INT TERM

step "Prerequisites (Debian packages, Rust components)"
bash tests/prereqs.sh

step "Control-plane binaries (built once per machine, ~15 min the first time)"
bin=$(bash tests/cluster/build.sh)
export PATH="$bin:$PATH"

step "Local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok nodes)"
KUBECONFIG=$(bash tests/cluster/cluster.sh up)
export KUBECONFIG
# `cluster.sh up` reuses a cluster whose apiserver answers. kube-controller-manager and
# kube-scheduler exit when they lose their leader lease (e.g. after the apiserver restarted),
# and without them no Deployment rolls out: start any that died, with kwokctl's own command.
cluster_name=${DRIFTLESS_CLUSTER_NAME:-driftless-test}
cluster_dir="${DRIFTLESS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/driftless}/kwok/clusters/$cluster_name"
for component in kube-controller-manager kube-scheduler kwok-controller; do
  pid=$(cat "$cluster_dir/pids/$component.pid" 2>/dev/null || true)
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then continue; fi
  echo "$component is not running (pid ${pid:-none}); starting it again"
  start=$(KWOK_WORKDIR="${cluster_dir%/clusters/*}" kwokctl start cluster --name "$cluster_name" --dry-run 2>/dev/null |
    grep -A1 -E "&& $component " || true)
  [[ -n "$start" ]] || fail "cannot tell how kwokctl starts $component; run: make cluster-down && make demo"
  # exec: the pid file must name the component itself, so that `cluster.sh down` stops it.
  start=$(sed "s/&& $component /\&\& exec $component /" <<<"$start")
  setsid bash -c "$start" </dev/null >/dev/null 2>&1
done
kubectl get nodes

step "Building the controller"
cargo build --locked --bin driftless
driftless="$repo_root/target/debug/driftless"
"$driftless" version

step "Installing the GitRepository CRD"
kubectl apply --server-side --force-conflicts -f crds/
kubectl wait --for=condition=Established crd/gitrepositories.driftless.dev --timeout=60s

step "A Git repository with examples/quickstart/deploy, served over smart HTTP (git http-backend)"
rm -rf "$work"
mkdir -p "$work/cache"
quickstart_repository "quickstart: Namespace, Deployment, Service, ConfigMap"
git_port=$(free_port)
python3 scripts/git-http-server.py "$work/git" "$git_port" >"$work/git-http.log" 2>&1 &
pids+=($!)
url="http://127.0.0.1:$git_port/quickstart.git"
for _ in $(seq 50); do
  git ls-remote "$url" >/dev/null 2>&1 && break
  sleep 0.2
done
git clone --quiet "$url" "$work/verify-clone" || fail "the git server at $url does not serve (see $work/git-http.log)"
echo "serving $url (a clone works: $(git -C "$work/verify-clone" log --oneline -1))"

step "Applying the GitRepository $namespace/$name -> $url"
first_sha=$(git -C "$work/checkout" rev-parse HEAD)
apply_quickstart "$url" 5m
# Events of an earlier run would only confuse the picture below.
kubectl -n "$namespace" delete events --field-selector "involvedObject.name=$name" >/dev/null 2>&1 || true

step "Starting driftless controller (log: $work/controller.log)"
metrics_port=$(free_port)
webhook_port=$(free_port)
# The shared receivers' secrets, one file per provider: the demo signs as the generic sender.
mkdir -p "$work/webhook-secrets"
webhook_secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s' "$webhook_secret" >"$work/webhook-secrets/generic"
"$driftless" controller \
  --log-format text \
  --git-cache-dir "$work/cache" \
  --metrics-bind-address "127.0.0.1:$metrics_port" \
  --webhook-bind-address "127.0.0.1:$webhook_port" \
  --webhook-secrets-dir "$work/webhook-secrets" \
  --namespace "$namespace" \
  --controller-namespace "$namespace" \
  >"$work/controller.log" 2>&1 &
controller_pid=$!
pids+=("$controller_pid")
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$metrics_port/healthz" >/dev/null 2>&1 && break
  kill -0 "$controller_pid" 2>/dev/null || fail "the controller exited at start-up (see $work/controller.log)"
  sleep 0.2
done
echo "controller pid $controller_pid, metrics on http://127.0.0.1:$metrics_port/metrics, webhooks on http://127.0.0.1:$webhook_port/hooks/"

# Checked while waiting for a commit to apply (wait_applied).
controller_alive() {
  kill -0 "$controller_pid" 2>/dev/null || fail "the controller exited (see $work/controller.log)"
}

step "Waiting for $name to apply ${first_sha:0:12}"
wait_applied "$first_sha"
kubectl -n "$namespace" wait --for=condition=Ready "gitrepository/$name" --timeout=10s
kubectl -n quickstart rollout status deployment/hello --timeout=120s
kubectl -n "$namespace" get gitrepositories
kubectl -n quickstart get deployments,pods,services,configmaps
kubectl -n quickstart get configmap greeting -o jsonpath='ConfigMap quickstart/greeting message: {.data.message}{"\n"}'

step "git push: 3 replicas and a new greeting"
sed -i 's/^  replicas: 2$/  replicas: 3/' "$work/checkout/deploy/deployment.yaml"
sed -i 's/Hello from driftless/Hello again, pushed at '"$(date -u +%H:%M:%S)"'/' "$work/checkout/deploy/configmap.yaml"
git -C "$work/checkout" -c user.name=demo -c user.email=demo@driftless.invalid commit --quiet -am "hello: 3 replicas, new greeting"
git -C "$work/checkout" --no-pager show --stat --oneline HEAD

step "Before pushing: what would this commit change? (driftless diff, nothing is written)"
# Exit code 1 means "there are changes", as with kubectl diff.
diff_status=0
"$driftless" diff "$name" -n "$namespace" --path "$work/checkout" || diff_status=$?
((diff_status <= 1)) || fail "driftless diff failed (exit $diff_status)"
push_start=$(date +%s%N)
git -C "$work/checkout" push --quiet "$work/git/quickstart.git" main
second_sha=$(git -C "$work/checkout" rev-parse HEAD)
# The push notification, as a Git host sends it, delivered to the generic receiver.
answer=$(deliver_push "$url" "$second_sha" "$webhook_secret" "http://127.0.0.1:$webhook_port/hooks/generic")
echo "webhook answer: HTTP $answer $(cat "$work/webhook-answer" 2>/dev/null)"
if [[ "$answer" != 2* ]]; then
  printf '\033[1;33mthe webhook was not accepted; asking for a reconcile through the annotation instead\033[0m\n'
  kubectl -n "$namespace" annotate --overwrite gitrepository "$name" "driftless.dev/reconcile-requested-at=$(date +%s)"
fi
wait_applied "$second_sha"
elapsed_ms=$((($(date +%s%N) - push_start) / 1000000))
kubectl -n quickstart rollout status deployment/hello --timeout=120s

step "The cluster converged to $second_sha"
"$driftless" get -n "$namespace"
"$driftless" tree "$name" -n "$namespace"
kubectl -n quickstart get deployments,pods
kubectl -n quickstart get configmap greeting -o jsonpath='ConfigMap quickstart/greeting message: {.data.message}{"\n"}'
echo
kubectl -n "$namespace" get events --field-selector "involvedObject.name=$name" --sort-by=.metadata.creationTimestamp 2>/dev/null | tail -n 8 || true

printf '\n\033[1;32mmake demo: push to applied in %d ms (commit %s)\033[0m\n' "$elapsed_ms" "${second_sha:0:12}"
cat <<TEXT

The cluster is still running. Explore it:
  export KUBECONFIG=$KUBECONFIG PATH=$bin:\$PATH
  $driftless get -A                     # add -o wide for the status message
  $driftless diff $name -n $namespace --path $work/checkout   # after a local commit
  kubectl get gitrepositories -A
  kubectl -n quickstart get all
  kubectl describe gitrepository -n $namespace $name
The controller and the git server stop now (controller log: $work/controller.log).
Stop the cluster with: make cluster-down
TEXT
