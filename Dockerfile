# syntax=docker/dockerfile:1
# The carbonshift operator image for Docker users: a release build in a Rust builder stage, copied
# into a distroless base that runs as the non-root user 65532 (the chart's runAsUser).
#
#   docker build -t ghcr.io/carbonshift/carbonshift:0.1.0 .
#
# The release workflow (.github/workflows/release.yml) builds it for linux/amd64 and linux/arm64.
# `make image` (scripts/image.sh: podman or buildah, FROM scratch) builds the same binary the same
# way (`cargo build --release --locked --bin carbonshift`) into the same contents: glibc and
# libgcc from Debian 12, Debian's CA bundle, the user 65532, no shell; CI builds that one and
# smoke-tests it.

# The toolchain the project is tested with (at least `rust-version` in Cargo.toml).
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target/ between builds; the binary is copied out of the
# cached target/ in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin carbonshift \
    && cp target/release/carbonshift /carbonshift

# glibc and libgcc only, no shell, no package manager; `nonroot` is uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="carbonshift" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.description="Kubernetes operator that runs deferrable Jobs in the lowest-carbon window before their deadline" \
      org.opencontainers.image.source="https://github.com/carbonshift/carbonshift" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /carbonshift /carbonshift
USER 65532:65532
# 9443: admission webhook (HTTPS); 8080: /metrics, /healthz, /readyz.
EXPOSE 9443 8080
ENTRYPOINT ["/carbonshift"]
CMD ["run"]
