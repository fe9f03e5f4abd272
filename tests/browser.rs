//! Real browsers decide: Chromium, Firefox ESR and WebKitGTK (Safari's engine) run the demo page
//! (`examples/demo.html`) against the real Envoy with the real filter, and each browser's own CORS
//! check decides what the page's JavaScript can read. Every test runs once per build (the
//! proxy-wasm module and the dynamic module) and, within it, in every engine at the same time
//! (tests/browsers: how each is started, and stopped by process id).
//!
//! Layout (all on 127.0.0.1, ports chosen by the kernel):
//! - a tiny page server (this file) serves the page on port P for any path, and collects the
//!   report each page posts to `/report` when it is done (`?report=URL`);
//! - Envoy (tests/support) with the filter, the policy of `examples/policy.json` whose `default`
//!   allows exactly `http://127.0.0.1:P`, and the routes of `envoy/envoy.yaml` (`/public/` ->
//!   `public`, `/internal/` -> off, `/` -> `default`) plus `/forbidden/`, denied by
//!   `envoy.filters.http.rbac` after our filter;
//! - each browser opens `http://127.0.0.1:P/?target=<envoy>` (allowed origin; the page also runs
//!   every scenario from a sandboxed iframe, `Origin: null`) and `http://localhost:P/?expect=blocked`
//!   (a disallowed origin) at the same time.
//!
//! The outcomes are asserted here from an independent table (not from the page's own verdicts),
//! and the filter's counters in Envoy's `/stats` prove how many preflights each browser sent (the
//! `max_age` scenario: one preflight for two identical requests 5.5 s apart, longer than the 5 s
//! every engine caches a preflight answer without `Access-Control-Max-Age`).
//! `what_each_browser_does` proves the rows of docs/browsers.md that a page shows in seconds.
//!
//! An engine missing is a failure, never a pass: `make test` runs the installed engines (it sets
//! `BROWSERS`) and says which did not run; CI installs and requires all three.

#[macro_use]
mod support;
mod browsers;

use browsers::{Browser, Engine};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::thread;
use std::time::{Duration, Instant};
use support::*;

/// Whole-page budget: a page takes ~6 s (the max-age scenario waits 5.5 s), more on a loaded
/// machine with three browsers at once.
const PAGE_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Expected outcomes (independent of the page's own expectations)
// ---------------------------------------------------------------------------------------------

fn blocked() -> Value {
    json!("blocked")
}

fn status(s: u16) -> Value {
    json!({ "status": s })
}

/// (scenario id, outcome for an allowed page origin, outcome for a disallowed one).
fn expected_outcomes() -> Vec<(&'static str, Value, Value)> {
    vec![
        ("simple-get", status(200), blocked()),
        // Any-origin policy: readable from every origin.
        ("public-get", status(200), status(200)),
        ("put-custom-header", status(200), blocked()),
        ("delete-custom-header", status(200), blocked()),
        ("method-not-allowed", blocked(), blocked()),
        ("header-not-allowed", blocked(), blocked()),
        ("json-post", status(200), blocked()),
        ("credentials", status(200), blocked()),
        // `Access-Control-Allow-Origin: *` with credentials: the browser refuses.
        ("credentials-any-origin", blocked(), blocked()),
        (
            "exposed-header",
            json!({ "status": 200, "x-exposed readable": true, "x-secret readable": false }),
            blocked(),
        ),
        ("auth-error", status(403), blocked()),
        ("cors-off", blocked(), blocked()),
        (
            "max-age",
            json!({ "first": { "status": 200 }, "second": { "status": 200 } }),
            json!({ "first": "blocked", "second": "blocked" }),
        ),
    ]
}

/// Checks one column of the page's report against the table; returns the mismatches.
fn check_column(report: &Value, column: &str, allowed: bool) -> Vec<String> {
    let mut problems = Vec::new();
    let results = &report["columns"][column];
    let Some(results) = results.as_object() else {
        return vec![format!("column {column:?} missing from the report")];
    };
    let table = expected_outcomes();
    let ids: Vec<&str> = table.iter().map(|(id, _, _)| *id).collect();
    let got_ids: Vec<&str> = results.keys().map(String::as_str).collect();
    let mut want_sorted = ids.clone();
    want_sorted.sort_unstable();
    if got_ids != want_sorted {
        problems.push(format!(
            "{column}: scenarios {got_ids:?}, expected {want_sorted:?}"
        ));
    }
    for (id, when_allowed, when_blocked) in table {
        let want = if allowed { when_allowed } else { when_blocked };
        let r = &results[id];
        if r["observed"] != want {
            problems.push(format!(
                "{column} / {id}: observed {}, expected {want}",
                r["observed"]
            ));
        }
        if r["pass"] != json!(true) {
            problems.push(format!(
                "{column} / {id}: the page says FAIL (its expectation: {})",
                r["expected"]
            ));
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// The page server and report collector
// ---------------------------------------------------------------------------------------------

/// Serves one page for every `GET` (the sandboxed iframe loads `/?frame=null...`; `/favicon.ico`
/// gets a 404) and collects the reports pages `POST` to `/report`. Lives until the process ends.
struct PageServer {
    port: u16,
    reports: Receiver<Value>,
}

impl PageServer {
    /// Serves `page` (a file of the repository).
    fn start(page: &str) -> PageServer {
        let path = repo_root().join(page);
        let page = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind page server");
        let port = listener.local_addr().expect("local_addr").port();
        let (tx, reports) = channel();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (page, tx) = (page.clone(), tx.clone());
                thread::spawn(move || serve_one(stream, &page, &tx));
            }
        });
        PageServer { port, reports }
    }

    /// Where a page posts its report (`?report=`).
    fn report_url(&self) -> String {
        format!("http://127.0.0.1:{}/report", self.port)
    }

    /// Waits for one report per origin in `origins` (a page reports its `origin`), at most
    /// `within`; fails with the browser's diagnostics when one is missing or says it failed.
    fn await_reports(
        &self,
        origins: &[&str],
        browser: &mut dyn Browser,
        within: Duration,
    ) -> BTreeMap<String, Value> {
        let deadline = Instant::now() + within;
        let mut got = BTreeMap::new();
        while origins.iter().any(|o| !got.contains_key(*o)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.reports.recv_timeout(left) {
                Ok(report) => {
                    let origin = report["origin"].as_str().unwrap_or_default().to_string();
                    if let Some(error) = report.get("error") {
                        panic!(
                            "the page at {origin} failed: {error}\n{}",
                            browser.diagnostics()
                        );
                    }
                    got.insert(origin, report);
                }
                Err(_) => panic!(
                    "no report within {within:?} from {:?} (got {:?})\n{}",
                    origins
                        .iter()
                        .filter(|o| !got.contains_key(**o))
                        .collect::<Vec<_>>(),
                    got.keys().collect::<Vec<_>>(),
                    browser.diagnostics()
                ),
            }
        }
        got
    }
}

fn serve_one(stream: TcpStream, page: &[u8], reports: &Sender<Value>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {
                if let Some((name, value)) = line.split_once(':') {
                    if name.trim().eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
        }
    }
    let (status, ctype, body): (&str, &str, &[u8]) = if request_line.starts_with("POST /report ") {
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let report = serde_json::from_slice(&body).unwrap_or_else(
            |e| json!({ "origin": "?", "error": format!("unparsable report ({e})") }),
        );
        let _ = reports.send(report);
        ("204 No Content", "text/plain", b"")
    } else if request_line.starts_with("GET /favicon.ico ") {
        ("404 Not Found", "text/plain", b"")
    } else {
        ("200 OK", "text/html; charset=utf-8", page)
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n\
         cache-control: no-store\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = writer.write_all(head.as_bytes());
    let _ = writer.write_all(body);
}

// ---------------------------------------------------------------------------------------------
// Every engine at once
// ---------------------------------------------------------------------------------------------

/// Runs `body` once per engine of the run ([`Engine::selected`]), all at the same time, each on a
/// thread of its own with the test's build; fails with every engine's failure. Each engine's time
/// goes to stderr (`--nocapture` shows it).
fn in_each_engine(test: &str, body: fn(Engine)) {
    let engines = Engine::selected();
    for engine in &engines {
        engine.require_installed();
    }
    let build = Build::current();
    let runs: Vec<_> = engines
        .iter()
        .map(|&engine| {
            let handle = thread::Builder::new()
                .name(format!("{test}-{}", engine.key()))
                .spawn(move || {
                    let started = Instant::now();
                    let result = std::panic::catch_unwind(|| build.run(|| body(engine)));
                    (started.elapsed(), result)
                })
                .expect("spawn engine thread");
            (engine, handle)
        })
        .collect();
    let mut failures = Vec::new();
    for (engine, handle) in runs {
        let (took, result) = handle
            .join()
            .unwrap_or_else(|_| (Duration::ZERO, Err(Box::new("the engine's thread died"))));
        eprintln!(
            "browser suite: {} {test} {}: {:.1} s{}",
            build.name(),
            engine.name(),
            took.as_secs_f64(),
            if result.is_ok() { "" } else { " (FAILED)" }
        );
        if let Err(panic) = result {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("=== {} ===\n{message}", engine.name()));
        }
    }
    assert!(
        failures.is_empty(),
        "{test} failed in {} of {} engines:\n{}",
        failures.len(),
        engines.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------------------------

/// `examples/policy.json` with the `default` policy's origins replaced by exactly `page_origin`.
fn demo_policy(page_origin: &str) -> String {
    let path = repo_root().join("examples/policy.json");
    let mut policy: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .expect("examples/policy.json is JSON");
    // The scenarios rely on these; fail clearly if the example policy changes under them.
    let default = &policy["default"];
    assert_eq!(default["allow_credentials"], json!(true), "{default}");
    assert_eq!(default["max_age"], json!(600), "{default}");
    assert_eq!(default["expose_headers"], json!(["x-exposed"]), "{default}");
    assert_eq!(policy["policies"]["public"]["allow_origins"], json!(["*"]));
    policy["default"]["allow_origins"] = json!([page_origin]);
    policy.to_string()
}

/// The filter's non-zero counters are exactly `expected` (waits up to 2 s for the batched flush).
#[track_caller]
fn assert_counters_exactly(envoy: &Envoy, expected: &[(&str, u64)]) {
    let stats = envoy.wait_cors_stats(expected, Duration::from_secs(2));
    let got: BTreeMap<&str, u64> = stats
        .iter()
        .filter(|(_, v)| **v > 0)
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    let want: BTreeMap<&str, u64> = expected.iter().copied().collect();
    assert_eq!(got, want, "filter counters after the browser ran");
}

/// Whether the engine reuses a cached preflight answer when the API's host is an IP address.
/// Firefox does not: every request sends its preflight again (likely because Gecko checks a cached
/// preflight against its DNS cache before each use, `CORSCacheEntry::CheckDNSCache` in
/// `netwerk/protocol/http/nsCORSListenerProxy.cpp`, and an IP-address host has no entry there;
/// docs/browsers.md). `what_each_browser_does` proves it in each engine.
fn reuses_preflights_on_ip_hosts(engine: Engine) -> bool {
    engine != Engine::Firefox
}

fn demo_page_against_envoy() {
    in_each_engine("demo_page_against_envoy", demo_page_against_envoy_in);
}

fn demo_page_against_envoy_in(engine: Engine) {
    let server = PageServer::start("examples/demo.html");
    let page_port = server.port;
    let page_origin = format!("http://127.0.0.1:{page_port}");
    let other_origin = format!("http://localhost:{page_port}");
    let envoy = EnvoyBuilder::new(demo_policy(&page_origin))
        .route(Route::new("public", "/public/").policy("public"))
        .route(Route::new("internal", "/internal/").policy("off"))
        .route(Route::new("forbidden", "/forbidden/").rbac_deny())
        .start();
    // The API by host name: every engine may reuse a preflight answer for it (on an IP-address
    // host Firefox never does; `demo_as_served_by_make_run` and `what_each_browser_does`).
    let target = format!("http://localhost:{}", envoy.port);
    let report = server.report_url();

    let mut browser = engine.open(&[
        format!("{page_origin}/?target={target}&expect=allowed&report={report}"),
        format!("{other_origin}/?target={target}&expect=blocked&null=0&report={report}"),
    ]);
    let reports = server.await_reports(&[&page_origin, &other_origin], &mut *browser, PAGE_TIMEOUT);
    let (allowed, disallowed) = (&reports[&page_origin], &reports[&other_origin]);
    let mut problems = check_column(allowed, "this origin", true);
    problems.extend(check_column(allowed, "origin null", false));
    problems.extend(check_column(disallowed, "this origin", false));
    assert!(
        problems.is_empty(),
        "{} disagreed:\n  {}\nallowed page: {allowed:#}\ndisallowed page: {disallowed:#}",
        engine.name(),
        problems.join("\n  ")
    );
    let n = expected_outcomes().len();
    assert_eq!(allowed["passed"], json!(2 * n), "{allowed:#}");
    assert_eq!(disallowed["passed"], json!(n), "{disallowed:#}");
    drop(browser);

    // Counted at Envoy. Three runs of the scenarios: the allowed origin, Origin: null (iframe),
    // http://localhost:P. Preflights for the allowed origin: PUT, DELETE, JSON POST, and ONE for
    // the two identical max-age PUTs 5.5 s apart (a missing Access-Control-Max-Age would make it
    // two: every engine caches an answer without it for 5 s), plus one denied by method (PATCH)
    // and one by header (x-not-allowed). The two disallowed origins: 7 preflights each (failed
    // preflights are never cached).
    let expected = [
        ("cors.default.preflight_allowed", 4),
        ("cors.default.preflight_denied.method", 1),
        ("cors.default.preflight_denied.headers", 1),
        ("cors.default.preflight_denied.origin", 14),
        // simple GET, PUT, DELETE, JSON POST, credentials, exposed, 403 (rbac), max-age x2.
        ("cors.default.actual_allowed", 9),
        // simple GET, credentials, exposed, 403: sent, the browser hides the answer.
        ("cors.default.actual_denied", 8),
        // simple GET and credentialed GET, from each of the three origins.
        ("cors.public.actual_allowed", 6),
    ];
    assert_counters_exactly(&envoy, &expected);

    // What reached the upstream: both max-age PUTs of the allowed origin; nothing whose preflight
    // failed; nothing of the rbac-denied route.
    let seen = envoy.upstream.as_ref().expect("upstream").seen();
    let count = |method: &str, needle: &str| {
        seen.iter()
            .filter(|r| r.method == method && r.path.contains(needle))
            .count()
    };
    assert_eq!(count("PUT", "s=max-age"), 2, "{seen:#?}");
    assert_eq!(count("PATCH", ""), 0, "{seen:#?}");
    assert_eq!(count("PUT", "s=header-not-allowed"), 0, "{seen:#?}");
    assert_eq!(count("GET", "/forbidden/"), 0, "{seen:#?}");
    assert_eq!(
        count("OPTIONS", ""),
        0,
        "preflights must be answered by the filter: {seen:#?}"
    );
    // What the browser refused or allowed the page to read is really on the wire (after the
    // counters were checked: these two requests count too).
    let exposed = "/api/items?s=exposed&h=x-exposed:readable&h=x-secret:hidden";
    let r = envoy.send(&Req::get(exposed).origin(&page_origin));
    r.assert_status(200);
    r.assert_header("access-control-allow-origin", &page_origin);
    r.assert_header("access-control-expose-headers", "x-exposed");
    r.assert_header("x-secret", "hidden");
    let r = envoy.send(&Req::get("/forbidden/x").origin(&page_origin));
    r.assert_status(403);
    r.assert_header("access-control-allow-origin", &page_origin);
    assert!(
        !r.is_upstream_answer(),
        "rbac must answer, not the upstream:\n{r}"
    );
}

/// `make run` as a user sees it: envoy/envoy.yaml, or envoy/dynamic-module/envoy.yaml for the
/// dynamic module (`make run-native`), on free ports, serves the demo page from its
/// demo listener and the filter on its API listener (`http://127.0.0.1:<api>`, the page's
/// default), with the example policy (both `http://127.0.0.1:<demo>` and
/// `http://localhost:<demo>` allowed). Every scenario passes from both, and fails closed from the
/// page's sandboxed `Origin: null` iframe.
fn demo_as_served_by_make_run() {
    in_each_engine("demo_as_served_by_make_run", demo_as_served_by_make_run_in);
}

fn demo_as_served_by_make_run_in(engine: Engine) {
    let (mut config, ports) = shipped_envoy_yaml_on_free_ports();
    let (api, demo) = (ports[&10000], ports[&10001]);
    for origin in ["http://127.0.0.1:10001\"", "http://localhost:10001\""] {
        assert!(
            config.contains(origin),
            "the policy no longer allows {origin}"
        );
        config = config.replace(origin, &origin.replace("10001", &demo.to_string()));
    }
    let dir = scratch_dir("browser-shipped");
    let path = dir.join("envoy-run.yaml");
    std::fs::write(&path, config).expect("write config");
    let envoy = Envoy::start_config(&path, &dir, None);
    // Only the reports go elsewhere: Envoy's demo listener serves the page.
    let collector = PageServer::start("examples/demo.html");
    let report = collector.report_url();

    let target = format!("http://127.0.0.1:{api}");
    let (first, second) = (
        format!("http://127.0.0.1:{demo}"),
        format!("http://localhost:{demo}"),
    );
    // No query but the target (and where to report): what a user gets, plus the port rewrite.
    let mut browser = engine.open(&[
        format!("{first}/?target={target}&report={report}"),
        format!("{second}/?target={target}&null=0&report={report}"),
    ]);
    let reports = collector.await_reports(&[&first, &second], &mut *browser, PAGE_TIMEOUT);
    let mut problems = check_column(&reports[&first], "this origin", true);
    problems.extend(check_column(&reports[&first], "origin null", false));
    problems.extend(check_column(&reports[&second], "this origin", true));
    assert!(
        problems.is_empty(),
        "{} disagreed:\n  {}\nreports: {reports:#?}",
        engine.name(),
        problems.join("\n  ")
    );
    drop(browser);

    // Two allowed origins, each: 4 preflights allowed (one for both max-age PUTs; Firefox sends
    // the second one as well, the API's host being an IP address), 1 denied by method, 1 by
    // header; Origin null: 7 denied by origin.
    let max_age_preflights = if reuses_preflights_on_ip_hosts(engine) {
        1
    } else {
        2
    };
    assert_counters_exactly(
        &envoy,
        &[
            (
                "cors.default.preflight_allowed",
                2 * (3 + max_age_preflights),
            ),
            ("cors.default.preflight_denied.method", 2),
            ("cors.default.preflight_denied.headers", 2),
            ("cors.default.preflight_denied.origin", 7),
            ("cors.default.actual_allowed", 18),
            ("cors.default.actual_denied", 4),
            ("cors.public.actual_allowed", 6),
        ],
    );
}

/// The rows of docs/browsers.md a page can show in seconds (`tests/browsers/rows.html`), in
/// every engine: the outcome the page could read, and the preflights Envoy answered.
fn what_each_browser_does() {
    in_each_engine("what_each_browser_does", what_each_browser_does_in);
}

fn what_each_browser_does_in(engine: Engine) {
    let server = PageServer::start("tests/browsers/rows.html");
    let page_origin = format!("http://127.0.0.1:{}", server.port);
    let policy = |allow_headers: Value, max_age: Option<u32>| {
        let mut p = json!({
            "allow_origins": [page_origin],
            "allow_methods": ["PUT"],
            "allow_headers": allow_headers,
        });
        if let Some(age) = max_age {
            p["max_age"] = json!(age);
        }
        p
    };
    let document = json!({
        "default": policy(json!([]), None),
        "policies": {
            "reuse_ip": policy(json!(["x-requested-with"]), Some(600)),
            "reuse_name": policy(json!(["x-requested-with"]), Some(600)),
            "star": policy(json!(["*"]), None),
            "star_auth": policy(json!(["*", "authorization"]), None),
            "pna": private_network_policy(&page_origin),
        }
    });
    let envoy = EnvoyBuilder::new(document.to_string())
        .route(Route::new("reuse-ip", "/reuse-ip/").policy("reuse_ip"))
        .route(Route::new("reuse-name", "/reuse-name/").policy("reuse_name"))
        .route(Route::new("star", "/star/").policy("star"))
        .route(Route::new("star-auth", "/star-auth/").policy("star_auth"))
        .route(Route::new("off", "/off/").policy("off"))
        .route(Route::new("pna", "/pna/").policy("pna"))
        .start();
    let url = format!(
        "{page_origin}/?api=http://127.0.0.1:{port}&named=http://localhost:{port}&report={}",
        server.report_url(),
        port = envoy.port
    );
    let mut browser = engine.open(&[url]);
    let reports = server.await_reports(&[&page_origin], &mut *browser, PAGE_TIMEOUT);
    drop(browser);
    let results = &reports[&page_origin]["results"];

    // WebKit lets a cached `Access-Control-Allow-Headers: *` answer cover Authorization;
    // Chromium and Firefox send a new preflight for it.
    let webkit = engine == Engine::WebKit;
    let expected = json!({
        // Access-Control-Max-Age: 600, the second request 300 ms after the first: both readable.
        "reuse-ip-host": [200, 200],
        "reuse-named-host": [200, 200],
        // allow_headers ["*"]: any name but authorization; listing it as well allows it.
        "star-custom-header": 200,
        "star-authorization": "blocked",
        "star-authorization-listed": 200,
        "star-custom-then-authorization": [200, if webkit { json!(200) } else { json!("blocked") }],
        // A server's own `Access-Control-Allow-Headers: *` covers Authorization in all three
        // engines, although the Fetch standard says it must not.
        "upstream-star-custom-header": 200,
        "upstream-star-authorization": 200,
        // `Access-Control-Allow-Origin: *` is refused for a request with credentials, even with
        // `Access-Control-Allow-Credentials: true`.
        "upstream-any-origin": 200,
        "upstream-any-origin-credentials": "blocked",
        // Page and API both on loopback: no engine asks for private network access.
        "private-network-get": 200,
        "private-network-put": 200,
    });
    assert_eq!(results, &expected, "{} disagreed", engine.name());

    // Preflights answered: ONE for the two PUTs on the API's host name in every engine; on its IP
    // address, one in Chromium and WebKit, two in Firefox (reuses_preflights_on_ip_hosts).
    let ip_preflights = if reuses_preflights_on_ip_hosts(engine) {
        1
    } else {
        2
    };
    // The policy `star`: x-custom allowed twice (/star/custom, /star/both), authorization denied
    // on /star/auth and, but in WebKit, on /star/both.
    let (star_denied, star_actual) = if webkit { (1, 3) } else { (2, 2) };
    assert_counters_exactly(
        &envoy,
        &[
            ("cors.reuse_ip.preflight_allowed", ip_preflights),
            ("cors.reuse_ip.actual_allowed", 2),
            ("cors.reuse_name.preflight_allowed", 1),
            ("cors.reuse_name.actual_allowed", 2),
            ("cors.star.preflight_allowed", 2),
            ("cors.star.preflight_denied.headers", star_denied),
            ("cors.star.actual_allowed", star_actual),
            ("cors.star_auth.preflight_allowed", 1),
            ("cors.star_auth.actual_allowed", 1),
            ("cors.pna.preflight_allowed", 1),
            ("cors.pna.actual_allowed", 2),
        ],
    );
    let seen = envoy.upstream.as_ref().expect("upstream").seen();
    let on = |method: &str, path: &str| {
        seen.iter()
            .filter(|r| r.method == method && r.path.starts_with(path))
            .map(|r| {
                let acrh = r.header("access-control-request-headers");
                let auth = r.header("authorization");
                acrh.or(auth).unwrap_or_default()
            })
            .collect::<Vec<_>>()
    };
    // Through the filter, Authorization reaches the upstream when listed, and in WebKit on the
    // strength of the cached `*`.
    assert_eq!(on("PUT", "/star-auth/"), ["Bearer t"], "{seen:#?}");
    let both: &[&str] = if webkit { &["", "Bearer t"] } else { &[""] };
    assert_eq!(on("PUT", "/star/both"), both, "{seen:#?}");
    // The route with CORS off: the upstream answered both preflights itself, and got both PUTs,
    // the one with Authorization too; both GETs were sent (the browser hides the credentialed
    // answer, it does not stop the request).
    assert_eq!(on("OPTIONS", "/off/star-custom"), ["x-custom"], "{seen:#?}");
    assert_eq!(
        on("OPTIONS", "/off/star-auth"),
        ["authorization"],
        "{seen:#?}"
    );
    assert_eq!(on("PUT", "/off/star-auth"), ["Bearer t"], "{seen:#?}");
    assert_eq!(on("PUT", "/off/star-custom").len(), 1, "{seen:#?}");
    assert_eq!(on("GET", "/off/any").len(), 2, "{seen:#?}");

    if engine == Engine::Chromium {
        chromium_local_network_access();
    }
}

/// A policy that answers Private Network Access preflights.
fn private_network_policy(page_origin: &str) -> Value {
    json!({
        "allow_origins": [page_origin],
        "allow_methods": ["PUT"],
        "allow_headers": ["x-requested-with"],
        "allow_private_network": true,
    })
}

/// Private Network Access, in the one engine that implemented it: Chromium no longer sends its
/// preflights (`Access-Control-Request-Private-Network`). A page Chromium takes for a public one
/// (`--ip-address-space-overrides`) calling an API on loopback gets no request through at all,
/// even with `allow_private_network: true`: Local Network Access refuses it before anything is
/// sent (a permission the user grants, and only to secure contexts; docs/browsers.md). Part of
/// `what_each_browser_does` in Chromium.
fn chromium_local_network_access() {
    let server = PageServer::start("tests/browsers/rows.html");
    let page_origin = format!("http://127.0.0.1:{}", server.port);
    let envoy = EnvoyBuilder::new(
        json!({
            "default": private_network_policy(&page_origin),
            "policies": { "pna": private_network_policy(&page_origin) }
        })
        .to_string(),
    )
    .route(Route::new("pna", "/pna/").policy("pna"))
    .start();
    let url = format!(
        "{page_origin}/?api=http://127.0.0.1:{port}&named=http://localhost:{port}\
         &rows=private-network-get,private-network-put&report={}",
        server.report_url(),
        port = envoy.port
    );
    let mut browser = browsers::chromium_with(
        &[url],
        &[format!(
            "--ip-address-space-overrides=127.0.0.1:{}=public",
            server.port
        )],
    );
    let reports = server.await_reports(&[&page_origin], &mut *browser, PAGE_TIMEOUT);
    drop(browser);
    assert_eq!(
        reports[&page_origin]["results"],
        json!({ "private-network-get": "blocked", "private-network-put": "blocked" }),
        "Chromium, public page to a loopback API"
    );
    assert_counters_exactly(&envoy, &[]);
    let seen = envoy.upstream.as_ref().expect("upstream").seen();
    assert!(seen.is_empty(), "nothing may reach the upstream: {seen:#?}");
}

for_each_build! {
    demo_page_against_envoy,
    demo_as_served_by_make_run,
    what_each_browser_does,
}
