#!/usr/bin/env bash
# make demo-in-cluster: driftless installed as users install it — `helm install` of
# charts/driftless with the image `make image` builds — running as a pod on the test cluster's
# real node (a kubelet with containerd and runc), then the quickstart applied from a Git
# repository and a signed push converging.
#
# No registry: the image is imported into the node's containerd. No kube-proxy: the pods reach
# the apiserver at the node's gateway (the chart's controller.extraEnv sets
# KUBERNETES_SERVICE_HOST/PORT), and the push goes to the webhook Service's endpoint (the pod IP).
# Idempotent: run it again and it upgrades the release and recreates the Git repository.
set -Eeuo pipefail
repo_root=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo_root"

work="$repo_root/.work/demo-in-cluster"
release=driftless
release_namespace=driftless-system
namespace=driftless-demo
name=quickstart
pids=()
demo_name="make demo-in-cluster"
# shellcheck source=demo-common.sh
source scripts/demo-common.sh
on_error() {
  local status=$? line=$1
  printf '\n\033[1;31mmake demo-in-cluster FAILED (exit %s) at scripts/demo-in-cluster.sh line %s\033[0m\n' "$status" "$line" >&2
  kubectl -n "$release_namespace" get pods -o wide >&2 2>/dev/null || true
  kubectl -n "$release_namespace" logs -l "app.kubernetes.io/instance=$release" --tail 30 >&2 2>/dev/null || true
}
trap 'on_error $LINENO' ERR
trap stop_background EXIT
trap 'exit 130' INT TERM
started=$SECONDS

step "Prerequisites (Debian packages: containerd, runc, CNI plugins, buildah, ...)"
bash tests/prereqs.sh

step "Cluster binaries, kubelet included (built once per machine)"
bin=$(bash tests/cluster/build.sh)
export PATH="$bin:$PATH"

step "Local control plane, kwok nodes and the real node"
KUBECONFIG=$(bash tests/cluster/cluster.sh up)
export KUBECONFIG
kubectl get nodes -o wide
real_node=$(kubectl get nodes -l driftless.dev/real-node=true -o jsonpath='{.items[0].metadata.name}')
apiserver=$(kubectl get node "$real_node" -o jsonpath='{.metadata.annotations.driftless\.dev/apiserver-from-pods}')
gateway=${apiserver%:*}
[[ -n $gateway ]] || fail "the real node $real_node has no driftless.dev/apiserver-from-pods annotation"

step "The controller image (make image: built here from scratch, no registry)"
archive=$(bash scripts/image.sh)
image=$(cat "$(dirname "$archive")/name")
echo "$image  ($(cat "$(dirname "$archive")/digest"))"
bash tests/cluster/cluster.sh load-image "$archive" >/dev/null
echo "imported into the containerd of $real_node"

step "helm install $release charts/driftless (on the real node, image $image)"
mkdir -p "$work"
webhook_secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat >"$work/values.yaml" <<YAML
# What this cluster needs beyond the chart's defaults: the pods go to the real node, and reach
# the apiserver at the node's gateway (no kube-proxy serves the kubernetes Service here).
nodeSelector:
  driftless.dev/real-node: "true"
tolerations:
  - key: driftless.dev/real-node
    operator: Exists
    effect: NoSchedule
controller:
  extraEnv:
    - name: KUBERNETES_SERVICE_HOST
      value: "${gateway}"
    - name: KUBERNETES_SERVICE_PORT
      value: "${apiserver##*:}"
webhook:
  secret:
    create: true
    generic: "${webhook_secret}"
YAML
image_repository=${image%:*}
image_tag=${image##*:}
helm upgrade --install "$release" charts/driftless \
  --namespace "$release_namespace" --create-namespace \
  --values "$work/values.yaml" \
  --set "image.repository=$image_repository,image.tag=$image_tag" \
  --wait --timeout 180s
kubectl -n "$release_namespace" get pods -o wide

step "A Git repository with examples/quickstart/deploy, served on the node's gateway ($gateway)"
quickstart_repository "quickstart"
git_port=$(free_port "$gateway")
python3 scripts/git-http-server.py "$work/git" "$git_port" "$gateway" >"$work/git-http.log" 2>&1 &
pids+=($!)
url="http://$gateway:$git_port/quickstart.git"
for _ in $(seq 50); do git ls-remote "$url" >/dev/null 2>&1 && break; sleep 0.2; done
git ls-remote "$url" >/dev/null || fail "the git server at $url does not serve (see $work/git-http.log)"

step "Applying the GitRepository $namespace/$name -> $url"
first_sha=$(git -C "$work/checkout" rev-parse HEAD)
apply_quickstart "$url" 1h

step "Waiting for the controller pod to apply ${first_sha:0:12}"
wait_applied "$first_sha"
kubectl -n "$namespace" get gitrepositories
kubectl -n quickstart get deployments,services,configmaps

step "git push, and the push event delivered to the webhook Service's endpoint"
sed -i 's/Hello from driftless/Hello from a pod, pushed at '"$(date -u +%H:%M:%S)"'/' "$work/checkout/deploy/configmap.yaml"
git -C "$work/checkout" -c user.name=demo -c user.email=demo@driftless.invalid commit --quiet -am "a new greeting"
git -C "$work/checkout" push --quiet "$work/git/quickstart.git" main
second_sha=$(git -C "$work/checkout" rev-parse HEAD)
push_start=$(date +%s%N)
endpoint=$(kubectl -n "$release_namespace" get endpointslices -l "kubernetes.io/service-name=$release-webhook" \
  -o jsonpath='{.items[0].endpoints[0].addresses[0]}:{.items[0].ports[0].port}')
answer=$(deliver_push "$url" "$second_sha" "$webhook_secret" "http://$endpoint/hooks/generic")
echo "POST http://$endpoint/hooks/generic -> HTTP $answer $(cat "$work/webhook-answer" 2>/dev/null)"
[[ $answer == 2* ]] || fail "the controller pod did not accept the push"
wait_applied "$second_sha"
elapsed_ms=$((($(date +%s%N) - push_start) / 1000000))
kubectl -n quickstart get configmap greeting -o jsonpath='ConfigMap quickstart/greeting message: {.data.message}{"\n"}'

printf '\n\033[1;32mmake demo-in-cluster: push to applied in %d ms by the controller pod (whole run %d s)\033[0m\n' \
  "$elapsed_ms" "$((SECONDS - started))"
cat <<TEXT

The release stays installed. Explore it:
  export KUBECONFIG=$KUBECONFIG PATH=$bin:\$PATH
  kubectl -n $release_namespace get pods -o wide      # on $real_node
  kubectl -n $release_namespace logs deploy/$release
  helm -n $release_namespace get values $release
Remove it: target/debug/driftless uninstall -n $namespace (or kubectl delete gitrepository), then
  helm -n $release_namespace uninstall $release
The git server stops now.
TEXT
