#!/usr/bin/env python3
"""A/B of wasm builds in one Envoy: listeners that differ only in their filter, driven by wrk in
alternating rounds (the set-up of bench/run.py, for comparing variants of a module).

Each listener is `none`, `native` (Envoy's CORS filter with the bench policy), or
`NAME=FILE.wasm` (the bench policy as plugin configuration) or `NAME=FILE.wasm@CONFIG` (CONFIG
as plugin configuration, e.g. for bench/experiments/host-call-probe); a `FILE.so` is loaded as a
dynamic module (dist/libcors_proxy.so or a variant of it) with the same configuration. `--direct` answers on the listener
itself with a direct_response instead of proxying upstream, which takes the upstream hop (about
half the time of a request here) out of the measurement, so filter costs stand out.

It reuses bench/run.py's set-up (imported from bench/). Examples (bench/experiments/README.md):
  .venv/bin/python -m bench.experiments.ab --direct base=dist/cors_proxy_wasm.wasm other=/tmp/variant.wasm
  P=bench/experiments/host-call-probe/target/wasm32-wasip1/release/host_call_probe.wasm
  .venv/bin/python -m bench.experiments.ab --direct --scenarios "non-cors GET" floor=$P@0 pairs=$P@p1 value=$P@v1
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

# The benchmark's own modules (bench/run.py, bench/common.py) provide the set-up.

from bench import common
from bench import run as bench


def listener(name: str, spec: str, port: int, origins: int, direct: bool) -> dict:
    if spec in ("none", "native"):
        variant = "none" if spec == "none" else f"native-{origins}"
        out = bench.variant_listener(variant, port, {})
    else:
        path, sep, config = spec.partition("@")
        module = bench.wasm_file("-", Path(path), "a .wasm or .so file")
        configuration = config if sep else bench.our_policy(origins)
        vhost = {"name": name, "domains": ["*"],
                 "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}]}
        if module.suffix == ".so":
            flt = bench.dynamic_module_filter(module, configuration)
        else:
            flt = bench.wasm_filter(name, module, configuration)
        out = bench.listener(name, port, vhost, [flt])
    out["name"] = name
    if direct:
        hcm = out["filter_chains"][0]["filters"][0]["typed_config"]
        for vhost in hcm["route_config"]["virtual_hosts"]:
            vhost["routes"] = [{"match": {"prefix": "/"}, "direct_response": {
                "status": 200, "body": {"inline_string": '{"items":[]}\n'}}}]
    return out


def parse(listeners: list[str], scenarios_text: str) -> tuple[list[tuple[str, str]], list[str]]:
    """The listeners as (name, spec) pairs and the scenarios, checked."""
    scenarios = scenarios_text.split(",")
    for sc in scenarios:
        if sc not in bench.SCENARIOS:
            bench.die(f"unknown scenario {sc!r} (known: {', '.join(bench.SCENARIOS)})")
    specs = [(s, s) if s in ("none", "native") else tuple(s.split("=", 1)) for s in listeners]
    if any(len(s) != 2 for s in specs):
        bench.die("each listener is none, native or NAME=FILE.wasm|FILE.so[@CONFIG]")
    return specs, scenarios


def write_config(specs: list[tuple[str, str]], origins: int, direct: bool,
                 path: Path) -> tuple[int, list[int]]:
    """Writes the bootstrap (the upstream listener, then one listener per spec) to `path`; the
    admin port and the listeners' ports."""
    admin, upstream, *ports = bench.free_ports(2 + len(specs))
    modules = dict.fromkeys(("ours", "empty", "dm", bench.SPEC_CALLS, bench.EMPTY_MODULE), Path("-"))
    config = bench.bootstrap(admin, upstream, dict.fromkeys(bench.VARIANTS, 0), modules)
    config["static_resources"]["listeners"] = config["static_resources"]["listeners"][:1] + [
        listener(name, spec, port, origins, direct) for (name, spec), port in zip(specs, ports)]
    path.write_text(json.dumps(config, indent=1))
    return admin, ports


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("listeners", nargs="+", help="none | native | NAME=FILE.wasm|FILE.so[@CONFIG]")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--duration", type=int, default=2, help="seconds per wrk run")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--origins", type=int, default=1, help="origins in the bench policy")
    p.add_argument("--scenarios", default="actual GET,preflight allowed,non-cors GET")
    p.add_argument("--direct", action="store_true", help="direct_response instead of upstream")
    args = p.parse_args()
    if args.rounds < 1 or args.duration < 1:
        bench.die("--rounds and --duration must be at least 1")
    specs, scenarios = parse(args.listeners, args.scenarios)
    for tool in ("wrk", "taskset"):
        bench.find_tool(tool)
    bench.BUILD.mkdir(parents=True, exist_ok=True)
    path = bench.BUILD / "ab.json"
    admin, ports = write_config(specs, args.origins, args.direct, path)

    envoy = common.Envoy(bench.find_envoy(), path, admin, bench.BUILD / "ab-envoy.log", bench.die,
                         cpu="0")
    runs: dict = {}
    try:
        envoy.wait_ready()
        scripts = {sc: bench.lua_script(sc) for sc in scenarios}
        warm = argparse.Namespace(duration=1, connections=args.connections)
        for port in ports:
            bench.run_wrk(port, scenarios[0], scripts[scenarios[0]], warm)
        listeners = list(zip(specs, ports))
        for rnd in range(args.rounds):
            k = rnd % len(listeners)
            for sc in scenarios:
                for (name, _), port in listeners[k:] + listeners[:k]:
                    runs.setdefault((sc, name), []).append(
                        bench.run_wrk(port, sc, scripts[sc], args)["rps"])
    finally:
        envoy.stop()
    print(f"{args.rounds} rounds × {args.duration} s, wrk -c{args.connections}, "
          f"{'direct_response' if args.direct else 'proxied upstream'}; median req/s, µs per request")
    for sc in scenarios:
        print(f"== {sc}")
        for name, _ in specs:
            rs = runs[(sc, name)]
            m = statistics.median(rs)
            print(f"  {name:<12} {m:>9,.0f}  {1e6 / m:6.1f} µs   runs: "
                  + ", ".join(f"{r:,.0f}" for r in rs))


if __name__ == "__main__":
    main()
