//! The request path both hosts run (`cors_engine::filter`), its request and response hooks on
//! arbitrary header maps, through the in-memory host (`cors_engine::mock`): whatever the bytes, the hooks return, a stopped request
//! sent exactly one local reply (and its response is left alone), a forwarded one sent none,
//! every edit names a lower-case header, and the counters bumped were defined.
//!
//! Input: lines. `name:value` lines are request headers (any bytes, names lower-cased as Envoy
//! hands them over, repeated ones kept apart), `<name:value` response headers, and the route
//! facts `@meta:` (`cors.policy`), `@istio:` (`istio.config`), `@route:`, `@vhost:`.
#![no_main]

use std::sync::OnceLock;

use cors_engine::filter::{Next, State, Stream};
use cors_engine::mock::MockHost;
use libfuzzer_sys::fuzz_target;

/// The full-form policy both whole-path targets run (every field, every rule key).
const DOC: &str = include_str!("../policy.json");

/// The loaded state and how many counters it defined.
fn state() -> &'static (State<usize>, usize) {
    static S: OnceLock<(State<usize>, usize)> = OnceLock::new();
    S.get_or_init(|| {
        let mut defined = 0;
        let state = State::load(DOC.as_bytes(), |_| {
            defined += 1;
            Some(defined - 1)
        })
        .unwrap_or_else(|_| panic!("the fuzz policy loads"));
        (state, defined)
    })
}

fn host(data: &[u8]) -> MockHost {
    let mut host = MockHost::default();
    for line in data.split(|&b| b == b'\n') {
        let (response, line) = match line.strip_prefix(b"<") {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        // The name may start with ':' (a pseudo header).
        let from = usize::from(line.first() == Some(&b':'));
        let Some(colon) = line[from..].iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (
            line[..from + colon].to_ascii_lowercase(),
            line[from + colon + 1..].to_vec(),
        );
        match (response, name.as_slice()) {
            (false, b"@meta") => host
                .route_metadata
                .push(("cors".into(), "policy".into(), value)),
            (false, b"@istio") => {
                host.route_metadata
                    .push(("istio".into(), "config".into(), value))
            }
            (false, b"@route") => host.route_name = Some(value),
            (false, b"@vhost") => host.virtual_host = Some(value),
            (false, _) => host.request.push((name, value)),
            (true, _) => host.response.push((name, value)),
        }
    }
    host
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 64 * 1024 {
        return;
    }
    let (state, defined) = state();
    let host = host(data);
    let filter = Stream::default();
    let next = filter.on_request_headers(state, &host);
    let replies = host.record.borrow().replies.len();
    match next {
        Next::Stop => assert_eq!(replies, 1, "a stopped request sends one reply"),
        Next::Continue => assert_eq!(replies, 0, "a forwarded request sends none"),
    }
    filter.on_response_headers(state, &host);
    let record = host.record.borrow();
    if next == Next::Stop {
        assert!(
            record.edits.is_empty(),
            "our own reply is not decorated twice"
        );
        let status = record.replies[0].0;
        assert!(matches!(status, 200 | 204 | 403), "status {status}");
    }
    for (name, _) in &record.edits {
        assert!(
            !name.is_empty() && !name.iter().any(u8::is_ascii_uppercase),
            "{name:?}"
        );
    }
    assert!(record.increments.iter().all(|id| id < defined));
    assert!(record.increments.len() <= 1, "one counter per request");
});
