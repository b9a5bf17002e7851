# syntax=docker/dockerfile:1
# The driftless controller image: built with `docker build -t driftless:dev .` (or podman/buildah)
# from the repository root. Published as ghcr.io/driftless-dev/driftless:<version>, the Helm
# chart's default image.
#
# Without registry access, `make image` (scripts/image.sh) assembles the same image from what
# this machine builds and from Debian packages, reproducibly; scripts/image-dockerfile-check.py
# (run by every `make image`) compares this file's final stage with what that image holds.
#
# Stage 1 builds the pinned kustomize and helm (the renderers of kustomizations and charts) from
# the same Go wrapper modules the tests build, so their go.sum pin every module checksum; stage
# 2 builds the release binary against the locked dependencies; stage 3 is distroless
# (glibc, libgcc, CA certificates; no shell, no package manager) plus libssl3/libcrypto3/zlib for
# libgit2's HTTPS, libssh2 and pack inflation, running as the non-root user 65532.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
ARG GO_IMAGE=golang:1.26-bookworm

FROM ${GO_IMAGE} AS kustomize
WORKDIR /kustomize
COPY tests/cluster/modules/kustomize/go.mod tests/cluster/modules/kustomize/go.sum ./
RUN CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath -ldflags "-s -w" -o /out/ tool \
 && /out/kustomize version

FROM ${GO_IMAGE} AS helm
ARG HELM_VERSION=v3.22.0
WORKDIR /helm
COPY tests/cluster/modules/helm/go.mod tests/cluster/modules/helm/go.sum ./
RUN CGO_ENABLED=0 GOFLAGS=-mod=readonly go build -trimpath \
      -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" -o /out/ tool \
 && /out/helm version --short

FROM ${RUST_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so that a source change reuses the cached dependency layer.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src \
 && echo 'fn main() {}' > src/main.rs \
 && echo '' > src/lib.rs \
 && cargo build --release --locked \
 && rm -rf src target/release/deps/*driftless* target/release/driftless* target/release/.fingerprint/driftless-*
COPY src ./src
# The libraries driftless links beyond glibc and libgcc (the base image's): the same list
# scripts/image.sh checks against `ldd driftless`.
COPY scripts/image-libraries ./
# touch: COPY keeps the files' old mtimes, which cargo would take for "unchanged".
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin driftless \
 && strip target/release/driftless \
 && multiarch=$(gcc -print-multiarch) \
 && mkdir -p "/out/lib/$multiarch" \
 && cp target/release/driftless /out/driftless \
 && for lib in $(grep -v '^#' image-libraries); do cp -L "/usr/lib/$multiarch/$lib" "/out/lib/$multiarch/" 2>/dev/null || cp -L "/lib/$multiarch/$lib" "/out/lib/$multiarch/"; done

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="driftless" \
      org.opencontainers.image.description="A GitOps reconciliation controller for Kubernetes" \
      org.opencontainers.image.source="https://github.com/driftless-dev/driftless" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/lib/ /usr/lib/
COPY --from=build /out/driftless /usr/local/bin/driftless
# Found on PATH by `driftless controller` (--kustomize-binary and --helm-binary override them).
COPY --from=kustomize /out/kustomize /usr/local/bin/kustomize
COPY --from=helm /out/helm /usr/local/bin/helm
# The git cache (an emptyDir in the chart) and the webhook secrets are mounted at run time;
# the root file system can stay read-only.
USER 65532:65532
EXPOSE 8080 9292
ENTRYPOINT ["/usr/local/bin/driftless"]
CMD ["controller"]
