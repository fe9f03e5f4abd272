//! Live policy reloads under continuous load (a policy that fails validation never
//! replaces a running one).
//!
//! Envoy reads its listener from a watched LDS file (`EnvoyBuilder::start_dynamic`); each update
//! rewrites it atomically (write + rename). A client thread sends preflights and actual requests
//! for three origins, one fresh connection each, the whole time. Every response must be a
//! correct answer of exactly one policy version, versions only move forward, and not one
//! request may fail.
//!
//! Needs `ENVOY_BIN` and `CORS_WASM` (`make test` exports both).

#[macro_use]
mod support;

use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};
use support::*;

const A: &str = "https://a.example.com";
const B: &str = "https://b.example.com";
const C: &str = "https://c.example.com";
const ORIGINS: [&str; 3] = [A, B, C];
const PREFLIGHT_VARY: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

/// The load never runs longer than this, nor sends more than `MAX_REQUESTS`.
const MAX_LOAD: Duration = Duration::from_secs(60);
const MAX_REQUESTS: usize = 20_000;

/// One response of the load, classified.
#[derive(Debug, Clone)]
struct Sample {
    origin: &'static str,
    preflight: bool,
    /// `Ok(allowed)` for a well-formed answer; `Err` for anything else.
    result: Result<bool, String>,
}

/// Checks a response exactly: an allowed or a denied answer of our filter, nothing else.
fn classify(origin: &str, preflight: bool, r: Result<Response, String>) -> Result<bool, String> {
    let r = r.map_err(|e| format!("request failed: {e}"))?;
    let acao = r.headers_all("access-control-allow-origin");
    let vary = r.headers_all("vary");
    let fail = |why: &str| Err(format!("{why}:\n{r}"));
    if preflight {
        if r.is_upstream_answer() || !r.body.is_empty() {
            return fail("preflight not answered locally");
        }
        if vary != [PREFLIGHT_VARY] {
            return fail("wrong Vary");
        }
        match r.status {
            204 if acao == [origin] => Ok(true),
            403 if r.cors_headers().is_empty() => Ok(false),
            _ => fail("unexpected preflight answer"),
        }
    } else {
        if r.status != 200 || !r.is_upstream_answer() || vary != ["Origin"] {
            return fail("unexpected actual answer");
        }
        match acao.as_slice() {
            [one] if one == origin => Ok(true),
            [] if r.cors_headers().is_empty() => Ok(false),
            _ => fail("wrong Access-Control-Allow-Origin"),
        }
    }
}

fn policy(origins: &[&str]) -> String {
    json!({ "allow_origins": origins }).to_string()
}

/// Which policy version allowed this origin (v1: A, v2: B, v3: C).
fn version_of(origin: &str) -> usize {
    ORIGINS
        .iter()
        .position(|o| *o == origin)
        .unwrap_or(usize::MAX)
        + 1
}

/// Waits until the load has produced `more` further samples (bounded by the load's own limits).
fn wait_for_samples(samples: &Mutex<Vec<Sample>>, done: &AtomicBool, more: usize) {
    let target = samples.lock().unwrap().len() + more;
    let deadline = Instant::now() + Duration::from_secs(30);
    while samples.lock().unwrap().len() < target {
        assert!(
            Instant::now() < deadline && !done.load(Ordering::Relaxed),
            "the load stalled"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

fn policy_reloads_under_load() {
    let envoy = EnvoyBuilder::new(policy(&[A])).start_dynamic();
    let port = envoy.port;
    let stop = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let samples: Mutex<Vec<Sample>> = Mutex::new(Vec::new());
    // Indices into `samples` where each phase was known to hold.
    let mut marks = Vec::new();

    thread::scope(|scope| {
        scope.spawn(|| {
            let started = Instant::now();
            for i in 0..MAX_REQUESTS {
                if stop.load(Ordering::Relaxed) || started.elapsed() > MAX_LOAD {
                    break;
                }
                let origin = ORIGINS[i % 3];
                let preflight = (i / 3) % 2 == 0;
                let req = if preflight {
                    Req::preflight("/api", origin, "GET")
                } else {
                    Req::get("/api").origin(origin)
                };
                let result = classify(origin, preflight, req.try_send(port));
                samples.lock().unwrap().push(Sample {
                    origin,
                    preflight,
                    result,
                });
            }
            done.store(true, Ordering::Relaxed);
        });

        wait_for_samples(&samples, &done, 60);

        // v2: a valid new policy, applied under load.
        assert!(
            envoy.update_policy(&policy(&[B])),
            "v2 rejected:\n{}",
            envoy.log()
        );
        marks.push(samples.lock().unwrap().len());
        wait_for_samples(&samples, &done, 60);

        // An invalid policy: rejected, with each error and its path in the log.
        let bad = json!({
            "allow_origins": [C, "https://*.com", "HTTP://Upper.example"],
            "max_age": 100000
        })
        .to_string();
        let rejected_before = envoy
            .stats(r"^listener_manager\.lds\.update_rejected$")
            .values()
            .sum::<u64>();
        assert!(!envoy.update_policy(&bad), "an invalid policy was accepted");
        let rejected_after = envoy
            .stats(r"^listener_manager\.lds\.update_rejected$")
            .values()
            .sum::<u64>();
        assert_eq!(rejected_after, rejected_before + 1, "update_rejected");
        wait_for_samples(&samples, &done, 120);
        marks.push(samples.lock().unwrap().len());

        // v3: valid again, after the rejected one.
        assert!(
            envoy.update_policy(&policy(&[C])),
            "v3 rejected:\n{}",
            envoy.log()
        );
        marks.push(samples.lock().unwrap().len());
        wait_for_samples(&samples, &done, 60);
        stop.store(true, Ordering::Relaxed);
    });

    let samples = samples.into_inner().unwrap();
    let failures: Vec<String> = samples
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.result.as_ref().err().map(|e| format!("#{i} {s:?}: {e}")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed:\n{}",
        failures.len(),
        samples.len(),
        failures
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Versions only move forward: every response, allowed or denied, is the exact answer of one
    // version (allowed origin X: X's version; denied X: any other), and there is a
    // non-decreasing assignment of versions to the responses in order. Greedy: stay on the
    // current version while it explains the response, else move to the next one that does.
    let explains = |s: &Sample, v: usize| (s.result == Ok(true)) == (version_of(s.origin) == v);
    let mut current = 1;
    let mut first_of = [None; 4];
    for (i, s) in samples.iter().enumerate() {
        if !explains(s, current) {
            current = (current + 1..=3)
                .find(|&v| explains(s, v))
                .unwrap_or_else(|| panic!("#{i} {s:?}: no version from v{current} on explains it"));
        }
        first_of[current].get_or_insert(i);
    }
    assert_eq!(current, 3, "the load did not end under v3");
    // Phase by phase: v2 from when it was accepted (one request may still have been in flight)
    // until v3 was pushed, through the rejected update; v3 soon after it was accepted, to the end.
    let expect = |range: std::ops::Range<usize>, v: usize| {
        for i in range {
            assert!(
                explains(&samples[i], v),
                "#{i} {:?} is not v{v}'s answer",
                samples[i]
            );
        }
    };
    expect(marks[0] + 1..marks[1], 2);
    let last = samples.len();
    expect(marks[2] + 1..last, 3);
    assert!(last - marks[2] >= 50, "too few samples under v3");
    let (first_v2, first_v3) = (first_of[2].unwrap_or(last), first_of[3].unwrap_or(last));
    assert!(
        samples.iter().filter(|s| s.preflight).count() > 100
            && samples.iter().filter(|s| !s.preflight).count() > 100,
        "the load did not mix preflights and actual requests"
    );

    // The rejection was logged with every error at its path.
    let log = envoy.log_containing("policy rejected with", Duration::from_secs(2));
    for line in [
        "cors-proxy-wasm: invalid policy: allow_origins[1]: \"https://*.com\": a wildcard must leave at least two labels",
        "cors-proxy-wasm: invalid policy: allow_origins[2]: \"HTTP://Upper.example\"",
        "cors-proxy-wasm: invalid policy: max_age:",
        "cors-proxy-wasm: policy rejected with 3 error(s)",
    ] {
        assert!(log.contains(line), "log lacks {line:?}:\n{log}");
    }
    eprintln!(
        "reload under load: {} requests, 0 failed; v2 first served at #{first_v2} (accepted at #{}), \
         rejected update during #{}..#{}, v3 first served at #{first_v3}",
        samples.len(),
        marks[0],
        marks[0],
        marks[1]
    );
}

for_each_build! {
    policy_reloads_under_load,
}
