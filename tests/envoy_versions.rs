//! What each Envoy release does with the two builds (docs/versions.md). `make test` runs these on
//! Envoy 1.40; `make matrix` runs them on every supported release, each from its wheel.
//!
//! - `wasm_runtime_probe`: the wasm build starts and answers; on an Envoy built without V8 it
//!   fails with Envoy's own `compiled without support` line, which `make matrix` reports as "no
//!   V8" rather than as a failure of the filter.
//! - The dynamic module runs in the release it is built for only. In any other it refuses to load
//!   with one line naming both releases, Envoy refuses the configuration, whether at startup or in
//!   a listener update (LDS), and what was running keeps serving: no request ever reaches a
//!   mismatched module.
//!
//! Needs `ENVOY_BIN`, `CORS_WASM` and `CORS_NATIVE` (`make test` exports them).

mod support;

use serde_json::{json, Value};
use std::sync::Once;
use support::*;

const ORIGIN: &str = "https://app.example.com";
const REFUSAL: &str = "[critical][cors-proxy-wasm] cors-proxy-wasm ";

fn policy() -> String {
    json!({ "allow_origins": [ORIGIN], "allow_methods": ["PUT"] }).to_string()
}

/// Our filter's entry for the dynamic module. Before Envoy 1.38 `dynamic_module_config` has no
/// `module` (a file): the module is found by name in `ENVOY_DYNAMIC_MODULES_SEARCH_PATH`.
fn module_filter() -> Value {
    if envoy_release() >= (1, 38, 0) {
        return native_filter(&cors_native(), &policy());
    }
    static SEARCH_PATH: Once = Once::new();
    SEARCH_PATH.call_once(|| {
        let dir = cors_native().parent().expect("module dir").to_path_buf();
        assert!(
            cors_native().ends_with("libcors_proxy.so"),
            "a module found by name is libcors_proxy.so"
        );
        std::env::set_var("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", dir);
    });
    let mut filter = native_filter(&cors_native(), &policy());
    filter["typed_config"]["dynamic_module_config"] = json!({ "name": "cors_proxy" });
    filter
}

fn with_module() -> EnvoyBuilder {
    EnvoyBuilder::new(policy())
        .without_wasm()
        .filter_after(module_filter())
}

/// The release `ENVOY_BIN` reports, as the module names it when it recognises the build.
fn release_text() -> String {
    let (major, minor, patch) = envoy_release();
    format!("{major}.{minor}.{patch}")
}

/// Envoy's log holds the module's refusal exactly once, naming both releases.
fn assert_one_refusal(log: &str) {
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with(REFUSAL)).collect();
    assert_eq!(lines.len(), 1, "one refusal line expected:\n{log}");
    let line = lines[0];
    assert!(
        line.contains("(dynamic module) refused to load: it is built for Envoy 1.40 (dynamic-module ABI v0.2.0)"),
        "{line}"
    );
    // The wheels `make matrix` pins are known builds; 1.38.3 exports exactly 1.38.2's callbacks.
    let met = match release_text().as_str() {
        "1.38.3" => "1.38.2".to_string(),
        other => other.to_string(),
    };
    assert!(
        line.contains(&format!(
            "this Envoy exports exactly the dynamic-module callbacks of Envoy {met}, not those of 1.40: "
        )) || line.contains("callbacks are those of no release the module knows"),
        "the refusal names neither Envoy {met} nor what differs: {line}"
    );
    assert!(line.ends_with("Use the wasm build on this Envoy (docs/dynamic-module.md)"));
    assert!(
        !log.contains("ABI version v0.2.0 is deprecated"),
        "Envoy went on with a mismatched module:\n{log}"
    );
}

#[test]
fn wasm_runtime_probe() {
    let envoy = EnvoyBuilder::new(policy()).start();
    let r = envoy.send(&Req::preflight("/", ORIGIN, "PUT"));
    r.assert_status(204);
    r.assert_header("access-control-allow-origin", ORIGIN);
    // The module says what it is, in the same log format on every release.
    let loaded = "[info][wasm] [source/extensions/common/wasm/context.cc:";
    let line = format!(
        "wasm log cors cors: cors-proxy-wasm {} (proxy-wasm build) loaded",
        env!("CARGO_PKG_VERSION")
    );
    let log = envoy.log_containing(&line, std::time::Duration::from_secs(5));
    assert!(
        log.lines()
            .any(|l| l.contains(loaded) && l.ends_with(&line)),
        "no `{line}` line:\n{log}"
    );
}

#[test]
fn the_dynamic_module_starts_only_in_the_envoy_it_is_built_for() {
    if envoy_runs_the_dynamic_module() {
        let envoy = with_module().start();
        let r = envoy.send(&Req::preflight("/", ORIGIN, "PUT"));
        r.assert_status(204);
        r.assert_header("access-control-allow-origin", ORIGIN);
        let log =
            envoy.log_containing("(dynamic module) loaded", std::time::Duration::from_secs(5));
        assert!(
            log.contains(&format!(
                "cors-proxy-wasm {} (dynamic module) loaded: built for Envoy 1.40 (dynamic-module ABI v0.2.0), and this Envoy exports exactly Envoy 1.40's callbacks",
                env!("CARGO_PKG_VERSION")
            )),
            "{log}"
        );
        assert!(!log.contains(REFUSAL), "{log}");
        return;
    }
    let (status, log) = with_module().start_expect_failure();
    assert!(!status.success(), "{log}");
    assert_one_refusal(&log);
    assert!(
        log.contains("Failed to load dynamic module"),
        "Envoy did not refuse the configuration:\n{log}"
    );
}

#[test]
fn a_listener_update_with_a_mismatched_module_is_refused_and_the_old_listener_keeps_serving() {
    // Before Envoy starts: it reads ENVOY_DYNAMIC_MODULES_SEARCH_PATH from its environment.
    let update = with_module();
    // Running: the same listener without our filter (the upstream answers, no CORS headers).
    let envoy = EnvoyBuilder::new(policy()).without_wasm().start_dynamic();
    let before = envoy.send(&Req::get("/api").origin(ORIGIN));
    assert!(before.is_upstream_answer(), "{before}");
    assert_eq!(before.cors_headers(), Vec::<(String, String)>::new());

    let accepted = envoy.update_listener(update);
    if envoy_runs_the_dynamic_module() {
        assert!(accepted, "Envoy 1.40 refused the module:\n{}", envoy.log());
        let r = envoy.send(&Req::get("/api").origin(ORIGIN));
        assert!(r.is_upstream_answer(), "{r}");
        r.assert_header("access-control-allow-origin", ORIGIN);
        r.assert_header("vary", "Origin");
        return;
    }
    assert!(
        !accepted,
        "Envoy accepted a listener with a mismatched module:\n{}",
        envoy.log()
    );
    let log = envoy.log_containing(REFUSAL, std::time::Duration::from_secs(5));
    assert_one_refusal(&log);
    // The old listener answers as before, and nothing of ours ran: no CORS header on an actual
    // request, and a preflight goes to the upstream instead of being answered.
    for _ in 0..3 {
        let r = envoy.send(&Req::get("/api").origin(ORIGIN));
        assert!(r.is_upstream_answer(), "{r}");
        assert_eq!(r.cors_headers(), Vec::<(String, String)>::new(), "{r}");
        let p = envoy.send(&Req::preflight("/api", ORIGIN, "PUT"));
        assert!(p.is_upstream_answer(), "{p}");
        assert_eq!(p.cors_headers(), Vec::<(String, String)>::new(), "{p}");
    }
    assert_eq!(
        envoy.stats(r"^dynamicmodulescustom\."),
        Default::default(),
        "a mismatched module defined counters"
    );
}
