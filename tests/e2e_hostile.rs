//! Hostile traffic against the real Envoy (no input may panic the wasm VM).
//!
//! Every case sends something a browser never would, asserts the exact outcome, and is followed
//! by a normal allowed preflight and actual request that must still be served exactly right.
//! Each test ends by checking that Envoy's log has no panic and no wasm VM failure.
//!
//! Needs `ENVOY_BIN` and `CORS_WASM` (`make test` exports both).

#[macro_use]
mod support;

use serde_json::json;
use std::time::Duration;
use support::*;

const APP: &str = "https://app.example.com";
const PREFLIGHT_VARY: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";
const ALLOW_HEADERS: &str = "content-type, x-requested-with";

/// `default` (credentials, exact origin + a port wildcard) on every route without metadata;
/// `wild`, `regex` and `loose` (a regex with unescaped dots) on `/wild/`, `/regex/`, `/loose/`;
/// a rule on host + path prefix so the filter also reads `:authority` and `:path`.
fn policy() -> String {
    json!({
        "default": {
            "allow_origins": [APP, "http://localhost:*"],
            "allow_methods": ["PUT"],
            "allow_headers": ["content-type", "x-requested-with"],
            "allow_credentials": true,
            "max_age": 600,
            "debug": true
        },
        "policies": {
            "wild": { "allow_origins": ["https://*.example.com"], "debug": true },
            "regex": {
                "allow_origins": [],
                "allow_origin_regexes": ["https://app\\.example\\.com"],
                "debug": true
            },
            "loose": {
                "allow_origins": [],
                "allow_origin_regexes": ["https://app.example.com"],
                "debug": true
            },
            "echo": {
                "allow_origins": [APP],
                "allow_methods": ["PUT"],
                "allow_headers": ["*"],
                "allow_credentials": true,
                "debug": true
            }
        },
        "rules": [
            { "match": { "host": "*.rules.example", "path_prefix": "/ruled/" }, "policy": "wild" }
        ]
    })
    .to_string()
}

fn start() -> Envoy {
    EnvoyBuilder::new(policy())
        .route(Route::new("wild", "/wild/").policy("wild"))
        .route(Route::new("regex", "/regex/").policy("regex"))
        .route(Route::new("loose", "/loose/").policy("loose"))
        .route(Route::new("echo", "/echo/").policy("echo"))
        // Envoy's defaults (60 KiB of request headers, 100 headers) would refuse the big cases
        // before the filter sees them.
        .hcm_option("max_request_headers_kb", json!(512))
        .hcm_option(
            "common_http_protocol_options",
            json!({ "max_headers_count": 2000 }),
        )
        .start()
}

/// A preflight denied by the filter: local 403, empty body, the preflight `Vary`, no CORS
/// headers, and (the policies run with `debug`) the reason.
#[track_caller]
fn assert_denied_preflight(r: &Response, reason: &str) {
    r.assert_status(403);
    assert!(r.body.is_empty(), "denied preflight has a body:\n{r}");
    assert!(
        !r.is_upstream_answer(),
        "denied preflight went upstream:\n{r}"
    );
    r.assert_no_cors();
    r.assert_header("vary", PREFLIGHT_VARY);
    r.assert_header("cors-deny-reason", reason);
}

/// An actual request whose origin is not allowed: the upstream's answer, no CORS headers,
/// `Vary: Origin`.
#[track_caller]
fn assert_denied_actual(r: &Response) {
    r.assert_status(200);
    assert!(r.is_upstream_answer(), "not the upstream's answer:\n{r}");
    r.assert_no_cors();
    r.assert_header("vary", "Origin");
}

/// An allowed preflight of the `default` policy.
#[track_caller]
fn assert_allowed_preflight(r: &Response, origin: &str, allow_headers: Option<&str>) {
    r.assert_status(204);
    assert!(r.body.is_empty(), "allowed preflight has a body:\n{r}");
    assert!(
        !r.is_upstream_answer(),
        "allowed preflight went upstream:\n{r}"
    );
    r.assert_header("access-control-allow-origin", origin);
    r.assert_header("access-control-allow-credentials", "true");
    r.assert_header("access-control-allow-methods", "PUT");
    match allow_headers {
        Some(v) => r.assert_header("access-control-allow-headers", v),
        None => r.assert_absent("access-control-allow-headers"),
    }
    r.assert_header("access-control-max-age", "600");
    r.assert_header("vary", PREFLIGHT_VARY);
    r.assert_absent("cors-deny-reason");
}

/// The normal traffic that must keep working after every hostile request.
#[track_caller]
fn assert_still_serving(envoy: &Envoy) {
    let r = envoy.send(&Req::preflight("/api", APP, "PUT").acrh("content-type"));
    assert_allowed_preflight(&r, APP, Some(ALLOW_HEADERS));
    let r = envoy.send(&Req::get("/api").origin(APP));
    r.assert_status(200);
    assert!(r.is_upstream_answer(), "not the upstream's answer:\n{r}");
    r.assert_header("access-control-allow-origin", APP);
    r.assert_header("access-control-allow-credentials", "true");
    r.assert_header("vary", "Origin");
}

/// Envoy's log has no panic, no wasm trap and no VM failure (read after a flush interval).
#[track_caller]
fn assert_log_clean(envoy: &Envoy) {
    std::thread::sleep(Duration::from_millis(400));
    let log = envoy.log();
    assert!(
        log.contains("cors-proxy-wasm: policy loaded"),
        "the log is not Envoy's log of our filter:\n{log}"
    );
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            [
                "panic",
                "uncaught",
                "runtimeerror",
                "unreachable",
                "[critical]",
                "wasm vm",
                "failed",
            ]
            .iter()
            .any(|needle| l.contains(needle))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "Envoy log has failure lines:\n{}",
        bad.join("\n")
    );
}

fn preflight_bytes(path: &str, origin: &[u8], method: &[u8]) -> Req {
    Req::new("OPTIONS", path)
        .raw_header(b"Origin", origin)
        .raw_header(b"Access-Control-Request-Method", method)
}

// ---------------------------------------------------------------------------------------------
// Non-UTF-8 bytes in every header the filter reads, and in the host and path
// ---------------------------------------------------------------------------------------------

fn non_utf8_bytes_in_cors_headers() {
    let envoy = start();
    assert_still_serving(&envoy);

    // Origin: never matches (an exact, a wildcard and a regex policy).
    for path in ["/api", "/wild/x", "/regex/x"] {
        for origin in [
            b"https://app.example.com\xff".as_slice(),
            b"https://\xc3\x28.example.com",
            b"https://app.\xe2\x82.example.com",
            b"\xff\xfe\xfd",
        ] {
            let r = envoy.send(&preflight_bytes(path, origin, b"PUT"));
            assert_denied_preflight(&r, "origin");
            let r = envoy.send(&Req::get(path).raw_header(b"Origin", origin));
            assert_denied_actual(&r);
            assert_still_serving(&envoy);
        }
    }

    // ACRM: not a token.
    let r = envoy.send(&preflight_bytes("/api", APP.as_bytes(), b"P\xffT"));
    assert_denied_preflight(&r, "method");
    assert_still_serving(&envoy);

    // ACRH: a name that is not a token, alone or among allowed ones.
    for acrh in [
        b"x-\xff".as_slice(),
        b"content-type, \xc3\xa9t\xc3\xa9",
        b"\xff",
    ] {
        let r = envoy.send(
            &preflight_bytes("/api", APP.as_bytes(), b"PUT")
                .raw_header(b"Access-Control-Request-Headers", acrh),
        );
        assert_denied_preflight(&r, "headers");
        assert_still_serving(&envoy);
    }

    // ACRPN: only the exact value `true` asks for private network access; anything else is
    // not a PNA preflight.
    let r = envoy.send(
        &preflight_bytes("/api", APP.as_bytes(), b"PUT")
            .raw_header(b"Access-Control-Request-Private-Network", b"tr\xffue"),
    );
    assert_allowed_preflight(&r, APP, None);
    r.assert_absent("access-control-allow-private-network");
    let r = envoy.send(
        &preflight_bytes("/api", APP.as_bytes(), b"PUT")
            .raw_header(b"Access-Control-Request-Private-Network", b"true"),
    );
    assert_denied_preflight(&r, "private-network");
    assert_still_serving(&envoy);
    assert_log_clean(&envoy);
}

fn non_utf8_bytes_in_host_and_path() {
    let envoy = start();
    assert_still_serving(&envoy);
    let hosts: [&[u8]; 3] = [b"\xff.rules.example", b"api.rules.example\xfe", b"\xc3\x28"];
    let paths: [&[u8]; 3] = [b"/ruled/\xff", b"/api/\xc3\x28", b"/wild/\xfe\xff"];
    for host in hosts {
        for path in paths {
            for preflight in [true, false] {
                let mut raw = Vec::new();
                raw.extend_from_slice(if preflight { b"OPTIONS " } else { b"GET " });
                raw.extend_from_slice(path);
                raw.extend_from_slice(b" HTTP/1.1\r\nHost: ");
                raw.extend_from_slice(host);
                raw.extend_from_slice(b"\r\nOrigin: https://a.example.com\r\n");
                if preflight {
                    raw.extend_from_slice(b"Access-Control-Request-Method: GET\r\n");
                }
                raw.extend_from_slice(b"Connection: close\r\n\r\n");
                let r = send_raw(envoy.port, &raw, false)
                    .unwrap_or_else(|e| panic!("{:?}: {e}", String::from_utf8_lossy(&raw)));
                // Envoy's HTTP/1 codec refuses non-ASCII bytes in the request line and Host
                // before any filter runs.
                r.assert_status(400);
                r.assert_no_cors();
                assert!(!r.is_upstream_answer(), "{r}");
                assert_still_serving(&envoy);
            }
        }
    }
    assert_log_clean(&envoy);
}

// ---------------------------------------------------------------------------------------------
// Empty and repeated headers
// ---------------------------------------------------------------------------------------------

fn empty_and_repeated_headers() {
    let envoy = start();
    let acrh = "Access-Control-Request-Headers";
    let acrm = "Access-Control-Request-Method";

    // Empty Origin: a CORS request whose origin matches nothing.
    let r = envoy.send(&Req::preflight("/api", "", "PUT"));
    assert_denied_preflight(&r, "origin");
    let r = envoy.send(&Req::get("/api").origin(""));
    assert_denied_actual(&r);
    assert_still_serving(&envoy);

    // Empty ACRM: a preflight asking for the empty method, which is not a token.
    let r = envoy.send(&Req::preflight("/api", APP, ""));
    assert_denied_preflight(&r, "method");
    assert_still_serving(&envoy);

    // Empty ACRH: no names requested, so no Access-Control-Allow-Headers.
    let r = envoy.send(&Req::preflight("/api", APP, "PUT").acrh(""));
    assert_allowed_preflight(&r, APP, None);
    assert_still_serving(&envoy);

    // Repeated Origin (even the same allowed one twice) never matches.
    let r = envoy.send(&Req::preflight("/api", APP, "PUT").origin(APP));
    assert_denied_preflight(&r, "origin");
    let r = envoy.send(&Req::get("/api").origin(APP).origin(APP));
    assert_denied_actual(&r);
    let r = envoy.send(&Req::get("/api").origin(APP).origin("https://b.example.com"));
    assert_denied_actual(&r);
    // An empty repeated line is dropped by Envoy itself (it never appends an empty value), so
    // the filter sees one Origin.
    let r = envoy.send(&Req::get("/api").origin(APP).origin(""));
    r.assert_status(200);
    r.assert_header("access-control-allow-origin", APP);
    assert_still_serving(&envoy);

    // Repeated ACRM: joined with ',' it is not a token.
    let r = envoy.send(&Req::preflight("/api", APP, "PUT").header(acrm, "PUT"));
    assert_denied_preflight(&r, "method");
    assert_still_serving(&envoy);

    // Repeated ACRH lines are joined: all allowed -> allowed; one refused -> denied.
    let r = envoy.send(
        &Req::preflight("/api", APP, "PUT")
            .acrh("content-type")
            .acrh("")
            .acrh("X-Requested-With"),
    );
    assert_allowed_preflight(&r, APP, Some(ALLOW_HEADERS));
    let r = envoy.send(
        &Req::preflight("/api", APP, "PUT")
            .header(acrh, "content-type")
            .header(acrh, "x-other"),
    );
    assert_denied_preflight(&r, "headers");
    assert_still_serving(&envoy);
    assert_log_clean(&envoy);
}

// ---------------------------------------------------------------------------------------------
// Huge values, comma and whitespace storms, 1,000 ACRH lines
// ---------------------------------------------------------------------------------------------

fn huge_values_and_storms() {
    let envoy = start();
    let sixty_kb = 60 * 1024;

    // A 60 KB Origin.
    let origin = format!("https://{}.example.com", "a".repeat(sixty_kb));
    let r = envoy.send(&Req::preflight("/wild/x", &origin, "GET"));
    assert_denied_preflight(&r, "origin");
    let r = envoy.send(&Req::get("/wild/x").origin(&origin));
    assert_denied_actual(&r);
    // 60 KB of labels under a wildcard: each label is valid, the host is too long.
    let origin = format!("https://{}example.com", "a.".repeat(sixty_kb / 2));
    let r = envoy.send(&Req::preflight("/wild/x", &origin, "GET"));
    assert_denied_preflight(&r, "origin");
    assert_still_serving(&envoy);

    // A 60 KB ACRM.
    let r = envoy.send(&Req::preflight("/api", APP, &"P".repeat(sixty_kb)));
    assert_denied_preflight(&r, "method");
    assert_still_serving(&envoy);

    // A 60 KB ACRH of allowed names, in mixed case.
    let names = "content-type, X-Requested-With, ".repeat(sixty_kb / 32);
    let r = envoy.send(&Req::preflight("/api", APP, "PUT").acrh(&names));
    assert_allowed_preflight(&r, APP, Some(ALLOW_HEADERS));
    // ... with one refused name at the very end.
    let r = envoy.send(&Req::preflight("/api", APP, "PUT").acrh(&format!("{names}x-evil")));
    assert_denied_preflight(&r, "headers");
    // ... one 60 KB token.
    let r = envoy.send(&Req::preflight("/api", APP, "PUT").acrh(&"x".repeat(sixty_kb)));
    assert_denied_preflight(&r, "headers");
    assert_still_serving(&envoy);

    // Echoed names (`*` with credentials): 60 KB of distinct names, each sent twice in two
    // spellings, come back once each, lower case, in first-seen order.
    let mut names = Vec::new();
    while names
        .iter()
        .map(|n: &String| n.len() * 2 + 4)
        .sum::<usize>()
        < sixty_kb
    {
        names.push(format!("X-N{}", names.len()));
    }
    let requested: Vec<String> = names
        .iter()
        .flat_map(|n| [n.clone(), n.to_ascii_lowercase()])
        .collect();
    let r = envoy.send(&Req::preflight("/echo/x", APP, "PUT").acrh(&requested.join(", ")));
    r.assert_status(204);
    let echoed: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    r.assert_header("access-control-allow-headers", &echoed.join(", "));
    // ... one name 25,000 times: echoed once.
    let r = envoy.send(&Req::preflight("/echo/x", APP, "PUT").acrh(&"a,".repeat(25_000)));
    r.assert_status(204);
    r.assert_header("access-control-allow-headers", "a");
    assert_still_serving(&envoy);

    // Comma storm: 60 KB of empty elements names nothing.
    let r = envoy.send(&Req::preflight("/api", APP, "PUT").acrh(&",".repeat(sixty_kb)));
    assert_allowed_preflight(&r, APP, None);
    // Whitespace storm (Envoy trims the ends; the inside reaches the filter).
    let storm = format!("x{}", " \t ,".repeat(sixty_kb / 4));
    let r = envoy.send(&Req::preflight("/api", APP, "PUT").acrh(&storm));
    assert_denied_preflight(&r, "headers");
    let storm = format!(
        "content-type{}x-requested-with",
        " ,\t".repeat(sixty_kb / 3)
    );
    let r = envoy.send(&Req::preflight("/api", APP, "PUT").acrh(&storm));
    assert_allowed_preflight(&r, APP, Some(ALLOW_HEADERS));
    // Commas and whitespace in Origin.
    for origin in [
        format!("{APP},{APP}"),
        format!("{APP}, {APP}"),
        ",".repeat(sixty_kb),
        format!("{APP}{}", "\t".repeat(10)) + "x",
    ] {
        let r = envoy.send(&Req::preflight("/api", &origin, "PUT"));
        assert_denied_preflight(&r, "origin");
        let r = envoy.send(&Req::get("/api").origin(&origin));
        assert_denied_actual(&r);
    }
    assert_still_serving(&envoy);

    // 1,000 ACRH lines: all allowed, then one refused among them.
    let mut req = Req::preflight("/api", APP, "PUT");
    for i in 0..1000 {
        req = req.acrh(if i % 2 == 0 {
            "content-type"
        } else {
            "x-requested-with, , "
        });
    }
    let r = envoy.send(&req);
    assert_allowed_preflight(&r, APP, Some(ALLOW_HEADERS));
    let r = envoy.send(&req.clone().acrh("authorization"));
    assert_denied_preflight(&r, "headers");
    // 1,000 Origin lines.
    let mut req = Req::get("/api");
    for _ in 0..1000 {
        req = req.origin(APP);
    }
    assert_denied_actual(&envoy.send(&req));
    assert_still_serving(&envoy);
    assert_log_clean(&envoy);
}

// ---------------------------------------------------------------------------------------------
// Origin spellings from the CORS-misconfiguration literature
// ---------------------------------------------------------------------------------------------

/// A spelling that must be refused on `path`: preflight 403 (reason origin), actual without
/// CORS headers; then normal traffic.
#[track_caller]
fn assert_refused(envoy: &Envoy, path: &str, origin: &str) {
    let r = envoy.send(&Req::preflight(path, origin, "GET"));
    assert_denied_preflight(&r, "origin");
    let r = envoy.send(&Req::get(path).origin(origin));
    assert_denied_actual(&r);
    assert_still_serving(envoy);
}

fn misconfiguration_spellings_against_an_exact_origin() {
    let envoy = start();
    for origin in [
        // Prefix and suffix tricks.
        "https://app.example.com.evil.com",
        "https://evilapp.example.com",
        "https://app.example.co",
        "https://app.example.comm",
        "https://xapp.example.com",
        "https://app-example.com",
        // Special characters browsers let through in host names (Safari, Firefox).
        "https://app.example.com%60.evil.com",
        "https://app.example.com`.evil.com",
        "https://app.example.com_.evil.com",
        "https://app.example.com!.evil.com",
        "https://app.example.com&.evil.com",
        "https://app.example.com'.evil.com",
        "https://app.example.com\".evil.com",
        "https://app.example.com{.evil.com",
        "https://app.example.com=.evil.com",
        "https://app.example.com~.evil.com",
        // Scheme and ports.
        "http://app.example.com",
        "https://app.example.com:443",
        "https://app.example.com:8443",
        "https://app.example.com:",
        "wss://app.example.com",
        // Case, trailing dot and slash, path.
        "https://APP.example.com",
        "HTTPS://app.example.com",
        "https://App.Example.Com",
        "https://app.example.com.",
        "https://app.example.com/",
        "https://app.example.com/path",
        "https://app.example.com?",
        "https://app.example.com#",
        // null and opaque origins, userinfo.
        "null",
        "Null",
        "file://",
        "https://user@app.example.com",
        "https://user:pass@app.example.com",
        "https://app.example.com@evil.com",
        "https://evil.com#@app.example.com",
        "https://evil.com\\@app.example.com",
        // Encodings.
        "https://app%2Eexample.com",
        "https://xn--app.example.com",
        "https://app.example.com%00.evil.com",
        "https://app.example.com\u{200b}",
        "https://аpp.example.com",
    ] {
        assert_refused(&envoy, "/api", origin);
    }
    // The port wildcard: any valid explicit port or none, nothing else.
    for origin in [
        "http://localhost:0",
        "http://localhost:65536",
        "http://localhost:99999999999999999999",
        "http://localhost:08080",
        "http://localhost:+80",
        "http://localhost:-1",
        "http://localhost:80a",
        "http://localhost.evil.com:8080",
        "http://localhost:8080.evil.com",
        "http://localhost:8080@evil.com",
        "http://localhost:8080/",
        "https://localhost:8080",
        "http://LOCALHOST:8080",
        "http://evil-localhost:8080",
    ] {
        assert_refused(&envoy, "/api", origin);
    }
    for origin in [
        "http://localhost",
        "http://localhost:1",
        "http://localhost:65535",
    ] {
        let r = envoy.send(&Req::preflight("/api", origin, "PUT"));
        assert_allowed_preflight(&r, origin, None);
    }
    assert_log_clean(&envoy);
}

fn misconfiguration_spellings_against_a_wildcard_and_regexes() {
    let envoy = start();
    // `https://*.example.com`: one or more labels, never the apex, no tricks.
    for origin in [
        "https://example.com",
        "https://.example.com",
        "https://..example.com",
        "https://a..example.com",
        "https://evilexample.com",
        "https://evil-example.com",
        "https://example.com.evil.com",
        "https://a.example.com.evil.com",
        "https://a.example.com.",
        "https://a.example.com/",
        "https://a.example.com:443",
        "https://a.example.com:8443",
        "http://a.example.com",
        "https://A.example.com",
        "https://a.EXAMPLE.com",
        "https://a%60.example.com",
        "https://a`.example.com",
        "https://evil.com@a.example.com",
        "https://a.example.com@evil.com",
        "null",
    ] {
        assert_refused(&envoy, "/wild/x", origin);
    }
    // Labels in the characters browsers send (`_` and leading `-` included) are subdomains of
    // the trusted suffix, not tricks.
    for origin in [
        "https://a.example.com",
        "https://a.b-c.d.example.com",
        "https://a_b.example.com",
        "https://-a.example.com",
    ] {
        let r = envoy.send(&Req::preflight("/wild/x", origin, "GET"));
        r.assert_status(204);
        r.assert_header("access-control-allow-origin", origin);
        r.assert_header("vary", PREFLIGHT_VARY);
    }

    // A properly escaped regex is a full match: no prefix/suffix or unescaped-dot tricks.
    for origin in [
        "https://appxexample.com",
        "https://app-example.com",
        "https://app.example.com.evil.com",
        "https://evil.app.example.com",
        "https://app.example.com:443",
        "https://app.example.com/",
        "https://app.example.comx",
    ] {
        assert_refused(&envoy, "/regex/x", origin);
    }
    let r = envoy.send(&Req::preflight("/regex/x", APP, "GET"));
    r.assert_status(204);
    r.assert_header("access-control-allow-origin", APP);

    // A regex with unescaped dots (logged as a warning when the policy loads) admits what it
    // says, and no more: `.` is any character, yet the match is still anchored at both ends.
    for origin in ["https://appxexample.com", "https://app-example.com"] {
        let r = envoy.send(&Req::preflight("/loose/x", origin, "GET"));
        r.assert_status(204);
        r.assert_header("access-control-allow-origin", origin);
    }
    for origin in [
        "https://app.example.com.evil.com",
        "https://evil.app.example.com",
        "https://app.example.comx",
    ] {
        assert_refused(&envoy, "/loose/x", origin);
    }
    let warning = "policies.loose.allow_origin_regexes[0]";
    let log = envoy.log_containing(warning, Duration::from_secs(2));
    assert!(
        log.contains(warning),
        "no warning about the unescaped dots:\n{log}"
    );
    assert_log_clean(&envoy);
}

for_each_build! {
    non_utf8_bytes_in_cors_headers,
    non_utf8_bytes_in_host_and_path,
    empty_and_repeated_headers,
    huge_values_and_storms,
    misconfiguration_spellings_against_an_exact_origin,
    misconfiguration_spellings_against_a_wildcard_and_regexes,
}
