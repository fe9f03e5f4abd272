//! Origin patterns (docs/policy.md, *Origin patterns*) and request-origin matching.
//!
//! Input: `pattern \n origin`. The pattern text goes through `parse_pattern`, then a matcher
//! built from it (plus a fixed set of wildcard patterns) is asked about the origin bytes.
//! Oracles: no panic; an accepted exact pattern matches its own text; nothing with a comma,
//! whitespace or a control byte ever matches; a regex is matched only as a full match.
#![no_main]

use std::sync::OnceLock;

use cors_engine::policy::origin::{
    compile_regex, has_suspicious_dot, parse_pattern, OriginMatcher, OriginPattern,
};
use libfuzzer_sys::fuzz_target;

const FIXED: &[&str] = &[
    "https://app.example.com",
    "https://*.example.com",
    "https://*.a.b.example.org:8443",
    "http://localhost:*",
    "http://127.0.0.1:*",
    "http://[::1]:*",
    "null",
];

fn fixed() -> &'static OriginMatcher {
    static M: OnceLock<OriginMatcher> = OnceLock::new();
    M.get_or_init(|| {
        let patterns: Vec<OriginPattern> =
            FIXED.iter().filter_map(|p| parse_pattern(p).ok()).collect();
        assert_eq!(
            patterns.len(),
            FIXED.len(),
            "a fixed pattern no longer parses"
        );
        let regexes = vec![compile_regex(r"https://[a-z0-9-]+\.regex\.example").unwrap()];
        OriginMatcher::new(&patterns, regexes)
    })
}

fn never_matchable(origin: &[u8]) -> bool {
    origin.is_empty()
        || origin
            .iter()
            .any(|&b| b == b',' || b.is_ascii_whitespace() || b.is_ascii_control())
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 4096 {
        return;
    }
    let (pattern, origin) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, data),
    };

    let matched = fixed().matches(origin);
    if matched {
        assert!(!never_matchable(origin), "matched {origin:?}");
    }

    let Ok(text) = std::str::from_utf8(pattern) else {
        return;
    };
    let _ = has_suspicious_dot(text);
    if text.len() <= 200 {
        if let Ok(re) = compile_regex(text) {
            let m = OriginMatcher::new(&[], vec![re]);
            if m.matches(origin) {
                assert!(!never_matchable(origin));
            }
        }
    }
    if let Ok(parsed) = parse_pattern(text) {
        let own = OriginMatcher::new(std::slice::from_ref(&parsed), Vec::new());
        match &parsed {
            OriginPattern::Exact(exact) => {
                assert_eq!(exact, text, "an exact pattern is stored as written");
                assert!(
                    own.matches(text.as_bytes()),
                    "{text:?} does not match itself"
                );
            }
            OriginPattern::Null => assert!(own.matches(b"null")),
            OriginPattern::Any => assert!(own.matches(b"https://x.example")),
            _ => {}
        }
        if own.matches(origin) {
            assert!(!never_matchable(origin), "{text:?} matched {origin:?}");
            if !matches!(parsed, OriginPattern::Any) {
                let has_scheme = origin.windows(3).any(|w| w == b"://");
                assert!(
                    has_scheme || origin == b"null",
                    "{text:?} matched {origin:?}"
                );
            }
        }
    }
});
