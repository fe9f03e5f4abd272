#!/usr/bin/env python3
"""Integration suite: real HTTP requests to a running cors-proxy-wasm Envoy, exact answers.

It runs against either topology that serves examples/policy.json:
  - the compose file's `runner` service (envoy/docker-compose.yaml, profile "test"), on the
    compose network: --api=http://envoy:10000 --demo=http://envoy:10001 --admin=http://envoy:9901
    --proxy-host=envoy (the upstream must see requests coming from the `envoy` service);
  - `make run` (envoy/envoy.yaml): the same URLs on 127.0.0.1 (the default), --proxy-host=127.0.0.1.

Every check sends real requests and compares the status and the CORS headers (`access-control-*`
and `vary`) exactly; requests that reach the upstream (envoy/echo.lua) are checked against what the
upstream says it received. The filter's counters on the admin endpoint must grow by exactly what
the checks sent. Exit status 0 when every check passes, 1 otherwise. Python standard library only.
"""

import argparse
import http.client
import json
import socket
import sys
import time
import urllib.parse

ORIGIN = "http://127.0.0.1:10001"  # the demo page, allowed by the default policy
OTHER_ORIGIN = "https://evil.example"  # allowed by no policy but `public` (any origin)
PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
ALLOWED_PREFLIGHT = {
    "access-control-allow-origin": ORIGIN,
    "access-control-allow-credentials": "true",
    "access-control-allow-methods": "GET, PUT, DELETE, POST",
    "access-control-allow-headers": "content-type, x-requested-with",
    "access-control-max-age": "600",
    "vary": PREFLIGHT_VARY,
}
DENIED_PREFLIGHT = {"vary": PREFLIGHT_VARY}
ALLOWED_ACTUAL = {
    "access-control-allow-origin": ORIGIN,
    "access-control-allow-credentials": "true",
    "access-control-expose-headers": "x-exposed",
    "vary": "Origin",
}
DENIED_ACTUAL = {"vary": "Origin"}


class Failed(Exception):
    pass


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # [(lower-case name, value)] in arrival order
        self.body = body

    def all(self, name):
        return [v for n, v in self.headers if n == name]

    def one(self, name):
        values = self.all(name)
        if len(values) != 1:
            raise Failed(f"expected one {name} header, got {values}\n{self}")
        return values[0]

    def cors(self):
        """The CORS headers: access-control-* and vary, each expected at most once."""
        out = {}
        for name, value in self.headers:
            if name.startswith("access-control-") or name == "vary":
                if name in out:
                    raise Failed(f"{name} sent twice\n{self}")
                out[name] = value
        return out

    def echo(self):
        """The request as the upstream received it, or None when the upstream did not answer."""
        try:
            echo = json.loads(self.body)
        except ValueError:
            return None
        if not isinstance(echo, dict) or echo.get("message") != "hello from the example upstream":
            return None
        return echo

    def __str__(self):
        head = "\n".join(f"  {n}: {v}" for n, v in self.headers)
        return f"  status {self.status}\n{head}\n  body: {self.body[:400]!r}"


def send(base, method, path, headers=(), body=None):
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        data = body.encode() if body is not None else None
        if data is not None:
            conn.putheader("content-length", str(len(data)))
        conn.endheaders(data)
        r = conn.getresponse()
        raw = r.read()
        headers = [(n.lower(), v) for n, v in r.getheaders()]
        return Response(r.status, headers, raw.decode("utf-8", "replace"))
    finally:
        conn.close()


def expect(what, got, want, response=None):
    if got != want:
        detail = f"\n{response}" if response is not None else ""
        raise Failed(f"{what}: expected {want!r}, got {got!r}{detail}")


def expect_cors(r, status, cors):
    expect("status", r.status, status, r)
    expect("CORS headers", r.cors(), cors, r)


def expect_local_reply(r):
    """Answered by Envoy itself: no upstream answer, empty body."""
    expect("body (a local reply)", r.body, "", r)


def expect_received(r, method, path, origin):
    """The upstream answered, and received the request as sent, from the proxy."""
    echo = r.echo()
    if echo is None:
        raise Failed(f"the upstream did not answer\n{r}")
    expect("method the upstream received", echo["method"], method, r)
    expect("path the upstream received", echo["path"], path, r)
    expect("Origin the upstream received", echo["headers"].get("origin"), origin, r)
    if Suite.proxy_addresses and echo["peer"] not in Suite.proxy_addresses:
        raise Failed(
            f"the upstream received the request from {echo['peer']}, not from the proxy "
            f"({', '.join(sorted(Suite.proxy_addresses))})\n{r}"
        )
    return echo


def preflight(path, origin, method, request_headers=None, private_network=False):
    headers = [("origin", origin), ("access-control-request-method", method)]
    if request_headers is not None:
        headers.append(("access-control-request-headers", request_headers))
    if private_network:
        headers.append(("access-control-request-private-network", "true"))
    return send(Suite.api, "OPTIONS", path, headers)


class Suite:
    api = ""
    demo = ""
    admin = ""
    proxy_addresses = set()
    # Envoy's prefix for the filter's counters: wasmcustom. (the wasm filter) or
    # dynamicmodulescustom. (the dynamic module build).
    counter_prefix = "wasmcustom."


def check_demo_page():
    r = send(Suite.demo, "GET", "/")
    expect("status", r.status, 200, r)
    expect("content-type", r.one("content-type"), "text/html; charset=utf-8", r)
    if "<title>" not in r.body or "fetch(target + path" not in r.body:
        raise Failed(f"not examples/demo.html\n{r}")


def check_allowed_preflight():
    r = preflight("/api/items", ORIGIN, "PUT", "content-type")
    expect_cors(r, 204, ALLOWED_PREFLIGHT)
    expect_local_reply(r)


def check_denied_preflight_origin():
    r = preflight("/api/items", OTHER_ORIGIN, "PUT", "content-type")
    expect_cors(r, 403, DENIED_PREFLIGHT)
    expect_local_reply(r)


def check_denied_preflight_method():
    r = preflight("/api/items", ORIGIN, "PATCH")
    expect_cors(r, 403, DENIED_PREFLIGHT)
    expect_local_reply(r)


def check_denied_preflight_headers():
    r = preflight("/api/items", ORIGIN, "PUT", "content-type, x-not-allowed")
    expect_cors(r, 403, DENIED_PREFLIGHT)
    expect_local_reply(r)


def check_denied_preflight_private_network():
    r = preflight("/api/items", ORIGIN, "PUT", "content-type", private_network=True)
    expect_cors(r, 403, DENIED_PREFLIGHT)
    expect_local_reply(r)


def check_allowed_actual():
    r = send(
        Suite.api,
        "PUT",
        "/api/items?id=7",
        [("origin", ORIGIN), ("content-type", "application/json"), ("x-requested-with", "runner")],
        body='{"name": "seven"}',
    )
    expect_cors(r, 200, ALLOWED_ACTUAL)
    expect("x-exposed", r.one("x-exposed"), "readable by the page", r)
    echo = expect_received(r, "PUT", "/api/items?id=7", ORIGIN)
    expect("x-requested-with the upstream received", echo["headers"].get("x-requested-with"), "runner", r)
    expect("body the upstream received", echo["body"], '{"name": "seven"}', r)


def check_denied_actual():
    # The filter never blocks an actual request (the browser does): the upstream gets it, the
    # answer carries no Access-Control-Allow-* headers, only Vary.
    r = send(Suite.api, "GET", "/api/items", [("origin", OTHER_ORIGIN)])
    expect_cors(r, 200, DENIED_ACTUAL)
    expect_received(r, "GET", "/api/items", OTHER_ORIGIN)


def check_no_origin():
    # Not a CORS request: answered by the upstream, Vary: Origin all the same (shared caches).
    r = send(Suite.api, "GET", "/api/items?plain=1")
    expect_cors(r, 200, DENIED_ACTUAL)
    expect_received(r, "GET", "/api/items?plain=1", None)


def check_vary_merged():
    path = "/api/items?h=vary:accept-encoding"
    r = send(Suite.api, "GET", path, [("origin", ORIGIN)])
    expect_cors(r, 200, dict(ALLOWED_ACTUAL, vary="accept-encoding, Origin"))
    expect_received(r, "GET", path, ORIGIN)
    # Already there (any case): not repeated.
    path = "/api/items?h=vary:origin,%20accept-encoding"
    r = send(Suite.api, "GET", path, [("origin", OTHER_ORIGIN)])
    expect_cors(r, 200, {"vary": "origin, accept-encoding"})
    expect_received(r, "GET", path, OTHER_ORIGIN)
    # Vary: * is left as it is.
    path = "/api/items?h=vary:*"
    r = send(Suite.api, "GET", path, [("origin", ORIGIN)])
    expect_cors(r, 200, dict(ALLOWED_ACTUAL, vary="*"))
    expect_received(r, "GET", path, ORIGIN)


def check_upstream_cors_headers_replaced():
    # The upstream's own CORS headers never reach the browser on a route the filter handles.
    path = "/api/items?h=access-control-allow-origin:*&h=access-control-allow-methods:TRACE"
    r = send(Suite.api, "GET", path, [("origin", OTHER_ORIGIN)])
    expect_cors(r, 200, DENIED_ACTUAL)
    expect_received(r, "GET", path, OTHER_ORIGIN)


def check_route_public():
    # /public/ names the policy `public` in its route metadata: any origin, GET only; its answers
    # do not depend on the origin, so actual responses get no Vary (preflights still do).
    r = send(Suite.api, "GET", "/public/hello", [("origin", "https://anyone.example")])
    expect_cors(r, 200, {"access-control-allow-origin": "*"})
    expect_received(r, "GET", "/public/hello", "https://anyone.example")
    r = preflight("/public/hello", "https://anyone.example", "GET")
    expect_cors(
        r,
        204,
        {
            "access-control-allow-origin": "*",
            "access-control-allow-methods": "GET",
            "vary": PREFLIGHT_VARY,
        },
    )
    expect_local_reply(r)
    r = preflight("/public/hello", "https://anyone.example", "PUT")
    expect_cors(r, 403, DENIED_PREFLIGHT)
    expect_local_reply(r)


def check_route_off():
    # /internal/ turns CORS handling off: the upstream's answer untouched, preflights forwarded.
    path = "/internal/x?h=access-control-allow-origin:https://internal.example"
    r = send(Suite.api, "GET", path, [("origin", ORIGIN)])
    expect_cors(r, 200, {"access-control-allow-origin": "https://internal.example"})
    expect_received(r, "GET", path, ORIGIN)
    r = preflight("/internal/x", ORIGIN, "PUT")
    expect_cors(r, 200, {})
    echo = expect_received(r, "OPTIONS", "/internal/x", ORIGIN)
    expect("ACRM the upstream received", echo["headers"].get("access-control-request-method"), "PUT", r)


def check_later_filter_reply():
    # rbac, after the filter, denies /forbidden/ with its own 403: the browser can still read it.
    r = send(Suite.api, "GET", "/forbidden/report", [("origin", ORIGIN)])
    expect_cors(r, 403, ALLOWED_ACTUAL)
    expect("body", r.body, "RBAC: access denied", r)
    r = send(Suite.api, "GET", "/forbidden/report", [("origin", OTHER_ORIGIN)])
    expect_cors(r, 403, DENIED_ACTUAL)
    expect("body", r.body, "RBAC: access denied", r)
    # The preflight is answered before rbac runs.
    r = preflight("/forbidden/report", ORIGIN, "GET")
    allowed = dict(ALLOWED_PREFLIGHT)
    del allowed["access-control-allow-headers"]  # none requested
    expect_cors(r, 204, allowed)
    expect_local_reply(r)


CHECKS = [
    check_demo_page,
    check_allowed_preflight,
    check_denied_preflight_origin,
    check_denied_preflight_method,
    check_denied_preflight_headers,
    check_denied_preflight_private_network,
    check_allowed_actual,
    check_denied_actual,
    check_no_origin,
    check_vary_merged,
    check_upstream_cors_headers_replaced,
    check_route_public,
    check_route_off,
    check_later_filter_reply,
]

# What the checks above add to the filter's counters (the first failing check of a denied
# preflight names its counter).
EXPECTED_COUNTS = {
    "default.preflight_allowed": 2,  # allowed preflight, /forbidden/ preflight
    "default.preflight_denied.origin": 1,
    "default.preflight_denied.method": 1,
    "default.preflight_denied.headers": 1,
    "default.preflight_denied.private_network": 1,
    # allowed actual, vary merged x2 (allowed origin), /forbidden/ (allowed origin)
    "default.actual_allowed": 4,
    # denied actual, vary merged (other origin), upstream CORS replaced, /forbidden/ (other origin)
    "default.actual_denied": 4,
    "public.actual_allowed": 1,
    "public.preflight_allowed": 1,
    "public.preflight_denied.method": 1,
}


def counters():
    prefix = Suite.counter_prefix + "cors."
    r = send(Suite.admin, "GET", "/stats?filter=" + urllib.parse.quote("^" + prefix.replace(".", r"\.")))
    expect("admin /stats status", r.status, 200, r)
    out = {}
    for line in r.body.splitlines():
        name, sep, value = line.partition(": ")
        if sep and name.startswith(prefix) and value.strip().isdigit():
            out[name[len(prefix):]] = int(value)
    return out


def check_counters(before):
    # Counters are flushed from the VM every 500 ms: wait until they settle (or 5 s pass).
    want = dict(before)
    for name, n in EXPECTED_COUNTS.items():
        want[name] = want.get(name, 0) + n
    deadline = time.monotonic() + 5
    while True:
        got = counters()
        if got == want or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    delta = {k: v - before.get(k, 0) for k, v in got.items() if v != before.get(k, 0)}
    expect("counters added by the checks (admin /stats)", delta, EXPECTED_COUNTS)


def wait_ready(deadline_s):
    """Admin says LIVE and a request crosses the filter to the upstream."""
    deadline = time.monotonic() + deadline_s
    last = "no answer yet"
    while time.monotonic() < deadline:
        try:
            r = send(Suite.admin, "GET", "/ready")
            if r.status == 200 and r.body.strip() == "LIVE":
                r = send(Suite.api, "GET", "/ready")
                if r.echo() is not None:
                    return
                last = f"GET /ready through the filter:\n{r}"
            else:
                last = f"admin /ready:\n{r}"
        except OSError as e:
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.25)
    raise Failed(f"not ready after {deadline_s} s: {last}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--api", default="http://127.0.0.1:10000", help="the filter's listener")
    p.add_argument("--demo", default="http://127.0.0.1:10001", help="the demo page's listener")
    p.add_argument("--admin", default="http://127.0.0.1:9901", help="Envoy's admin")
    p.add_argument(
        "--proxy-host",
        help="the upstream must see every request coming from this host's address",
    )
    p.add_argument(
        "--counter-prefix",
        default="wasmcustom.",
        help="Envoy's prefix for the filter's counters (dynamicmodulescustom. for the dynamic module)",
    )
    p.add_argument("--wait", type=float, default=60, help="seconds to wait for the topology")
    args = p.parse_args()
    Suite.api, Suite.demo, Suite.admin = args.api, args.demo, args.admin.rstrip("/")
    Suite.counter_prefix = args.counter_prefix
    print(f"runner: filter {args.api}, demo {args.demo}, admin {args.admin}", flush=True)
    try:
        wait_ready(args.wait)
        if args.proxy_host:
            Suite.proxy_addresses = {a[4][0] for a in socket.getaddrinfo(args.proxy_host, None)}
        before = counters()
    except (Failed, OSError) as e:
        print(f"FAIL setup: {e}", flush=True)
        return 1
    failed = 0
    for check in CHECKS + [lambda: check_counters(before)]:
        name = getattr(check, "__name__", "")
        name = "counters" if name == "<lambda>" else name.removeprefix("check_")
        try:
            check()
            print(f"ok    {name}", flush=True)
        except (Failed, OSError, KeyError, http.client.HTTPException) as e:
            failed += 1
            print(f"FAIL  {name}: {e}", flush=True)
    total = len(CHECKS) + 1
    print(f"runner: {total - failed} of {total} checks passed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
