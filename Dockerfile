# The Emporium image: one binary (`emporium`) that runs the whole shop
# (`up`, the default command) or one service (`serve <name>`, as in
# deploy/k8s and deploy/compose). docs/operations.md, "Container image".
#
#   docker build -t localhost/emporium:dev .
#   podman build --format docker -t localhost/emporium:dev .   # keeps HEALTHCHECK
#
# scripts/build-image.sh builds the same runtime image without this file
# (buildah, from scratch, no registry).

# --- planner: the dependency skeleton ---------------------------------------
# Every Cargo.toml, Cargo.lock, and an empty stub for every target the
# manifests name or Cargo would discover (src/lib.rs, src/main.rs, src/bin/,
# benches/, tests/, examples/, any `path = "….rs"`). Cargo refuses to load a
# workspace whose declared targets are missing (e.g. the harness = false
# benches of emporium-auth, emporium-client and emporium-messaging), so each
# gets a file. Found from the manifests rather than listed here, so a new
# member or bench needs no change. The stubs' content never varies, so the
# copy below is a cache hit until a manifest or the target list changes.
FROM rust:1.95-bookworm AS planner
WORKDIR /src
COPY . .
RUN set -eu; \
    stub='#![allow(dead_code)] fn main() {}'; \
    mkdir -p /skeleton; \
    cp Cargo.toml Cargo.lock /skeleton/; \
    for manifest in $(find . -mindepth 2 -name Cargo.toml -not -path './target/*'); do \
      dir=${manifest%/Cargo.toml}; \
      mkdir -p "/skeleton/$dir"; \
      cp "$manifest" "/skeleton/$dir/"; \
      if [ -f "$dir/build.rs" ]; then cp "$dir/build.rs" "/skeleton/$dir/"; fi; \
      roots=$(cd "$dir" && { \
        find src -maxdepth 1 \( -name lib.rs -o -name main.rs \); \
        find src/bin benches tests examples -maxdepth 1 -name '*.rs'; \
        find src/bin benches tests examples -mindepth 2 -maxdepth 2 -name main.rs; \
        sed -n 's/^[[:space:]]*path[[:space:]]*=[[:space:]]*"\([^"]*\.rs\)".*/\1/p' Cargo.toml; \
      } 2>/dev/null || true); \
      for root in $roots; do \
        mkdir -p "/skeleton/$dir/$(dirname "$root")"; \
        echo "$stub" > "/skeleton/$dir/$root"; \
      done; \
    done

# --- builder ----------------------------------------------------------------
# Same Debian release (bookworm, glibc 2.36) as the runtime image below.
FROM rust:1.95-bookworm AS builder
WORKDIR /src
# 1. Dependencies only: this layer is rebuilt when a manifest or Cargo.lock
#    changes, not when a source file does.
COPY --from=planner /skeleton/ ./
RUN cargo build --release --locked -p emporium
# 2. The real sources. COPY keeps the files' own modification times, which
#    may be older than the stubs just built; touching them makes Cargo
#    rebuild every workspace crate instead of linking the stubs.
COPY . .
RUN find . -name '*.rs' -not -path './target/*' -exec touch {} + \
    && cargo build --release --locked -p emporium \
    && install -D -m 0755 target/release/emporium /out/emporium
# [profile.release] keeps line tables (debug = "line-tables-only"): a panic's
# backtrace names files and lines. The binary is larger for it; that is the
# trade made in Cargo.toml, not undone here.
#
# The runtime image has glibc and libgcc_s and nothing else we rely on: stop
# here if the binary needs any other shared library.
RUN set -eu; \
    ldd /out/emporium; \
    extra=$(ldd /out/emporium | awk '{print $1}' | sed 's|.*/||' \
      | grep -Ev '^(linux-vdso\.so\.1|libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|ld-linux-x86-64\.so\.2|ld-linux-aarch64\.so\.1)$' \
      || true); \
    if [ -n "$extra" ]; then echo "the runtime image lacks: $extra" >&2; exit 1; fi
# /data for `emporium up`, owned by the runtime user. Made here because the
# runtime image has no shell to mkdir with; 0755 so that a named volume
# first mounted here (deploy/compose's certificates) can be read by other
# containers (Prometheus reads ca.pem); `up` tightens it to 0700 itself.
RUN mkdir -p /out/rootfs-data/data \
    && chmod 0755 /out/rootfs-data /out/rootfs-data/data

# --- runtime ----------------------------------------------------------------
# distroless/cc: glibc, libgcc_s, CA certificates, /etc/passwd with `nonroot`
# (65532), and no shell or package manager. Pin it by digest in production
# (gcr.io/distroless/cc-debian12:nonroot@sha256:…).
FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="emporium" \
      org.opencontainers.image.description="Emporium: an online shop as Rust services (emporium up | serve <service>)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=builder /out/emporium /usr/local/bin/emporium
# Contents of rootfs-data (the data directory itself) land at /data, owned
# by 65532.
COPY --from=builder --chown=65532:65532 /out/rootfs-data/ /

# Numeric, not `nonroot`: Kubernetes' runAsNonRoot can only verify a number,
# and the image built by scripts/build-image.sh says the same.
USER 65532:65532
WORKDIR /data
# `up` keeps its SQLite databases, the development CA (certs/ca.pem) and its
# generated secrets here: mount a volume to keep them. `serve` writes nothing.
VOLUME ["/data"]
# The gateway: the shop's public origin (`up --port`, default 8443).
EXPOSE 8443

# Exec form: there is no shell to run a command line. It checks `up`'s
# gateway with the CA `up` generated under /data; a `serve` deployment
# (compose, Kubernetes) sets its own check per service.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/emporium", "healthcheck", "https://127.0.0.1:8443/healthz", "--ca-cert", "/data/certs/ca.pem"]

ENTRYPOINT ["/usr/local/bin/emporium"]
# The whole shop, the gateway on every interface of the container (the
# services stay on its loopback), everything kept under /data.
CMD ["up", "--host", "0.0.0.0", "--data-dir", "/data"]
