#!/usr/bin/env python3
"""Side-by-side throughput benchmark: cors-proxy-wasm vs Envoy's native CORS filter.

One Envoy (--concurrency 1, pinned with `taskset -c 0`) serves one listener per filter variant;
the listeners differ only in their CORS filter and all proxy to the same upstream (a further
listener of the same Envoy answering with a direct_response), so every measured request is a
real proxied request. wrk (pinned with `taskset -c 1`) drives each (filter, scenario) in turn,
filters alternating within a scenario, for --rounds rounds; the figures are medians.

Variants: none | native-{1,1000,10000} | native-10000-last | empty (an empty proxy-wasm filter:
the wasm floor) | spec-calls (only the host calls the filter makes, nothing decided) |
ours-{1,1000,10000} | dm-{1,1000,10000} (the same engine as an Envoy dynamic module) | dm-empty
(that module built with its request and response hooks returning at once: the dynamic-module
floor). Scenarios: non-CORS GET, allowed actual GET, allowed preflight, denied preflight.

Writes build/bench/results.json, bench/throughput.png and the results section of
BENCHMARKS.md (between the `bench:results` markers). Usage (normally through `make bench`):

    .venv/bin/python -m bench.run [--rounds 4] [--duration 5] [--connections 16]

Environment: ENVOY_BIN, CORS_WASM, CORS_NATIVE, EMPTY_WASM, SPEC_CALLS_WASM, EMPTY_MODULE
(defaults: the project venv's Envoy, dist/cors_proxy_wasm.wasm, dist/libcors_proxy.so,
bench/empty-filter/target/wasm32-wasip1/release/empty_filter.wasm,
bench/spec-calls/target/wasm32-wasip1/release/spec_calls.wasm, build/bench/libcors_proxy_empty.so).
Any missing tool or a variant answering differently than expected is a hard error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import http.client
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench import common

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "bench"
SIZES = (1, 1000, 10000)
ALLOWED = "https://app.example.com"
DENIED = "https://evil.example.org"
PATH = "/api/items"
MARK_BEGIN = "<!-- bench:results:begin -->"
MARK_END = "<!-- bench:results:end -->"

# name -> (method, headers)
SCENARIOS = {
    "non-cors GET": ("GET", {}),
    "actual GET": ("GET", {"Origin": ALLOWED}),
    "preflight allowed": (
        "OPTIONS",
        {
            "Origin": ALLOWED,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type",
        },
    ),
    "preflight denied": (
        "OPTIONS",
        {
            "Origin": DENIED,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type",
        },
    ),
}

# `native-10000-last`: the native filter's worst case, the allowed origin last of its 10,000
# matchers (the `native-N` lists have it in the middle, the average case). Ours is a hash lookup,
# so the position does not matter to it.
WORST = "native-10000-last"
# `spec-calls`: bench/spec-calls, a filter making exactly our host calls for this policy with
# fixed answers, i.e. the most any filter making these host calls reaches through this host.
SPEC_CALLS = "spec-calls"
# `dm-empty`: the dynamic module built with feature `floor` (`make empty-module`), whose request
# and response hooks return at once: what any dynamic module costs Envoy before doing any work.
EMPTY_MODULE = "dm-empty"
VARIANTS = (
    ["none"]
    + [f"native-{n}" for n in SIZES]
    + [WORST]
    + ["empty", SPEC_CALLS]
    + [f"ours-{n}" for n in SIZES]
    + [f"dm-{n}" for n in SIZES]
    + [EMPTY_MODULE]
)


def die(message: str) -> None:
    print(f"bench: ERROR: {message}", file=sys.stderr)
    sys.exit(1)


def log(message: str) -> None:
    print(f"bench: {message}", flush=True)


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def origins(n: int, last: bool = False) -> list[str]:
    """n exact origins; ALLOWED sits in the middle (the average case of a linear scan), or last."""
    out = [f"https://app-{i:05d}.example.com" for i in range(n)]
    out[n - 1 if last else n // 2] = ALLOWED
    return out


def find_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        die(f"`{name}` not found on PATH (Debian: apt-get install {name})")
    return path


def find_envoy() -> str:
    return common.find_envoy(die)


def wasm_file(var: str, default: Path, hint: str) -> Path:
    path = Path(os.environ.get(var, default))
    if not path.is_absolute():
        path = ROOT / path
    if not path.is_file():
        die(f"{path} does not exist ({hint})")
    return path


free_ports = common.free_ports


# --------------------------------------------------------------------------------------------
# Envoy configuration
# --------------------------------------------------------------------------------------------

ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
    },
}


def wasm_filter(vm_id: str, code: Path, configuration: str) -> dict:
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": vm_id,
                "root_id": vm_id,
                "vm_config": {
                    "vm_id": vm_id,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": str(code)}},
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": configuration,
                },
            },
        },
    }


def dynamic_module_filter(module: Path, configuration: str) -> dict:
    return {
        "name": "envoy.filters.http.dynamic_modules",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3."
            "DynamicModuleFilter",
            "dynamic_module_config": {"module": {"local": {"filename": str(module)}}},
            "filter_name": "cors",
            "filter_config": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": configuration,
            },
        },
    }


def our_policy(n: int) -> str:
    """The same policy as the native CorsPolicy below, in our short form."""
    return json.dumps(
        {
            "allow_origins": origins(n),
            "allow_methods": ["GET", "PUT", "POST"],
            "allow_headers": ["content-type"],
            "max_age": 600,
        }
    )


def native_policy(n: int, last: bool = False) -> dict:
    return {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy",
        "allow_origin_string_match": [{"exact": o} for o in origins(n, last)],
        "allow_methods": "GET,PUT,POST",
        "allow_headers": "content-type",
        "max_age": "600",
    }


def hcm(name: str, virtual_host: dict, filters: list[dict]) -> dict:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network."
            "http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": name,
            "delayed_close_timeout": "0s",
            "route_config": {"name": name, "virtual_hosts": [virtual_host]},
            "http_filters": filters + [ROUTER],
        },
    }


def listener(name: str, port: int, virtual_host: dict, filters: list[dict]) -> dict:
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [hcm(name, virtual_host, filters)]}],
    }


def variant_listener(variant: str, port: int, modules: dict[str, Path]) -> dict:
    """The listener of `variant`; `modules` holds the paths `ours`, `empty`, `spec-calls` (.wasm)
    and `dm` (the dynamic module's .so)."""
    vhost = {
        "name": variant,
        "domains": ["*"],
        "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}],
    }
    filters: list[dict] = []
    kind, _, size = variant.partition("-")
    size, _, position = size.partition("-")
    if variant == EMPTY_MODULE:
        filters = [dynamic_module_filter(modules[EMPTY_MODULE], our_policy(1))]
    elif variant == SPEC_CALLS:
        filters = [wasm_filter(SPEC_CALLS, modules[SPEC_CALLS], ALLOWED)]
    elif kind == "native":
        filters = [
            {
                "name": "envoy.filters.http.cors",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"
                },
            }
        ]
        vhost["typed_per_filter_config"] = {"envoy.filters.http.cors": native_policy(int(size), position == "last")}
    elif kind == "empty":
        filters = [wasm_filter("empty", modules["empty"], "")]
    elif kind == "ours":
        filters = [wasm_filter(variant, modules["ours"], our_policy(int(size)))]
    elif kind == "dm":
        filters = [dynamic_module_filter(modules["dm"], our_policy(int(size)))]
    return listener(variant, port, vhost, filters)


def bootstrap(admin_port: int, upstream_port: int, ports: dict, modules: dict[str, Path]) -> dict:
    upstream_vhost = {
        "name": "upstream",
        "domains": ["*"],
        "routes": [
            {
                "match": {"prefix": "/"},
                "direct_response": {"status": 200, "body": {"inline_string": '{"items":[]}\n'}},
            }
        ],
    }
    return {
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}
        },
        "static_resources": {
            "listeners": [listener("upstream", upstream_port, upstream_vhost, [])]
            + [variant_listener(v, ports[v], modules) for v in VARIANTS],
            "clusters": [
                {
                    "name": "upstream",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "circuit_breakers": {
                        "thresholds": [
                            {"max_connections": 100000, "max_pending_requests": 100000,
                             "max_requests": 100000}
                        ]
                    },
                    "load_assignment": {
                        "cluster_name": "upstream",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": "127.0.0.1",
                                                    "port_value": upstream_port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ],
        },
    }


# --------------------------------------------------------------------------------------------
# Checks and runs
# --------------------------------------------------------------------------------------------


def expected(variant: str, scenario: str) -> tuple[int, str | None]:
    """(status, Access-Control-Allow-Origin) each variant must answer with."""
    if variant == EMPTY_MODULE:
        return expected("empty", scenario)
    kind = "ours" if variant in (SPEC_CALLS,) or variant.startswith("dm-") else variant.partition("-")[0]
    if kind in ("none", "empty") or scenario == "non-cors GET":
        return 200, None
    if scenario == "preflight denied":
        # Native forwards an unmatched preflight upstream; ours answers 403 locally.
        return (403 if kind == "ours" else 200), None
    if scenario == "preflight allowed":
        return (204 if kind == "ours" else 200), ALLOWED
    return 200, ALLOWED


def check(port: int, variant: str, scenario: str) -> None:
    method, headers = SCENARIOS[scenario]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request(method, PATH, headers=headers)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    want_status, want_acao = expected(variant, scenario)
    acao = resp.getheader("access-control-allow-origin")
    if resp.status != want_status or acao != want_acao:
        die(f"{variant} / {scenario}: got {resp.status} ACAO={acao!r}, "
            f"expected {want_status} ACAO={want_acao!r}")


LUA_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH {\"requests\":%d,\"duration_us\":%d,\"p50_us\":%d,\"p99_us\":%d," ..
    "\"connect\":%d,\"read\":%d,\"write\":%d,\"status\":%d,\"timeout\":%d}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def lua_script(scenario: str) -> Path:
    method, headers = SCENARIOS[scenario]
    lines = [f'wrk.method = "{method}"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    path = BUILD / (scenario.replace(" ", "-") + ".lua")
    path.write_text("\n".join(lines) + "\n" + LUA_DONE)
    return path


def run_wrk(port: int, scenario: str, script: Path, args) -> dict:
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s",
           "--latency", "-s", str(script), f"http://127.0.0.1:{port}{PATH}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 30)
    line = next((l for l in out.stdout.splitlines() if l.startswith("BENCH ")), None)
    if out.returncode != 0 or line is None:
        die(f"wrk failed ({out.returncode}): {' '.join(cmd)}\n{out.stdout}\n{out.stderr}")
    r = json.loads(line[len("BENCH "):])
    socket_errors = r["connect"] + r["read"] + r["write"] + r["timeout"]
    # Denied preflights answered 403 count as wrk "status" errors; anything else is a failure.
    if socket_errors or (r["status"] and scenario != "preflight denied"):
        die(f"wrk reported errors for {port} / {scenario}: {r}")
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def wait_until_quiet(max_load: float, wait: int) -> None:
    """Refuse to measure on a busy machine. With 2 CPUs, one build or test run beside the
    benchmark halves Envoy's rate and compresses every ratio towards 1, so the run starts only
    once the 1-minute load average is below `max_load` (waiting up to `wait` seconds for it)."""
    deadline = time.monotonic() + wait
    while load1() >= max_load:
        if time.monotonic() >= deadline:
            die(f"the machine is busy (load average {loadavg()}, limit {max_load}): stop other "
                "work (builds, tests, Envoys) and run again, or raise --max-load knowingly")
        log(f"waiting for a quiet machine: load average {loadavg()} (limit {max_load})")
        time.sleep(10)
    log(f"load average {loadavg()}: quiet enough (limit {max_load})")


class ForeignCpu:
    """User-space CPU time spent by processes other than this script, Envoy and wrk, as a share
    of one CPU, over a measuring round. Anything above a few percent means another program ran
    beside the benchmark, and its figures are not comparable."""

    def __init__(self, envoy_pid: int):
        self.envoy_pid = envoy_pid
        self.tick = os.sysconf("SC_CLK_TCK")
        self.start = self.sample()

    def sample(self) -> tuple[float, float, float]:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        machine_user = (int(fields[1]) + int(fields[2])) / self.tick
        stat = Path(f"/proc/{self.envoy_pid}/stat").read_text()
        envoy_user = int(stat.rsplit(")", 1)[1].split()[11]) / self.tick
        ours = os.times()
        return time.monotonic(), machine_user, envoy_user + ours.user + ours.children_user

    def share(self) -> float:
        t0, machine0, own0 = self.start
        t1, machine1, own1 = self.sample()
        self.start = (t1, machine1, own1)
        return max(0.0, (machine1 - machine0) - (own1 - own0)) / max(t1 - t0, 1e-9)


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------

TARGETS = [
    # (size, scenarios, baseline, minimum ratio ours/baseline)
    (1, ("actual GET",), "native", 0.80),
    (1, ("preflight allowed", "preflight denied"), "native", 0.62),
    (1, ("actual GET",), "empty", 0.88),
    (1000, ("actual GET", "preflight allowed", "preflight denied"), "native", 0.95),
    (10000, ("actual GET",), "native", 1.8),
    (10000, ("preflight allowed", "preflight denied"), "native", 3.0),
]

# The dynamic module build (dm-N ÷ native-N).
DM_TARGETS = [
    (1, "actual GET", 1.0),
    (1, "preflight allowed", 0.95),
    (10000, "actual GET", 2.0),
    (10000, "preflight allowed", 4.0),
]


def dm_ratio_rows(med: dict) -> list[dict]:
    """The dynamic module ÷ native, ÷ our wasm build and ÷ the empty wasm filter."""
    if "dm-1" not in med:  # results written before the dynamic module was measured
        return []
    return [{"size": n, "scenario": sc,
             "vs_native": med[f"dm-{n}"][sc]["rps"] / med[f"native-{n}"][sc]["rps"],
             "vs_ours": med[f"dm-{n}"][sc]["rps"] / med[f"ours-{n}"][sc]["rps"],
             "vs_empty": med[f"dm-{n}"][sc]["rps"] / med["empty"][sc]["rps"]}
            for n in SIZES for sc in SCENARIOS]


def native_baselines(med: dict, size: int) -> list[str]:
    """`native-N`, and `native-N-last` (native's worst case, supplementary) where it was measured."""
    return [f"native-{size}"] + ([f"native-{size}-last"] if f"native-{size}-last" in med else [])


def dm_target_rows(med: dict) -> list[dict]:
    if "dm-1" not in med:
        return []
    rows = []
    for size, scenario, minimum in DM_TARGETS:
        for baseline in native_baselines(med, size):
            b = med[baseline][scenario]["rps"]
            got = med[f"dm-{size}"][scenario]["rps"] / b
            rows.append({"size": size, "scenario": scenario, "baseline": baseline,
                         "baseline_rps": b, "target": minimum, "got": got,
                         "met": got >= minimum, "bound": bound(med, scenario, b),
                         # Only an actual GET goes the same way through an empty module
                         # (a preflight would go upstream).
                         "floor": (med[EMPTY_MODULE][scenario]["rps"] / b
                                   if EMPTY_MODULE in med and scenario == "actual GET"
                                   else None)})
    return rows


def median_spread(med: dict) -> float:
    """How far apart the rounds of one filter and scenario are ((max − min) ÷ median), the median
    over every filter and scenario: the machine's own noise, which no ratio below it can resolve."""
    spreads = sorted((max(m["rps_runs"]) - min(m["rps_runs"])) / m["rps"]
                     for by_scenario in med.values() for m in by_scenario.values())
    return spreads[len(spreads) // 2]


def summarize(runs: dict) -> dict:
    med = {}
    for (variant, scenario), rs in runs.items():
        med.setdefault(variant, {})[scenario] = {
            "rps": statistics.median(r["rps"] for r in rs),
            "p50_us": statistics.median(r["p50_us"] for r in rs),
            "p99_us": statistics.median(r["p99_us"] for r in rs),
            "rps_runs": [round(r["rps"]) for r in rs],
        }
    return med


def ratio_rows(med: dict) -> list[dict]:
    rows = []
    for n in SIZES:
        for scenario in SCENARIOS:
            ours = med[f"ours-{n}"][scenario]["rps"]
            rows.append({
                "size": n, "scenario": scenario,
                "vs_native": ours / med[f"native-{n}"][scenario]["rps"],
                "vs_empty": ours / med["empty"][scenario]["rps"],
            })
    return rows


def bound(med: dict, scenario: str, baseline_rps: float) -> float | None:
    if scenario == "actual GET":
        return med["none"][scenario]["rps"] / baseline_rps
    if scenario == "preflight allowed":
        return med["native-1"][scenario]["rps"] / baseline_rps
    return None


def target_rows(med: dict) -> list[dict]:
    """The targets against the average case; at 10,000 also against native's worst case
    (supplementary). `bound` is the most any filter could reach against that baseline: on actual
    GETs no filter at all ÷ baseline; on allowed preflights native-1 ÷ baseline (Envoy's own C++
    local reply with a one-entry origin list); none for denied preflights (native proxies them)."""
    rows = []
    for size, scenarios, base, minimum in TARGETS:
        baselines = native_baselines(med, size) if base == "native" else ["empty"]
        for baseline in baselines:
            for scenario in scenarios:
                b = med[baseline][scenario]["rps"]
                got = med[f"ours-{size}"][scenario]["rps"] / b
                rows.append({"size": size, "scenario": scenario, "baseline": baseline,
                             "baseline_rps": b,
                             "target": minimum, "got": got, "met": got >= minimum,
                             "empty_vs_baseline": med["empty"][scenario]["rps"] / b,
                             "spec_calls_vs_baseline": (med[SPEC_CALLS][scenario]["rps"] / b
                                                        if SPEC_CALLS in med else None),
                             "bound": bound(med, scenario, b)})
    return rows


def chart(med: dict, path: Path, title: str) -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log("installing matplotlib into the venv (pip)")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"],
                       check=True)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(SCENARIOS)
    width = 0.8 / len(VARIANTS)
    colors = {"none": "#888888", "native-1": "#9ecae1", "native-1000": "#4292c6",
              "native-10000": "#08519c", WORST: "#08306b", "empty": "#bbbbbb",
              SPEC_CALLS: "#fdae6b", "ours-1": "#a1d99b",
              "ours-1000": "#41ab5d", "ours-10000": "#006d2c",
              "dm-1": "#fcbba1", "dm-1000": "#fb6a4a", "dm-10000": "#a50f15",
              EMPTY_MODULE: "#dddddd"}
    fig, ax = plt.subplots(figsize=(12, 5.5))
    for i, variant in enumerate(VARIANTS):
        xs = [s + (i - (len(VARIANTS) - 1) / 2) * width for s in range(len(scenarios))]
        ys = [med[variant][sc]["rps"] for sc in scenarios]
        ax.bar(xs, ys, width, label=variant, color=colors[variant])
    ax.set_xticks(range(len(scenarios)))
    ax.set_xticklabels(scenarios)
    ax.set_ylabel("requests/s (median)")
    ax.set_title(title, fontsize=10)
    ax.legend(ncol=4, fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(results: dict) -> str:
    med = results["medians"]
    a = results["args"]
    out = [
        MARK_BEGIN,
        "",
        f"Run: {results['date']}, {a['rounds']} rounds × {a['duration']} s per run, "
        f"wrk `-t1 -c{a['connections']}`; load average (1/5/15 min) before each round: "
        + "; ".join(results["load"]) + f"; after: {results['load_after']} (the benchmark's own "
        "Envoy and wrk keep it near 1 during the rounds). Other programs "
        "used at most " + f"{max(results.get('foreign_cpu') or [0]):.1%} of a CPU in any round.",
        f"Machine: {results['machine']}.",
        "",
        "Requests/s (median over rounds), p50 / p99 latency in µs (medians):",
        "",
        "| filter | " + " | ".join(SCENARIOS) + " |",
        "|---|" + "---|" * len(SCENARIOS),
    ]
    for v in VARIANTS:
        cells = []
        for sc in SCENARIOS:
            m = med[v][sc]
            cells.append(f"{m['rps']:,.0f} ({m['p50_us']:.0f} / {m['p99_us']:.0f})")
        out.append(f"| {v} | " + " | ".join(cells) + " |")
    out += ["", "Ratios of requests/s, ours ÷ native and ours ÷ empty wasm filter, with native's "
            "own rate at that size:", "",
            "| origins | " + " | ".join(SCENARIOS) + " |", "|---|" + "---|" * len(SCENARIOS)]
    by = {(r["size"], r["scenario"]): r for r in results["ratios"]}
    for n in SIZES:
        cells = [f"{by[(n, sc)]['vs_native']:.2f}× / {by[(n, sc)]['vs_empty']:.2f}× "
                 f"(native {med[f'native-{n}'][sc]['rps']:,.0f}/s)" for sc in SCENARIOS]
        out.append(f"| {n:,} | " + " | ".join(cells) + " |")
    out += dm_markdown(results)
    out += ["", "Targets (ours ÷ baseline, requests/s). The baseline `native-N` has the "
            f"allowed origin in the middle of its list (the average case); the `{WORST}` rows "
            "(allowed origin last, native's worst case) are supplementary. *Floor*: the empty wasm "
            "filter ÷ the same baseline, what a proxy-wasm filter doing nothing reaches. *Host "
            "calls*: `spec-calls` ÷ the same baseline, a filter making exactly our host calls for "
            "this policy with fixed answers and no policy engine, i.e. the most a proxy-wasm "
            "filter doing this CORS work reaches through this host. *Bound*: "
            "the most any filter could reach against that baseline, so a target above it cannot "
            "be met in this set-up: on actual GETs no filter at all ÷ baseline; on allowed "
            "preflights native-1 ÷ baseline (Envoy's own C++ local reply with a one-entry origin "
            "list, i.e. an origin lookup that costs nothing).", "",
            "| origins | scenario | baseline | target | measured | | floor | host calls | bound |",
            "|---|---|---|---|---|---|---|---|---|"]
    for t in results["targets"]:
        base = "native" if t["baseline"] == f"native-{t['size']}" else t["baseline"]
        limit = t.get("bound")
        base += f" ({t['baseline_rps']:,.0f}/s)" if "baseline_rps" in t else ""
        out.append(f"| {t['size']:,} | {t['scenario']} | {base} | ≥ {t['target']:.2f}× "
                   f"| {t['got']:.3f}× | {'met' if t['met'] else '**not met**'} "
                   f"| {t['empty_vs_baseline']:.2f}× | {ratio_cell(t.get('spec_calls_vs_baseline'))} "
                   + ratio_cell(limit))
    spreads = sorted(((max(m["rps_runs"]) - min(m["rps_runs"])) / m["rps"], v, sc)
                     for v, by_scenario in med.items() for sc, m in by_scenario.items())
    widest, wv, wsc = spreads[-1]
    out += ["", f"Noise: the runs of one filter and scenario differ by {spreads[len(spreads) // 2][0]:.1%} "
            f"(median over filters and scenarios) and at most {widest:.1%} ({wv}, {wsc}); every run's "
            "figures are in `build/bench/results.json`."]
    out += ["", "![throughput](bench/throughput.png)", "",
            f"Module sizes loaded in this run: ours {results['wasm_bytes']['ours']:,} bytes, "
            f"empty filter {results['wasm_bytes']['empty']:,} bytes, spec-calls "
            f"{results['wasm_bytes'][SPEC_CALLS]:,} bytes"
            + (f", dynamic module {results['wasm_bytes']['dm']:,} bytes" if "dm" in results["wasm_bytes"]
               else "") + ".", ""]
    if results["criterion"]:
        out += criterion_table(results["criterion"])
    out += [f"Envoy logged {len(results['configure_log'])} `policy loaded` lines in this run (the "
            "configure times of every plugin, with their timestamps, are in `build/bench/results.json`).",
            "", MARK_END]
    return "\n".join(out)


def dm_markdown(results: dict) -> list[str]:
    """The dynamic module beside native and our wasm build: ratios, then its targets."""
    med = results["medians"]
    rows = results.get("dm_ratios") or []
    if not rows:
        return []
    by = {(r["size"], r["scenario"]): r for r in rows}
    out = ["", "The dynamic module build (`dm-N`): ratios of requests/s, dm ÷ native, dm ÷ ours "
           "(the wasm build) and dm ÷ empty wasm filter, with native's own rate at that size:", "",
           "| origins | " + " | ".join(SCENARIOS) + " |", "|---|" + "---|" * len(SCENARIOS)]
    for n in SIZES:
        cells = [f"{by[(n, sc)]['vs_native']:.2f}× / {by[(n, sc)]['vs_ours']:.2f}× / "
                 f"{by[(n, sc)]['vs_empty']:.2f}× (native {med[f'native-{n}'][sc]['rps']:,.0f}/s)"
                 for sc in SCENARIOS]
        out.append(f"| {n:,} | " + " | ".join(cells) + " |")
    out += ["", "Dynamic module targets (dm ÷ native, requests/s; the `native-10000-last` rows, native's "
            "worst case, are supplementary as for the wasm build; *bound* as below):", "",
            "| origins | scenario | baseline | target | measured | | floor: empty module | bound |",
            "|---|---|---|---|---|---|---|---|"]
    for t in results.get("dm_targets") or []:
        out.append(f"| {t['size']:,} | {t['scenario']} | {t['baseline']} ({t['baseline_rps']:,.0f}/s) "
                   f"| ≥ {t['target']:.2f}× | {t['got']:.3f}× "
                   f"| {'met' if t['met'] else '**not met**'} | " + ratio_cell(t.get("floor"))
                   + " " + ratio_cell(t.get("bound")))
    return out


def criterion_table(rows: list[dict]) -> list[str]:
    """Criterion medians: the per-request decisions as one row per scenario and a column per
    policy size, every other benchmark as a row of its own."""
    when = max(r["measured"] for r in rows)
    out = [f"Engine (criterion medians, `cargo bench --bench engine`, native, bench profile = release "
           f"profile; measured up to {when}):", "",
           "| benchmark | " + " | ".join(f"{n:,} origins" for n in SIZES) + " |",
           "|---|" + "---|" * len(SIZES)]
    decide = {}
    others = []
    for r in rows:
        group, _, rest = r["id"].partition("/")
        name, _, size = rest.rpartition("/")
        if group == "decide" and size.isdigit():
            decide.setdefault(name, {})[int(size)] = r["median_ns"]
        else:
            others.append(r)
    for name, by_size in decide.items():
        out.append(f"| decide/{name} | "
                   + " | ".join(fmt_ns(by_size[n]) if n in by_size else "–" for n in SIZES) + " |")
    out += ["", "| benchmark | median |", "|---|---|"]
    out += [f"| {r['id']} | {fmt_ns(r['median_ns'])} |" for r in others]
    return out + [""]


def ratio_cell(ratio: float | None) -> str:
    return f"{ratio:.2f}× |" if ratio is not None else "– |"


def fmt_ns(ns: float) -> str:
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.1f} µs"
    return f"{ns:.0f} ns"


def criterion_results() -> list[dict]:
    """Medians of the last `cargo bench --bench engine` run (target/criterion)."""
    rows = []
    for bench in sorted(glob.glob(str(ROOT / "target/criterion/**/new/benchmark.json"),
                                  recursive=True)):
        estimates = Path(bench).parent / "estimates.json"
        try:
            full_id = json.loads(Path(bench).read_text())["full_id"]
            median = json.loads(estimates.read_text())["median"]["point_estimate"]
        except (OSError, KeyError, ValueError):
            continue
        when = dt.datetime.fromtimestamp(estimates.stat().st_mtime, dt.timezone.utc)
        rows.append({"id": full_id, "median_ns": median,
                     "measured": when.strftime("%Y-%m-%d %H:%M UTC")})
    return rows


def configure_times(log_path: Path) -> list[str]:
    """`policy loaded` log lines of our plugins, with Envoy's timestamps (configure order)."""
    out = []
    for line in log_path.read_text(errors="replace").splitlines():
        if "cors-proxy-wasm: policy loaded" in line:
            stamp = line[1:24]
            name = line.split("wasm log ", 1)[-1].split(" ", 1)[0]
            thread = line.split("][", 2)[1]
            out.append(f"{stamp} thread {thread} {name}")
    return out


def write_markdown(section: str, path: Path) -> None:
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{MARK_BEGIN}\n{MARK_END}\n"
    start, end = text.find(MARK_BEGIN), text.find(MARK_END)
    if start < 0 or end < 0:
        text = text.rstrip("\n") + f"\n\n{MARK_BEGIN}\n{MARK_END}\n"
        start, end = text.find(MARK_BEGIN), text.find(MARK_END)
    path.write_text(text[:start] + section + text[end + len(MARK_END):])


def machine() -> str:
    model = ""
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    return f"{model}, {os.cpu_count()} CPUs (`nproc`), {platform.system()} {platform.release()}"


# --------------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per listener (0: none)")
    p.add_argument("--markdown", default=str(ROOT / "BENCHMARKS.md"))
    p.add_argument("--chart", default=str(ROOT / "bench" / "throughput.png"))
    p.add_argument("--no-report", action="store_true", help="only build/results.json")
    p.add_argument("--max-spread", type=float, default=0.10,
                   help="refuse to write a report when the rounds of one filter and scenario differ "
                        "by more than this (median over all of them)")
    p.add_argument("--min-native-rate", type=float, default=12000,
                   help="refuse to write a report when native-1 serves fewer actual GETs/s than this "
                        "(median): on this benchmark's 2-CPU machine native runs at 20,000-23,000/s "
                        "when the machine is quiet; a machine starved by its host (other tenants) "
                        "runs everything slower and compresses every ratio towards "
                        "1 (default 12000; 0: no check)")
    p.add_argument("--max-load", type=float, default=0.3,
                   help="start only below this 1-minute load average (default 0.3)")
    p.add_argument("--quiet-wait", type=int, default=300,
                   help="seconds to wait for the load average to drop (default 300)")
    p.add_argument("--max-foreign-cpu", type=float, default=0.05,
                   help="a round in which other programs used more than this share of one CPU "
                        "invalidates the run (default 0.05)")
    p.add_argument("--report-only", action="store_true",
                   help="no measurement: rewrite the report from build/bench/results.json")
    args = p.parse_args()
    if args.report_only:
        results = json.loads((BUILD / "results.json").read_text())
        med = results["medians"]
        results["ratios"], results["targets"] = ratio_rows(med), target_rows(med)
        results["dm_ratios"], results["dm_targets"] = dm_ratio_rows(med), dm_target_rows(med)
        report(results, args)
        return
    if args.rounds < 1 or args.duration < 1:
        die("--rounds and --duration must be at least 1")

    for tool in ("wrk", "taskset"):
        find_tool(tool)
    if (os.cpu_count() or 1) < 2:
        die("needs 2 CPUs (Envoy on CPU 0, wrk on CPU 1)")
    envoy_bin = find_envoy()
    wait_until_quiet(args.max_load, args.quiet_wait)
    ours = wasm_file("CORS_WASM", ROOT / "dist/cors_proxy_wasm.wasm", "run `make build`")
    empty = wasm_file("EMPTY_WASM",
                      ROOT / "bench/empty-filter/target/wasm32-wasip1/release/empty_filter.wasm",
                      "run `make bench`, which builds bench/empty-filter")
    spec_calls = wasm_file("SPEC_CALLS_WASM",
                           ROOT / "bench/spec-calls/target/wasm32-wasip1/release/spec_calls.wasm",
                           "run `make bench`, which builds bench/spec-calls")
    dm = wasm_file("CORS_NATIVE", ROOT / "dist/libcors_proxy.so", "run `make build`")
    empty_module = wasm_file("EMPTY_MODULE", BUILD / "libcors_proxy_empty.so",
                             "run `make bench`, which builds it (`make empty-module`)")
    modules = {"ours": ours, "empty": empty, SPEC_CALLS: spec_calls, "dm": dm,
               EMPTY_MODULE: empty_module}
    BUILD.mkdir(parents=True, exist_ok=True)

    admin, upstream, *rest = free_ports(2 + len(VARIANTS))
    ports = dict(zip(VARIANTS, rest))
    config = BUILD / "envoy-bench.json"
    config.write_text(json.dumps(bootstrap(admin, upstream, ports, modules), indent=1))
    log(f"Envoy config {config} ({config.stat().st_size:,} bytes); "
        + ", ".join(f"{k}={m} ({m.stat().st_size:,} bytes)" for k, m in modules.items()))

    envoy = common.Envoy(envoy_bin, config, admin, BUILD / "envoy.log", die, cpu="0")
    try:
        t0 = time.monotonic()
        envoy.wait_ready()
        log(f"Envoy ready in {time.monotonic() - t0:.1f} s")
        for v in VARIANTS:
            for sc in SCENARIOS:
                check(ports[v], v, sc)
        log("every variant answers every scenario as expected")
        scripts = {sc: lua_script(sc) for sc in SCENARIOS}
        warm = argparse.Namespace(**{**vars(args), "duration": args.warmup})
        for v in VARIANTS if args.warmup > 0 else ():
            run_wrk(ports[v], "actual GET", scripts["actual GET"], warm)

        runs: dict = {}
        loads = []
        foreign = []
        total = args.rounds * len(SCENARIOS) * len(VARIANTS)
        done = 0
        for rnd in range(args.rounds):
            loads.append(loadavg())
            log(f"round {rnd + 1}/{args.rounds} (load {loads[-1]})")
            meter = ForeignCpu(envoy.pid)
            order = VARIANTS[rnd % len(VARIANTS):] + VARIANTS[:rnd % len(VARIANTS)]
            for sc in SCENARIOS:
                for v in order:
                    r = run_wrk(ports[v], sc, scripts[sc], args)
                    runs.setdefault((v, sc), []).append(r)
                    done += 1
                    print(f"  [{done}/{total}] {v:<17} {sc:<18} {r['rps']:>9,.0f} req/s  "
                          f"p50 {r['p50_us']:>5} µs  p99 {r['p99_us']:>6} µs", flush=True)
            foreign.append(meter.share())
            log(f"round {rnd + 1}: other programs used {foreign[-1]:.1%} of a CPU")
        load_after = loadavg()
        # Envoy still alive and still answering correctly after the load.
        for v in VARIANTS:
            for sc in SCENARIOS:
                check(ports[v], v, sc)
    finally:
        envoy.stop()

    med = summarize(runs)
    results = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "args": {"rounds": args.rounds, "duration": args.duration,
                 "connections": args.connections},
        "load": loads,
        "load_after": load_after,
        "foreign_cpu": [round(f, 4) for f in foreign],
        "valid": max(foreign) <= args.max_foreign_cpu,
        "spread": median_spread(med),
        "wasm_bytes": {k: m.stat().st_size for k, m in modules.items()},
        "medians": med,
        "ratios": ratio_rows(med),
        "targets": target_rows(med),
        "dm_ratios": dm_ratio_rows(med),
        "dm_targets": dm_target_rows(med),
        "runs": {f"{v} / {sc}": rs for (v, sc), rs in runs.items()},
        "criterion": criterion_results(),
        "configure_log": configure_times(BUILD / "envoy.log"),
    }
    (BUILD / "results.json").write_text(json.dumps(results, indent=1))
    log(f"raw results: {BUILD / 'results.json'}")
    for t in results["targets"]:
        log(f"target {t['size']:>5} {t['scenario']:<18} vs {t['baseline']:<17} "
            f"≥{t['target']:.2f}×: {t['got']:.2f}× {'met' if t['met'] else 'NOT MET'} "
            f"({t['baseline']} {t['baseline_rps']:,.0f} req/s)")
    for n in SIZES:
        for sc in ("actual GET", "preflight allowed"):
            native = med[f"native-{n}"][sc]["rps"]
            log(f"{n:>5} origins {sc:<18} ours ÷ native {med[f'ours-{n}'][sc]['rps'] / native:.2f}× "
                f"(native {native:,.0f} req/s)")
    for r in results["dm_ratios"]:
        log(f"{r['size']:>5} origins {r['scenario']:<18} dynamic module ÷ native {r['vs_native']:.2f}×, "
            f"÷ ours (wasm) {r['vs_ours']:.2f}×")
    for t in results["dm_targets"]:
        floor = f", empty module {t['floor']:.2f}×" if t.get("floor") is not None else ""
        log(f"dynamic module target {t['size']:>5} {t['scenario']:<18} vs {t['baseline']:<17} "
            f"≥{t['target']:.2f}×: {t['got']:.2f}× {'met' if t['met'] else 'NOT MET'} "
            f"({t['baseline']} {t['baseline_rps']:,.0f} req/s{floor})")
    if not results["valid"]:
        die(f"other programs used up to {max(foreign):.1%} of a CPU during a round (limit "
            f"{args.max_foreign_cpu:.0%}): the figures are not comparable and no report was "
            f"written; raw results: {BUILD / 'results.json'}")
    if results["spread"] > args.max_spread:
        die(f"the rounds of one filter and scenario differ by {results['spread']:.1%} (median; limit "
            f"{args.max_spread:.0%}) although no other program ran: the machine itself is noisy "
            f"(another tenant of its host, say), no report was written; raw results: "
            f"{BUILD / 'results.json'}")
    native_rate = med["native-1"]["actual GET"]["rps"]
    if native_rate < args.min_native_rate:
        die(f"native-1 served {native_rate:,.0f} actual GETs/s (median; limit "
            f"{args.min_native_rate:,.0f}): the machine is starved, so every ratio is compressed "
            f"towards 1 and none is comparable with a quiet run; no report was written; raw "
            f"results: {BUILD / 'results.json'}")
    if not args.no_report:
        report(results, args)


def report(results: dict, args) -> None:
    chart(results["medians"], Path(args.chart),
          f"Proxied requests/s through one Envoy worker ({results['date']}, "
          f"load before rounds: {', '.join(results['load'])})")
    write_markdown(markdown(results), Path(args.markdown))
    log(f"wrote {args.chart} and the results section of {args.markdown}")


if __name__ == "__main__":
    main()
