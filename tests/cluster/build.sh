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

# The binaries of modules/NAME's `tool` lines, named as go build names them (the last path
# element, or the one before a major-version suffix such as /v3).
tool_binaries() {
  awk '/^tool \(/ { block = 1; next } block && /^\)/ { block = 0 } block { print $1 } /^tool [^(]/ { print $2 }' \
    "$here/modules/$1/go.mod" | awk -F/ '{ n = $NF; if (n ~ /^v[0-9]+$/) n = $(NF - 1); print n }'
}

# A cache is complete when it was finished and holds every tool the module lists now (a tool
# added to a module, such as the kubelet, rebuilds a cache made before it).
cache_complete() { # DIR NAME
  [[ -f "$1/.complete" ]] || return 1
  local binary
  for binary in $(tool_binaries "$2"); do
    [[ -e "$1/$binary" ]] || return 1
  done
}

# build_module NAME KEY LDFLAGS [TAGS]: builds the tools of modules/NAME into
# cache_root/bin/NAME-KEY. With build tags, cgo is on (Gitea's SQLite driver needs it);
# without, the binaries are static.
build_module() {
  local name=$1 key=$2 ldflags=$3 tags=${4:-}
  local out="$cache_root/bin/$name-$key"
  if cache_complete "$out" "$name"; then
    echo "$out"
    return
  fi
  # Several checkouts (or a test run and a bench) may build at once: one builds, the others
  # wait for it and then find the cache complete.
  mkdir -p "$cache_root/bin"
  exec {lock}>"$out.lock"
  flock "$lock"
  if cache_complete "$out" "$name"; then
    exec {lock}>&-
    echo "$out"
    return
  fi
  log "building $name $key (first run on this machine; cached in $out)"
  local started=$SECONDS
  rm -rf "$out.tmp"
  mkdir -p "$out.tmp"
  local cgo=0
  [[ -n $tags ]] && cgo=1
  (cd "$here/modules/$name" &&
    CGO_ENABLED=$cgo go build -trimpath -tags "$tags" -ldflags "-s -w $ldflags" -o "$out.tmp/" tool)
  [[ $(type -t "after_build_$name") == function ]] && "after_build_$name" "$out.tmp"
  touch "$out.tmp/.complete"
  rm -rf "$out"
  mv "$out.tmp" "$out"
  exec {lock}>&-
  log "built $name in $((SECONDS - started)) s"
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

# Gitea reads its templates and option files (licences, gitignores, locales) from its
# STATIC_ROOT_PATH at run time (no frontend build: the API, git over HTTP and webhooks need
# none). They are copied next to the binary so that cleaning the module cache breaks nothing.
after_build_gitea() { # DIR
  local src
  src=$(cd "$here/modules/gitea" && go list -m -f '{{.Dir}}' code.gitea.io/gitea)
  mkdir -p "$1/static"
  cp -r --no-preserve=mode "$src/templates" "$src/options" "$src/public" "$1/static/"
}

# `build.sh gitea`: the Git host of the commit-status and webhook tests, alone in its directory
# (tests/support/gitea.rs runs it from there; its static files are in static/).
if [[ ${1:-} == gitea ]]; then
  build_module gitea "$GITEA_VERSION" \
    "-X main.Version=${GITEA_VERSION#v}" "sqlite sqlite_unlock_notify"
  exit 0
fi

helm_ldflags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"

# `build.sh renderers`: only kustomize and helm, the renderers driftless runs, in one directory
# (scripts/image.sh puts them in the controller image; no Kubernetes build needed for that).
if [[ ${1:-} == renderers ]]; then
  renderer_dirs=(
    "$(build_module kustomize "$KUSTOMIZE_VERSION" "")"
    "$(build_module helm "$HELM_VERSION" "$helm_ldflags")"
  )
  bin="$cache_root/bin/renderers-$(printf '%s\n' "${renderer_dirs[@]}" | sha256sum | cut -c1-12)"
  mkdir -p "$bin"
  ln -sfn "${renderer_dirs[0]}/kustomize" "$bin/kustomize"
  ln -sfn "${renderer_dirs[1]}/helm" "$bin/helm"
  echo "$bin"
  exit 0
fi

# One directory with every binary under the name the tools expect, rebuilt as links each run
# (cheap) so that it always matches the per-module caches.
dirs=(
  "$(build_module etcd "$ETCD_VERSION" "")"
  "$(build_module kwok "$KWOK_VERSION" "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$KUBERNETES_VERSION")"
  "$(build_module helm "$HELM_VERSION" "$helm_ldflags")"
  "$(build_module kubernetes "$KUBERNETES_VERSION" "$(stamp_kubernetes)")"
  "$(build_module kustomize "$KUSTOMIZE_VERSION" "")"
)
bin="$cache_root/bin/all-$KUBERNETES_VERSION-$ETCD_VERSION-$KWOK_VERSION-$HELM_VERSION-$KUSTOMIZE_VERSION"
mkdir -p "$bin"
for dir in "${dirs[@]}"; do
  for file in "$dir"/*; do
    name=$(basename "$file")
    [[ $name == server ]] && name=etcd # etcd's main package is go.etcd.io/etcd/server/v3
    ln -sfn "$file" "$bin/$name"
  done
done
echo "$bin"
