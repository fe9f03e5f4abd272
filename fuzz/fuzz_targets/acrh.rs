//! `Access-Control-Request-Headers` parsing through the engine (the preflight's headers check).
//!
//! Input: one selector byte (which policy), then the raw ACRH value. An allowed preflight with
//! that ACRH is decided and compared with a straightforward reference: split on `,`, trim
//! spaces and tabs, skip empty elements; every name must be a token and allowed.
#![no_main]

use std::sync::OnceLock;

use cors_engine::engine::{self, Action, Request, ACAH, ACAO};
use cors_engine::policy::{self, token::is_token, Config};
use cors_engine::routing::Selection;
use libfuzzer_sys::fuzz_target;

const DOC: &str = r#"{
  "default": { "allow_origins": ["https://app.example.com"], "allow_methods": ["PUT"],
               "allow_headers": ["content-type", "x-requested-with"] },
  "policies": {
    "star":      { "allow_origins": ["https://app.example.com"], "allow_headers": ["*"] },
    "star_auth": { "allow_origins": ["https://app.example.com"], "allow_headers": ["*", "authorization"] },
    "echo":      { "allow_origins": ["https://app.example.com"], "allow_headers": ["*"],
                   "allow_credentials": true },
    "none":      { "allow_origins": ["https://app.example.com"] }
  }
}"#;

const NAMES: [&str; 5] = ["default", "star", "star_auth", "echo", "none"];

fn config() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| policy::load(DOC).map(|l| l.config).unwrap())
}

fn reference_allows(name: &str, acrh: &[u8]) -> bool {
    acrh.split(|&b| b == b',')
        .map(|e| {
            let start = e
                .iter()
                .position(|&b| b != b' ' && b != b'\t')
                .unwrap_or(e.len());
            let end = e
                .iter()
                .rposition(|&b| b != b' ' && b != b'\t')
                .map_or(start, |i| i + 1);
            &e[start..end]
        })
        .filter(|e| !e.is_empty())
        .all(|e| {
            let lower = e.to_ascii_lowercase();
            is_token(e)
                && match name {
                    "default" => lower == b"content-type" || lower == b"x-requested-with",
                    "star" | "echo" => lower != b"authorization",
                    "star_auth" => true,
                    _ => false,
                }
        })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, acrh)) = data.split_first() else {
        return;
    };
    let name = NAMES[usize::from(selector) % NAMES.len()];
    let config = config();
    let index = config.by_name[name];
    let request = Request {
        method: b"OPTIONS",
        origin: Some(b"https://app.example.com"),
        acrm: Some(b"GET"),
        acrh: Some(acrh),
        acrpn: None,
    };
    let outcome = engine::decide(config, &Selection::Policy(index), &request);
    let Action::Reply(reply) = &outcome.action else {
        panic!("a preflight under enforce/reject must get a local reply: {outcome:?}");
    };
    let header = |n: &str| reply.headers.iter().find(|(h, _)| *h == n).map(|(_, v)| v);
    let allowed = reply.status == 204;
    assert!(allowed || reply.status == 403, "status {}", reply.status);
    assert_eq!(
        allowed,
        reference_allows(name, acrh),
        "{name} {acrh:?} -> {reply:?}"
    );
    if !allowed {
        assert!(header(ACAO).is_none());
        assert!(header(ACAH).is_none());
        return;
    }
    assert_eq!(
        header(ACAO).map(AsRef::as_ref),
        Some(b"https://app.example.com".as_slice())
    );
    if let Some(value) = header(ACAH) {
        assert!(!value.is_empty());
        if name == "echo" {
            // Echoed names: lower case, deduplicated tokens, every one requested.
            let requested = acrh.to_ascii_lowercase();
            let mut seen = std::collections::HashSet::new();
            for element in value.split(|&b| b == b',') {
                let element = element.strip_prefix(b" ").unwrap_or(element);
                assert!(is_token(element), "{value:?}");
                assert!(!element.iter().any(u8::is_ascii_uppercase), "{value:?}");
                assert!(seen.insert(element.to_vec()), "duplicate in {value:?}");
                assert!(requested.windows(element.len()).any(|w| w == element));
            }
        }
    }
});
