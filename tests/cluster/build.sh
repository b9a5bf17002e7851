#!/usr/bin/env bash
# Builds the test cluster's upstream binaries from their Go modules (modules/*), once per
# machine: the result is cached outside the checkout, keyed by the versions in versions.env.
# Prints the binary directory on stdout; progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache_root=${DRIFTLESS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/driftless}
command -v go >/dev/null || { echo "build.sh: 'go' is not installed; it is needed to build the test cluster" >&2; exit 1; }

log() { echo "build.sh: $*" >&2; }

# build NAME VERSION LDFLAGS: builds the tools of modules/NAME into cache_root/bin/NAME-VERSION-HASH,
# HASH naming the module's go.mod, so that adding a tool (or re-pinning) builds afresh.
# Builds of one module by several checkouts at once wait for each other (flock).
build_module() {
  local name=$1 version=$2 ldflags=$3 hash lock
  hash=$(sha256sum "$here/modules/$name/go.mod" | cut -c1-8)
  local out="$cache_root/bin/$name-$version-$hash"
  if [[ -f "$out/.complete" ]]; then
    echo "$out"
    return
  fi
  mkdir -p "$cache_root/bin"
  exec {lock}>"$out.lock"
  flock "$lock"
  if [[ -f "$out/.complete" ]]; then # built by another checkout while this one waited
    exec {lock}>&-
    echo "$out"
    return
  fi
  log "building $name $version (first run on this machine; cached in $out)"
  local started=$SECONDS
  rm -rf "$out.tmp"
  mkdir -p "$out.tmp"
  (cd "$here/modules/$name" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp/" tool)
  touch "$out.tmp/.complete"
  rm -rf "$out"
  mv "$out.tmp" "$out"
  log "built $name in $((SECONDS - started)) s"
  exec {lock}>&-
  echo "$out"
}

stamp_kubernetes() {
  local minor major=1 v=$KUBERNETES_VERSION flags=""
  minor=$(echo "$v" | cut -d. -f2)
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  echo "$flags"
}

# `build.sh flux`: Flux's two controllers for the benchmark's baseline, in one directory (the
# second build reuses the first's packages from GOCACHE). Never part of the test cluster.
if [[ ${1:-} == flux ]]; then
  source_dir=$(build_module flux-source "$FLUX_SOURCE_VERSION" "")
  kustomize_dir=$(build_module flux-kustomize "$FLUX_KUSTOMIZE_VERSION" "")
  bin="$cache_root/bin/flux-$FLUX_SOURCE_VERSION-$FLUX_KUSTOMIZE_VERSION"
  mkdir -p "$bin"
  ln -sfn "$source_dir/source-controller" "$bin/source-controller"
  ln -sfn "$kustomize_dir/kustomize-controller" "$bin/kustomize-controller"
  echo "$bin"
  exit 0
fi

# One directory with every binary under the name the tools expect, rebuilt as links each run
# (cheap) so that it always matches the per-module caches.
dirs=(
  "$(build_module etcd "$ETCD_VERSION" "")"
  "$(build_module kwok "$KWOK_VERSION" "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$KUBERNETES_VERSION")"
  "$(build_module helm "$HELM_VERSION" "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION")"
  "$(build_module kubernetes "$KUBERNETES_VERSION" "$(stamp_kubernetes)")"
  "$(build_module kustomize "$KUSTOMIZE_VERSION" "")"
)
# Named by the module builds it links, so that checkouts on different pins never share it.
bin="$cache_root/bin/all-$KUBERNETES_VERSION-$(printf '%s\n' "${dirs[@]}" | sha256sum | cut -c1-12)"
mkdir -p "$bin"
for dir in "${dirs[@]}"; do
  for file in "$dir"/*; do
    name=$(basename "$file")
    [[ $name == server ]] && name=etcd # etcd's main package is go.etcd.io/etcd/server/v3
    ln -sfn "$file" "$bin/$name"
  done
done
echo "$bin"
