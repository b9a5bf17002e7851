#!/usr/bin/env bash
# Regenerates the Go wrapper modules (modules/*/go.mod, go.sum) from versions.env.
# Run it after changing a version; commit the result. Needs only Go and the module proxy.
# With module names as arguments (e.g. `pin.sh kustomize`), regenerates only those.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

write_module() { # name, go.mod body, then extra `go mod tidy` flags
  local dir="$here/modules/$1"
  mkdir -p "$dir"
  printf '%s\n' "$2" >"$dir/go.mod"
  rm -f "$dir/go.sum"
  (cd "$dir" && go mod tidy "${@:3}")
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
	k8s.io/kubernetes/cmd/kubelet
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

# Flux's controllers, built only for the benchmark (tests/cluster/build.sh flux). Each wrapper
# copies its release's replace lines, except the one pointing at its own ./api: the published
# api module of the same version is the same code.
upstream_replaces() { # module@version
  local modfile
  modfile=$(cd "$here" && go mod download -json "$1" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  awk '/^replace \(/ {block=1; next} block && /^\)/ {block=0; next}
       block && /=>/ {print}
       /^replace [^(]/ {sub(/^replace /, ""); print "\t" $0}' "$modfile" | grep -v '=> \./'
}
flux_source_module() {
  # The module proxy does not serve fluxcd/pkg/artifact v0.18.1..v0.18.3, which the release
  # requires; v0.18.0 differs from them only in go.mod/go.sum. `tidy -e`: the release's tests
  # import fluxcd/pkg/helmtestserver, which is not served either and is not built.
  write_module flux-source "module driftless.test/cluster/flux-source

go 1.26

tool github.com/fluxcd/source-controller

require github.com/fluxcd/source-controller $FLUX_SOURCE_VERSION

replace (
$(upstream_replaces "github.com/fluxcd/source-controller@$FLUX_SOURCE_VERSION")
	github.com/fluxcd/pkg/artifact => github.com/fluxcd/pkg/artifact v0.18.0
)" -e
}
flux_kustomize_module() {
  write_module flux-kustomize "module driftless.test/cluster/flux-kustomize

go 1.26

tool github.com/fluxcd/kustomize-controller

require github.com/fluxcd/kustomize-controller $FLUX_KUSTOMIZE_VERSION

replace (
$(upstream_replaces "github.com/fluxcd/kustomize-controller@$FLUX_KUSTOMIZE_VERSION")
)"
}

# Gitea, the real Git host of the commit-status and webhook tests (tests/cluster/build.sh gitea).
# Its replace lines are copied from the release; `tidy -e`: some of its test-only imports are
# not served, and are not built. v1.27 declares its module path as gitea.dev while the proxy
# serves it as code.gitea.io/gitea, so it cannot be required by either name.
gitea_module() {
  write_module gitea "module driftless.test/cluster/gitea

go 1.26.2

tool code.gitea.io/gitea

require code.gitea.io/gitea $GITEA_VERSION

replace (
$(upstream_replaces "code.gitea.io/gitea@$GITEA_VERSION")
)" -e
}

modules=("$@")
[[ ${#modules[@]} -gt 0 ]] || modules=(kubernetes etcd kwok helm kustomize flux_source flux_kustomize gitea)
for module in "${modules[@]}"; do
  "${module}_module"
done
echo "wrapper modules regenerated from versions.env"
