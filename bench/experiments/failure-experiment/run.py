#!/usr/bin/env python3
"""What Envoy 1.40 does with requests after a wasm VM has crashed, per failure policy.

Builds nothing: run `cargo build --release --target wasm32-wasip1` here first (the crate traps
on `x-crash: 1`). For each PluginConfig variant, starts Envoy (--concurrency 1) with the crash
filter in front of a direct_response upstream and sends: a normal request, a crashing one,
three normal ones right after, and one more 2.5 s later. Prints what each got and the wasm
log lines. Usage: ENVOY_BIN=... python3 run.py
"""

import glob, http.client, json, os, random, socket, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WASM = HERE / "target/wasm32-wasip1/release/crash_filter.wasm"
VARIANTS = {
    "default (nothing set)": {},
    "fail_open: true": {"fail_open": True},
    "failure_policy: FAIL_CLOSED": {"failure_policy": "FAIL_CLOSED"},
    "failure_policy: FAIL_OPEN": {"failure_policy": "FAIL_OPEN"},
    "failure_policy: FAIL_RELOAD": {"failure_policy": "FAIL_RELOAD"},
}


def envoy_bin():
    return os.environ.get("ENVOY_BIN") or sorted(glob.glob(
        str(ROOT / ".venv/lib/python3.*/site-packages/envoy/_bin/envoy")))[0]


def ports(n):
    ss = [socket.socket() for _ in range(n)]
    for s in ss:
        s.bind(("127.0.0.1", 0))
    out = [s.getsockname()[1] for s in ss]
    for s in ss:
        s.close()
    return out


def config(extra, admin, front, up):
    addr = lambda p: {"socket_address": {"address": "127.0.0.1", "port_value": p}}
    router = {"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
    def hcm(routes, filters):
        return {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "x", "delayed_close_timeout": "0s",
            "route_config": {"virtual_hosts": [{"name": "v", "domains": ["*"], "routes": routes}]},
            "http_filters": filters + [router]}}
    plugin = {"name": "crash", "root_id": "crash", "vm_config": {
        "vm_id": "crash", "runtime": "envoy.wasm.runtime.v8",
        "code": {"local": {"filename": str(WASM)}}}, **extra}
    wasm = {"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm", "config": plugin}}
    return {"admin": {"address": addr(admin)}, "static_resources": {
        "listeners": [
            {"name": "front", "address": addr(front), "filter_chains": [{"filters": [hcm(
                [{"match": {"prefix": "/"}, "route": {"cluster": "up"}}], [wasm])]}]},
            {"name": "up", "address": addr(up), "filter_chains": [{"filters": [hcm(
                [{"match": {"prefix": "/"}, "direct_response": {
                    "status": 200, "body": {"inline_string": "upstream"}}}], [])]}]}],
        "clusters": [{"name": "up", "type": "STATIC", "connect_timeout": "1s",
                      "load_assignment": {"cluster_name": "up", "endpoints": [{"lb_endpoints": [
                          {"endpoint": {"address": addr(up)}}]}]}}]}}


def get(port, crash=False):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("GET", "/", headers={"x-crash": "1"} if crash else {})
        r = c.getresponse()
        body = r.read().decode(errors="replace")
        return f"{r.status} filter_ran={r.getheader('x-filter-ran') == '1'} body={body[:40]!r}"
    except OSError as e:
        return f"error {e}"
    finally:
        c.close()


def main():
    if not WASM.is_file():
        sys.exit(f"{WASM} missing: cargo build --release --target wasm32-wasip1")
    for name, extra in VARIANTS.items():
        admin, front, up = ports(3)
        d = Path(tempfile.mkdtemp(prefix="failure-exp-"))
        (d / "envoy.json").write_text(json.dumps(config(extra, admin, front, up)))
        logf = open(d / "envoy.log", "w")
        p = subprocess.Popen([envoy_bin(), "-c", str(d / "envoy.json"), "--concurrency", "1",
                              "--base-id", str(random.randint(90001, 99999)), "-l", "info"],
                             stdout=logf, stderr=subprocess.STDOUT)
        print(f"== {name}  {json.dumps(extra)}")
        try:
            for _ in range(100):
                if p.poll() is not None:
                    print(f"   Envoy refused the config (exit {p.returncode}):")
                    print("   " + "\n   ".join((d / "envoy.log").read_text().splitlines()[-3:]))
                    break
                try:
                    c = http.client.HTTPConnection("127.0.0.1", admin, timeout=1)
                    c.request("GET", "/ready")
                    if c.getresponse().status == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.1)
            if p.poll() is not None:
                continue
            print("   before crash:   ", get(front))
            print("   crashing request:", get(front, crash=True))
            for i in range(3):
                print(f"   after crash #{i + 1}:", get(front))
            time.sleep(2.5)
            print("   after 2.5 s:    ", get(front))
            c = http.client.HTTPConnection("127.0.0.1", admin, timeout=5)
            c.request("GET", "/stats?filter=wasm")
            stats = [l for l in c.getresponse().read().decode().splitlines()
                     if ("reload" in l or "active" in l) and not l.endswith(": 0")]
            print("   stats:", "; ".join(stats))
        finally:
            p.terminate()
            p.wait(timeout=10)
            logf.close()
        for line in (d / "envoy.log").read_text().splitlines():
            if "wasm" in line and ("panic" in line or "fail" in line.lower() or "crash" in line):
                print("   log:", line.split("] ", 2)[-1][:200])


if __name__ == "__main__":
    main()
