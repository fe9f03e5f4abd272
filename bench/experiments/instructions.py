#!/usr/bin/env python3
"""Envoy's instructions per request, listener by listener, counted by valgrind's callgrind.

The listeners are those of ab.py (`none`, `native`, `NAME=FILE.wasm|FILE.so[@CONFIG]`), in one
Envoy run under `valgrind --tool=callgrind`. For each listener and scenario: zero the counters,
send `--requests` requests on one keep-alive connection, dump; the count ÷ requests is what one
request costs Envoy, filter and upstream hop included. Instruction counts do not depend on what
else the machine runs, so two builds can be compared on a busy machine, where wrk's rates cannot;
they weigh every instruction alike (a cache miss or a syscall counts as little as an add), so
they rank variants of one filter and do not replace `make bench`.

Needs valgrind (Debian: valgrind). Example:
  .venv/bin/python -m bench.experiments.instructions --scenarios "actual GET,preflight allowed" \\
      none native base=/tmp/base.so other=dist/libcors_proxy.so
"""
from __future__ import annotations

import argparse
import http.client
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench import common
from bench import run as bench
from bench.experiments import ab

OUT = bench.BUILD / "instructions"


def requests(port: int, scenario: str, n: int) -> None:
    method, headers = bench.SCENARIOS[scenario]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(n):
        conn.request(method, bench.PATH, headers=headers)
        response = conn.getresponse()
        response.read()
    conn.close()


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def count(pid: int, label: str, keep: bool) -> int:
    """Dumps the counters since the last zero; their total Ir (the dump is kept with `keep`, for
    callgrind_annotate)."""
    before = set(OUT.glob("callgrind.out*"))
    control(pid, f"--dump={label}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new = set(OUT.glob("callgrind.out*")) - before
        for path in new:
            text = path.read_text(errors="replace")
            m = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
            if m:
                if keep:
                    path.rename(OUT / f"{label}.callgrind")
                else:
                    path.unlink()
                return int(m.group(1))
        time.sleep(0.2)
    bench.die(f"no callgrind dump for {label}")


CALL_PATTERN = re.compile(r"^envoy_dynamic_module_(?:callback|on)_")


def call_costs(path: Path, requests: int) -> dict[str, tuple[float, float]]:
    """Per request, the inclusive instructions and the number of calls of each dynamic-module hook
    (`envoy_dynamic_module_on_*`, Envoy calling the module) and callback
    (`envoy_dynamic_module_callback_*`, the module calling Envoy), from a dump's call graph: a
    `calls=` line is followed by the cost line of the call, inclusive of the callee."""
    names: dict[str, str] = {}

    def name(field: str) -> str:
        m = re.match(r"\((\d+)\)(?: (.*))?", field)
        if not m:
            return field
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), m.group(1))

    inclusive: dict[str, int] = {}
    calls: dict[str, int] = {}
    caller = callee = ""
    pending = 0
    with path.open(errors="replace") as f:
        for line in f:
            if line.startswith("fn="):
                caller = name(line[3:].rstrip("\n"))
            elif line.startswith("cfn="):
                callee = name(line[4:].rstrip("\n"))
            elif line.startswith("calls="):
                pending = int(line[6:].split()[0])
            elif pending and (line[:1].isdigit() or line[:1] in "+-*"):
                if callee != caller and CALL_PATTERN.match(callee):
                    inclusive[callee] = inclusive.get(callee, 0) + int(line.split()[1])
                    calls[callee] = calls.get(callee, 0) + pending
                pending = 0
    return {k: (v / requests, calls[k] / requests)
            for k, v in sorted(inclusive.items(), key=lambda kv: -kv[1])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("listeners", nargs="+", help="none | native | NAME=FILE.wasm|FILE.so[@CONFIG]")
    p.add_argument("--requests", type=int, default=500, help="requests per listener and round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--origins", type=int, default=1, help="origins in the bench policy")
    p.add_argument("--scenarios", default="actual GET,preflight allowed,non-cors GET")
    p.add_argument("--direct", action="store_true", help="direct_response instead of upstream")
    p.add_argument("--keep", action="store_true",
                   help=f"keep each dump as {OUT.relative_to(bench.ROOT)}/LISTENER-SCENARIO-ROUND.callgrind")
    p.add_argument("--calls", action="store_true",
                   help="also print, under each dynamic module, what each of its hooks and of the "
                        "callbacks it makes cost Envoy per request, inclusive (from the round with "
                        "the fewest instructions; implies --keep)")
    args = p.parse_args()
    args.keep = args.keep or args.calls
    specs, scenarios = ab.parse(args.listeners, args.scenarios)
    for tool in ("valgrind", "callgrind_control"):
        if not shutil.which(tool):
            bench.die(f"`{tool}` not found (Debian: apt-get install valgrind)")

    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("callgrind.out*"):
        old.unlink()
    path = OUT / "config.json"
    admin, ports = ab.write_config(specs, args.origins, args.direct, path)
    envoy = common.Envoy(bench.find_envoy(), path, admin, OUT / "envoy.log", bench.die,
                         wrapper=["valgrind", "--tool=callgrind",
                                  f"--callgrind-out-file={OUT}/callgrind.out.%p"])
    pid = envoy.pid
    results: dict = {}
    try:
        envoy.wait_ready(timeout=300)
        for port in ports:  # warm every listener and scenario
            for sc in scenarios:
                requests(port, sc, 20)
        listeners = list(zip(specs, ports))
        for rnd in range(args.rounds):
            k = rnd % len(listeners)
            for sc in scenarios:
                for (name, _), port in listeners[k:] + listeners[:k]:
                    control(pid, "--zero")
                    requests(port, sc, args.requests)
                    label = f"{name}-{sc.replace(' ', '_')}-{rnd}"
                    total = count(pid, label, args.keep)
                    results.setdefault((sc, name), []).append(total / args.requests)
    finally:
        envoy.stop()
    print(f"instructions per request (callgrind Ir), {args.requests} requests × {args.rounds} "
          f"rounds, {'direct_response' if args.direct else 'proxied upstream'}")
    for sc in scenarios:
        print(f"== {sc}")
        base = min(results[(sc, name)][0] for name, _ in specs)
        for name, _ in specs:
            rs = results[(sc, name)]
            print(f"  {name:<12} {min(rs):>10,.0f}  ({min(rs) / base:.3f}× the least)   rounds: "
                  + ", ".join(f"{r:,.0f}" for r in rs))
            if args.calls:
                best = rs.index(min(rs))
                dump = OUT / f"{name}-{sc.replace(' ', '_')}-{best}.callgrind"
                for call, (cost, n) in call_costs(dump, args.requests).items():
                    print(f"      {cost:>9,.0f}  {n:4.2f} calls  {call}")


if __name__ == "__main__":
    main()
