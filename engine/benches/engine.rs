//! Decision time of the pure engine (no proxy): policy selection + decision for preflights and
//! actual requests at 1, 1,000 and 10,000 allowed origins, adversarial `Access-Control-Request-Headers`,
//! the response edits of an allowed actual request, and `policy::load` of a 10,000-origin policy
//! (what `on_configure` does, natively).
//!
//! `cargo bench --bench engine` (the `bench` profile inherits the release profile: opt-level s,
//! as shipped). The policy is the one `bench/run.py` gives Envoy.

use std::hint::black_box;
use std::time::Duration;

use cors_engine::engine::{self, Request};
use cors_engine::policy::{self, Config};
use cors_engine::routing::{RouteFact, RouteFacts};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

const ALLOWED: &[u8] = b"https://app.example.com";
const DENIED: &[u8] = b"https://evil.example.org";
const SIZES: [usize; 3] = [1, 1_000, 10_000];

/// `n` exact origins, the allowed one in the middle (as in bench/run.py).
fn policy_json(n: usize) -> String {
    let mut origins: Vec<String> = (0..n)
        .map(|i| format!("\"https://app-{i:05}.example.com\""))
        .collect();
    origins[n / 2] = format!("\"{}\"", String::from_utf8_lossy(ALLOWED));
    format!(
        r#"{{"allow_origins": [{}], "allow_methods": ["GET", "PUT", "POST"], "allow_headers": ["content-type"], "max_age": 600}}"#,
        origins.join(",")
    )
}

fn load(document: &str) -> Config {
    match policy::load(document) {
        Ok(loaded) => loaded.config,
        Err(rejected) => panic!("bench policy rejected: {:?}", rejected.errors),
    }
}

fn config(n: usize) -> Config {
    load(&policy_json(n))
}

/// Selection + decision, what the filter does per request between reading and writing headers.
fn decide<'a>(config: &'a Config, request: &Request<'a>) -> engine::Outcome<'a> {
    // A route with no metadata and no route/vhost properties (what the short form reads).
    let mut facts = RouteFacts::known()
        .with(RouteFact::Authority, "api.example.com")
        .with(RouteFact::Path, "/api/items");
    let selection = config.select(&mut facts).selection;
    engine::decide(config, &selection, request)
}

fn preflight(origin: &[u8], acrh: Option<&'static [u8]>) -> Request<'static> {
    Request {
        method: b"OPTIONS",
        origin: Some(if origin == ALLOWED { ALLOWED } else { DENIED }),
        acrm: Some(b"PUT"),
        acrh,
        acrpn: None,
    }
}

fn actual(origin: Option<&'static [u8]>) -> Request<'static> {
    Request {
        method: b"GET",
        origin,
        acrm: None,
        acrh: None,
        acrpn: None,
    }
}

fn decisions(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in SIZES {
        let config = config(n);
        let cases = [
            (
                "preflight_allowed",
                preflight(ALLOWED, Some(b"content-type")),
            ),
            ("preflight_denied", preflight(DENIED, Some(b"content-type"))),
            ("actual_allowed", actual(Some(ALLOWED))),
            ("actual_denied", actual(Some(DENIED))),
            ("non_cors", actual(None)),
        ];
        for (name, request) in cases {
            group.bench_with_input(BenchmarkId::new(name, n), &request, |b, request| {
                b.iter(|| decide(&config, black_box(request)))
            });
        }
    }
    group.finish();
}

fn adversarial(c: &mut Criterion) {
    let mut group = c.benchmark_group("adversarial_acrh");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let config = config(10_000);
    // 50 KB of commas and blanks: every element empty (allowed, nothing to echo).
    let commas: &'static [u8] = ", ".repeat(25_000).into_bytes().leak();
    // 50 KB of allowed names, each repeated (allowed).
    let names: &'static [u8] = "content-type,".repeat(50_000 / 13).into_bytes().leak();
    // 50 KB of commas, then one refused name at the end.
    let refused: &'static [u8] = format!("{}x-refused", ",".repeat(50_000))
        .into_bytes()
        .leak();
    for (name, acrh) in [
        ("comma_storm_50KB", commas),
        ("repeated_names_50KB", names),
        ("commas_then_refused_50KB", refused),
    ] {
        let request = preflight(ALLOWED, Some(acrh));
        group.bench_function(name, |b| b.iter(|| decide(&config, black_box(&request))));
    }
    // `allow_headers: ["*"]` with credentials echoes the requested names, de-duplicated.
    let echo = load(&format!(
        r#"{{"allow_origins": ["{}"], "allow_credentials": true, "allow_methods": ["PUT"], "allow_headers": ["*"]}}"#,
        String::from_utf8_lossy(ALLOWED)
    ));
    // 50 KB of one short name repeated, and 50 KB of distinct names (x-0, x-1, …).
    let repeated: &'static [u8] = "a,".repeat(25_000).into_bytes().leak();
    let mut distinct = String::new();
    for i in 0.. {
        if distinct.len() >= 50_000 {
            break;
        }
        distinct.push_str(&format!("x-{i},"));
    }
    let distinct: &'static [u8] = distinct.into_bytes().leak();
    for (name, acrh) in [
        ("echo_repeated_name_50KB", repeated),
        ("echo_distinct_names_50KB", distinct),
    ] {
        let request = preflight(ALLOWED, Some(acrh));
        let engine::Action::Reply(reply) = decide(&echo, &request).action else {
            panic!("{name}: an allowed preflight is answered locally");
        };
        assert_eq!(reply.status, 204, "{name}: allowed");
        group.bench_function(name, |b| b.iter(|| decide(&echo, black_box(&request))));
    }
    group.finish();
}

fn response(c: &mut Criterion) {
    let mut group = c.benchmark_group("response_edits");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    let config = config(10_000);
    let outcome = decide(&config, &actual(Some(ALLOWED)));
    let engine::Action::Forward(plan) = outcome.action else {
        panic!("an allowed actual request goes upstream");
    };
    let headers: [(&[u8], &[u8]); 5] = [
        (b":status", b"200"),
        (b"content-type", b"application/json"),
        (b"content-length", b"13"),
        (b"date", b"Mon, 24 Nov 2025 08:00:00 GMT"),
        (b"server", b"envoy"),
    ];
    group.bench_function("actual_allowed", |b| {
        b.iter(|| engine::response_edits(&config, black_box(&plan), black_box(&headers)))
    });
    group.finish();
}

fn configure(c: &mut Criterion) {
    let mut group = c.benchmark_group("policy_load");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for n in [1_000, 10_000] {
        let json = policy_json(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &json, |b, json| {
            b.iter(|| policy::load(black_box(json)).is_ok())
        });
    }
    group.finish();
}

criterion_group!(benches, decisions, adversarial, response, configure);
criterion_main!(benches);
