#!/usr/bin/env python3
"""Bounded soak: mixed CORS traffic through the real Envoy for a few minutes.

One Envoy (--concurrency 1) runs our filter on a front listener that proxies to a second
listener of the same Envoy answering with a direct_response. wrk (one thread, a Lua script)
sends a mix of allowed / denied / preflight / hostile requests (non-UTF-8 origin, 60 KB ACRH,
repeated Origin, comma storms, 200 ACRH lines) the whole time; the Lua script classifies
every response and its counts must match what was sent. Every --check-every seconds the
driver also sends one request of each kind on its own and checks the answer exactly, and
samples Envoy's RSS and tcmalloc figures.

At start and end: Envoy's RSS (includes the V8 isolate and the wasm VM's linear memory, which
Envoy exposes no stat for), /memory, every `wasm.*` / `wasm_vm.*` stat, our counters, the
5xx counters. Fails (exit 1) on any failed request, a 5xx, a wasm failure stat that moved,
a panic / VM failure line in Envoy's log, or RSS growing more than --max-growth-mib after
warm-up. Writes bench/soak-report.md (the last run's report, committed as the note).

Usage (normally `make soak`): .venv/bin/python -m bench.soak [--duration 180]
Environment: ENVOY_BIN, CORS_WASM (defaults: the project venv's Envoy, dist/cors_proxy_wasm.wasm).
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench import common

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "soak"
REPORT = ROOT / "bench" / "soak-report.md"
APP = "https://app.example.com"
PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"

POLICY = {
    "allow_origins": [APP, "https://*.partner.example"],
    "allow_methods": ["GET", "PUT", "DELETE"],
    "allow_headers": ["content-type", "x-requested-with"],
    "expose_headers": ["x-total"],
    "allow_credentials": True,
    "max_age": 600,
}

SIXTY_KB = 60 * 1024
BIG_ACRH_OK = "content-type, X-Requested-With, " * (SIXTY_KB // 32)

# Request kinds: name -> (method, [(header, value)], expected class).
# Classes: "pf-ok" 204 + ACAO, "pf-deny" 403 without CORS headers, "ok" 200 + ACAO,
# "plain" 200 without CORS headers.
KINDS: dict[str, tuple[str, list[tuple[str, bytes]], str]] = {
    "actual allowed": ("GET", [("Origin", APP.encode())], "ok"),
    "actual wildcard": ("GET", [("Origin", b"https://a.b.partner.example")], "ok"),
    "actual denied": ("GET", [("Origin", b"https://evil.example")], "plain"),
    "non-cors": ("GET", [], "plain"),
    "preflight allowed": (
        "OPTIONS",
        [("Origin", APP.encode()), ("Access-Control-Request-Method", b"PUT"),
         ("Access-Control-Request-Headers", b"content-type")],
        "pf-ok",
    ),
    "preflight denied origin": (
        "OPTIONS",
        [("Origin", b"https://app.example.com.evil.com"),
         ("Access-Control-Request-Method", b"PUT")],
        "pf-deny",
    ),
    "preflight denied method": (
        "OPTIONS",
        [("Origin", APP.encode()), ("Access-Control-Request-Method", b"PATCH")],
        "pf-deny",
    ),
    "hostile non-utf8 origin": (
        "OPTIONS",
        [("Origin", b"https://app.example.com\xff\xfe"),
         ("Access-Control-Request-Method", b"PUT")],
        "pf-deny",
    ),
    "hostile repeated origin": ("GET", [("Origin", APP.encode()), ("Origin", APP.encode())], "plain"),
    "hostile 60KB ACRH allowed": (
        "OPTIONS",
        [("Origin", APP.encode()), ("Access-Control-Request-Method", b"PUT"),
         ("Access-Control-Request-Headers", BIG_ACRH_OK.encode())],
        "pf-ok",
    ),
    "hostile 60KB ACRH denied": (
        "OPTIONS",
        [("Origin", APP.encode()), ("Access-Control-Request-Method", b"PUT"),
         ("Access-Control-Request-Headers", (BIG_ACRH_OK + "x-evil").encode())],
        "pf-deny",
    ),
    "hostile comma storm": (
        "OPTIONS",
        [("Origin", APP.encode()), ("Access-Control-Request-Method", b"PUT"),
         ("Access-Control-Request-Headers", b"," * SIXTY_KB)],
        "pf-ok",
    ),
    "hostile 200 ACRH lines": (
        "OPTIONS",
        [("Origin", APP.encode()), ("Access-Control-Request-Method", b"DELETE")]
        + [("Access-Control-Request-Headers", b"x-requested-with")] * 200,
        "pf-ok",
    ),
}


def die(message: str) -> None:
    print(f"soak: error: {message}", file=sys.stderr)
    sys.exit(1)


def log(message: str) -> None:
    print(f"soak: {message}", flush=True)


def find_envoy() -> str:
    return common.find_envoy(die)


free_ports = common.free_ports


def bootstrap(admin: int, front: int, upstream: int, wasm: Path) -> dict:
    def addr(port: int) -> dict:
        return {"socket_address": {"address": "127.0.0.1", "port_value": port}}

    def hcm(vhost: dict, filters: list) -> dict:
        return {
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network."
                "http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": "ingress" if filters else "upstream_listener",
                "delayed_close_timeout": "0s",
                "max_request_headers_kb": 512,
                "common_http_protocol_options": {"max_headers_count": 2000},
                "route_config": {"name": "local", "virtual_hosts": [vhost]},
                "http_filters": filters + [{
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters."
                                     "http.router.v3.Router"},
                }],
            },
        }

    wasm_filter = {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "cors", "root_id": "cors",
                "vm_config": {"vm_id": "cors", "runtime": "envoy.wasm.runtime.v8",
                              "code": {"local": {"filename": str(wasm)}}},
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                  "value": json.dumps(POLICY)},
            },
        },
    }
    front_vhost = {"name": "front", "domains": ["*"],
                   "routes": [{"match": {"prefix": "/"},
                               "route": {"cluster": "upstream", "timeout": "5s"}}]}
    upstream_vhost = {"name": "upstream", "domains": ["*"],
                      "routes": [{"match": {"prefix": "/"},
                                  "direct_response": {"status": 200,
                                                      "body": {"inline_string": "ok\n"}}}]}
    return {
        "admin": {"address": addr(admin)},
        "static_resources": {
            "listeners": [
                {"name": "front", "address": addr(front),
                 "filter_chains": [{"filters": [hcm(front_vhost, [wasm_filter])]}]},
                {"name": "upstream", "address": addr(upstream),
                 "filter_chains": [{"filters": [hcm(upstream_vhost, [])]}]},
            ],
            "clusters": [{
                "name": "upstream", "type": "STATIC", "connect_timeout": "1s",
                "circuit_breakers": {"thresholds": [{"max_connections": 100000,
                                                     "max_pending_requests": 100000,
                                                     "max_requests": 100000}]},
                "load_assignment": {"cluster_name": "upstream", "endpoints": [
                    {"lb_endpoints": [{"endpoint": {"address": addr(upstream)}}]}]},
            }],
        },
    }


# --------------------------------------------------------------------------------------------
# Raw HTTP (header bytes sent as given)
# --------------------------------------------------------------------------------------------


def raw_request(method: str, headers: list[tuple[str, bytes]]) -> bytes:
    out = f"{method} /api/items HTTP/1.1\r\nHost: soak.example\r\n".encode()
    for name, value in headers:
        out += name.encode() + b": " + value + b"\r\n"
    return out + b"Connection: close\r\n\r\n"


def send(port: int, data: bytes) -> tuple[int, dict[str, list[bytes]]]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    status = int(head[0].split(b" ")[1])
    headers: dict[str, list[bytes]] = {}
    for line in head[1:]:
        name, _, value = line.partition(b":")
        headers.setdefault(name.decode().lower(), []).append(value.strip())
    return status, headers


def check_kind(port: int, kind: str) -> str | None:
    """One request of this kind, checked exactly; returns what is wrong, or None."""
    method, headers, cls = KINDS[kind]
    try:
        status, h = send(port, raw_request(method, headers))
    except OSError as e:
        return f"{kind}: request failed: {e}"
    cors = {k: v for k, v in h.items() if k.startswith("access-control-")}
    origin = dict(headers).get("Origin", b"")
    want: tuple[int, dict]
    if cls == "pf-ok":
        want = (204, {
            "access-control-allow-origin": [origin],
            "access-control-allow-credentials": [b"true"],
            "access-control-allow-methods": [b"GET, PUT, DELETE"],
            "access-control-max-age": [b"600"],
            **({"access-control-allow-headers": [b"content-type, x-requested-with"]}
               if any(n == "Access-Control-Request-Headers" and v.strip(b", ")
                      for n, v in headers) else {}),
        })
        vary = [PREFLIGHT_VARY.encode()]
    elif cls == "pf-deny":
        want, vary = (403, {}), [PREFLIGHT_VARY.encode()]
    elif cls == "ok":
        want = (200, {"access-control-allow-origin": [origin],
                      "access-control-allow-credentials": [b"true"],
                      "access-control-expose-headers": [b"x-total"]})
        vary = [b"Origin"]
    else:
        want, vary = (200, {}), [b"Origin"]
    got = (status, cors)
    if got != want or h.get("vary") != vary:
        return f"{kind}: got {status} {cors} vary={h.get('vary')}, want {want} vary={vary}"
    return None


# --------------------------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------------------------

LUA = r"""
-- Mixed soak traffic: request() cycles through the kinds; response() classifies each answer.
local kinds = %(kinds)s
sent, got = {}, {}  -- globals: done() reads them with thread:get()
local i = 0
local counts_classes = {"pf-ok", "pf-deny", "ok", "plain", "other"}

function init(args)
  for _, k in ipairs(kinds) do sent[k.class] = 0 end
  for _, c in ipairs(counts_classes) do got[c] = 0; sent[c] = sent[c] or 0 end
end

function request()
  i = i + 1
  local k = kinds[(i %% #kinds) + 1]
  sent[k.class] = sent[k.class] + 1
  return k.raw
end

function response(status, headers, body)
  local acao = headers["access-control-allow-origin"] or headers["Access-Control-Allow-Origin"]
  local c = "other"
  if status == 204 and acao then c = "pf-ok"
  elseif status == 403 and not acao then c = "pf-deny"
  elseif status == 200 and acao then c = "ok"
  elseif status == 200 then c = "plain" end
  got[c] = got[c] + 1
end

local threads = {}
function setup(thread) table.insert(threads, thread) end

function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    local parts = {}
    for _, c in ipairs(counts_classes) do
      table.insert(parts, string.format('"sent_%%s": %%d, "got_%%s": %%d', c,
        t:get("sent")[c] or 0, c, t:get("got")[c] or 0))
    end
    io.write("SOAK {" .. table.concat(parts, ", ") .. string.format(
      ', "requests": %%d, "connect": %%d, "read": %%d, "write": %%d, "timeout": %%d, "status": %%d, "duration_us": %%d}\n',
      summary.requests, summary.errors.connect, summary.errors.read, summary.errors.write,
      summary.errors.timeout, summary.errors.status, summary.duration))
  end
end
"""


def lua_string(data: bytes) -> str:
    return '"' + "".join(
        chr(b) if 32 <= b < 127 and chr(b) not in '"\\' else f"\\{b:03d}" for b in data
    ) + '"'


def lua_script() -> Path:
    entries = []
    for method, headers, cls in KINDS.values():
        raw = raw_request(method, headers).replace(b"Connection: close\r\n", b"")
        entries.append(f'{{class = "{cls}", raw = {lua_string(raw)}}}')
    path = BUILD / "soak.lua"
    path.write_text(LUA % {"kinds": "{\n  " + ",\n  ".join(entries) + "\n}"})
    return path


# --------------------------------------------------------------------------------------------
# Envoy figures
# --------------------------------------------------------------------------------------------


def admin_get(port: int, path: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read().decode()
    if r.status != 200:
        die(f"admin {path}: {r.status} {body[:500]}")
    return body


def stats(port: int) -> dict[str, int]:
    data = json.loads(admin_get(
        port,
        "/stats?format=json&filter=%5E(wasm%7Cwasm_vm%7Cwasmcustom%7Chttp%5C.ingress%5C."
        "downstream_rq_%7Ccluster%5C.upstream%5C.upstream_rq_%7Cserver%5C.memory)"))
    return {s["name"]: s["value"] for s in data["stats"] if isinstance(s.get("value"), int)}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def memory(port: int) -> dict[str, int]:
    m = json.loads(admin_get(port, "/memory"))
    return {k: int(v) for k, v in m.items() if k in ("allocated", "heap_size", "pageheap_unmapped")}


BAD_LOG = ("panic", "uncaught", "runtimeerror", "unreachable", "[critical]", "wasm vm",
           "failed")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=int, default=180, help="seconds of load (default 180)")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--check-every", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=20.0, help="seconds before the RSS baseline")
    p.add_argument("--max-growth-mib", type=float, default=64.0)
    p.add_argument("--report", type=Path, default=REPORT)
    args = p.parse_args()
    if not 10 <= args.duration <= 1800:
        die("--duration must be within 10..1800 s")
    for tool in ("wrk",):
        if not shutil.which(tool):
            die(f"`{tool}` not found on PATH (Debian: apt-get install {tool})")
    envoy_bin = find_envoy()
    wasm = Path(os.environ.get("CORS_WASM", ROOT / "dist" / "cors_proxy_wasm.wasm"))
    if not wasm.is_absolute():
        wasm = ROOT / wasm
    if not wasm.is_file():
        die(f"{wasm} does not exist (run `make build`)")

    BUILD.mkdir(parents=True, exist_ok=True)
    admin, front, upstream = free_ports(3)
    config = BUILD / "envoy.json"
    config.write_text(json.dumps(bootstrap(admin, front, upstream, wasm), indent=1))
    log_path = BUILD / "envoy.log"
    envoy = common.Envoy(envoy_bin, config, admin, log_path, die)
    wrk = None
    try:
        envoy.wait_ready(timeout=60)

        problems: list[str] = []
        for kind in KINDS:
            if (why := check_kind(front, kind)):
                problems.append(f"before load: {why}")
        if problems:
            die("\n".join(problems))

        start = {"time": dt.datetime.now(dt.timezone.utc), "rss_kib": rss_kib(envoy.pid),
                 "memory": memory(admin), "stats": stats(admin)}
        log(f"Envoy pid {envoy.pid}, RSS {start['rss_kib']} KiB; wrk for {args.duration} s, "
            f"{len(KINDS)} request kinds")
        script = lua_script()
        wrk = subprocess.Popen(
            ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "-s", str(script),
             f"http://127.0.0.1:{front}/api/items"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        t0 = time.monotonic()
        samples: list[tuple[float, int, int]] = []
        checks = 0
        baseline_rss = None
        while wrk.poll() is None and time.monotonic() - t0 < args.duration + 60:
            time.sleep(args.check_every)
            if wrk.poll() is not None:
                break
            elapsed = time.monotonic() - t0
            for kind in KINDS:
                checks += 1
                if (why := check_kind(front, kind)):
                    problems.append(f"at {elapsed:.0f} s: {why}")
            rss = rss_kib(envoy.pid)
            samples.append((elapsed, rss, memory(admin)["allocated"]))
            if baseline_rss is None and elapsed >= args.warmup:
                baseline_rss = rss
            log(f"{elapsed:5.0f} s  RSS {rss} KiB  tcmalloc allocated "
                f"{samples[-1][2] // 1024} KiB  exact checks failed so far: {len(problems)}")
        try:
            out, _ = wrk.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            wrk.kill()
            die("wrk did not finish")
        line = next((l for l in out.splitlines() if l.startswith("SOAK ")), None)
        if wrk.returncode != 0 or line is None:
            die(f"wrk failed ({wrk.returncode}):\n{out}")
        w = json.loads(line[len("SOAK "):])
        time.sleep(1.2)  # counters are flushed from the VM every 500 ms
        end = {"time": dt.datetime.now(dt.timezone.utc), "rss_kib": rss_kib(envoy.pid),
               "memory": memory(admin), "stats": stats(admin)}

        # wrk's own accounting: socket errors none; every response in the class it was sent
        # for (up to the requests in flight when wrk stopped).
        for e in ("connect", "read", "write", "timeout"):
            if w[e]:
                problems.append(f"wrk: {w[e]} {e} errors")
        if w["got_other"]:
            problems.append(f"wrk: {w['got_other']} responses outside the expected classes")
        for c in ("pf-ok", "pf-deny", "ok", "plain"):
            if abs(w[f"sent_{c}"] - w[f"got_{c}"]) > args.connections:
                problems.append(f"wrk: class {c}: sent {w[f'sent_{c}']}, got {w[f'got_{c}']}")
        s0, s1 = start["stats"], end["stats"]
        for name in ("http.ingress.downstream_rq_5xx", "cluster.upstream.upstream_rq_5xx"):
            if s1.get(name, 0) != s0.get(name, 0):
                problems.append(f"{name}: {s0.get(name, 0)} -> {s1.get(name, 0)}")
        for name in sorted(set(s0) | set(s1)):
            moved = s1.get(name, 0) != s0.get(name, 0)
            if moved and name.startswith(("wasm.", "wasm_vm.")) and "fail" in name:
                problems.append(f"{name}: {s0.get(name, 0)} -> {s1.get(name, 0)}")
        bad_lines = [l for l in log_path.read_text(errors="replace").splitlines()
                     if any(b in l.lower() for b in BAD_LOG)]
        problems += [f"log: {l}" for l in bad_lines[:10]]
        growth_mib = (end["rss_kib"] - (baseline_rss or start["rss_kib"])) / 1024
        if growth_mib > args.max_growth_mib:
            problems.append(f"RSS grew {growth_mib:.1f} MiB after warm-up "
                            f"(limit {args.max_growth_mib} MiB)")
    finally:
        if wrk is not None and wrk.poll() is None:
            wrk.kill()
        envoy.stop()

    secs = w["duration_us"] / 1e6
    rows = []
    for name in sorted(set(s0) | set(s1)):
        if name.startswith("wasm") or s0.get(name) or s1.get(name):
            rows.append(f"| `{name}` | {s0.get(name, 0)} | {s1.get(name, 0)} |")
    report = f"""# Soak report

Written by `make soak` (`bench/soak.py --duration {args.duration}`), {end['time']:%Y-%m-%d %H:%M} UTC.
Envoy `--concurrency 1`, wrk `-t1 -c{args.connections}` for {secs:.0f} s with {len(KINDS)} request
kinds in rotation ({", ".join(KINDS)}); every {args.check_every:.0f} s one request of each kind
checked exactly ({checks} checks).

**Result: {"PASS" if not problems else "FAIL"}** — {w['requests']} requests
({w['requests'] / secs:.0f}/s), {len(problems)} problem(s).

| | start | end |
|---|---|---|
| Envoy RSS (KiB; includes V8 and the wasm VM's linear memory) | {start['rss_kib']} | {end['rss_kib']} |
| RSS after {args.warmup:.0f} s warm-up (KiB) | {baseline_rss} | |
| tcmalloc allocated (KiB) | {start['memory'].get('allocated', 0) // 1024} | {end['memory'].get('allocated', 0) // 1024} |
| tcmalloc heap size (KiB) | {start['memory'].get('heap_size', 0) // 1024} | {end['memory'].get('heap_size', 0) // 1024} |

RSS over time (s, KiB): {", ".join(f"{t:.0f}: {r}" for t, r, _ in samples)}

wrk response classes (sent / answered): {", ".join(f"{c} {w[f'sent_{c}']}/{w[f'got_{c}']}" for c in ("pf-ok", "pf-deny", "ok", "plain"))}, other {w['got_other']};
socket errors: connect {w['connect']}, read {w['read']}, write {w['write']}, timeout {w['timeout']}.

Envoy exposes no stat for the wasm VM's memory (`wasm.*` has only VM counts); its linear
memory lives in Envoy's RSS, outside tcmalloc.

| stat | start | end |
|---|---|---|
{chr(10).join(rows)}

Problems:
{chr(10).join(f"- {x}" for x in problems) if problems else "- none"}
"""
    args.report.write_text(report)
    log(f"report written to {args.report.relative_to(ROOT) if args.report.is_relative_to(ROOT) else args.report}")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        sys.exit(1)
    log("PASS")


if __name__ == "__main__":
    main()
