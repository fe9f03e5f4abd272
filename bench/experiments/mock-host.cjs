#!/usr/bin/env node
// mock-host.cjs — a filter's own cost per request, without Envoy.
//
// Instantiates a proxy-wasm module in Node's V8 (the engine Envoy embeds) behind a mock host
// written in JavaScript, configures it, then drives one HTTP context per request through the
// vm Envoy calls: context create, request headers, response headers, delete. The mock host
// answers the calls this project's modules make (header maps, route metadata absent, local reply,
// header writes) at a fixed, small cost, so differences between two modules are differences in
// their own wasm code; none of Envoy's per-request work is in the figure.
//
//   node --no-liftoff bench/experiments/mock-host.cjs MODULE.wasm CONFIG_FILE pre|act [REQUESTS]
//
// `pre`: an allowed-looking preflight from https://app.example.com (PUT, content-type);
// `act`: an actual GET from that origin. CONFIG_FILE is the plugin configuration (our policy, or
// the allowed origin for bench/spec-calls). `--no-liftoff` compiles with TurboFan only, as Envoy
// does. Prints nanoseconds per request and host calls per request. Measurement use only (Debian:
// apt-get install nodejs); BENCHMARKS.md, Findings (the levers tried); bench/experiments/README.md.
'use strict';
const fs = require('fs');

const [wasmPath, configPath, mode, requestsArg] = process.argv.slice(2);
if (!wasmPath || !configPath || !['pre', 'act'].includes(mode)) {
  console.error('usage: node --no-liftoff bench/experiments/mock-host.cjs MODULE.wasm CONFIG_FILE pre|act [REQUESTS]');
  process.exit(2);
}
const requests = Number(requestsArg || 400000);

const OK = 0;
const NOT_FOUND = 1;
const REQUEST_HEADERS = 0;

/** A header map as the proxy-wasm ABI serialises it. */
function serialise(pairs) {
  const enc = new TextEncoder();
  const parts = pairs.map(([n, v]) => [enc.encode(n), enc.encode(v)]);
  const size = 4 + parts.reduce((a, [n, v]) => a + 8 + n.length + v.length + 2, 0);
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint32(0, parts.length, true);
  let at = 4;
  for (const [n, v] of parts) {
    view.setUint32(at, n.length, true);
    view.setUint32(at + 4, v.length, true);
    at += 8;
  }
  for (const [n, v] of parts) {
    out.set(n, at);
    at += n.length + 1;
    out.set(v, at);
    at += v.length + 1;
  }
  return out;
}

// What Envoy hands a filter for wrk's requests in bench/run.py.
const common = [[':authority', '127.0.0.1:10000'], [':path', '/api/items'], [':scheme', 'http']];
const added = [['x-forwarded-proto', 'http'], ['x-request-id', '0b6c3a3e-5a9c-4f61-8a0e-3c1f1e7a9b11']];
const request = serialise(mode === 'pre'
  ? [...common, [':method', 'OPTIONS'], ['origin', 'https://app.example.com'],
     ['access-control-request-method', 'PUT'], ['access-control-request-headers', 'content-type'], ...added]
  : [...common, [':method', 'GET'], ['origin', 'https://app.example.com'], ...added]);
const response = serialise([[':status', '200'], ['content-length', '13'], ['content-type', 'application/json'],
  ['date', 'Tue, 24 Nov 2026 12:00:00 GMT'], ['server', 'envoy']]);
const configuration = fs.readFileSync(configPath);

let vm; // the module instance's exports
const memory = () => new DataView(vm.memory.buffer);
/** Copies `bytes` into the VM through its allocator and returns them like the host does. */
function handOver(bytes, returnData, returnSize) {
  const at = vm.proxy_on_memory_allocate(bytes.length);
  new Uint8Array(vm.memory.buffer).set(bytes, at);
  memory().setUint32(returnData, at, true);
  memory().setUint32(returnSize, bytes.length, true);
  return OK;
}

let hostCalls = 0;
const env = {
  proxy_get_buffer_bytes: (type, start, max, data, size) => handOver(configuration, data, size),
  proxy_get_header_map_pairs: (type, data, size) => {
    hostCalls++;
    return handOver(type === REQUEST_HEADERS ? request : response, data, size);
  },
  proxy_get_header_map_value: () => { hostCalls++; return NOT_FOUND; },
  proxy_get_property: () => { hostCalls++; return NOT_FOUND; },
  proxy_send_local_response: () => { hostCalls++; return OK; },
  proxy_replace_header_map_value: () => { hostCalls++; return OK; },
  proxy_remove_header_map_value: () => { hostCalls++; return OK; },
  proxy_get_log_level: (level) => { memory().setUint32(level, 2, true); return OK; },
  proxy_define_metric: (type, name, size, id) => { memory().setUint32(id, 1, true); return OK; },
};
const wasi = {
  random_get: (at, length) => { new Uint8Array(vm.memory.buffer).fill(7, at, at + length); return 0; },
  environ_sizes_get: (count, size) => { memory().setUint32(count, 0, true); memory().setUint32(size, 0, true); return 0; },
};
// Every other import (logging, timers, metrics increments, WASI output) succeeds and does nothing.
const stub = (table) => new Proxy(table, { get: (t, name) => t[name] || (() => OK) });

(async () => {
  const { instance } = await WebAssembly.instantiate(fs.readFileSync(wasmPath),
    { env: stub(env), wasi_snapshot_preview1: stub(wasi) });
  vm = instance.exports;
  if (vm._initialize) vm._initialize();
  const root = 1;
  vm.proxy_on_context_create(root, 0);
  vm.proxy_on_vm_start(root, 0);
  if (!vm.proxy_on_configure(root, configuration.length)) {
    console.error('the module refused its configuration');
    process.exit(1);
  }
  const drive = (n) => {
    for (let i = 0; i < n; i++) {
      const id = 2 + (i & 1023);
      vm.proxy_on_context_create(id, root);
      vm.proxy_on_request_headers(id, 10, 1);
      vm.proxy_on_response_headers(id, 5, 0);
      vm.proxy_on_delete(id);
    }
  };
  drive(20000); // warm-up: tier-up and a steady heap
  hostCalls = 0;
  const start = process.hrtime.bigint();
  drive(requests);
  const ns = Number(process.hrtime.bigint() - start) / requests;
  console.log(`${mode}: ${ns.toFixed(0)} ns per request, ${hostCalls / requests} host calls per request`);
})();
