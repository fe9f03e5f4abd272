//! End-to-end tests against the real Envoy (docs/policy.md, docs/routing.md, docs/operations.md), black-box: policy JSON in, raw HTTP out.
//!
//! Needs `ENVOY_BIN` and `CORS_WASM` (`make test` exports both). Each test starts its own Envoy
//! (~0.1 s) with its own in-process upstream, so tests are independent and run in parallel.

mod fixtures;
#[macro_use]
mod support;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use support::*;

const ORIGIN: &str = "https://app.example.com";
const EVIL: &str = "https://evil.example";
const PREFLIGHT_VARY: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";
const PREFLIGHT_VARY_PNA: &str = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, Access-Control-Request-Private-Network";

fn start(policy: Value) -> Envoy {
    EnvoyBuilder::new(policy.to_string()).start()
}

/// An allowed preflight answered by the filter itself: status, empty body, upstream not reached.
#[track_caller]
fn assert_local_preflight(r: &Response, status: u16) {
    r.assert_status(status);
    assert!(r.body.is_empty(), "preflight body must be empty:\n{r}");
    assert!(
        !r.is_upstream_answer(),
        "preflight must not reach the upstream:\n{r}"
    );
}

/// A rejected preflight: 403, empty body, the preflight Vary, no CORS headers.
#[track_caller]
fn assert_rejected(r: &Response, vary: &str) {
    r.assert_status(403);
    assert!(
        r.body.is_empty(),
        "rejected preflight body must be empty:\n{r}"
    );
    assert!(
        !r.is_upstream_answer(),
        "rejected preflight must not reach the upstream:\n{r}"
    );
    r.assert_no_cors();
    r.assert_header("vary", vary);
}

// ---------------------------------------------------------------------------------------------
// Preflight (docs/policy.md, "What a request gets")
// ---------------------------------------------------------------------------------------------

fn preflight_allowed_sends_every_header() {
    let envoy = start(json!({
        "allow_origins": [ORIGIN],
        "allow_methods": ["GET", "PUT", "DELETE", "PUT"],
        "allow_headers": ["Content-Type", "x-requested-with", "content-type"],
        "expose_headers": ["x-exposed"],
        "allow_credentials": true,
        "max_age": 600
    }));
    let r = envoy
        .send(&Req::preflight("/api/items", ORIGIN, "PUT").acrh("content-type, X-Requested-With"));
    assert_local_preflight(&r, 204);
    r.assert_header("access-control-allow-origin", ORIGIN);
    r.assert_header("access-control-allow-credentials", "true");
    r.assert_header("access-control-allow-methods", "GET, PUT, DELETE");
    r.assert_header(
        "access-control-allow-headers",
        "Content-Type, x-requested-with",
    );
    r.assert_header("access-control-max-age", "600");
    r.assert_header("vary", PREFLIGHT_VARY);
    r.assert_absent("access-control-allow-private-network");

    // No ACRH -> no Access-Control-Allow-Headers.
    let r = envoy.send(&Req::preflight("/api/items", ORIGIN, "DELETE"));
    assert_local_preflight(&r, 204);
    r.assert_header("access-control-allow-methods", "GET, PUT, DELETE");
    r.assert_absent("access-control-allow-headers");
    r.assert_header("vary", PREFLIGHT_VARY);

    // ACRH with optional whitespace and empty elements.
    let r = envoy
        .send(&Req::preflight("/x", ORIGIN, "PUT").acrh(" ,content-type ,, x-requested-with, "));
    assert_local_preflight(&r, 204);
    r.assert_header(
        "access-control-allow-headers",
        "Content-Type, x-requested-with",
    );

    assert_eq!(envoy.upstream.as_ref().map(Upstream::requests), Some(0));
}

fn preflight_safelisted_methods_always_allowed_and_defaults() {
    let envoy = start(json!({ "allow_origins": [ORIGIN], "allow_methods": ["PUT"] }));
    for m in ["GET", "HEAD", "POST", "PUT"] {
        let r = envoy.send(&Req::preflight("/", ORIGIN, m));
        assert_local_preflight(&r, 204);
        r.assert_header("access-control-allow-origin", ORIGIN);
        r.assert_header("access-control-allow-methods", "PUT");
        r.assert_absent("access-control-allow-credentials");
        r.assert_absent("access-control-max-age");
    }
    // Methods are case-sensitive: "put" is not "PUT".
    let r = envoy.send(&Req::preflight("/", ORIGIN, "put"));
    assert_rejected(&r, PREFLIGHT_VARY);

    // Default methods.
    let envoy = start(json!({ "allow_origins": [ORIGIN] }));
    let r = envoy.send(&Req::preflight("/", ORIGIN, "POST"));
    assert_local_preflight(&r, 204);
    r.assert_header("access-control-allow-methods", "GET, HEAD, POST");
}

fn preflight_custom_status() {
    let envoy = start(json!({ "allow_origins": [ORIGIN], "preflight_status": 200 }));
    let r = envoy.send(&Req::preflight("/", ORIGIN, "GET"));
    assert_local_preflight(&r, 200);
    r.assert_header("access-control-allow-origin", ORIGIN);
    r.assert_header("vary", PREFLIGHT_VARY);
}

fn float_numbers_with_zero_fraction_are_accepted() {
    // Istio's pluginConfig turns integers into floats.
    let envoy =
        start(json!({ "allow_origins": [ORIGIN], "max_age": 600.0, "preflight_status": 200.0 }));
    let r = envoy.send(&Req::preflight("/", ORIGIN, "GET"));
    assert_local_preflight(&r, 200);
    r.assert_header("access-control-max-age", "600");
}

fn deny_policy(debug: bool) -> Value {
    json!({
        "allow_origins": [ORIGIN],
        "allow_methods": ["GET", "PUT"],
        "allow_headers": ["x-a"],
        "debug": debug
    })
}

fn preflight_denied_reasons_with_debug() {
    let envoy = start(deny_policy(true));
    let cases: [(&str, Req); 6] = [
        ("origin", Req::preflight("/", EVIL, "GET")),
        // The first failing check wins: origin before method.
        ("origin", Req::preflight("/", EVIL, "DELETE").acrh("x-b")),
        ("method", Req::preflight("/", ORIGIN, "DELETE")),
        ("method", Req::preflight("/", ORIGIN, "DELETE").acrh("x-b")),
        (
            "headers",
            Req::preflight("/", ORIGIN, "PUT").acrh("x-a, x-b"),
        ),
        (
            "private-network",
            Req::preflight("/", ORIGIN, "PUT")
                .acrh("x-a")
                .header("Access-Control-Request-Private-Network", "true"),
        ),
    ];
    for (reason, req) in cases {
        let r = envoy.send(&req);
        assert_rejected(&r, PREFLIGHT_VARY);
        assert_eq!(
            r.one("cors-deny-reason").as_deref(),
            Some(reason),
            "{req:?}\n{r}"
        );
    }
    // Allowed preflights carry no deny reason.
    let r = envoy.send(&Req::preflight("/", ORIGIN, "PUT").acrh("X-A"));
    assert_local_preflight(&r, 204);
    r.assert_header("access-control-allow-headers", "x-a");
    r.assert_absent("cors-deny-reason");
    assert_eq!(envoy.upstream.as_ref().map(Upstream::requests), Some(0));
}

fn preflight_denied_without_debug_has_no_reason() {
    let envoy = start(deny_policy(false));
    for req in [
        Req::preflight("/", EVIL, "GET"),
        Req::preflight("/", ORIGIN, "DELETE"),
        Req::preflight("/", ORIGIN, "PUT").acrh("x-b"),
        Req::preflight("/", ORIGIN, "PUT").header("Access-Control-Request-Private-Network", "true"),
    ] {
        let r = envoy.send(&req);
        assert_rejected(&r, PREFLIGHT_VARY);
        r.assert_absent("cors-deny-reason");
    }
}

fn empty_methods_max_age_zero_exact_pna_value_and_any_origin_lists() {
    let envoy = EnvoyBuilder::new(
        json!({
            "default": { "allow_origins": [ORIGIN], "allow_methods": [], "max_age": 0 },
            "policies": {
                "any": { "allow_origins": ["*"] },
                // More names than are compared one by one: these lists are hashed.
                "long": {
                    "allow_origins": [ORIGIN],
                    "allow_methods": (0..12).map(|i| format!("M{i}")).collect::<Vec<_>>(),
                    "allow_headers": (0..12).map(|i| format!("X-H{i}")).collect::<Vec<_>>()
                }
            }
        })
        .to_string(),
    )
    .route(Route::new("any", "/any/").policy("any"))
    .route(Route::new("long", "/long/").policy("long"))
    .start();
    let r = envoy.send(&Req::preflight("/long/x", ORIGIN, "M11").acrh("x-h0, X-H11"));
    assert_local_preflight(&r, 204);
    r.assert_header(
        "access-control-allow-methods",
        &(0..12)
            .map(|i| format!("M{i}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    for req in [
        Req::preflight("/long/x", ORIGIN, "m11"),
        Req::preflight("/long/x", ORIGIN, "M12"),
        Req::preflight("/long/x", ORIGIN, "M1").acrh("x-h0, x-h12"),
    ] {
        assert_rejected(&envoy.send(&req), PREFLIGHT_VARY);
    }
    // `allow_methods: []`: safelisted methods only, and no Access-Control-Allow-Methods.
    let r = envoy.send(&Req::preflight("/", ORIGIN, "POST"));
    assert_local_preflight(&r, 204);
    r.assert_header("access-control-allow-origin", ORIGIN);
    r.assert_absent("access-control-allow-methods");
    r.assert_header("access-control-max-age", "0");
    r.assert_header("vary", PREFLIGHT_VARY);
    assert_rejected(
        &envoy.send(&Req::preflight("/", ORIGIN, "PUT")),
        PREFLIGHT_VARY,
    );
    // Only the exact value `true` asks for private network access (this policy refuses it).
    let pna = |value: &str| {
        envoy.send(
            &Req::preflight("/", ORIGIN, "GET")
                .header("Access-Control-Request-Private-Network", value),
        )
    };
    let r = pna("TRUE");
    assert_local_preflight(&r, 204);
    r.assert_absent("access-control-allow-private-network");
    assert_rejected(&pna("true"), PREFLIGHT_VARY);
    // An any-origin policy admits one origin, never a joined list or a padded value.
    let r = envoy.send(&Req::preflight("/any/x", ORIGIN, "GET"));
    assert_local_preflight(&r, 204);
    r.assert_header("access-control-allow-origin", "*");
    for origin in [format!("{ORIGIN},{EVIL}"), format!("{ORIGIN}\tx")] {
        assert_rejected(
            &envoy.send(&Req::preflight("/any/x", &origin, "GET")),
            PREFLIGHT_VARY,
        );
        let r = envoy.send(&Req::get("/any/x").origin(&origin));
        r.assert_status(200);
        r.assert_no_cors();
    }
    let r = envoy.send(&Req::get("/any/x").origin(ORIGIN).origin(EVIL));
    r.assert_no_cors();
}

fn private_network_access_preflight() {
    let envoy = start(json!({
        "allow_origins": [ORIGIN], "allow_private_network": true, "debug": true
    }));
    let pna = |req: Req| req.header("Access-Control-Request-Private-Network", "true");
    let r = envoy.send(&pna(Req::preflight("/", ORIGIN, "GET")));
    assert_local_preflight(&r, 204);
    r.assert_header("access-control-allow-private-network", "true");
    r.assert_header("access-control-allow-origin", ORIGIN);
    r.assert_header("vary", PREFLIGHT_VARY_PNA);

    // Not asked -> not answered, but the Vary still names the request header.
    let r = envoy.send(&Req::preflight("/", ORIGIN, "GET"));
    assert_local_preflight(&r, 204);
    r.assert_absent("access-control-allow-private-network");
    r.assert_header("vary", PREFLIGHT_VARY_PNA);

    // Denied for another reason: same Vary, no CORS headers.
    let r = envoy.send(&pna(Req::preflight("/", EVIL, "GET")));
    assert_rejected(&r, PREFLIGHT_VARY_PNA);
    r.assert_header("cors-deny-reason", "origin");
}

fn unmatched_preflight_forwarded_untouched() {
    let envoy = start(json!({
        "allow_origins": [ORIGIN], "allow_methods": ["GET", "PUT"], "unmatched_preflights": "forward"
    }));
    let req = Req::preflight("/api", EVIL, "PUT").acrh("X-Custom, content-type");
    let r = envoy.send(&req);
    r.assert_status(200);
    let echo = r
        .echo()
        .unwrap_or_else(|| panic!("forwarded preflight must reach upstream:\n{r}"));
    assert_eq!(echo.method, "OPTIONS");
    assert_eq!(echo.path, "/api");
    assert_eq!(echo.header("origin").as_deref(), Some(EVIL));
    assert_eq!(
        echo.header("access-control-request-method").as_deref(),
        Some("PUT")
    );
    assert_eq!(
        echo.header("access-control-request-headers").as_deref(),
        Some("X-Custom, content-type")
    );
    r.assert_no_cors();
    r.assert_header("vary", "Origin");

    // Denied by method, upstream Vary merged.
    let r = envoy.send(&Req::preflight(
        &up_path("/api", &[("Vary", "Accept-Encoding")]),
        ORIGIN,
        "DELETE",
    ));
    r.assert_status(200);
    assert_eq!(
        r.echo().map(|e| e.method),
        Some("OPTIONS".to_string()),
        "{r}"
    );
    r.assert_no_cors();
    r.assert_header("vary", "Accept-Encoding, Origin");

    // An app that answers OPTIONS itself keeps its own CORS answer (`unmatched_preflights: forward`: the response
    // is left as the upstream wrote it, but for the Vary merge; `Vary: *` stays as it is).
    let upstream_answer = [
        ("Access-Control-Allow-Origin", ORIGIN),
        ("Access-Control-Allow-Methods", "DELETE"),
        ("Vary", "*"),
    ];
    let r = envoy.send(&Req::preflight(
        &up_path("/api", &upstream_answer),
        ORIGIN,
        "DELETE",
    ));
    r.assert_status(200);
    assert!(r.is_upstream_answer(), "{r}");
    r.assert_header("access-control-allow-origin", ORIGIN);
    r.assert_header("access-control-allow-methods", "DELETE");
    r.assert_header("vary", "*");

    // An allowed preflight is still answered locally.
    let r = envoy.send(&Req::preflight("/api", ORIGIN, "PUT"));
    assert_local_preflight(&r, 204);
    r.assert_header("access-control-allow-origin", ORIGIN);
    assert_eq!(envoy.upstream.as_ref().map(Upstream::requests), Some(3));
}

// ---------------------------------------------------------------------------------------------
// Actual requests, Vary (docs/policy.md, "What a request gets")
// ---------------------------------------------------------------------------------------------

fn actual_request_allowed_and_denied() {
    let envoy = start(json!({
        "allow_origins": [ORIGIN],
        "allow_methods": ["GET", "PUT"],
        "expose_headers": ["x-exposed", "X-Other"],
        "allow_credentials": true,
        "max_age": 60
    }));
    for method in ["GET", "POST", "PUT", "DELETE"] {
        let r = envoy.send(&Req::new(method, "/api").origin(ORIGIN));
        r.assert_status(200);
        assert!(r.is_upstream_answer(), "{r}");
        r.assert_header("access-control-allow-origin", ORIGIN);
        r.assert_header("access-control-allow-credentials", "true");
        r.assert_header("access-control-expose-headers", "x-exposed, X-Other");
        r.assert_absent("access-control-allow-methods");
        r.assert_absent("access-control-max-age");
        r.assert_header("vary", "Origin");
    }
    // HEAD: headers only.
    let r = envoy.send(&Req::new("HEAD", "/api").origin(ORIGIN));
    r.assert_status(200);
    r.assert_header("access-control-allow-origin", ORIGIN);
    r.assert_header("vary", "Origin");
    // Upstream status is kept.
    let r = envoy.send(&Req::get("/api?status=404").origin(ORIGIN));
    r.assert_status(404);
    r.assert_header("access-control-allow-origin", ORIGIN);

    // OPTIONS without Access-Control-Request-Method is an ordinary CORS request.
    let r = envoy.send(&Req::new("OPTIONS", "/api").origin(ORIGIN));
    r.assert_status(200);
    assert_eq!(r.echo().map(|e| e.method), Some("OPTIONS".into()), "{r}");
    r.assert_header("access-control-allow-origin", ORIGIN);

    // OPTIONS with Access-Control-Request-Method but no Origin is not a preflight.
    let r = envoy.send(&Req::new("OPTIONS", "/api").header("Access-Control-Request-Method", "PUT"));
    r.assert_status(200);
    assert_eq!(r.echo().map(|e| e.method), Some("OPTIONS".into()), "{r}");
    r.assert_no_cors();
    r.assert_header("vary", "Origin");

    // Denied origin: the request still goes upstream, no CORS headers.
    let r = envoy.send(&Req::get("/api").origin(EVIL));
    r.assert_status(200);
    assert!(r.is_upstream_answer(), "{r}");
    r.assert_no_cors();
    r.assert_header("vary", "Origin");

    // No Origin: not a CORS request, but Vary: Origin all the same.
    let r = envoy.send(&Req::get("/api"));
    r.assert_status(200);
    r.assert_no_cors();
    r.assert_header("vary", "Origin");
}

fn any_origin_policy() {
    let envoy = start(json!({
        "allow_origins": ["*"], "allow_methods": ["GET"], "expose_headers": ["*"]
    }));
    let r = envoy.send(&Req::get("/").origin("https://anyone.example"));
    r.assert_status(200);
    r.assert_header("access-control-allow-origin", "*");
    r.assert_header("access-control-expose-headers", "*");
    r.assert_absent("access-control-allow-credentials");
    r.assert_absent("vary");

    let r = envoy.send(&Req::get(&up_path("/", &[("Vary", "Accept-Encoding")])).origin(EVIL));
    r.assert_header("access-control-allow-origin", "*");
    r.assert_header("vary", "Accept-Encoding");

    let r = envoy.send(&Req::get("/"));
    r.assert_absent("vary");

    let r = envoy.send(&Req::preflight("/", "https://anyone.example", "GET"));
    assert_local_preflight(&r, 204);
    r.assert_header("access-control-allow-origin", "*");
    r.assert_header("access-control-allow-methods", "GET");
    r.assert_header("vary", PREFLIGHT_VARY);
}

fn wildcard_methods_and_headers_without_credentials() {
    let envoy = start(json!({
        "allow_origins": [ORIGIN], "allow_methods": ["*"], "allow_headers": ["*"], "debug": true
    }));
    let r = envoy.send(&Req::preflight("/", ORIGIN, "PATCH").acrh("x-a, X-B"));
    assert_local_preflight(&r, 204);
    r.assert_header("access-control-allow-methods", "*");
    r.assert_header("access-control-allow-headers", "*");
    // `*` does not cover authorization.
    let r = envoy.send(&Req::preflight("/", ORIGIN, "GET").acrh("x-a, Authorization"));
    assert_rejected(&r, PREFLIGHT_VARY);
    r.assert_header("cors-deny-reason", "headers");

    let envoy = start(json!({
        "allow_origins": [ORIGIN], "allow_headers": ["*", "authorization"]
    }));
    let r = envoy.send(&Req::preflight("/", ORIGIN, "GET").acrh("x-a, Authorization"));
    assert_local_preflight(&r, 204);
    r.assert_header("access-control-allow-headers", "*, authorization");
    let r = envoy.send(&Req::preflight("/", ORIGIN, "GET").acrh("x-a"));
    assert_local_preflight(&r, 204);
    r.assert_header("access-control-allow-headers", "*");
}

fn wildcard_methods_and_headers_with_credentials() {
    let envoy = start(json!({
        "allow_origins": [ORIGIN], "allow_methods": ["*"], "allow_headers": ["*"],
        "allow_credentials": true
    }));
    let r = envoy.send(&Req::preflight("/", ORIGIN, "PATCH").acrh("X-B, x-a, x-b"));
    assert_local_preflight(&r, 204);
    r.assert_header("access-control-allow-credentials", "true");
    r.assert_header("access-control-allow-methods", "PATCH");
    r.assert_header("access-control-allow-headers", "x-b, x-a");
}

fn origin_patterns_match_byte_exact() {
    let envoy = start(json!({
        "allow_origins": [
            "https://*.example.com", "http://localhost:*", "https://exact.test:8443", "null",
            "http://[::1]:8080"
        ],
        "allow_origin_regexes": ["https://[a-z]+\\.regex\\.test"]
    }));
    let allowed = [
        "https://a.example.com",
        "https://a.b.example.com",
        "http://localhost",
        "http://localhost:3000",
        "https://exact.test:8443",
        "null",
        "http://[::1]:8080",
        "https://abc.regex.test",
    ];
    let denied = [
        "https://example.com",
        "http://a.example.com",
        "https://a.example.com:8443",
        "https://A.example.com",
        "https://a.example.com/",
        "https://a.example.com.",
        "https://localhost:3000",
        "https://exact.test",
        "https://exact.test:8443, https://exact.test:8443",
        "Null",
        "",
        "https://abc.regex.test.evil",
        "https://abc1.regex.test",
        "https://x.regex.test, https://evil.example",
    ];
    for o in allowed {
        let r = envoy.send(&Req::get("/").origin(o));
        r.assert_status(200);
        assert_eq!(
            r.one("access-control-allow-origin").as_deref(),
            Some(o),
            "origin {o:?}:\n{r}"
        );
        let r = envoy.send(&Req::preflight("/", o, "GET"));
        assert_local_preflight(&r, 204);
        r.assert_header("access-control-allow-origin", o);
    }
    for o in denied {
        let r = envoy.send(&Req::get("/").origin(o));
        r.assert_status(200);
        r.assert_no_cors();
        r.assert_header("vary", "Origin");
        let r = envoy.send(&Req::preflight("/", o, "GET"));
        assert_rejected(&r, PREFLIGHT_VARY);
    }
}

fn vary_merged_with_upstream_vary() {
    let envoy = start(json!({ "allow_origins": [ORIGIN] }));
    let cases = [
        ("Accept-Encoding", "Accept-Encoding, Origin"),
        ("Accept-Encoding, Cookie", "Accept-Encoding, Cookie, Origin"),
        ("origin", "origin"),
        ("Accept-Encoding, ORIGIN", "Accept-Encoding, ORIGIN"),
        ("*", "*"),
    ];
    for origin in [Some(ORIGIN), Some(EVIL), None] {
        for (upstream, expected) in cases {
            let mut req = Req::get(&up_path("/", &[("Vary", upstream)]));
            if let Some(o) = origin {
                req = req.origin(o);
            }
            let r = envoy.send(&req);
            r.assert_status(200);
            assert_eq!(
                r.headers_all("vary"),
                vec![expected.to_string()],
                "origin {origin:?}, upstream Vary {upstream:?}:\n{r}"
            );
        }
    }
}

/// Upstream `Vary` split over several header lines: every name survives, `Origin` appears once.
fn vary_merged_across_repeated_upstream_vary_lines() {
    let envoy = start(json!({ "allow_origins": [ORIGIN] }));
    let cases: [(&[&str], &[&str]); 3] = [
        (
            &["Accept-Encoding", "Cookie"],
            &["accept-encoding", "cookie", "origin"],
        ),
        (
            &["Accept-Encoding", "Origin"],
            &["accept-encoding", "origin"],
        ),
        (&["Cookie", "*"], &["cookie", "*"]),
    ];
    for (lines, expected) in cases {
        let upstream: Vec<(&str, &str)> = lines.iter().map(|l| ("Vary", *l)).collect();
        for origin in [ORIGIN, EVIL] {
            let r = envoy.send(&Req::get(&up_path("/", &upstream)).origin(origin));
            r.assert_status(200);
            let mut names: Vec<String> = r
                .headers_all("vary")
                .iter()
                .flat_map(|v| v.split(',').map(|n| n.trim().to_ascii_lowercase()))
                .filter(|n| !n.is_empty())
                .collect();
            names.sort();
            let mut want: Vec<String> = expected.iter().map(|n| n.to_string()).collect();
            want.sort();
            assert_eq!(
                names, want,
                "upstream Vary lines {lines:?}, origin {origin}:\n{r}"
            );
        }
    }
}

fn upstream_cors_headers_replaced() {
    let envoy = start(json!({
        "allow_origins": [ORIGIN], "expose_headers": ["x-ours"]
    }));
    let path = up_path(
        "/",
        &[
            ("Access-Control-Allow-Origin", "https://up.example"),
            ("Access-Control-Allow-Credentials", "true"),
            ("Access-Control-Expose-Headers", "x-up"),
            ("Access-Control-Max-Age", "5"),
            ("Access-Control-Allow-Methods", "GET"),
            ("Access-Control-Foo", "bar"),
            ("X-Kept", "yes"),
        ],
    );
    // No Origin: upstream CORS headers removed anyway.
    let r = envoy.send(&Req::get(&path));
    r.assert_status(200);
    r.assert_no_cors();
    r.assert_header("x-kept", "yes");
    r.assert_header("vary", "Origin");
    // Denied origin: removed.
    let r = envoy.send(&Req::get(&path).origin(EVIL));
    r.assert_no_cors();
    // Allowed origin: ours only.
    let r = envoy.send(&Req::get(&path).origin(ORIGIN));
    let mut cors = r.cors_headers();
    cors.sort();
    assert_eq!(
        cors,
        vec![
            (
                "access-control-allow-origin".to_string(),
                ORIGIN.to_string()
            ),
            (
                "access-control-expose-headers".to_string(),
                "x-ours".to_string()
            ),
        ],
        "{r}"
    );
}

fn upstream_cors_headers_kept() {
    let envoy = start(json!({
        "allow_origins": [ORIGIN], "expose_headers": ["x-ours"], "upstream_cors_headers": "keep"
    }));
    let path = up_path(
        "/",
        &[
            ("Access-Control-Allow-Origin", "https://up.example"),
            ("Access-Control-Expose-Headers", "x-up"),
        ],
    );
    let r = envoy.send(&Req::get(&path).origin(ORIGIN));
    r.assert_status(200);
    r.assert_header("access-control-allow-origin", "https://up.example");
    r.assert_header("access-control-expose-headers", "x-up");
    r.assert_header("vary", "Origin");
    let r = envoy.send(&Req::get(&path));
    r.assert_header("access-control-allow-origin", "https://up.example");
    // Upstream without ACAO: ours are written.
    let r = envoy.send(&Req::get("/").origin(ORIGIN));
    r.assert_header("access-control-allow-origin", ORIGIN);
    r.assert_header("access-control-expose-headers", "x-ours");
}

// ---------------------------------------------------------------------------------------------
// Choosing the policy (docs/routing.md)
// ---------------------------------------------------------------------------------------------

fn route_metadata_selects_policy() {
    let policy = json!({
        "default": { "allow_origins": [ORIGIN] },
        "policies": { "other": { "allow_origins": ["https://other.example"] } },
        // Route metadata wins over rules.
        "rules": [{ "match": { "route": "meta-other" }, "policy": "default" }]
    });
    let envoy = EnvoyBuilder::new(policy.to_string())
        .route(Route::new("meta-other", "/other/").policy("other"))
        .route(Route::new("meta-default", "/default/").policy("default"))
        .route(Route::new("meta-off", "/off/").policy("off"))
        .route(Route::new("meta-missing", "/missing/").policy("nope"))
        .start();
    let upstream_acao = &[("Access-Control-Allow-Origin", "https://up.example")];

    let r = envoy.send(&Req::get("/other/x").origin(ORIGIN));
    r.assert_no_cors();
    r.assert_header("vary", "Origin");
    let r = envoy.send(&Req::get("/other/x").origin("https://other.example"));
    r.assert_header("access-control-allow-origin", "https://other.example");
    let r = envoy.send(&Req::get("/default/x").origin(ORIGIN));
    r.assert_header("access-control-allow-origin", ORIGIN);
    let r = envoy.send(&Req::get("/x").origin(ORIGIN));
    r.assert_header("access-control-allow-origin", ORIGIN);

    // "off": untouched — upstream headers kept, no Vary, preflights go upstream.
    let r = envoy.send(&Req::get(&up_path("/off/x", upstream_acao)).origin(ORIGIN));
    r.assert_status(200);
    r.assert_header("access-control-allow-origin", "https://up.example");
    r.assert_absent("vary");
    let r = envoy.send(&Req::preflight("/off/x", ORIGIN, "GET"));
    r.assert_status(200);
    assert_eq!(r.echo().map(|e| e.method), Some("OPTIONS".into()), "{r}");
    r.assert_no_cors();
    r.assert_absent("vary");

    // Unknown name: fail closed.
    let r = envoy.send(&Req::preflight("/missing/x", ORIGIN, "GET"));
    r.assert_status(403);
    assert!(!r.is_upstream_answer(), "{r}");
    r.assert_no_cors();
    r.assert_header("vary", PREFLIGHT_VARY);
    let r = envoy.send(&Req::get(&up_path("/missing/x", upstream_acao)).origin(ORIGIN));
    r.assert_status(200);
    r.assert_no_cors();
    let r = envoy.send(&Req::get(&up_path("/missing/x", upstream_acao)));
    r.assert_no_cors();

    let stats = envoy.wait_cors_stats(&[("cors.unknown_policy", 3)], Duration::from_millis(1500));
    assert_eq!(stats.get("cors.unknown_policy"), Some(&3), "{stats:?}");
}

fn rules_select_policy() {
    // The default policy allows ORIGIN.
    let envoy = EnvoyBuilder::new(fixtures::FULL_FORM)
        .route(Route::new("partner-api", "/partner/"))
        .vhost(
            "vh-other",
            &["other.test"],
            vec![Route::new("other-route", "/")],
        )
        .start();
    let partner = "https://a.partner.example";
    let upstream_acao = &[("Access-Control-Allow-Origin", "https://up.example")];

    // route
    let r = envoy.send(&Req::get("/partner/x").origin(partner));
    r.assert_header("access-control-allow-origin", partner);
    r.assert_header("access-control-allow-credentials", "true");
    let r = envoy.send(&Req::get("/partner/x").origin(ORIGIN));
    r.assert_no_cors();
    // virtual host
    let r = envoy.send(&Req::get("/x").host("other.test").origin(partner));
    r.assert_header("access-control-allow-origin", partner);
    // host, with and without port
    for host in ["static.example.com", "static.example.com:8080"] {
        let r = envoy.send(&Req::get("/x").host(host).origin("https://anyone.example"));
        r.assert_header("access-control-allow-origin", "*");
    }
    // host wildcard + path prefix -> no CORS handling
    for host in ["a.example.com", "a.b.example.com:8080"] {
        let r = envoy.send(
            &Req::get(&up_path("/internal/x", upstream_acao))
                .host(host)
                .origin(ORIGIN),
        );
        r.assert_header("access-control-allow-origin", "https://up.example");
        r.assert_absent("vary");
        let r = envoy.send(&Req::preflight("/internal/x", ORIGIN, "GET").host(host));
        assert!(
            r.is_upstream_answer(),
            "host {host}: preflight must go upstream:\n{r}"
        );
    }
    // the apex is not matched by *.example.com; nor is another path -> default
    for (host, path) in [
        ("example.com", "/internal/x"),
        ("a.example.com", "/public/x"),
    ] {
        let r = envoy.send(
            &Req::get(&up_path(path, upstream_acao))
                .host(host)
                .origin(ORIGIN),
        );
        r.assert_header("access-control-allow-origin", ORIGIN);
        r.assert_header("vary", "Origin");
    }
    // nothing specific -> default
    let r = envoy.send(&Req::preflight("/x", partner, "GET"));
    assert_rejected(&r, PREFLIGHT_VARY);
}

fn short_form_with_route_metadata() {
    let envoy = EnvoyBuilder::new(json!({ "allow_origins": [ORIGIN] }).to_string())
        .route(Route::new("named-default", "/d/").policy("default"))
        .route(Route::new("off", "/off/").policy("off"))
        .route(Route::new("ghost", "/ghost/").policy("ghost"))
        .start();
    let upstream_acao = &[("Access-Control-Allow-Origin", "https://up.example")];
    for path in ["/d/x", "/x"] {
        let r = envoy.send(&Req::get(path).origin(ORIGIN));
        r.assert_header("access-control-allow-origin", ORIGIN);
        r.assert_header("vary", "Origin");
    }
    let r = envoy.send(&Req::get(&up_path("/off/x", upstream_acao)).origin(ORIGIN));
    r.assert_header("access-control-allow-origin", "https://up.example");
    r.assert_absent("vary");
    let r = envoy.send(&Req::preflight("/ghost/x", ORIGIN, "GET"));
    r.assert_status(403);
    r.assert_no_cors();
    let r = envoy.send(&Req::get(&up_path("/ghost/x", upstream_acao)).origin(ORIGIN));
    r.assert_status(200);
    r.assert_no_cors();
}

fn no_default_passes_through() {
    let policy = json!({ "policies": { "p": { "allow_origins": [ORIGIN] } } });
    let envoy = EnvoyBuilder::new(policy.to_string())
        .route(Route::new("with-p", "/p/").policy("p"))
        .start();
    let r = envoy.send(&Req::get("/p/x").origin(ORIGIN));
    r.assert_header("access-control-allow-origin", ORIGIN);
    // No metadata, no rules, no default: untouched.
    let path = up_path(
        "/x",
        &[("Access-Control-Allow-Origin", "https://up.example")],
    );
    let r = envoy.send(&Req::get(&path).origin(ORIGIN));
    r.assert_header("access-control-allow-origin", "https://up.example");
    r.assert_absent("vary");
    let r = envoy.send(&Req::preflight("/x", ORIGIN, "GET"));
    assert!(r.is_upstream_answer(), "{r}");
}

// ---------------------------------------------------------------------------------------------
// Local replies of later filters
// ---------------------------------------------------------------------------------------------

/// A later filter answers GET `path` itself with `status`: with CORS headers for the allowed
/// origin (a credentialed policy), none for another, `Vary: Origin` on both.
#[track_caller]
fn assert_later_filter_reply_has_cors(envoy: &Envoy, path: &str, status: u16) {
    let r = envoy.send(&Req::get(path).origin(ORIGIN));
    r.assert_status(status);
    assert!(!r.is_upstream_answer(), "{r}");
    r.assert_header("access-control-allow-origin", ORIGIN);
    r.assert_header("access-control-allow-credentials", "true");
    r.assert_header("vary", "Origin");
    let r = envoy.send(&Req::get(path).origin(EVIL));
    r.assert_status(status);
    assert!(!r.is_upstream_answer(), "{r}");
    r.assert_no_cors();
    r.assert_header("vary", "Origin");
}

fn local_replies_of_later_filters_carry_cors_headers() {
    let envoy = EnvoyBuilder::new(
        json!({ "allow_origins": [ORIGIN], "allow_credentials": true }).to_string(),
    )
    .route(Route::new("denied", "/rbac/").rbac_deny())
    .route(Route::new("dead", "/dead/").dead_upstream())
    .start();
    assert_later_filter_reply_has_cors(&envoy, "/rbac/x", 403);
    // The router's own 503 for an upstream it cannot reach.
    assert_later_filter_reply_has_cors(&envoy, "/dead/x", 503);
    // Our preflight answer comes before rbac.
    let r = envoy.send(&Req::preflight("/rbac/x", ORIGIN, "GET"));
    assert_local_preflight(&r, 204);
    r.assert_header("access-control-allow-origin", ORIGIN);
}

fn local_ratelimit_429_carries_cors_headers() {
    let ratelimit = json!({
        "name": "envoy.filters.http.local_ratelimit",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
            "stat_prefix": "rl",
            "token_bucket": { "max_tokens": 1, "tokens_per_fill": 1, "fill_interval": "3600s" },
            "filter_enabled": { "default_value": { "numerator": 100, "denominator": "HUNDRED" } },
            "filter_enforced": { "default_value": { "numerator": 100, "denominator": "HUNDRED" } }
        }
    });
    let envoy = EnvoyBuilder::new(json!({ "allow_origins": [ORIGIN] }).to_string())
        .filter_after(ratelimit)
        .start();
    let r = envoy.send(&Req::get("/").origin(ORIGIN));
    r.assert_status(200);
    r.assert_header("access-control-allow-origin", ORIGIN);
    let r = envoy.send(&Req::get("/").origin(ORIGIN));
    r.assert_status(429);
    assert!(!r.is_upstream_answer(), "{r}");
    r.assert_header("access-control-allow-origin", ORIGIN);
    r.assert_header("vary", "Origin");
    // Preflights are answered before the rate limiter.
    assert_local_preflight(&envoy.send(&Req::preflight("/", ORIGIN, "GET")), 204);
}

fn jwt_authn_401_carries_cors_headers() {
    // Every route requires a JWT; requests carry none, so jwt_authn answers 401 itself.
    let jwt = json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": { "issuer": {
                "issuer": "https://issuer.example",
                "local_jwks": { "inline_string":
                    r#"{"keys": [{"kty": "oct", "alg": "HS256", "kid": "k", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}]}"# }
            } },
            "rules": [ { "match": { "prefix": "/" }, "requires": { "provider_name": "issuer" } } ]
        }
    });
    let envoy = EnvoyBuilder::new(
        json!({ "allow_origins": [ORIGIN], "allow_credentials": true }).to_string(),
    )
    .filter_after(jwt)
    .start();
    assert_later_filter_reply_has_cors(&envoy, "/api", 401);
    // The preflight is answered before jwt_authn sees it.
    let r = envoy.send(&Req::preflight("/api", ORIGIN, "GET"));
    assert_local_preflight(&r, 204);
    r.assert_header("access-control-allow-origin", ORIGIN);
}

// ---------------------------------------------------------------------------------------------
// Report mode, metrics (docs/operations.md, "Metrics")
// ---------------------------------------------------------------------------------------------

fn report_mode_changes_nothing_but_counts() {
    let envoy = start(json!({ "allow_origins": [ORIGIN], "mode": "report", "debug": true }));
    let upstream_acao = &[("Access-Control-Allow-Origin", "https://up.example")];
    for origin in [ORIGIN, EVIL] {
        let r = envoy.send(&Req::preflight("/", origin, "GET"));
        r.assert_status(200);
        assert_eq!(r.echo().map(|e| e.method), Some("OPTIONS".into()), "{r}");
        r.assert_no_cors();
        r.assert_absent("vary");
        r.assert_absent("cors-deny-reason");
    }
    let r = envoy.send(&Req::get("/").origin(ORIGIN));
    r.assert_no_cors();
    r.assert_absent("vary");
    let r = envoy.send(&Req::get(&up_path("/", upstream_acao)).origin(EVIL));
    r.assert_header("access-control-allow-origin", "https://up.example");
    r.assert_absent("vary");

    let expected = [
        ("cors.default.preflight_allowed", 1),
        ("cors.default.preflight_denied.origin", 1),
        ("cors.default.actual_allowed", 1),
        ("cors.default.actual_denied", 1),
    ];
    let stats = envoy.wait_cors_stats(&expected, Duration::from_millis(1500));
    assert_counters(&stats, "cors.default.", &expected);
}

/// Counters under `prefix` are exactly `expected` (others zero or absent).
#[track_caller]
/// One debug line per decision once Envoy's logger for the build is raised to debug at run time
/// (`wasm` or `dynamic_modules`), none before: the same text from both builds.
fn debug_lines_follow_the_run_time_log_level() {
    let envoy = start(json!({ "allow_origins": [ORIGIN] }));
    let line = "cors: policy=default preflight origin=\"https://evil.example\" denied (origin)";
    envoy
        .send(&Req::preflight("/", EVIL, "PUT"))
        .assert_status(403);
    let before = envoy.log_containing("policy loaded", Duration::from_secs(2));
    assert!(
        !before.contains(line),
        "a debug line at info level:\n{before}"
    );

    let logger = envoy.build.logger();
    let r = Req::new("POST", &format!("/logging?{logger}=debug")).send(envoy.admin_port);
    r.assert_status(200);
    // The wasm build reads the level on its next tick (every 500 ms): ask until it shows.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut log = String::new();
    while std::time::Instant::now() < deadline && !log.contains(line) {
        envoy
            .send(&Req::preflight("/", EVIL, "PUT"))
            .assert_status(403);
        log = envoy.log_containing(line, Duration::from_millis(400));
    }
    let debug = log
        .lines()
        .find(|l| l.contains(line))
        .unwrap_or_else(|| panic!("no debug line {line:?}:\n{log}"));
    assert!(debug.contains(&format!("[debug][{logger}]")), "{debug}");
    // Allowed requests of a policy without `debug` are not described.
    envoy
        .send(&Req::preflight("/", ORIGIN, "GET"))
        .assert_status(204);
    let log = envoy.log_containing("never", Duration::from_millis(400));
    assert!(
        !log.contains("preflight origin=\"https://app.example.com\""),
        "{log}"
    );
}

/// Two worker threads share one loaded policy (the dynamic module's state is one object for all
/// workers; the wasm build has a VM per worker): concurrent requests all get their answers, and
/// every one of them is counted exactly once.
fn workers_share_one_policy_and_count_every_request() {
    let envoy = EnvoyBuilder::new(
        json!({ "allow_origins": [ORIGIN], "allow_methods": ["PUT"] }).to_string(),
    )
    .start_with_workers(2);
    let port = envoy.port;
    const THREADS: u64 = 4;
    const EACH: u64 = 40;
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(move || {
                for _ in 0..EACH {
                    let r = Req::preflight("/", ORIGIN, "PUT").send(port);
                    r.assert_status(204);
                    r.assert_header("access-control-allow-origin", ORIGIN);
                    Req::preflight("/", EVIL, "PUT")
                        .send(port)
                        .assert_status(403);
                    let r = Req::get("/").origin(ORIGIN).send(port);
                    r.assert_status(200);
                    r.assert_header("access-control-allow-origin", ORIGIN);
                    let r = Req::get("/").origin(EVIL).send(port);
                    r.assert_status(200);
                    r.assert_absent("access-control-allow-origin");
                }
            });
        }
    });
    let n = THREADS * EACH;
    let expected = [
        ("cors.default.preflight_allowed", n),
        ("cors.default.preflight_denied.origin", n),
        ("cors.default.actual_allowed", n),
        ("cors.default.actual_denied", n),
    ];
    let stats = envoy.wait_cors_stats(&expected, Duration::from_secs(3));
    assert_counters(&stats, "cors.default.", &expected);
    // Both workers took connections (Envoy spreads them with SO_REUSEPORT).
    let per_worker =
        envoy.stats(r"^listener\.127\.0\.0\.1_[0-9]+\.worker_[0-9]+\.downstream_cx_total$");
    assert!(
        per_worker.len() == 2 && per_worker.values().all(|&c| c > 0),
        "connections per worker: {per_worker:?}"
    );
}

fn assert_counters(stats: &BTreeMap<String, u64>, prefix: &str, expected: &[(&str, u64)]) {
    let got: BTreeMap<&str, u64> = stats
        .iter()
        .filter(|(k, v)| k.starts_with(prefix) && **v > 0)
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    let want: BTreeMap<&str, u64> = expected.iter().copied().filter(|(_, v)| *v > 0).collect();
    assert_eq!(got, want, "all counters: {stats:#?}");
    for (name, _) in expected {
        assert!(
            stats.contains_key(*name),
            "counter {name} is not defined: {stats:#?}"
        );
    }
}

fn metrics_exact_names_and_counts() {
    let policy = json!({
        "default": { "allow_origins": ["https://unused.example"] },
        "policies": {
            "m": { "allow_origins": [ORIGIN], "allow_methods": ["PUT"], "allow_headers": ["x-a"] }
        }
    });
    let envoy = EnvoyBuilder::new(policy.to_string())
        .route(Route::new("m", "/m/").policy("m"))
        .route(Route::new("missing", "/missing/").policy("ghost"))
        .start();
    let send = |req: Req, status: u16| envoy.send(&req).assert_status(status);
    send(Req::preflight("/m/", ORIGIN, "PUT"), 204);
    send(Req::preflight("/m/", ORIGIN, "GET").acrh("x-a"), 204);
    send(Req::preflight("/m/", EVIL, "PUT"), 403);
    send(Req::preflight("/m/", ORIGIN, "DELETE"), 403);
    send(Req::preflight("/m/", ORIGIN, "PUT").acrh("x-b"), 403);
    send(
        Req::preflight("/m/", ORIGIN, "PUT")
            .header("Access-Control-Request-Private-Network", "true"),
        403,
    );
    for _ in 0..3 {
        send(Req::get("/m/").origin(ORIGIN), 200);
    }
    send(Req::get("/m/").origin(EVIL), 200);
    send(Req::get("/m/"), 200); // not a CORS request: not counted
    send(Req::get("/missing/").origin(ORIGIN), 200);
    send(Req::preflight("/missing/", ORIGIN, "GET"), 403);

    let expected = [
        ("cors.m.preflight_allowed", 2),
        ("cors.m.preflight_denied.origin", 1),
        ("cors.m.preflight_denied.method", 1),
        ("cors.m.preflight_denied.headers", 1),
        ("cors.m.preflight_denied.private_network", 1),
        ("cors.m.actual_allowed", 3),
        ("cors.m.actual_denied", 1),
    ];
    let mut all = expected.to_vec();
    all.push(("cors.unknown_policy", 2));
    let stats = envoy.wait_cors_stats(&all, Duration::from_millis(1500));
    assert_counters(&stats, "cors.m.", &expected);
    assert_counters(&stats, "cors.unknown_policy", &[("cors.unknown_policy", 2)]);
    assert_counters(
        &stats,
        "cors.default.",
        &[("cors.default.actual_allowed", 0)],
    );

    // The names as Envoy lists them: each build's own prefix before the same `cors.` names.
    let real = match envoy.build {
        Build::Wasm => "wasmcustom.cors.m.preflight_allowed",
        Build::Native => "dynamicmodulescustom.cors.m.preflight_allowed",
    };
    let listed = envoy.stats(r"cors\.m\.preflight_allowed$");
    assert_eq!(
        listed,
        BTreeMap::from([(real.to_string(), 2)]),
        "{}",
        envoy.build.name()
    );

    let prom = Req::get("/stats/prometheus").send(envoy.admin_port).text();
    assert!(
        prom.contains("preflight_allowed"),
        "prometheus output lacks our counters:\n{prom}"
    );
}

// ---------------------------------------------------------------------------------------------
// Never crash (docs/operations.md, "What the filter guarantees")
// ---------------------------------------------------------------------------------------------

fn hostile_header_bytes_do_not_break_the_filter() {
    let envoy = start(json!({
        "allow_origins": [ORIGIN], "allow_methods": ["PUT"], "allow_headers": ["x-a", "a"], "debug": true
    }));
    let ok_preflight = || {
        let r = envoy.send(&Req::preflight("/", ORIGIN, "PUT").acrh("x-a"));
        assert_local_preflight(&r, 204);
        r.assert_header("access-control-allow-origin", ORIGIN);
        let r = envoy.send(&Req::get("/").origin(ORIGIN));
        r.assert_status(200);
        r.assert_header("access-control-allow-origin", ORIGIN);
    };
    let pre = |origin: &[u8], acrm: &[u8]| {
        Req::new("OPTIONS", "/")
            .raw_header(b"Origin", origin)
            .raw_header(b"Access-Control-Request-Method", acrm)
    };
    let cases: Vec<(Req, u16, Option<&str>)> = vec![
        (
            pre(b"https://app.example.com\xff", b"PUT"),
            403,
            Some("origin"),
        ),
        (pre(b"\xc3\x28\xa0\xa1", b"PUT"), 403, Some("origin")),
        (pre(ORIGIN.as_bytes(), b"P\xffT"), 403, Some("method")),
        (
            pre(ORIGIN.as_bytes(), b"PUT")
                .raw_header(b"Access-Control-Request-Headers", b"x-a, \xfe\xff"),
            403,
            Some("headers"),
        ),
        (
            pre(ORIGIN.as_bytes(), b"PUT").raw_header(b"X-Junk", b"\x80\x81\xff"),
            204,
            None,
        ),
        (Req::get("/").raw_header(b"Origin", b"\xff\xfe"), 200, None),
        (
            Req::get("/").origin(ORIGIN).raw_header(b"X-Junk", b"\xff"),
            200,
            None,
        ),
        (Req::get("/").origin(""), 200, None),
    ];
    for (req, status, reason) in cases {
        let r = envoy.send(&req);
        assert_eq!(
            r.status,
            status,
            "{:?}\n{r}",
            String::from_utf8_lossy(&req.to_bytes())
        );
        assert_eq!(r.header("cors-deny-reason").as_deref(), reason, "{r}");
        ok_preflight();
    }
    // Empty values: no crash (whether an empty ACRM makes a preflight is not specified).
    let r = envoy.send(&pre(ORIGIN.as_bytes(), b""));
    assert!(r.status < 500, "{r}");
    ok_preflight();
    // A long ACRH list is fine (and answered quickly).
    let long = vec!["a"; 10_000].join(",");
    let r = envoy.send(&Req::preflight("/", ORIGIN, "PUT").acrh(&long));
    assert_local_preflight(&r, 204);
    let long_empty = ",".repeat(30_000);
    let r = envoy.send(&Req::preflight("/", ORIGIN, "PUT").acrh(&long_empty));
    assert_local_preflight(&r, 204);
    for _ in 0..5 {
        ok_preflight();
    }
}

fn repeated_headers() {
    let envoy = start(json!({
        "allow_origins": [ORIGIN], "allow_headers": ["x-a", "x-b"], "debug": true
    }));
    // Two Origin lines never match.
    let r = envoy.send(&Req::get("/").origin(ORIGIN).origin(ORIGIN));
    r.assert_status(200);
    r.assert_no_cors();
    let r = envoy.send(&Req::preflight("/", ORIGIN, "GET").origin(ORIGIN));
    assert_rejected(&r, PREFLIGHT_VARY);
    r.assert_header("cors-deny-reason", "origin");
    // Several ACRH lines are joined.
    let r = envoy.send(&Req::preflight("/", ORIGIN, "GET").acrh("x-a").acrh("X-B"));
    assert_local_preflight(&r, 204);
    r.assert_header("access-control-allow-headers", "x-a, x-b");
    let r = envoy.send(&Req::preflight("/", ORIGIN, "GET").acrh("x-a").acrh("x-c"));
    assert_rejected(&r, PREFLIGHT_VARY);
    r.assert_header("cors-deny-reason", "headers");
}

// ---------------------------------------------------------------------------------------------
// Validation at startup (docs/policy.md, "Validation")
// ---------------------------------------------------------------------------------------------

fn bad_policy_refused_at_startup_with_every_error() {
    let policy = json!({
        "default": { "allow_origins": ["https://ok.example", "https://*.com"], "max_age": 100000 },
        "policies": {
            "partner": { "allow_origins": ["https://a.example", "https://*.com"], "allow_methods": ["TRACE"] }
        },
        "rules": [{ "match": { "route": "x" }, "policy": "missing" }]
    });
    let (status, log) = EnvoyBuilder::new(policy.to_string()).start_expect_failure();
    assert!(
        !status.success(),
        "Envoy must exit non-zero: {status}\n{log}"
    );
    assert!(
        log.contains(r#"policies.partner.allow_origins[1]: "https://*.com": a wildcard must leave at least two labels"#),
        "missing the documented example error line:\n{log}"
    );
    for path in [
        "default.allow_origins[1]: ",
        "default.max_age: ",
        "policies.partner.allow_methods[0]: ",
        "rules[0].policy: ",
    ] {
        let line = log.lines().find(|l| l.contains(path));
        assert!(
            line.is_some_and(|l| l.contains("error")),
            "no error line for {path}:\n{log}"
        );
    }
}

fn repeated_keys_missing_allow_origins_and_bodies_of_bad_names_refused_with_paths() {
    // Raw text: a JSON builder cannot write a key twice.
    let policy = r#"{
        "default": {"allow_origins": ["https://a.example"], "allow_origins": ["https://b.example"]},
        "policies": {
            "regex-only": {"allow_origin_regexes": ["https://[a-z]+\\.example"]},
            "off": {"allow_origins": ["https://a.example"], "max_age": 86401}
        }
    }"#;
    let (status, log) = EnvoyBuilder::new(policy).start_expect_failure();
    assert!(
        !status.success(),
        "Envoy must exit non-zero: {status}\n{log}"
    );
    for line in [
        "invalid policy: default.allow_origins: repeated key: only its last value would count; write each key once",
        "invalid policy: policies.regex-only.allow_origins: missing field allow_origins (required; give [] when allow_origin_regexes lists every allowed origin)",
        "invalid policy: policies.off: \"off\" is reserved: it switches CORS off on a route",
        "invalid policy: policies.off.max_age: 86401 is out of range 0..=86400",
        "policy rejected with 4 error(s); the configuration is refused",
    ] {
        assert!(
            log.lines().any(|l| l.contains("error") && l.contains(line)),
            "no error line {line:?}:\n{log}"
        );
    }
}

fn unparsable_and_empty_policies_refused() {
    for policy in [
        "{",
        "",
        "{}",
        r#"{"allow_origins": ["https://a.example"], "allow_origin": []}"#,
    ] {
        let (status, log) = EnvoyBuilder::new(policy).start_expect_failure();
        assert!(!status.success(), "policy {policy:?} accepted:\n{log}");
    }
}

// ---------------------------------------------------------------------------------------------
// Shipped configs
// ---------------------------------------------------------------------------------------------

/// Every Envoy bootstrap under envoy/ passes `envoy --mode validate`.
fn shipped_envoy_configs_validate() {
    let build = Build::current();
    let (config_path, artefact) = build.shipped_config();
    let shipped = repo_root().join(artefact);
    assert!(
        shipped.is_file(),
        "{} is missing (run `make build`); under test: {}",
        shipped.display(),
        build.artefact().display()
    );
    let mut configs = Vec::new();
    let mut dirs = vec![repo_root().join("envoy")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read envoy/").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if text.contains("static_resources:") {
                    configs.push(path);
                }
            }
        }
    }
    assert!(
        configs.iter().any(|p| p.ends_with("envoy/envoy.yaml")),
        "{configs:?}"
    );
    for config in configs {
        let (ok, out) = validate_config(&config);
        if config.starts_with(repo_root().join("envoy/dynamic-module"))
            && !envoy_runs_the_dynamic_module()
        {
            // The dynamic module runs in the Envoy release it is built for only
            // (docs/dynamic-module.md); `dynamic_module_config.module` is new in Envoy 1.38.
            let expected = if envoy_release() < (1, 38, 0) {
                "no such field: 'module'"
            } else {
                "refused to load: it is built for Envoy 1.40"
            };
            // Envoy's protobuf errors vary their spacing from run to run.
            let words = out.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(
                !ok && words.contains(expected),
                "{}: {expected}?\n{out}",
                config.display()
            );
            continue;
        }
        assert!(
            ok,
            "envoy --mode validate -c {} failed:\n{out}",
            config.display()
        );
    }

    // Validation loads the policy (the wasm plugin's on_configure, the dynamic module's config
    // hook): a bad embedded policy fails it.
    let text = std::fs::read_to_string(repo_root().join(config_path)).expect("shipped config");
    let bad = text.replacen(
        "\"allow_origins\": [",
        "\"allow_origins\": [\"https://*.com\", ",
        1,
    );
    assert_ne!(bad, text, "{config_path} has no allow_origins to break");
    let dir = scratch_dir("validate-bad");
    let path = dir.join("bad.yaml");
    std::fs::write(&path, bad).expect("write bad.yaml");
    let (ok, out) = validate_config(&path);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!ok, "envoy --mode validate accepted a bad policy:\n{out}");
}

/// `make run`'s config, on free ports: serves the demo, answers the demo origin, and embeds
/// exactly examples/policy.json.
fn shipped_envoy_yaml_serves_and_embeds_example_policy() {
    let (config, ports) = shipped_envoy_yaml_on_free_ports();
    let dir = scratch_dir("shipped");
    let path = dir.join("envoy-run.yaml");
    std::fs::write(&path, config).expect("write config");
    let envoy = Envoy::start_config(&path, &dir, None);
    let api = ports[&10000];
    let demo_origin = "http://127.0.0.1:10001";

    let r = Req::preflight("/api/items", demo_origin, "PUT")
        .acrh("content-type")
        .send(api);
    assert_local_preflight(&r, 204);
    r.assert_header("access-control-allow-origin", demo_origin);
    r.assert_header("access-control-allow-credentials", "true");
    r.assert_header("access-control-allow-methods", "GET, PUT, DELETE, POST");
    r.assert_header(
        "access-control-allow-headers",
        "content-type, x-requested-with",
    );
    r.assert_header("access-control-max-age", "600");

    let r = Req::preflight("/api/items", "https://evil.example", "PUT").send(api);
    r.assert_status(403);

    let r = Req::get("/api/items")
        .origin("http://localhost:10001")
        .send(api);
    r.assert_status(200);
    assert!(r.text().contains("example upstream"), "{r}");
    r.assert_header("access-control-allow-origin", "http://localhost:10001");
    r.assert_header("access-control-expose-headers", "x-exposed");
    assert!(r.header("x-exposed").is_some(), "{r}");
    r.assert_header("vary", "Origin");

    let r = Req::get("/public/hello")
        .origin("https://anyone.example")
        .send(api);
    r.assert_header("access-control-allow-origin", "*");
    let r = Req::get("/internal/x").origin(demo_origin).send(api);
    r.assert_status(200);
    r.assert_no_cors();

    let r = Req::get("/").send(ports[&10001]);
    r.assert_status(200);
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{r}"
    );
    assert!(r.text().to_ascii_lowercase().contains("<html"), "{r}");

    // The embedded policy is examples/policy.json.
    let dump = envoy.admin_json("/config_dump");
    let mut embedded = find_string_values(&dump, "type.googleapis.com/google.protobuf.StringValue");
    embedded.dedup(); // the listener appears in more than one section of the dump
    assert_eq!(
        embedded.len(),
        1,
        "expected one embedded policy in config_dump: {embedded:?}"
    );
    let embedded: Value = serde_json::from_str(&embedded[0]).expect("embedded policy is JSON");
    let example: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("examples/policy.json")).expect("policy.json"),
    )
    .expect("examples/policy.json is JSON");
    assert_eq!(
        embedded, example,
        "envoy/envoy.yaml and examples/policy.json differ"
    );
}

/// The compose suite's runner (envoy/compose/runner.py, what the `runner` service of
/// envoy/docker-compose.yaml runs) against `make run`'s config on free ports: every check passes,
/// and the example upstream (envoy/echo.lua) sees each request coming from 127.0.0.1.
fn compose_runner_passes_against_make_run() {
    let (config, ports) = shipped_envoy_yaml_on_free_ports();
    let dir = scratch_dir("runner");
    let path = dir.join("envoy-run.yaml");
    std::fs::write(&path, config).expect("write config");
    let envoy = Envoy::start_config(&path, &dir, None);
    let url = |port: u16| format!("http://127.0.0.1:{}", ports[&port]);
    let out = std::process::Command::new("python3")
        .current_dir(repo_root())
        .arg("envoy/compose/runner.py")
        .arg(format!("--api={}", url(10000)))
        .arg(format!("--demo={}", url(10001)))
        .arg(format!("--admin={}", url(9901)))
        .arg("--proxy-host=127.0.0.1")
        .arg(format!(
            "--counter-prefix={}",
            Build::current().stat_prefix()
        ))
        .arg("--wait=20")
        .output()
        .unwrap_or_else(|e| panic!("run python3 envoy/compose/runner.py: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "runner.py failed ({}):\n{stdout}{stderr}\nEnvoy log:\n{}",
        out.status,
        envoy.log()
    );
    assert!(
        stdout.contains("runner: 15 of 15 checks passed"),
        "{stdout}{stderr}"
    );
}

/// Every `value` of an object whose `@type` is `type_url`.
fn find_string_values(v: &Value, type_url: &str) -> Vec<String> {
    let mut out = Vec::new();
    match v {
        Value::Object(m) => {
            if m.get("@type").and_then(Value::as_str) == Some(type_url) {
                if let Some(s) = m.get("value").and_then(Value::as_str) {
                    out.push(s.to_string());
                }
            }
            for x in m.values() {
                out.extend(find_string_values(x, type_url));
            }
        }
        Value::Array(a) => a
            .iter()
            .for_each(|x| out.extend(find_string_values(x, type_url))),
        _ => {}
    }
    out
}

// ---------------------------------------------------------------------------------------------
// A rejected policy never replaces a running one (docs/operations.md, "A bad policy")
// ---------------------------------------------------------------------------------------------

fn rejected_policy_update_keeps_the_running_policy() {
    let envoy = EnvoyBuilder::new(json!({ "allow_origins": [ORIGIN] }).to_string()).start_dynamic();
    let preflight = |origin: &str| envoy.send(&Req::preflight("/", origin, "GET"));
    assert_local_preflight(&preflight(ORIGIN), 204);

    // Invalid document: Envoy rejects the listener update, the old policy keeps serving.
    let bad = json!({ "allow_origins": ["https://*.com"] }).to_string();
    assert!(
        !envoy.update_policy(&bad),
        "Envoy accepted an invalid policy"
    );
    let r = preflight(ORIGIN);
    assert_local_preflight(&r, 204);
    r.assert_header("access-control-allow-origin", ORIGIN);

    // A valid document replaces it.
    let other = "https://other.example";
    let good = json!({ "allow_origins": [other] }).to_string();
    assert!(
        envoy.update_policy(&good),
        "Envoy rejected a valid policy:\n{}",
        envoy.log()
    );
    let r = preflight(other);
    assert_local_preflight(&r, 204);
    r.assert_header("access-control-allow-origin", other);
    assert_rejected(&preflight(ORIGIN), PREFLIGHT_VARY);
}

/// What Envoy's access log says about our preflight replies (docs/dynamic-module.md, *The
/// preflight reply*): the wasm build's local replies carry their response code details, the
/// dynamic module's replies (sent as Envoy's own CORS filter sends them) carry none.
fn preflight_replies_in_the_access_log() {
    let envoy = EnvoyBuilder::new(
        json!({"allow_origins": [ORIGIN], "allow_methods": ["PUT"]}).to_string(),
    )
    .hcm_option(
        "access_log",
        json!([{
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": "/dev/stderr",
                "log_format": {"text_format_source": {
                    "inline_string": "access: %REQ(:PATH)% %RESPONSE_CODE% [%RESPONSE_CODE_DETAILS%]\n"
                }}
            }
        }]),
    )
    .start();
    assert_local_preflight(&envoy.send(&Req::preflight("/allowed", ORIGIN, "PUT")), 204);
    assert_rejected(
        &envoy.send(&Req::preflight("/denied", EVIL, "PUT")),
        PREFLIGHT_VARY,
    );
    envoy
        .send(&Req::get("/actual").origin(ORIGIN))
        .assert_status(200);
    let log = envoy.log_containing("access: /actual", Duration::from_secs(5));
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with("access: ")).collect();
    let (allowed, denied) = match envoy.build {
        Build::Wasm => (
            "access: /allowed 204 [cors_preflight_allowed]",
            "access: /denied 403 [cors_preflight_denied]",
        ),
        Build::Native => ("access: /allowed 204 []", "access: /denied 403 []"),
    };
    assert_eq!(
        lines,
        [allowed, denied, "access: /actual 200 [via_upstream]"],
        "{log}"
    );
}

for_each_build! {
    preflight_allowed_sends_every_header,
    preflight_replies_in_the_access_log,
    preflight_safelisted_methods_always_allowed_and_defaults,
    preflight_custom_status,
    float_numbers_with_zero_fraction_are_accepted,
    preflight_denied_reasons_with_debug,
    preflight_denied_without_debug_has_no_reason,
    empty_methods_max_age_zero_exact_pna_value_and_any_origin_lists,
    private_network_access_preflight,
    unmatched_preflight_forwarded_untouched,
    actual_request_allowed_and_denied,
    any_origin_policy,
    wildcard_methods_and_headers_without_credentials,
    wildcard_methods_and_headers_with_credentials,
    origin_patterns_match_byte_exact,
    vary_merged_with_upstream_vary,
    vary_merged_across_repeated_upstream_vary_lines,
    upstream_cors_headers_replaced,
    upstream_cors_headers_kept,
    route_metadata_selects_policy,
    rules_select_policy,
    short_form_with_route_metadata,
    no_default_passes_through,
    local_replies_of_later_filters_carry_cors_headers,
    local_ratelimit_429_carries_cors_headers,
    jwt_authn_401_carries_cors_headers,
    report_mode_changes_nothing_but_counts,
    metrics_exact_names_and_counts,
    debug_lines_follow_the_run_time_log_level,
    workers_share_one_policy_and_count_every_request,
    hostile_header_bytes_do_not_break_the_filter,
    repeated_headers,
    bad_policy_refused_at_startup_with_every_error,
    repeated_keys_missing_allow_origins_and_bodies_of_bad_names_refused_with_paths,
    unparsable_and_empty_policies_refused,
    shipped_envoy_configs_validate,
    shipped_envoy_yaml_serves_and_embeds_example_policy,
    compose_runner_passes_against_make_run,
    rejected_policy_update_keeps_the_running_policy,
}
