#!/bin/sh
# The compose suite (`make compose-test`, part of `make test`): envoy/docker-compose.yaml for real,
# on locally built images (scripts/compose-images.sh), then the runner service's checks inside the
# compose network (`up --exit-code-from runner` is the verdict), and the same checks from the host
# through the published ports. Needs a Docker engine; without one it says so and exits 0, unless
# COMPOSE_SUITE=required (CI), where a missing engine fails.
#
# usage: scripts/compose-test.sh ENVOY_BIN BUILD_DIR
set -eu
cd "$(dirname "$0")/.."
envoy_bin=$1
build_dir=$2
file=envoy/docker-compose.yaml

not_run() {
  echo
  echo "compose suite: NOT RUN: $1."
  echo "  It did not pass or fail; envoy/docker-compose.yaml was not started."
  if [ "${COMPOSE_SUITE:-}" = required ]; then
    echo "  COMPOSE_SUITE=required: failing."
    exit 1
  fi
  exit 0
}

if ! command -v docker >/dev/null 2>&1; then
  not_run "no Docker engine (the docker command is not installed)"
fi
if ! err=$(docker info 2>&1 >/dev/null); then
  not_run "no Docker engine reachable (docker info: $(echo "$err" | grep . | head -n 1))"
fi
if docker compose version >/dev/null 2>&1; then
  compose="docker compose"
elif command -v docker-compose >/dev/null 2>&1; then
  compose=docker-compose
else
  echo "compose suite: FAILED: a Docker engine is here but neither \`docker compose\` nor docker-compose is" >&2
  echo "  installed (Debian: apt-get install docker-compose)" >&2
  exit 1
fi
[ -f dist/cors_proxy_wasm.wasm ] || { echo "compose suite: FAILED: dist/cors_proxy_wasm.wasm is missing (make build)"; exit 1; }

start=$(date +%s)
images=$(scripts/compose-images.sh "$envoy_bin" "$build_dir") || {
  echo "compose suite: FAILED: the images could not be built"
  exit 1
}
ENVOY_IMAGE=$(echo "$images" | sed -n 's/^ENVOY_IMAGE=//p')
RUNNER_IMAGE=$(echo "$images" | sed -n 's/^RUNNER_IMAGE=//p')
# One project per clone (two clones never share containers or networks); host ports chosen by
# Docker, so a `make run` or another clone's suite on the default ports is no obstacle.
project="cors-proxy-wasm-$(printf '%s' "$PWD" | sha256sum | cut -c1-10)"
export ENVOY_IMAGE RUNNER_IMAGE CORS_API_PORT=0 CORS_DEMO_PORT=0 CORS_ADMIN_PORT=0
dc() { $compose -p "$project" -f "$file" --profile test "$@"; }

verdict=""
cleanup() {
  code=$?
  dc down -v --remove-orphans >/dev/null 2>&1 || true
  [ -n "$verdict" ] || [ "$code" -eq 0 ] || echo "compose suite: FAILED (exit status $code before the checks ended)"
}
trap cleanup EXIT
dc down -v --remove-orphans >/dev/null 2>&1 || true

echo "compose suite: $compose, project $project, envoy and upstream on $ENVOY_IMAGE, runner on $RUNNER_IMAGE"
dc up -d envoy
published() { dc port envoy "$1" | sed 's/.*://'; }
api=$(published 10000)
demo=$(published 10001)
admin=$(published 9901)

status=0
# A missing file must stop `up` (long-syntax bind mounts), never be created as a directory: the
# compose file's folders copied without dist/, then `up` of the envoy service.
scratch=$(mktemp -d)
mkdir -p "$scratch/envoy/compose" "$scratch/examples"
cp "$file" envoy/echo.lua "$scratch/envoy/"
cp envoy/compose/envoy.yaml envoy/compose/upstream.yaml envoy/compose/runner.py "$scratch/envoy/compose/"
cp examples/demo.html "$scratch/examples/"
if $compose -p "$project-missing" -f "$scratch/envoy/docker-compose.yaml" up --no-start envoy >"$scratch/up.log" 2>&1; then
  echo "compose suite: FAIL: up succeeded without dist/cors_proxy_wasm.wasm"
  status=1
elif [ -e "$scratch/dist/cors_proxy_wasm.wasm" ]; then
  echo "compose suite: FAIL: up created dist/cors_proxy_wasm.wasm ($(ls -ld "$scratch/dist/cors_proxy_wasm.wasm"))"
  status=1
elif ! grep -q "cors_proxy_wasm.wasm" "$scratch/up.log"; then
  echo "compose suite: FAIL: up without the .wasm failed for another reason:"
  cat "$scratch/up.log"
  status=1
else
  echo "compose suite: ok: without the .wasm, up stops: $(grep -m1 -o '[^:]*: bind source path does not exist.*' "$scratch/up.log" || grep -m1 cors_proxy_wasm.wasm "$scratch/up.log")"
fi
$compose -p "$project-missing" -f "$scratch/envoy/docker-compose.yaml" down -v >/dev/null 2>&1 || true
rm -rf "$scratch"

echo "compose suite: the runner from the host, through the published ports $api, $demo, $admin"
python3 envoy/compose/runner.py --api "http://127.0.0.1:$api" --demo "http://127.0.0.1:$demo" \
  --admin "http://127.0.0.1:$admin" || status=1
echo "compose suite: the runner service, on the compose network"
dc up --no-color --exit-code-from runner runner || status=1
if [ "$status" -ne 0 ]; then
  echo "--- logs ---"
  dc logs --no-color envoy upstream | tail -n 40
fi
elapsed=$(($(date +%s) - start))
verdict=done
if [ "$status" -eq 0 ]; then
  echo "compose suite: PASSED in ${elapsed} s (runner service in the compose network, and from the host)"
else
  echo "compose suite: FAILED in ${elapsed} s"
fi
exit "$status"
