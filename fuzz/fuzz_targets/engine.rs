//! The whole request path on arbitrary request bytes: policy selection (route metadata,
//! rules on route / virtual host / host / path prefix, default), the decision, the response
//! edits and the debug description.
//!
//! Input: lines. The first is the method; `name:value` lines set request headers (names
//! compared case-insensitively, repeated ones joined with `,` as the filter does), the pseudo
//! headers `:authority`/`:path`, the route facts `@meta`/`@istio`/`@route`/`@vhost`; `<name:value`
//! lines are response headers.
#![no_main]

use std::sync::OnceLock;

use cors_engine::engine::{self, Action, AllowOrigin, HeaderEdit, Request, ResponsePlan, ACAO};
use cors_engine::policy::{self, Config, Mode};
use cors_engine::routing::{self, Reason, RouteFact, RouteFacts, Selection};
use libfuzzer_sys::fuzz_target;

/// The full-form policy both whole-path targets run (every field, every rule key).
const DOC: &str = include_str!("../policy.json");

fn config() -> &'static Config {
    static C: OnceLock<Config> = OnceLock::new();
    C.get_or_init(|| policy::load(DOC).map(|l| l.config).unwrap())
}

#[derive(Default)]
struct Parsed<'a> {
    method: &'a [u8],
    request: Vec<(Vec<u8>, &'a [u8])>,
    response: Vec<(Vec<u8>, &'a [u8])>,
}

impl<'a> Parsed<'a> {
    fn parse(data: &'a [u8]) -> Self {
        let mut lines = data.split(|&b| b == b'\n');
        let mut parsed = Parsed {
            method: lines.next().unwrap_or_default(),
            ..Parsed::default()
        };
        for line in lines {
            let (target, line) = match line.strip_prefix(b"<") {
                // Envoy's header maps never hold CR, LF or NUL in a value.
                Some(rest) if rest.iter().any(|&b| b == b'\r' || b == 0) => continue,
                Some(rest) => (&mut parsed.response, rest),
                None => (&mut parsed.request, line),
            };
            // The name may start with ':' (pseudo header) or '@' (route fact).
            let search_from = usize::from(line.first() == Some(&b':'));
            let Some(colon) = line[search_from..].iter().position(|&b| b == b':') else {
                continue;
            };
            let colon = colon + search_from;
            target.push((line[..colon].to_ascii_lowercase(), &line[colon + 1..]));
        }
        parsed
    }

    /// The filter's `HeaderMap::get`: repeated values joined with `,`.
    fn get(&self, name: &[u8]) -> Option<Vec<u8>> {
        let mut values = self
            .request
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| *v);
        let first = values.next()?;
        let mut joined = first.to_vec();
        for value in values {
            joined.push(b',');
            joined.extend_from_slice(value);
        }
        Some(joined)
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 64 * 1024 {
        return;
    }
    let config = config();
    let parsed = Parsed::parse(data);
    let meta = parsed.get(b"@meta");
    let route = parsed.get(b"@route");
    let vhost = parsed.get(b"@vhost");
    let istio = parsed.get(b"@istio");
    let authority = parsed.get(b":authority");
    let path = parsed.get(b":path");
    let _ = routing::authority_host(authority.as_deref().unwrap_or_default());
    let mut facts = RouteFacts::known()
        .with_optional(RouteFact::MetadataPolicy, meta.as_deref())
        .with_optional(RouteFact::RouteName, route.as_deref())
        .with_optional(RouteFact::VirtualHost, vhost.as_deref())
        .with_optional(RouteFact::IstioConfig, istio.as_deref())
        .with_optional(RouteFact::Authority, authority.as_deref())
        .with_optional(RouteFact::Path, path.as_deref());
    let choice = config.select(&mut facts);
    // The reason agrees with the choice.
    match choice.reason {
        Reason::RouteMetadata => assert!(meta.is_some()),
        Reason::Rule(n) => assert_eq!(
            choice.selection,
            config.rules[n]
                .policy
                .map_or(Selection::Untouched, Selection::Policy)
        ),
        Reason::Default => assert_eq!(choice.selection, Selection::Policy(0)),
        Reason::Nothing => unreachable!("the document has a default"),
    }
    let selection = choice.selection;
    let origin = parsed.get(b"origin");
    let acrm = parsed.get(b"access-control-request-method");
    let acrh = parsed.get(b"access-control-request-headers");
    let acrpn = parsed.get(b"access-control-request-private-network");
    let request = Request {
        method: parsed.method,
        origin: origin.as_deref(),
        acrm: acrm.as_deref(),
        acrh: acrh.as_deref(),
        acrpn: acrpn.as_deref(),
    };
    let outcome = engine::decide(config, &selection, &request);
    let _ = engine::describe(config, &request, &outcome);
    let policy = outcome.policy.and_then(|i| config.policy(i));
    if policy.is_some_and(|p| p.mode == Mode::Report) {
        assert_eq!(
            outcome.action,
            Action::Untouched,
            "report mode changed something"
        );
    }
    let response: Vec<(&[u8], &[u8])> = parsed
        .response
        .iter()
        .map(|(n, v)| (n.as_slice(), *v))
        .collect();
    match &outcome.action {
        Action::Untouched => {}
        Action::Reply(reply) => {
            assert!(request.is_preflight(), "a local reply to a non-preflight");
            let allowed = policy.is_some_and(|p| reply.status == p.preflight_status);
            assert!(allowed || reply.status == 403, "status {}", reply.status);
            let has_acao = reply.headers.iter().any(|(n, _)| *n == ACAO);
            if reply.status == 403 {
                assert!(
                    !reply
                        .headers
                        .iter()
                        .any(|(n, _)| n.starts_with("access-control-allow-")),
                    "a 403 with allow headers: {reply:?}"
                );
            } else {
                assert!(has_acao, "an allowed preflight without ACAO: {reply:?}");
            }
            for (name, value) in &reply.headers {
                assert!(
                    !value.contains(&b'\n') && !value.contains(&b'\r'),
                    "{name}: {value:?}"
                );
            }
        }
        Action::Forward(plan) => {
            if let ResponsePlan::Cors {
                allow_origin: Some(AllowOrigin::Echo(echoed)),
                ..
            } = plan
            {
                assert_eq!(
                    Some(echoed.as_slice()),
                    request.origin,
                    "echoed another origin"
                );
            }
            let allowed = matches!(
                plan,
                ResponsePlan::Cors {
                    allow_origin: Some(_),
                    ..
                }
            );
            for edit in engine::response_edits(config, plan, &response) {
                match edit {
                    HeaderEdit::Set(name, value) => {
                        assert!(allowed || !name.starts_with("access-control-"), "{name}");
                        assert!(!value.contains(&b'\n') && !value.contains(&b'\r'));
                    }
                    HeaderEdit::Remove(name) => {
                        assert!(name.starts_with(b"access-control-"), "{name:?}");
                    }
                }
            }
        }
    }
});
