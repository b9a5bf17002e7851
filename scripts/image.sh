#!/usr/bin/env bash
# `make image`: the controller image, assembled here without a registry or a base image, from
# what the project builds and from Debian packages' files (the distroless idea: no shell, no
# package manager, the non-root user 65532). Writes an OCI image layout and an OCI archive of
# it, reproducibly: the same inputs give the same image digest (sorted tar entries, fixed
# mtimes and owners, gzip without names or times, no build time in the config).
#
#   scripts/image.sh          build; prints the OCI archive's path on stdout
#   scripts/image.sh verify   build, then run the image with podman: `driftless --version` as
#                             65532 on a read-only root file system, kustomize and helm inside
#
# Three layers, so that a new controller binary changes only the last one:
#   1. base       the glibc loader and the shared libraries the binary links (ldd), CA
#                 certificates, /etc/passwd and /etc/group with root and nonroot (65532),
#                 /etc/nsswitch.conf, /tmp, /home/nonroot, the Debian copyright files
#   2. renderers  /usr/local/bin/kustomize and /usr/local/bin/helm (tests/cluster/build.sh)
#   3. driftless  /usr/local/bin/driftless (cargo build --release, stripped)
# The Dockerfile describes the same image for builders with registry access;
# scripts/image-dockerfile-check.sh compares the two.
#
# Environment: DRIFTLESS_IMAGE (name:tag, default ghcr.io/driftless-dev/driftless:<crate
# version>, the chart's default), DRIFTLESS_IMAGE_DIR (output directory, default
# target/image), DRIFTLESS_IMAGE_BINARY (a driftless binary already built, e.g. a debug build
# for a quicker test image, instead of the release build), SOURCE_DATE_EPOCH (the files' mtime and the config's date, default 0).
set -euo pipefail
umask 022
export LC_ALL=C
repo=$(cd "$(dirname "$0")/.." && pwd)

log() { echo "image.sh: $*" >&2; }
fail() { log "$*"; exit 1; }

crate_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n1)
image_name=${DRIFTLESS_IMAGE:-ghcr.io/driftless-dev/driftless:$crate_version}
out=${DRIFTLESS_IMAGE_DIR:-$repo/target/image}
epoch=${SOURCE_DATE_EPOCH:-0}
cargo_target="$repo/target/image" # the image's own cargo build; the OCI files go beside it

# Debian files the image takes: each path that must exist -> the package providing it.
declare -A debian_packages=(
  [/usr/bin/strip]=binutils
  [/usr/bin/ldd]=libc-bin
  [/usr/share/ca-certificates/mozilla]=ca-certificates
)
install_missing() {
  local missing=() path
  for path in "${!debian_packages[@]}"; do
    [[ -e "$path" ]] || missing+=("${debian_packages[$path]}")
  done
  ((${#missing[@]})) || return 0
  [[ $(id -u) -eq 0 ]] || fail "need root to install Debian packages ${missing[*]} (or install them first)"
  log "installing Debian packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The release binary, built with the checkout's and cargo's paths remapped so that the binary
# does not depend on where the checkout lives; its own target directory keeps these flags from
# rebuilding the ordinary release build.
build_binary() {
  local cargo_home=${CARGO_HOME:-$HOME/.cargo}
  log "cargo build --release (target directory $cargo_target)"
  (cd "$repo" && CARGO_TARGET_DIR="$cargo_target" \
    RUSTFLAGS="--remap-path-prefix=$repo=/driftless --remap-path-prefix=$cargo_home=/cargo" \
    cargo build --release --locked --bin driftless >&2)
  echo "$cargo_target/release/driftless"
}

# The Debian package that installed PATH (dpkg knows a file by the path its package names,
# /lib/... or /usr/lib/..., whichever side of the merged-/usr links that is).
debian_package() {
  local path=$1 candidate found
  for candidate in "$path" "$(readlink -f "$path")"; do
    for found in "$candidate" "/usr${candidate#/usr}" "${candidate#/usr}"; do
      if dpkg -S "$found" >/dev/null 2>&1; then
        dpkg -S "$found" | head -n1 | cut -d: -f1
        return
      fi
    done
  done
  fail "no Debian package holds $path"
}

# stage_base DIR BINARY: the loader, the libraries BINARY needs, certificates, users.
stage_base() {
  local dir=$1 binary=$2 multiarch lib_dir
  # Debian's multiarch directory, e.g. x86_64-linux-gnu: where the binary's libc lives.
  multiarch=$(basename "$(dirname "$(ldd "$binary" | awk '$1 == "libc.so.6" {print $3}')")")
  lib_dir="usr/lib/$multiarch"
  mkdir -p "$dir/$lib_dir" "$dir/usr/lib64" "$dir/etc/ssl/certs" "$dir/tmp" "$dir/home/nonroot" \
    "$dir/usr/share/doc"
  # Merged /usr, as in Debian: /lib and /lib64 lead to /usr, where the files are.
  ln -s usr/lib "$dir/lib"
  ln -s usr/lib64 "$dir/lib64"

  local packages=() line name path interpreter package listed=() extra=()
  mapfile -t listed < <(grep -v '^#' "$repo/scripts/image-libraries" | grep .)
  interpreter=$(ldd "$binary" | awk '$1 ~ /^\// && $2 ~ /^\(/ {print $1}')
  [[ -n $interpreter ]] || fail "ldd names no program interpreter for $binary (is it static?)"
  while read -r line; do
    name=$(awk '{print $1}' <<<"$line")
    path=$(awk '{print $3}' <<<"$line")
    [[ $path == /* ]] || fail "ldd cannot resolve $name for $binary: $line"
    package=$(debian_package "$path")
    case $package in
      libc6 | libgcc-s1) ;;
      *) printf '%s\n' "${listed[@]}" | grep -qxF "$name" || extra+=("$name ($package)") ;;
    esac
    cp -L "$path" "$dir/$lib_dir/$name"
    packages+=("$package")
  done < <(ldd "$binary" | grep '=>' | grep -v 'linux-vdso')
  ((${#extra[@]} == 0)) ||
    fail "driftless links ${extra[*]}, not in scripts/image-libraries: add them there (the Dockerfile reads it)"
  for name in "${listed[@]}"; do
    [[ -f "$dir/$lib_dir/$name" ]] ||
      fail "scripts/image-libraries names $name, which driftless does not link: remove it there"
  done
  cp -L "$interpreter" "$dir/$lib_dir/$(basename "$interpreter")"
  # The path the binary's ELF header names (/lib64/ld-linux-x86-64.so.2 on amd64).
  case $interpreter in
    /lib64/*) ln -s "../lib/$multiarch/$(basename "$interpreter")" "$dir/usr/lib64/$(basename "$interpreter")" ;;
    "/lib/$multiarch/"*) ;;
    *) fail "unexpected program interpreter $interpreter" ;;
  esac
  package=$(debian_package "$interpreter")
  packages+=("$package")

  # Mozilla's bundle as Debian packages it, not this machine's /etc/ssl/certs (which may hold
  # local additions): sorted, so that the file is the same wherever it is built.
  find /usr/share/ca-certificates/mozilla -name '*.crt' -print0 | sort -z |
    xargs -0 cat >"$dir/etc/ssl/certs/ca-certificates.crt"
  packages+=(ca-certificates)

  for package in $(printf '%s\n' "${packages[@]}" | sort -u); do
    mkdir -p "$dir/usr/share/doc/$package"
    cp "/usr/share/doc/$package/copyright" "$dir/usr/share/doc/$package/copyright"
  done

  cat >"$dir/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
  cat >"$dir/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
  cat >"$dir/etc/nsswitch.conf" <<'EOF'
passwd: files
group: files
hosts: files dns
EOF
  chmod 1777 "$dir/tmp"
}

stage_renderers() {
  local dir=$1 bin
  bin=$(bash "$repo/tests/cluster/build.sh" renderers)
  mkdir -p "$dir/usr/local/bin"
  cp -L "$bin/kustomize" "$bin/helm" "$dir/usr/local/bin/"
  chmod 0755 "$dir/usr/local/bin/kustomize" "$dir/usr/local/bin/helm"
}

stage_driftless() {
  local dir=$1 binary=$2
  mkdir -p "$dir/usr/local/bin"
  strip -o "$dir/usr/local/bin/driftless" "$binary"
  chmod 0755 "$dir/usr/local/bin/driftless"
}

# Writes data to blobs/sha256 and prints "sha256:<hex> <size>".
put_blob() {
  local file=$1 digest size
  digest=$(sha256sum "$file" | cut -d' ' -f1)
  size=$(stat -c %s "$file")
  mkdir -p "$layout/blobs/sha256"
  mv "$file" "$layout/blobs/sha256/$digest"
  echo "sha256:$digest $size"
}

# layer DIR: a tar of DIR with sorted names, fixed mtimes, root owners (nonroot's home owned by
# 65532, as in distroless), gzip without name or time. Sets layer_digest, layer_size, diff_id.
# The compressed blob is cached by its content's digest: a rebuild with an unchanged layer
# skips gzip.
layer() {
  local dir=$1 tar="$work/layer.tar" entries=()
  mapfile -t entries < <(cd "$dir" && ls -A)
  local common=(--format=gnu --sort=name --numeric-owner --mtime="@$epoch" --hard-dereference
    --no-acls --no-selinux --no-xattrs -C "$dir")
  tar -cf "$tar" "${common[@]}" --owner=0 --group=0 --exclude=home/nonroot "${entries[@]}"
  if [[ -d "$dir/home/nonroot" ]]; then
    tar -rf "$tar" "${common[@]}" --owner=65532 --group=65532 --no-recursion home/nonroot
  fi
  diff_id=sha256:$(sha256sum "$tar" | cut -d' ' -f1)
  local cached="$out/layers/${diff_id#sha256:}.tar.gz"
  if [[ ! -f $cached ]]; then
    mkdir -p "$out/layers"
    gzip -n -6 <"$tar" >"$cached.tmp"
    mv "$cached.tmp" "$cached"
  fi
  cp "$cached" "$work/layer.tar.gz"
  read -r layer_digest layer_size < <(put_blob "$work/layer.tar.gz")
  rm -f "$tar"
}

# Fields of the image config taken from the Dockerfile's final stage must stay the same in both;
# scripts/image-dockerfile-check.sh compares them.
image_config() {
  local diff_ids=$1 created
  created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
  cat <<EOF
{"architecture":"$(dpkg --print-architecture)","config":{"Cmd":["controller"],"Entrypoint":["/usr/local/bin/driftless"],"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],"ExposedPorts":{"8080/tcp":{},"9292/tcp":{}},"Labels":{"org.opencontainers.image.description":"A GitOps reconciliation controller for Kubernetes","org.opencontainers.image.licenses":"Apache-2.0","org.opencontainers.image.source":"https://github.com/driftless-dev/driftless","org.opencontainers.image.title":"driftless"},"User":"65532:65532","WorkingDir":"/home/nonroot"},"created":"$created","history":[{"created":"$created","created_by":"scripts/image.sh: base (glibc loader, shared libraries, CA certificates, users)"},{"created":"$created","created_by":"scripts/image.sh: renderers (kustomize $KUSTOMIZE_VERSION, helm $HELM_VERSION)"},{"created":"$created","created_by":"scripts/image.sh: driftless $crate_version"}],"os":"linux","rootfs":{"diff_ids":[$diff_ids],"type":"layers"}}
EOF
}

build() {
  install_missing
  # shellcheck source=../tests/cluster/versions.env
  source "$repo/tests/cluster/versions.env"
  local binary=${DRIFTLESS_IMAGE_BINARY:-}
  if [[ -n $binary ]]; then
    log "using the driftless binary $binary (DRIFTLESS_IMAGE_BINARY)"
  else
    binary=$(build_binary)
  fi

  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  layout="$work/layout"
  mkdir -p "$layout"

  local name layers=() diff_ids=()
  for name in base renderers driftless; do
    mkdir -p "$work/$name"
    case $name in
      base) stage_base "$work/$name" "$binary" ;;
      renderers) stage_renderers "$work/$name" ;;
      driftless) stage_driftless "$work/$name" "$binary" ;;
    esac
    layer "$work/$name"
    layers+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"$layer_digest\",\"size\":$layer_size}")
    diff_ids+=("\"$diff_id\"")
    log "layer $name: $layer_digest ($((layer_size / 1024)) KiB compressed)"
  done

  local config_digest config_size manifest_digest manifest_size
  image_config "$(IFS=,; echo "${diff_ids[*]}")" | tr -d '\n' >"$work/config.json"
  read -r config_digest config_size < <(put_blob "$work/config.json")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[%s]}' \
    "$config_digest" "$config_size" "$(IFS=,; echo "${layers[*]}")" >"$work/manifest.json"
  read -r manifest_digest manifest_size < <(put_blob "$work/manifest.json")
  # io.containerd.image.name names the image on `ctr images import`; ref.name on `podman load`.
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest_digest" "$manifest_size" "$image_name" "$image_name" >"$layout/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"

  mkdir -p "$out"
  tar -cf "$work/driftless.oci.tar" --format=gnu --sort=name --numeric-owner --owner=0 --group=0 \
    --mtime="@$epoch" -C "$layout" blobs index.json oci-layout
  rm -rf "$out/oci"
  mv "$layout" "$out/oci"
  mv "$work/driftless.oci.tar" "$out/driftless.oci.tar"
  echo "$image_name" >"$out/name"
  echo "$manifest_digest" >"$out/digest"
  echo "$crate_version" >"$out/version"
  local size
  size=$(du -sb "$out/oci/blobs" | cut -f1)
  log "image $image_name@$manifest_digest ($((size / 1024 / 1024)) MiB compressed)"
  log "OCI layout $out/oci, archive $out/driftless.oci.tar"
  python3 "$repo/scripts/image-dockerfile-check.py" "$out"
  echo "$out/driftless.oci.tar"
}

case ${1:-build} in
  build) build ;;
  verify) build >/dev/null && bash "$repo/scripts/image-verify.sh" "$out" ;;
  *) fail "unknown command '$1' (build or verify)" ;;
esac
