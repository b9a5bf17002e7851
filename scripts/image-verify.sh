#!/usr/bin/env bash
# Runs the image scripts/image.sh built with podman, the way the chart runs it: as its default
# user (65532), read-only root file system, every capability dropped, no privilege escalation.
# Checks that driftless, kustomize and helm run inside it, that driftless renders a
# kustomization and a chart with them (its sandbox inside a container), and that it holds no
# shell.
#
#   scripts/image-verify.sh [IMAGE_DIR]   (default target/image, as written by scripts/image.sh)
#
# podman runs here only with runc, the cgroupfs manager and no default ulimits (crun refuses
# hybrid cgroups; this machine refuses raising RLIMIT_NOFILE/NPROC): a private containers.conf
# says so. A private storage directory keeps the check away from any other podman user.
set -euo pipefail
export LC_ALL=C
repo=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$repo/target/image}

log() { echo "image-verify.sh: $*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

declare -A debian_packages=([/usr/bin/podman]=podman [/usr/sbin/runc]=runc [/bin/busybox]=busybox-static)
missing=()
for path in "${!debian_packages[@]}"; do
  [[ -e "$path" ]] || missing+=("${debian_packages[$path]}")
done
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || fail "need root to install Debian packages ${missing[*]} (or install them first)"
  log "installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[[ -f $dir/driftless.oci.tar && -f $dir/name && -f $dir/digest ]] ||
  fail "no image in $dir: run scripts/image.sh (make image) first"
name=$(cat "$dir/name")
digest=$(cat "$dir/digest")

state=$(mktemp -d)
trap 'podman_ system reset --force >/dev/null 2>&1 || true; rm -rf "$state"' EXIT
cat >"$state/containers.conf" <<'EOF'
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
EOF
podman_() {
  CONTAINERS_CONF="$state/containers.conf" podman --runtime runc --root "$state/storage" \
    --runroot "$state/run" --tmpdir "$state/tmp" "$@"
}
# The chart's security context, in podman's words.
run() {
  podman_ run --rm --network host --read-only --cap-drop ALL --security-opt no-new-privileges "$@"
}

podman_ load -q -i "$dir/driftless.oci.tar" >&2
loaded=$(podman_ image inspect --format '{{.Digest}}' "$name") || fail "podman load did not name the image $name"
[[ $loaded == "$digest" ]] || fail "podman sees $name as $loaded, scripts/image.sh wrote $digest"
log "loaded $name@$digest"

user=$(podman_ image inspect --format '{{.Config.User}}' "$name")
[[ $user == 65532:65532 ]] || fail "the image's user is '$user', not 65532:65532"

out=$(run "$name" --version) || fail "driftless --version did not run: $out"
[[ $out == "driftless $(cat "$dir/version")"* ]] || fail "driftless --version printed '$out'"
log "driftless --version: $out"
run "$name" --help >/dev/null || fail "driftless --help did not run"
# `driftless version` finds kustomize on PATH and runs it: the renderer works inside the image.
out=$(run "$name" version 2>&1) || fail "driftless version did not run: $out"
grep -q 'kustomize' <<<"$out" || fail "driftless version names no kustomize: $out"
log "driftless version: $(tr '\n' ' ' <<<"$out")"

out=$(run --entrypoint /usr/local/bin/kustomize "$name" version) || fail "kustomize did not run: $out"
log "kustomize version: $out"
out=$(run --entrypoint /usr/local/bin/helm "$name" version --short) || fail "helm did not run: $out"
log "helm version: $out"

# The user and the read-only root, seen from inside by a busybox the check mounts (the image
# has none).
probe() { run -v /bin/busybox:/probe/busybox:ro --entrypoint /probe/busybox "$name" "$@"; }
uid=$(probe id -u)
[[ $uid == 65532 ]] || fail "the container runs as uid $uid, not 65532"
if probe touch /usr/local/bin/written 2>/dev/null; then fail "the root file system is writable"; fi
log "runs as uid $uid; the root file system is read-only"

# Renders inside the container, through driftless's sandbox: a kustomization (kustomize) and a
# chart (helm), from a git repository mounted read-only (`driftless build` reads the commit, as
# the controller reads a fetched revision). Owned by 65532: libgit2 refuses a repository owned
# by another user.
source_repo="$state/repo"
mkdir -p "$source_repo"
cp -r "$repo/tests/fixtures/kustomize/argocd-example-apps/sock-shop" "$source_repo/overlay"
cp -r "$repo/tests/fixtures/helm/sealed-secrets" "$source_repo/chart"
printf '%s\n' 'apiVersion: driftless.dev/v1alpha1' 'kind: GitRepository' \
  'metadata: {name: chart, namespace: default}' \
  'spec: {url: "https://git.invalid/chart.git", path: chart, helm: {}}' >"$source_repo/chart.yaml"
git -C "$source_repo" init -q
git -C "$source_repo" add -A
git -C "$source_repo" -c user.name=test -c user.email=test@invalid commit -qm fixtures
chown -R 65532:65532 "$source_repo"
render() { run -v "$source_repo:/repo:ro" "$name" build "$@"; }
out=$(render /repo/overlay 2>&1) || fail "driftless build of a kustomization failed: $out"
count=$(grep -c '^kind: ' <<<"$out" || true)
((count > 10)) || fail "driftless build of the kustomization rendered $count objects: $out"
log "kustomize rendered $count objects inside the container"
out=$(render /repo --spec-file /repo/chart.yaml 2>&1) || fail "driftless build of a chart failed: $out"
grep -q '^kind: Deployment' <<<"$out" || fail "driftless build of the chart rendered no Deployment: $out"
log "helm rendered $(grep -c '^kind: ' <<<"$out") objects inside the container"

for shell in /bin/sh /bin/bash /usr/bin/sh /bin/busybox; do
  if run --entrypoint "$shell" "$name" -c true >/dev/null 2>&1; then fail "the image holds a shell: $shell"; fi
done
log "no shell in the image"
log "OK: $name@$digest"
