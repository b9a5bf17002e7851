#!/usr/bin/env bash
# `make test`'s image step: builds the controller image (scripts/image.sh, which also compares
# it with the Dockerfile), builds it a second time from the same inputs into another directory
# with no cached layers, and fails unless both have the same digest; then runs it with podman
# (scripts/image-verify.sh). The release build and the renderers are cached, so a warm run
# costs the second build's tar and gzip and the podman runs.
set -euo pipefail
cd "$(dirname "$0")/.."

first=target/image
second=target/image-again
started=$SECONDS
DRIFTLESS_IMAGE_DIR=$first bash scripts/image.sh >/dev/null
echo "image built in $((SECONDS - started)) s: $(cat $first/name)@$(cat $first/digest)"

started=$SECONDS
rm -rf "$second"
DRIFTLESS_IMAGE_DIR=$second bash scripts/image.sh >/dev/null
echo "built again, without cached layers, in $((SECONDS - started)) s: $(cat $second/digest)"
if [[ $(cat $first/digest) != "$(cat $second/digest)" ]]; then
  echo "FAILED: two builds from the same inputs gave different digests; the layers that differ:" >&2
  diff <(ls $first/oci/blobs/sha256) <(ls $second/oci/blobs/sha256) >&2 || true
  exit 1
fi
cmp $first/driftless.oci.tar $second/driftless.oci.tar
rm -rf "$second"
echo "same digest, same archive"

started=$SECONDS
bash scripts/image-verify.sh "$first"
echo "image verified with podman in $((SECONDS - started)) s"
