//! Policy documents (docs/policy.md, with every validation rule) through `policy::load`, as `on_configure` does:
//! arbitrary bytes, decoded lossily. Oracles: no panic; a rejection names at least one error,
//! each with a message; loading is deterministic; an accepted document decides requests
//! under every policy it defines without panicking.
#![no_main]

use cors_engine::engine::{self, Action, Request};
use cors_engine::policy;
use cors_engine::routing::Selection;
use libfuzzer_sys::fuzz_target;

const ORIGINS: [&[u8]; 4] = [
    b"https://app.example.com",
    b"null",
    b"http://localhost:8080",
    b"x",
];

fuzz_target!(|data: &[u8]| {
    if data.len() > 16 * 1024 {
        return;
    }
    let text = String::from_utf8_lossy(data);
    match policy::load(&text) {
        Err(rejected) => {
            assert!(!rejected.errors.is_empty(), "rejected without an error");
            for problem in rejected.errors.iter().chain(&rejected.warnings) {
                assert!(!problem.message.is_empty(), "{problem:?}");
                let _ = problem.to_string();
            }
            assert_eq!(
                policy::load(&text).err(),
                Some(rejected),
                "not deterministic"
            );
        }
        Ok(loaded) => {
            let config = &loaded.config;
            assert!(loaded.warnings.iter().all(|w| !w.message.is_empty()));
            for index in 0..config.policies.len() {
                let selection = Selection::Policy(index);
                for origin in ORIGINS {
                    for request in [
                        Request {
                            method: b"GET",
                            origin: Some(origin),
                            ..Request::default()
                        },
                        Request {
                            method: b"OPTIONS",
                            origin: Some(origin),
                            acrm: Some(b"PUT"),
                            acrh: Some(b"content-type, x-custom, authorization"),
                            acrpn: Some(b"true"),
                        },
                    ] {
                        let outcome = engine::decide(config, &selection, &request);
                        if let Action::Forward(plan) = &outcome.action {
                            let _ = engine::response_edits(
                                config,
                                plan,
                                &[(b"vary".as_slice(), b"accept".as_slice())],
                            );
                        }
                        let _ = engine::describe(config, &request, &outcome);
                    }
                }
            }
        }
    }
});
