# The two commands of the README, and a few conveniences around them.
SHELL := /bin/bash

.PHONY: test fuzz demo demo-in-cluster bench image cluster-up cluster-down crds

## Run every check and test on a fresh machine (installs and builds what it needs).
test:
	bash tests/run.sh

## Fuzz every parser of untrusted input for longer than `make test` does: the harnesses of
## tests/fuzz/ (seeded from tests/fuzz/corpus/) with DRIFTLESS_FUZZ_CASES cases each (default
## 20000; `make test` runs 256). Needs no cluster. Overflow checks stay on (debug build).
fuzz:
	DRIFTLESS_FUZZ_CASES=$${DRIFTLESS_FUZZ_CASES:-20000} cargo test --locked --test fuzz

## The main job: local control plane, the controller, a git repository, a push, convergence.
demo:
	bash scripts/demo.sh

## The same story as users run it: `helm install` of charts/driftless with the image built
## here (`scripts/image.sh`), the controller as pods on the test cluster's real node.
demo-in-cluster:
	bash scripts/demo-in-cluster.sh

## Benchmarks (see BENCHMARKS.md): every scenario, or one with `make bench SCENARIO=git`
## (git, coalesce, apply, push, receiver, scale, render, flux-push, flux-scale, flux-overlays,
## flux-monorepo, flux-chain, real-content, commit-status, preview); `make bench SCENARIO=flux` runs every side-by-side comparison with Flux
## (its controllers are built from source on first use, cached in ~/.cache/driftless/bin).
## Writes bench-results/latest.json and latest.md.
bench:
	kubeconfig=$$(bash tests/cluster/cluster.sh up) && \
	DRIFTLESS_TEST_KUBECONFIG=$${DRIFTLESS_TEST_KUBECONFIG:-$$kubeconfig} \
	DRIFTLESS_BENCH_COMMAND="make bench$(if $(SCENARIO), SCENARIO=$(SCENARIO))" \
	cargo bench --bench bench -- $(SCENARIO)

## Build the controller image without a registry (see docs/install.md): an OCI archive at
## target/image/driftless.oci.tar for `ctr -n k8s.io images import` or `podman load`; the
## same inputs give the same digest (target/image/digest).
image:
	bash scripts/image.sh

## Start (or reuse) the test cluster and print its kubeconfig path.
cluster-up:
	@bash tests/cluster/cluster.sh up

## Stop the test cluster.
cluster-down:
	@bash tests/cluster/cluster.sh down

## Regenerate crds/ from the Rust types.
crds:
	cargo run --quiet -- crd > crds/driftless.dev_gitrepositories.yaml
	cp crds/driftless.dev_gitrepositories.yaml charts/driftless/crds/
