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
  .venv/bin/python experiments/instructions.py --scenarios "actual GET,preflight allowed" \\
      none native base=/tmp/base.so other=dist/libcors_proxy.so
"""
from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ab  # noqa: E402
import run as bench  # noqa: E402

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
    args = p.parse_args()
    scenarios = args.scenarios.split(",")
    for sc in scenarios:
        if sc not in bench.SCENARIOS:
            bench.die(f"unknown scenario {sc!r} (known: {', '.join(bench.SCENARIOS)})")
    specs = [(s, s) if s in ("none", "native") else tuple(s.split("=", 1)) for s in args.listeners]
    if any(len(s) != 2 for s in specs):
        bench.die("each listener is none, native or NAME=FILE.wasm|FILE.so[@CONFIG]")
    for tool in ("valgrind", "callgrind_control"):
        if not shutil.which(tool):
            bench.die(f"`{tool}` not found (Debian: apt-get install valgrind)")

    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("callgrind.out*"):
        old.unlink()
    admin, upstream, *ports = bench.free_ports(2 + len(specs))
    config = bench.bootstrap(admin, upstream, dict.fromkeys(bench.VARIANTS, 0),
                             dict.fromkeys(("ours", "empty", "dm", bench.SPEC_CALLS, bench.EMPTY_MODULE),
                                           Path("-")))
    config["static_resources"]["listeners"] = config["static_resources"]["listeners"][:1] + [
        ab.listener(name, spec, port, args.origins, args.direct)
        for (name, spec), port in zip(specs, ports)]
    path = OUT / "config.json"
    path.write_text(json.dumps(config, indent=1))

    log = open(OUT / "envoy.log", "w")
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={OUT}/callgrind.out.%p",
         bench.find_envoy(), "-c", str(path), "--concurrency", "1",
         "--base-id", str(random.randint(20000, 90000)), "-l", "warn", "--disable-hot-restart"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    results: dict = {}
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                bench.die(f"Envoy exited; log: {OUT / 'envoy.log'}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", admin, timeout=2)
                c.request("GET", "/ready")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                bench.die("Envoy not ready under valgrind after 300 s")
            time.sleep(1)
        for port in ports:  # warm every listener and scenario
            for sc in scenarios:
                requests(port, sc, 20)
        listeners = list(zip(specs, ports))
        for rnd in range(args.rounds):
            k = rnd % len(listeners)
            for sc in scenarios:
                for (name, _), port in listeners[k:] + listeners[:k]:
                    control(proc.pid, "--zero")
                    requests(port, sc, args.requests)
                    label = f"{name}-{sc.replace(' ', '_')}-{rnd}"
                    total = count(proc.pid, label, args.keep)
                    results.setdefault((sc, name), []).append(total / args.requests)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    print(f"instructions per request (callgrind Ir), {args.requests} requests × {args.rounds} "
          f"rounds, {'direct_response' if args.direct else 'proxied upstream'}")
    for sc in scenarios:
        print(f"== {sc}")
        base = min(results[(sc, name)][0] for name, _ in specs)
        for name, _ in specs:
            rs = results[(sc, name)]
            print(f"  {name:<12} {min(rs):>10,.0f}  ({min(rs) / base:.3f}× the least)   rounds: "
                  + ", ".join(f"{r:,.0f}" for r in rs))


if __name__ == "__main__":
    main()
