#!/bin/sh
# wasm-optimize.sh IN OUT — the release .wasm as shipped.
#
# 1. wasm-metadce keeps only the exports this filter uses. The proxy-wasm SDK exports every
#    callback of the ABI, and Envoy enters the VM for each one a module exports: per request that
#    is context create, request headers, response headers, response body, log, done and delete.
#    The filter only acts on request and response headers, so dropping the body, trailer, log and
#    done callbacks (Envoy skips callbacks a module does not export) takes 3 of the 7 VM entries
#    off every request, with no change in behaviour (the SDK's versions do nothing but Continue /
#    return true, which is also what Envoy does when they are absent).
# 2. wasm-opt -Oz.
# Without binaryen, OUT is a copy of IN: the same behaviour, larger and slower.
set -eu
in=$1
out=$2

# Everything the filter needs: memory and start-up, the allocator the host writes into, the root
# context (vm start, configure, tick), the HTTP context (create, request/response headers, delete).
exports="memory _initialize proxy_abi_version_0_2_1 proxy_on_memory_allocate proxy_on_vm_start
proxy_on_configure proxy_on_tick proxy_on_context_create proxy_on_request_headers
proxy_on_response_headers proxy_on_delete"

# The features rustc enables by default for wasm32-wasip1, all supported by Envoy's V8.
features="--enable-bulk-memory --enable-sign-ext --enable-mutable-globals
--enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types"

if ! command -v wasm-opt >/dev/null 2>&1 || ! command -v wasm-metadce >/dev/null 2>&1; then
  echo "NOTE: binaryen (wasm-opt, wasm-metadce) not installed: $out is the plain cargo output" >&2
  cp "$in" "$out"
  exit 0
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
{
  printf '[{"name": "host", "root": true, "reaches": ['
  sep=""
  for e in $exports; do printf '%s"export:%s"' "$sep" "$e"; sep=", "; done
  printf ']}'
  for e in $exports; do printf ', {"name": "export:%s", "export": "%s"}' "$e" "$e"; done
  printf ']\n'
} > "$work/graph.json"

# shellcheck disable=SC2086 # word splitting of $features is intended
if wasm-metadce $features "$in" -f "$work/graph.json" -o "$work/dce.wasm" >/dev/null &&
   wasm-opt -Oz $features "$work/dce.wasm" -o "$work/opt.wasm"; then
  mv "$work/opt.wasm" "$out"
else
  echo "WARNING: binaryen failed; $out is the plain cargo output" >&2
  cp "$in" "$out"
fi
