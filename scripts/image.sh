#!/usr/bin/env bash
# Builds a container image of mirror itself — a statically linked binary,
# CA roots, a non-root user — as an OCI image layout, and with a
# destination pushes it there with that same mirror (`mirror copy`).
#
#   scripts/image.sh                                   # target/image/oci, tag = version
#   scripts/image.sh myacr.azurecr.io/mirror:0.1.0     # ...and push it
#   scripts/image.sh localhost:5000/mirror:dev --insecure-registry localhost:5000
#
# Arguments after the destination go to `mirror copy` (credentials come
# from docker's config.json, as for any copy).
#
# Environment:
#   PROFILE           release (default) or dev (a quicker, larger build for tests)
#   OUT               the layout directory (default target/image/oci); replaced
#   TAG               its ref.name (default: the version in Cargo.toml)
#   IMAGE_TARGET_DIR  cargo's target directory for the static build (default
#                     target/image: other flags than the normal build's, so
#                     sharing target/ would rebuild both in turn)
#   CA_BUNDLE         CA roots to ship (default Debian's ca-certificates bundle)
#   SOURCE_DATE_EPOCH file times and `created` (default: the last commit's time),
#                     so the same source gives the same digests
#
# The layout is written directly (tar, gzip -n, sha256sum), not through a
# container engine: no daemon, no root, reproducible digests.
set -euo pipefail
cd "$(dirname "$0")/.."

profile=${PROFILE:-release}
out=${OUT:-target/image/oci}
target_dir=${IMAGE_TARGET_DIR:-target/image}
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
triple=x86_64-unknown-linux-gnu
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
tag=${TAG:-$version}
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
dest=${1:-}
[ $# -gt 0 ] && shift

die() { echo "image.sh: $*" >&2; exit 1; }

[ "$(uname -m)" = x86_64 ] || die "builds for $triple only (this machine is $(uname -m))"
[ -f "$ca_bundle" ] || die "no CA bundle at $ca_bundle (apt-get install ca-certificates, or set CA_BUNDLE)"
case $profile in
  release) profile_dir=release ;;
  dev) profile_dir=debug ;;
  *) die "PROFILE must be release or dev, not '$profile'" ;;
esac
if [ -e "$out" ] && [ ! -f "$out/oci-layout" ]; then
  die "$out exists and is not an OCI layout; not replacing it"
fi

# Static glibc: an explicit --target keeps RUSTFLAGS off build scripts and
# proc macros, which must stay dynamic host binaries.
echo "building a static mirror ($profile)" >&2
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  cargo build --locked --profile "$profile" --target "$triple" \
  --target-dir "$target_dir" -p mirror --bin mirror
bin=$target_dir/$triple/$profile_dir/mirror
# No dynamic section at all: nothing for a loader to find in an empty rootfs.
if readelf -d "$bin" | grep -q NEEDED; then
  die "$bin is dynamically linked: $(readelf -d "$bin" | grep NEEDED | tr -s ' ')"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/usr/local/bin "$root"/etc/ssl/certs "$root"/tmp "$root"/home/mirror
install -m 0755 "$bin" "$root"/usr/local/bin/mirror
install -m 0644 "$ca_bundle" "$root"/etc/ssl/certs/ca-certificates.crt
# A numeric non-root user (Kubernetes' runAsNonRoot can check a number).
printf 'root:x:0:0:root:/root:/sbin/nologin\nmirror:x:65532:65532:mirror:/home/mirror:/sbin/nologin\n' >"$root"/etc/passwd
printf 'root:x:0:\nmirror:x:65532:\n' >"$root"/etc/group
# glibc's static getaddrinfo reads these; runtimes mount their own
# /etc/hosts and /etc/resolv.conf over the defaults.
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root"/etc/nsswitch.conf
printf '127.0.0.1\tlocalhost\n::1\tlocalhost\n' >"$root"/etc/hosts
find "$root" -type d -exec chmod 0755 {} +
chmod 1777 "$root"/tmp

# The one layer: sorted, fixed times and owners, so it is reproducible.
tar_flags=(--format=gnu --sort=name --mtime="@$epoch" --numeric-owner -C "$root")
tar --create --file "$work/layer.tar" --owner=0 --group=0 --exclude=home/mirror "${tar_flags[@]}" etc home tmp usr
tar --append --file "$work/layer.tar" --owner=65532 --group=65532 --no-recursion "${tar_flags[@]}" home/mirror
diff_id=$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
gzip -n -9 "$work/layer.tar"

layout=$work/oci
mkdir -p "$layout/blobs/sha256"
# Moves a file into the layout's blobs under its digest; sets DIGEST, SIZE.
add_blob() {
  DIGEST=$(sha256sum "$1" | cut -d' ' -f1)
  SIZE=$(stat -c %s "$1")
  mv "$1" "$layout/blobs/sha256/$DIGEST"
}
add_blob "$work/layer.tar.gz"
layer_digest=$DIGEST layer_size=$SIZE

created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
cat >"$work/config.json" <<EOF
{"created":"$created","architecture":"amd64","os":"linux","config":{"User":"65532:65532","Env":["PATH=/usr/local/bin","HOME=/home/mirror","SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],"Entrypoint":["/usr/local/bin/mirror"],"WorkingDir":"/home/mirror","Labels":{"org.opencontainers.image.title":"mirror","org.opencontainers.image.version":"$version","org.opencontainers.image.revision":"$revision"}},"rootfs":{"type":"layers","diff_ids":["sha256:$diff_id"]},"history":[{"created":"$created","created_by":"scripts/image.sh ($profile)"}]}
EOF
add_blob "$work/config.json"
config_digest=$DIGEST config_size=$SIZE

cat >"$work/manifest.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$config_digest","size":$config_size},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:$layer_digest","size":$layer_size}]}
EOF
add_blob "$work/manifest.json"
manifest_digest=$DIGEST manifest_size=$SIZE

printf '{"imageLayoutVersion":"1.0.0"}\n' >"$layout/oci-layout"
cat >"$layout/index.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$manifest_digest","size":$manifest_size,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"org.opencontainers.image.ref.name":"$tag"}}]}
EOF

# Replace the old layout only once the new one is whole.
mkdir -p "$(dirname "$out")"
rm -rf "$out.old"
[ -e "$out" ] && mv "$out" "$out.old"
mv "$layout" "$out"
rm -rf "$out.old"
echo "oci:$out:$tag sha256:$manifest_digest" >&2

if [ -n "$dest" ]; then
  "$bin" copy "oci:$out:$tag" "$dest" "$@"
fi
