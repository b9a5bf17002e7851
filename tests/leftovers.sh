#!/usr/bin/env bash
# Fails, listing them, when test namespaces of run $1 (label driftless.dev/test-run) are still
# there after a grace period: a namespace stuck Terminating means a test left a finalizer (or
# an object nothing will delete) behind. Namespaces of other runs sharing the cluster are not
# looked at.
set -euo pipefail
cd "$(dirname "$0")/.."

run=${1:?usage: tests/leftovers.sh RUN-ID}
grace=${LEFTOVER_GRACE_SECONDS:-120}
kubectl="$(bash tests/cluster/cluster.sh bin)/kubectl"
export KUBECONFIG=${DRIFTLESS_TEST_KUBECONFIG:-$(bash tests/cluster/cluster.sh kubeconfig)}

left() {
  "$kubectl" get namespaces -l "driftless.dev/test-run=$run" \
    -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.phase}{"\n"}{end}'
}

deadline=$((SECONDS + grace))
while [[ -n "$(left)" ]] && ((SECONDS < deadline)); do
  sleep 2
done
remaining=$(left)
if [[ -z "$remaining" ]]; then
  echo "every test namespace of run $run is gone"
  exit 0
fi
echo "FAIL: test namespaces of run $run still exist ${grace} s after the tests ended:" >&2
echo "$remaining" >&2
for namespace in $(awk '{print $1}' <<<"$remaining"); do
  echo "--- $namespace: what holds it" >&2
  "$kubectl" get namespace "$namespace" \
    -o jsonpath='{range .status.conditions[*]}{.type}: {.message}{"\n"}{end}' >&2 || true
done
exit 1
