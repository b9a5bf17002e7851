#!/usr/bin/env bash
# Regenerates the Go wrapper modules (modules/*/go.mod, go.sum) from versions.env.
# Run it after changing a version; commit the result. Needs only Go and the module proxy.
# With module names as arguments (e.g. `pin.sh kustomize`), regenerates only those.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

write_module() { # name, then go.mod body
  local dir="$here/modules/$1"
  mkdir -p "$dir"
  printf '%s\n' "$2" >"$dir/go.mod"
  rm -f "$dir/go.sum"
  (cd "$dir" && go mod tidy)
}

# k8s.io/kubernetes requires its staging modules at v0.0.0; each must be replaced by the
# published v0.X.Y. The list is read from the release's own go.mod so it follows the version.
kubernetes_module() {
  local staging_version="v0${KUBERNETES_VERSION#v1}"
  local modfile replaces godebug
  modfile=$(cd "$here" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
    sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  godebug=$(grep -E '^godebug ' "$modfile" || true)
  replaces=$(grep -E '^\s+k8s\.io/[a-z0-9-]+ v0\.0\.0\s*$' "$modfile" | awk -v v="$staging_version" \
    '{print "\t" $1 " => " $1 " " v}')
  write_module kubernetes "module driftless.test/cluster/kubernetes

go 1.26

$godebug

tool (
	k8s.io/kubernetes/cmd/kube-apiserver
	k8s.io/kubernetes/cmd/kube-controller-manager
	k8s.io/kubernetes/cmd/kube-scheduler
	k8s.io/kubernetes/cmd/kubectl
)

require k8s.io/kubernetes $KUBERNETES_VERSION

replace (
$replaces
)"
}

etcd_module() {
  write_module etcd "module driftless.test/cluster/etcd

go 1.26

tool go.etcd.io/etcd/server/v3

require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
}
kwok_module() {
  write_module kwok "module driftless.test/cluster/kwok

go 1.26

tool (
	sigs.k8s.io/kwok/cmd/kwok
	sigs.k8s.io/kwok/cmd/kwokctl
)

require sigs.k8s.io/kwok $KWOK_VERSION"
}
helm_module() {
  write_module helm "module driftless.test/cluster/helm

go 1.26

tool helm.sh/helm/v3/cmd/helm

require helm.sh/helm/v3 $HELM_VERSION"
}
kustomize_module() {
  write_module kustomize "module driftless.test/cluster/kustomize

go 1.26

tool sigs.k8s.io/kustomize/kustomize/v5

require sigs.k8s.io/kustomize/kustomize/v5 $KUSTOMIZE_VERSION"
}

modules=("$@")
[[ ${#modules[@]} -gt 0 ]] || modules=(kubernetes etcd kwok helm kustomize)
for module in "${modules[@]}"; do
  "${module}_module"
done
echo "wrapper modules regenerated from versions.env"
