#!/usr/bin/env bash
# `make test`: everything from a fresh machine to a verdict. Installs what is missing, builds
# (or reuses) the test cluster's binaries, starts the cluster unless one already serves, runs
# the format and lint checks and every test, and stops the cluster if it started it.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "prerequisites"
bash tests/prereqs.sh

step "test cluster binaries (built once per machine, cached outside the checkout)"
started=$SECONDS
bash tests/cluster/build.sh >/dev/null
echo "binaries ready in $((SECONDS - started)) s"

step "Gitea, the Git host of the commit-status tests (built once per machine, cached alike)"
started=$SECONDS
bash tests/cluster/build.sh gitea >/dev/null
echo "Gitea ready in $((SECONDS - started)) s"

step "test cluster"
if kubeconfig=$(bash tests/cluster/cluster.sh kubeconfig 2>/dev/null); then
  echo "reusing the cluster that already serves ($kubeconfig)"
else
  kubeconfig=$(bash tests/cluster/cluster.sh up)
  trap 'step "stopping the test cluster this run started"; bash tests/cluster/cluster.sh down' EXIT
fi
export DRIFTLESS_TEST_KUBECONFIG=$kubeconfig

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

# Before the tests: the real-node tests install the chart with this image.
step "controller image: built twice with the same digest, run with podman as 65532, read-only"
bash tests/image.sh
# tests/it/real_node.rs imports this archive into the real node and `helm install`s it.
export DRIFTLESS_TEST_IMAGE=$PWD/target/image/driftless.oci.tar

# Labels this run's test namespaces, so the check below sees only what this run left behind.
export DRIFTLESS_TEST_RUN="run-$(date +%s)-$$"

step "cargo test (unit and integration, against the real cluster and git servers)"
cargo test --locked --all-targets

# Alone and last: it restarts the apiserver every other test talks to.
step "apiserver restart (alone: kills and restarts the test cluster's kube-apiserver)"
restart_log=$(mktemp)
cargo test --locked --test it -- --ignored --exact \
  apiserver_restart::reconcile_retries_and_converges_after_the_apiserver_restarts \
  2>&1 | tee "$restart_log"
# By exact name, a renamed test would match nothing and "pass" with 0 tests run.
if ! grep -q '^test result: ok\. 1 passed' "$restart_log"; then
  echo "the apiserver restart test did not run exactly once and pass (renamed?)" >&2
  exit 1
fi
rm -f "$restart_log"

step "no test namespace of this run left behind"
bash tests/leftovers.sh "$DRIFTLESS_TEST_RUN"
