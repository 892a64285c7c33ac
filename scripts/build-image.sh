#!/usr/bin/env bash
# Builds the Emporium runtime image without a registry or a Dockerfile
# build: buildah, from scratch, holding the release binary, the shared
# libraries `ldd` says it needs (at the same paths, the dynamic loader
# included), CA certificates, a minimal /etc, /tmp and an empty /data owned
# by the runtime user. The same image the Dockerfile builds on distroless:
# user 65532, workdir and volume /data, port 8443, `emporium up` by default,
# the same healthcheck (docs/operations.md, "Container image").
#
#   scripts/build-image.sh [--build] [BINARY]
#
#   BINARY   the release binary (default target/release/emporium; built with
#            `cargo build --release --locked -p emporium` if it is missing)
#   --build  build it first even if it exists
#
# Environment:
#   IMAGE            the image to commit (default localhost/emporium:dev)
#   STORAGE_DRIVER   containers/storage driver (default vfs: works anywhere,
#                    nested containers included; set it to your podman's,
#                    e.g. overlay, to build into your usual storage)
#   STORAGE_ROOT, STORAGE_RUNROOT
#                    --root / --runroot for buildah (default: buildah's own);
#                    STORAGE_OPTS and CONTAINERS_STORAGE_CONF are read by
#                    buildah itself
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/emporium:dev}
DEFAULT_BINARY=target/release/emporium

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

build=false
binary=
while [[ $# -gt 0 ]]; do
    case $1 in
    --build) build=true ;;
    -h | --help) usage ;;
    -*)
        echo "unknown option $1" >&2
        usage
        ;;
    *)
        [[ -z $binary ]] || usage
        binary=$1
        ;;
    esac
    shift
done

if [[ -z $binary ]]; then
    binary=$DEFAULT_BINARY
    if $build || [[ ! -x $binary ]]; then
        echo "== cargo build --release --locked -p emporium" >&2
        cargo build --release --locked -p emporium
    fi
elif $build; then
    echo "--build builds $DEFAULT_BINARY; do not also name a binary" >&2
    exit 2
fi
if [[ ! -x $binary ]]; then
    echo "$binary: not an executable file" >&2
    exit 1
fi

# Global storage options for every buildah call. No `buildah run` is used
# (nothing is executed inside the image, which has no shell anyway), so no
# OCI runtime or isolation is needed; chroot isolation is the default in
# case a later change adds a `run`.
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
storage=(--storage-driver "${STORAGE_DRIVER:-vfs}")
if [[ -n ${STORAGE_ROOT:-} ]]; then
    storage+=(--root "$STORAGE_ROOT")
fi
if [[ -n ${STORAGE_RUNROOT:-} ]]; then
    storage+=(--runroot "$STORAGE_RUNROOT")
fi
bah() { buildah "${storage[@]}" "$@"; }

umask 022
ctr=
stage=$(mktemp -d)
data_stage=$(mktemp -d)
cleanup() {
    if [[ -n $ctr ]]; then
        bah rm "$ctr" >/dev/null 2>&1 || true
    fi
    rm -rf "$stage" "$data_stage"
}
trap cleanup EXIT

# --- the root filesystem, staged here -----------------------------------------
# mktemp -d makes 0700 directories: the staged root must not pass that on to /.
chmod 0755 "$stage" "$data_stage"

install -D -m 0755 "$binary" "$stage/usr/local/bin/emporium"

# Every library ldd resolves (and the loader, listed by its absolute path),
# copied with links followed to the path ldd names. Nothing is hard-coded:
# today that is glibc (libc, libm, the loader) and libgcc_s.
ldd_out=$(ldd "$binary" 2>&1) || {
    echo "ldd $binary failed (a static binary needs no libraries, but this one was expected to be dynamic):" >&2
    echo "$ldd_out" >&2
    exit 1
}
if grep -q 'not found' <<<"$ldd_out"; then
    echo "$binary needs libraries this machine does not have:" >&2
    grep 'not found' <<<"$ldd_out" >&2
    exit 1
fi
mapfile -t libs < <(awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' <<<"$ldd_out" | sort -u)
if [[ ${#libs[@]} -eq 0 ]]; then
    echo "ldd listed no libraries for $binary:" >&2
    echo "$ldd_out" >&2
    exit 1
fi
for lib in "${libs[@]}"; do
    mkdir -p "$stage$(dirname "$lib")"
    cp -L --preserve=mode "$lib" "$stage$lib"
    echo "   + $lib" >&2
done

mkdir -p "$stage/etc" "$stage/tmp"
chmod 1777 "$stage/tmp"
# The runtime user, as distroless names it; its home is the data directory.
cat >"$stage/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/data:/sbin/nologin
EOF
cat >"$stage/etc/group" <<'EOF'
root:x:0:
nonroot:x:65532:
EOF
# glibc's files and dns lookups (built into libc.so.6 since glibc 2.34).
echo 'hosts: files dns' >"$stage/etc/nsswitch.conf"
# A client configured without a CA file (e.g. payments' provider.ca_cert
# for a real card provider) trusts the system's roots.
ca_bundle=/etc/ssl/certs/ca-certificates.crt
env_ssl=()
if [[ -f $ca_bundle ]]; then
    mkdir -p "$stage/etc/ssl/certs"
    cp -L "$ca_bundle" "$stage$ca_bundle"
    chmod 0644 "$stage$ca_bundle"
    env_ssl=(--env "SSL_CERT_FILE=$ca_bundle")
else
    echo "warning: no $ca_bundle here; the image will trust no public CA" >&2
fi

# /data: `up`'s data directory, owned by the runtime user (copied with
# --chown below). 0755 like the Dockerfile's, which `up` tightens to 0700.
mkdir "$data_stage/data"
chmod 0755 "$data_stage/data"

# --- the image ------------------------------------------------------------------
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)

ctr=$(bah from --format docker scratch)
# Copied contents keep their modes; ownership is 0:0 unless --chown says so.
bah copy "$ctr" "$stage/" /
bah copy --chown 65532:65532 "$ctr" "$data_stage/" /
bah config \
    --entrypoint '["/usr/local/bin/emporium"]' \
    --cmd '["up", "--host", "0.0.0.0", "--data-dir", "/data"]' \
    --user 65532:65532 \
    --workingdir /data \
    --volume /data \
    --port 8443/tcp \
    --env PATH=/usr/local/bin:/usr/bin:/bin \
    "${env_ssl[@]}" \
    --healthcheck 'CMD /usr/local/bin/emporium healthcheck https://127.0.0.1:8443/healthz --ca-cert /data/certs/ca.pem' \
    --healthcheck-interval 30s \
    --healthcheck-timeout 5s \
    --healthcheck-start-period 60s \
    --healthcheck-retries 3 \
    --label org.opencontainers.image.title=emporium \
    --label 'org.opencontainers.image.description=Emporium: an online shop as Rust services (emporium up | serve <service>)' \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.revision=$revision" \
    --label "org.opencontainers.image.created=$created" \
    --label 'org.opencontainers.image.licenses=MIT OR Apache-2.0' \
    --label org.opencontainers.image.base.name=scratch \
    "$ctr"
# The Docker format: the OCI image config has no field for a healthcheck,
# so an OCI commit would drop it.
bah commit --format docker "$ctr" "$IMAGE"
echo "built $IMAGE" >&2
