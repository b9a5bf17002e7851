#!/usr/bin/env bash
# Installs what `make test` and `make demo` need on a fresh machine of this kind, and fails
# loudly naming whatever is still missing. Idempotent: a second run does nothing.
set -euo pipefail

# Debian packages: command that must exist -> package that provides it.
declare -A debian_packages=(
  [/usr/sbin/sshd]=openssh-server
  [/usr/bin/ssh-keygen]=openssh-client
  [/usr/lib/git-core/git-http-backend]=git
  [/usr/bin/pkg-config]=pkg-config
  [/usr/include/openssl/ssl.h]=libssl-dev
  [/usr/bin/openssl]=openssl
  [/usr/bin/curl]=curl
  # Gitea's SQLite driver is built with cgo (tests/cluster/build.sh gitea).
  [/usr/bin/gcc]=gcc
  # The test cluster's real node (tests/cluster/node.sh) and the controller image.
  [/usr/bin/containerd]=containerd
  [/usr/sbin/runc]=runc
  [/usr/lib/cni/bridge]=containernetworking-plugins
  [/usr/bin/buildah]=buildah
  [/bin/busybox]=busybox-static
  [/usr/bin/socat]=socat
  [/usr/sbin/ip]=iproute2
)

missing=()
for path in "${!debian_packages[@]}"; do
  [[ -e "$path" ]] || missing+=("${debian_packages[$path]}")
done
if ((${#missing[@]})); then
  echo "prereqs: installing Debian packages: ${missing[*]}" >&2
  if [[ $(id -u) -ne 0 ]]; then
    echo "prereqs: need root to install ${missing[*]} (run as root or install them first)" >&2
    exit 1
  fi
  # Another apt run (a parallel checkout's) holds the lock for a while: wait for it.
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for tool in go cargo rustup; do
  command -v "$tool" >/dev/null || { echo "prereqs: '$tool' is missing and cannot be installed by this script" >&2; exit 1; }
done
for component in rustfmt clippy; do
  rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component" >&2
done
