//! Real browsers decide: headless Chromium runs the demo page (`examples/demo.html`) against the
//! real Envoy with the real filter, and the browser's own CORS check decides what the page's
//! JavaScript can read.
//!
//! Layout (all on 127.0.0.1, ports chosen by the kernel):
//! - a tiny page server (this file) serves `examples/demo.html` on port P for any path;
//! - Envoy (tests/support) with the filter (each test runs once per build: the proxy-wasm module
//!   and the dynamic module), the policy of `examples/policy.json` whose `default`
//!   allows exactly `http://127.0.0.1:P`, and the routes of `envoy/envoy.yaml` (`/public/` ->
//!   `public`, `/internal/` -> off, `/` -> `default`) plus `/forbidden/`, denied by
//!   `envoy.filters.http.rbac` after our filter;
//! - Chromium, driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`), opens
//!   `http://127.0.0.1:P/?target=<envoy>` (allowed origin; the page also runs every scenario from a
//!   sandboxed iframe, `Origin: null`) and `http://localhost:P/?expect=blocked` (a disallowed
//!   origin) at the same time, and awaits the page's `window.corsDemo` report.
//!
//! The outcomes are asserted here from an independent table (not from the page's own verdicts),
//! and the filter's counters in Envoy's `/stats` prove how many preflights the browser sent (the
//! `max_age` scenario: one preflight for two identical requests 5.5 s apart, longer than the 5 s
//! a browser caches a preflight answer without `Access-Control-Max-Age`).
//!
//! Chromium missing is a failure, never a pass: install the Debian package `chromium` (`.ci/run`
//! does) or point `CHROMIUM` at a Chromium/Chrome binary.

#[macro_use]
mod support;

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};
use support::*;

/// Whole-page budget: the page takes ~6 s (the max-age scenario waits 5.5 s).
const PAGE_TIMEOUT: Duration = Duration::from_secs(40);

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
// The page server
// ---------------------------------------------------------------------------------------------

/// Serves `examples/demo.html` for every path (the sandboxed iframe loads `/?frame=null...`) and
/// 404 for `/favicon.ico`. Lives until the process ends.
fn serve_demo_page() -> u16 {
    let page = std::fs::read(repo_root().join("examples/demo.html")).expect("examples/demo.html");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind page server");
    let port = listener.local_addr().expect("local_addr").port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let page = page.clone();
            thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let Ok(mut writer) = stream.try_clone() else {
                    return;
                };
                let mut reader = BufReader::new(stream);
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    return;
                }
                loop {
                    let mut line = String::new();
                    match reader.read_line(&mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == "\r\n" || line == "\n" => break,
                        Ok(_) => {}
                    }
                }
                let (status, ctype, body): (&str, &str, &[u8]) =
                    if request_line.starts_with("GET /favicon.ico ") {
                        ("404 Not Found", "text/plain", b"")
                    } else {
                        ("200 OK", "text/html; charset=utf-8", &page)
                    };
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n\
                     cache-control: no-store\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = writer.write_all(head.as_bytes());
                let _ = writer.write_all(body);
            });
        }
    });
    port
}

// ---------------------------------------------------------------------------------------------
// Chromium over the DevTools protocol (pipe transport: fd 3 in, fd 4 out, NUL-separated JSON)
// ---------------------------------------------------------------------------------------------

extern "C" {
    fn pipe2(fds: *mut i32, flags: i32) -> i32;
    fn fcntl(fd: i32, cmd: i32, arg: i32) -> i32;
    fn dup2(old: i32, new: i32) -> i32;
    fn close(fd: i32) -> i32;
    fn prctl(option: i32, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> i32;
}
const O_CLOEXEC: i32 = 0o2_000_000;
const F_DUPFD_CLOEXEC: i32 = 1030;
const PR_SET_PDEATHSIG: i32 = 1;
const SIGKILL: u64 = 9;

/// A close-on-exec pipe whose two ends are numbered >= 10 (so `dup2` onto 3 and 4 never clobbers
/// them): (read end, write end).
fn high_pipe() -> (i32, i32) {
    let mut fds = [0i32; 2];
    // SAFETY: fds points to two writable i32s.
    let rc = unsafe { pipe2(fds.as_mut_ptr(), O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2 failed");
    let moved = fds.map(|fd| {
        // SAFETY: fd is a pipe end we own; the duplicate is ours too and the original is closed.
        unsafe {
            let high = fcntl(fd, F_DUPFD_CLOEXEC, 10);
            assert!(high >= 10, "fcntl(F_DUPFD_CLOEXEC) failed");
            close(fd);
            high
        }
    });
    (moved[0], moved[1])
}

/// The Chromium binary: `$CHROMIUM`, else `chromium` / `chromium-browser` / `google-chrome` on PATH.
fn chromium_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "BROWSER SUITE DID NOT RUN: CHROMIUM={} does not exist",
            p.display()
        );
        return p;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "\n\n*** BROWSER SUITE DID NOT RUN: no Chromium found (looked for $CHROMIUM, then chromium, \
         chromium-browser, google-chrome on PATH). Install it: `apt-get install chromium` \
         (.ci/run does). This is a failure, not a skip. ***\n\n"
    );
}

struct Browser {
    child: Child,
    to_browser: File,
    from_browser: Receiver<Value>,
    next_id: u64,
    /// Events and stray messages seen so far (console output, exceptions), for failure messages.
    events: Vec<Value>,
    dir: PathBuf,
}

impl Browser {
    fn launch() -> Browser {
        let bin = chromium_bin();
        let dir = scratch_dir("chromium");
        let (browser_reads, we_write) = high_pipe();
        let (we_read, browser_writes) = high_pipe();
        let mut cmd = Command::new(&bin);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-proxy-server",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::from(
            File::create(dir.join("chromium.log")).expect("create chromium.log"),
        ))
        .stderr(Stdio::from(
            File::create(dir.join("chromium.err")).expect("create chromium.err"),
        ));
        // SAFETY: only async-signal-safe calls (dup2, prctl) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if dup2(browser_reads, 3) != 3 || dup2(browser_writes, 4) != 4 {
                    return Err(std::io::Error::last_os_error());
                }
                prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "BROWSER SUITE DID NOT RUN: cannot start {}: {e}",
                bin.display()
            )
        });
        // SAFETY: the browser's ends now live in the child; ours are owned by the Files below.
        unsafe {
            close(browser_reads);
            close(browser_writes);
        }
        // SAFETY: we own these descriptors and hand each to exactly one File.
        let to_browser = unsafe { File::from_raw_fd(we_write) };
        let mut reader = unsafe { File::from_raw_fd(we_read) };
        let (tx, rx) = channel();
        thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                let n = match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|b| *b == 0) {
                    let msg: Vec<u8> = buf.drain(..=end).collect();
                    let value = serde_json::from_slice(&msg[..msg.len() - 1])
                        .unwrap_or_else(|e| json!({ "unparsable": e.to_string() }));
                    if tx.send(value).is_err() {
                        return;
                    }
                }
            }
        });
        Browser {
            child,
            to_browser,
            from_browser: rx,
            next_id: 0,
            events: Vec::new(),
            dir,
        }
    }

    /// Sends a command; returns its id.
    fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> u64 {
        self.next_id += 1;
        let mut msg = json!({ "id": self.next_id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).expect("json");
        bytes.push(0);
        if let Err(e) = self.to_browser.write_all(&bytes) {
            panic!("writing to Chromium: {e}\n{}", self.diagnostics());
        }
        self.next_id
    }

    /// Waits for the replies to `ids` (in any order) until `deadline`.
    fn replies(&mut self, ids: &[u64], deadline: Instant) -> BTreeMap<u64, Value> {
        let mut out = BTreeMap::new();
        while out.len() < ids.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from_browser.recv_timeout(left) {
                Ok(msg) => match msg["id"].as_u64() {
                    Some(id) if ids.contains(&id) => {
                        out.insert(id, msg);
                    }
                    _ => self.events.push(msg),
                },
                Err(RecvTimeoutError::Timeout) => panic!(
                    "Chromium did not answer commands {ids:?} in time (got {:?})\n{}",
                    out.keys().collect::<Vec<_>>(),
                    self.diagnostics()
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("Chromium closed the pipe\n{}", self.diagnostics())
                }
            }
        }
        out
    }

    /// A command and its whole reply (`result` or `error`).
    fn try_call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let id = self.send(session, method, params);
        self.replies(&[id], Instant::now() + Duration::from_secs(15))
            .remove(&id)
            .unwrap_or_default()
    }

    /// A command and its result (panics on a protocol error).
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let reply = self.try_call(session, method, params);
        if reply.get("error").is_some() {
            panic!("{method} failed: {reply}\n{}", self.diagnostics());
        }
        reply["result"].clone()
    }

    /// Opens a new tab on `url`, attached; returns its session id.
    fn open(&mut self, url: &str) -> String {
        let target = self.call(None, "Target.createTarget", json!({ "url": url }));
        let target_id = target["targetId"].as_str().unwrap_or_default().to_string();
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        let session = attached["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in {attached}"))
            .to_string();
        self.call(Some(&session), "Runtime.enable", json!({}));
        session
    }

    /// Waits until the page of each session has published `window.corsDemo`, then awaits all of
    /// them at once; returns each page's report (parsed JSON), in order.
    fn await_reports(&mut self, sessions: &[&str]) -> Vec<Value> {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        // The tab starts on about:blank: poll until the demo's script has run (no navigation after).
        for session in sessions {
            loop {
                // An error here is the navigation replacing the context: try again.
                let r = self.try_call(
                    Some(session),
                    "Runtime.evaluate",
                    json!({ "expression": "typeof window.corsDemo", "returnByValue": true }),
                );
                if r["result"]["result"]["value"] == "object" {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the demo page never defined window.corsDemo\n{}",
                    self.diagnostics()
                );
                thread::sleep(Duration::from_millis(50));
            }
        }
        let ids: Vec<u64> = sessions
            .iter()
            .map(|s| {
                self.send(
                    Some(s),
                    "Runtime.evaluate",
                    json!({
                        "expression": "window.corsDemo.then((r) => JSON.stringify(r))",
                        "awaitPromise": true,
                        "returnByValue": true
                    }),
                )
            })
            .collect();
        let mut replies = self.replies(&ids, deadline);
        ids.iter()
            .map(|id| {
                let reply = replies.remove(id).unwrap_or_default();
                let text = reply["result"]["result"]["value"]
                    .as_str()
                    .unwrap_or_else(|| {
                        panic!(
                            "the page's report is not a string: {reply}\n{}",
                            self.diagnostics()
                        )
                    })
                    .to_string();
                serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("the page's report is not JSON ({e}): {text}"))
            })
            .collect()
    }

    /// Console messages, exceptions and Chromium's stderr tail.
    fn diagnostics(&mut self) -> String {
        while let Ok(msg) = self.from_browser.try_recv() {
            self.events.push(msg);
        }
        let mut s = String::from("--- page console / exceptions ---\n");
        for e in &self.events {
            match e["method"].as_str() {
                Some("Runtime.consoleAPICalled") => {
                    let args: Vec<String> = e["params"]["args"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| a["value"].to_string())
                        .collect();
                    s.push_str(&format!(
                        "console.{}: {}\n",
                        e["params"]["type"].as_str().unwrap_or("?"),
                        args.join(" ")
                    ));
                }
                Some("Runtime.exceptionThrown") => {
                    s.push_str(&format!("exception: {}\n", e["params"]["exceptionDetails"]));
                }
                _ => {}
            }
        }
        let err = std::fs::read_to_string(self.dir.join("chromium.err")).unwrap_or_default();
        let tail: Vec<&str> = err
            .lines()
            .filter(|l| !l.contains("dbus"))
            .rev()
            .take(30)
            .collect();
        s.push_str("--- chromium stderr (tail, dbus noise removed) ---\n");
        for l in tail.iter().rev() {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Browser.close is polite; kill is the guarantee.
        self.next_id += 1;
        let mut bytes =
            serde_json::to_vec(&json!({ "id": self.next_id, "method": "Browser.close" }))
                .unwrap_or_default();
        bytes.push(0);
        let _ = self.to_browser.write_all(&bytes);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
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

fn chromium_runs_the_demo_page_against_envoy() {
    // Fail first (and loudly) if there is no browser, before starting anything.
    let _ = chromium_bin();
    let page_port = serve_demo_page();
    let page_origin = format!("http://127.0.0.1:{page_port}");
    let envoy = EnvoyBuilder::new(demo_policy(&page_origin))
        .route(Route::new("public", "/public/").policy("public"))
        .route(Route::new("internal", "/internal/").policy("off"))
        .route(Route::new("forbidden", "/forbidden/").rbac_deny())
        .start();
    let target = format!("http://127.0.0.1:{}", envoy.port);

    let mut browser = Browser::launch();
    let allowed_url = format!("{page_origin}/?target={target}&expect=allowed");
    let disallowed_url =
        format!("http://localhost:{page_port}/?target={target}&expect=blocked&null=0");
    let allowed_tab = browser.open(&allowed_url);
    let disallowed_tab = browser.open(&disallowed_url);
    let reports = browser.await_reports(&[&allowed_tab, &disallowed_tab]);
    let (allowed, disallowed) = (&reports[0], &reports[1]);

    assert_eq!(allowed["origin"], json!(page_origin));
    assert_eq!(
        disallowed["origin"],
        json!(format!("http://localhost:{page_port}"))
    );
    let mut problems = check_column(allowed, "this origin", true);
    problems.extend(check_column(allowed, "origin null", false));
    problems.extend(check_column(disallowed, "this origin", false));
    assert!(
        problems.is_empty(),
        "the browser disagreed:\n  {}\nallowed page: {allowed:#}\ndisallowed page: {disallowed:#}",
        problems.join("\n  ")
    );
    let n = expected_outcomes().len();
    assert_eq!(allowed["passed"], json!(2 * n), "{allowed:#}");
    assert_eq!(disallowed["passed"], json!(n), "{disallowed:#}");

    // Counted at Envoy. Three runs of the scenarios: the allowed origin, Origin: null (iframe),
    // http://localhost:P. Preflights for the allowed origin: PUT, DELETE, JSON POST, and ONE for
    // the two identical max-age PUTs 5.5 s apart (a missing Access-Control-Max-Age would make it
    // two), plus one denied by method (PATCH) and one by header (x-not-allowed). The two
    // disallowed origins: 7 preflights each (failed preflights are never cached).
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
/// demo listener and the filter on its API listener, with the example policy (both
/// `http://127.0.0.1:<demo>` and `http://localhost:<demo>` allowed). Every scenario passes from
/// both, and fails closed from the page's sandboxed `Origin: null` iframe.
fn chromium_runs_the_demo_as_served_by_make_run() {
    let _ = chromium_bin();
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

    let target = format!("http://127.0.0.1:{api}");
    let mut browser = Browser::launch();
    // No query but the target: what a user gets, plus the API port rewrite.
    let first = browser.open(&format!("http://127.0.0.1:{demo}/?target={target}"));
    let second = browser.open(&format!("http://localhost:{demo}/?target={target}&null=0"));
    let reports = browser.await_reports(&[&first, &second]);
    let mut problems = check_column(&reports[0], "this origin", true);
    problems.extend(check_column(&reports[0], "origin null", false));
    problems.extend(check_column(&reports[1], "this origin", true));
    assert!(
        problems.is_empty(),
        "the browser disagreed:\n  {}\nreports: {reports:#?}",
        problems.join("\n  ")
    );

    // Two allowed origins, each: 4 preflights allowed (one for both max-age PUTs), 1 denied by
    // method, 1 by header; Origin null: 7 denied by origin.
    assert_counters_exactly(
        &envoy,
        &[
            ("cors.default.preflight_allowed", 8),
            ("cors.default.preflight_denied.method", 2),
            ("cors.default.preflight_denied.headers", 2),
            ("cors.default.preflight_denied.origin", 7),
            ("cors.default.actual_allowed", 18),
            ("cors.default.actual_denied", 4),
            ("cors.public.actual_allowed", 6),
        ],
    );
}

for_each_build! {
    chromium_runs_the_demo_page_against_envoy,
    chromium_runs_the_demo_as_served_by_make_run,
}
