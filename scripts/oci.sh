#!/bin/sh
# Writes an OCI image layout of the filter that Istio's WasmPlugin can pull (url: oci://...).
#
#   scripts/oci.sh [WASM] [OUT_DIR] [TAG]     (defaults: dist/cors_proxy_wasm.wasm dist/oci <version>)
#
# Format: the "compat" variant of the Wasm image specification, the first one Istio's image
# fetcher tries (istio/pkg/wasm/imagefetcher.go): one layer of media type
# application/vnd.oci.image.layer.v1.tar+gzip holding `plugin.wasm`, the manifest annotated
# module.wasm.image/variant=compat, a standard OCI image config (os wasip1, architecture wasm).
# Standard media types only, so any registry and any registry client (skopeo, oras, crane)
# handle it. The output is byte-for-byte reproducible: fixed tar metadata, gzip mtime 0.
#
# Push it (see docs/operations.md, "The OCI image"):
#   skopeo copy oci:dist/oci:TAG docker://registry.example.com/cors-proxy-wasm:TAG
#   oras cp --from-oci-layout dist/oci:TAG registry.example.com/cors-proxy-wasm:TAG
set -eu

WASM=${1:-dist/cors_proxy_wasm.wasm}
OUT=${2:-dist/oci}
TAG=${3:-$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)}
# The manifest's standard annotations: the version (the tag), the source repository and the
# licence, as Cargo.toml declares them.
SOURCE=$(sed -n 's/^repository = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
LICENSES=$(sed -n 's/^license = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
[ -n "$SOURCE" ] && [ -n "$LICENSES" ] \
    || { echo "oci.sh: Cargo.toml declares no repository or license" >&2; exit 1; }

[ -f "$WASM" ] || { echo "oci.sh: $WASM not found (run make build)" >&2; exit 1; }
[ "$(head -c 4 "$WASM" | od -An -tx1 | tr -d ' \n')" = "0061736d" ] \
    || { echo "oci.sh: $WASM is not a WebAssembly module" >&2; exit 1; }
command -v python3 >/dev/null || { echo "oci.sh: python3 is required" >&2; exit 1; }
command -v sha256sum >/dev/null || { echo "oci.sh: sha256sum is required" >&2; exit 1; }

rm -rf "$OUT"
mkdir -p "$OUT/blobs/sha256"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# The layer: plugin.wasm in a tar (fixed owner, mode and mtime), gzip with no name and mtime 0.
python3 - "$WASM" "$TMP/layer.tar" "$TMP/layer.tar.gz" <<'PY'
import gzip, io, sys, tarfile
wasm, tar_path, gz_path = sys.argv[1:4]
data = open(wasm, "rb").read()
info = tarfile.TarInfo("plugin.wasm")
info.size, info.mode, info.mtime, info.uid, info.gid = len(data), 0o644, 0, 0, 0
info.uname = info.gname = ""
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
    tar.addfile(info, io.BytesIO(data))
open(tar_path, "wb").write(buf.getvalue())
with open(gz_path, "wb") as raw:
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write(buf.getvalue())
PY

digest() { sha256sum "$1" | cut -d' ' -f1; }
size() { wc -c < "$1" | tr -d ' '; }
# Moves a file into blobs/sha256/<digest> and prints "<digest> <size>".
blob() {
    d=$(digest "$1"); s=$(size "$1")
    mv "$1" "$OUT/blobs/sha256/$d"
    echo "$d $s"
}

DIFF_ID=$(digest "$TMP/layer.tar")
set -- $(blob "$TMP/layer.tar.gz"); LAYER_DIGEST=$1; LAYER_SIZE=$2

printf '{"architecture":"wasm","os":"wasip1","config":{},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
    "$DIFF_ID" > "$TMP/config.json"
set -- $(blob "$TMP/config.json"); CONFIG_DIGEST=$1; CONFIG_SIZE=$2

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.title":"plugin.wasm"}}],"annotations":{"module.wasm.image/variant":"compat","org.opencontainers.image.licenses":"%s","org.opencontainers.image.source":"%s","org.opencontainers.image.title":"cors-proxy-wasm","org.opencontainers.image.version":"%s"}}' \
    "$CONFIG_DIGEST" "$CONFIG_SIZE" "$LAYER_DIGEST" "$LAYER_SIZE" "$LICENSES" "$SOURCE" "$TAG" > "$TMP/manifest.json"
set -- $(blob "$TMP/manifest.json"); MANIFEST_DIGEST=$1; MANIFEST_SIZE=$2

printf '{"imageLayoutVersion":"1.0.0"}' > "$OUT/oci-layout"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' \
    "$MANIFEST_DIGEST" "$MANIFEST_SIZE" "$TAG" > "$OUT/index.json"

echo "$OUT: OCI image layout, tag $TAG, manifest sha256:$MANIFEST_DIGEST"
echo "  layer  sha256:$LAYER_DIGEST ($LAYER_SIZE bytes, plugin.wasm = $(size "$WASM") bytes)"
