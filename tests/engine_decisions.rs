//! The engine's decisions (docs/policy.md, docs/routing.md): which policy a request gets, and exactly what the
//! request and its response get.

use cors_engine::engine::{
    self, Action, AllowOrigin, Counter, DenyReason, HeaderEdit, LocalReply, Request, ResponsePlan,
};
use cors_engine::policy::{self, Config};
use cors_engine::routing::{
    self, Choice, FactSource, Known, Reason, RouteFact, RouteFacts, Selection,
};
use std::borrow::Cow;

mod fixtures;
use fixtures::FULL_FORM;

fn config(document: &str) -> Config {
    match policy::load(document) {
        Ok(loaded) => loaded.config,
        Err(rejected) => panic!("invalid test policy: {:?}", rejected.errors),
    }
}

/// Known route facts that record which ones selection read, in order (each read is a host call
/// in the filter).
struct Recording {
    known: Known<'static>,
    reads: Vec<&'static str>,
}

impl FactSource<'static> for Recording {
    fn read(&mut self, fact: RouteFact) -> Option<Cow<'static, [u8]>> {
        self.reads.push(match fact {
            RouteFact::MetadataPolicy => "metadata",
            RouteFact::RouteName => "route",
            RouteFact::VirtualHost => "vhost",
            RouteFact::IstioConfig => "istio_config",
            RouteFact::Authority => "authority",
            RouteFact::Path => "path",
        });
        self.known.read(fact)
    }
}

fn recording(known: Known<'static>) -> RouteFacts<'static, Recording> {
    RouteFacts::new(Recording {
        known,
        reads: Vec::new(),
    })
}

/// Route facts with only the route name.
fn route(name: &'static str) -> RouteFacts<'static, Known<'static>> {
    RouteFacts::known().with(RouteFact::RouteName, name)
}

fn given() -> RouteFacts<'static, Known<'static>> {
    RouteFacts::known()
}

const APP: &str = "https://app.example.com";

fn preflight<'a>(origin: &'a str, method: &'a str, headers: Option<&'a str>) -> Request<'a> {
    Request {
        method: b"OPTIONS",
        origin: Some(origin.as_bytes()),
        acrm: Some(method.as_bytes()),
        acrh: headers.map(str::as_bytes),
        acrpn: None,
    }
}

fn actual<'a>(method: &'a str, origin: Option<&'a str>) -> Request<'a> {
    Request {
        method: method.as_bytes(),
        origin: origin.map(str::as_bytes),
        ..Request::default()
    }
}

fn decide_default<'a>(config: &'a Config, request: &Request<'a>) -> engine::Outcome<'a> {
    engine::decide(config, &Selection::Policy(0), request)
}

fn reply(status: u16, headers: &[(&'static str, &str)]) -> Action<'static> {
    Action::Reply(LocalReply {
        status,
        headers: headers
            .iter()
            .map(|(n, v)| (*n, Cow::Owned(v.as_bytes().to_vec())))
            .collect(),
    })
}

const PREFLIGHT_VARY: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

// ---------------------------------------------------------------------------------------------
// Choosing the policy (docs/routing.md)

fn index(config: &Config, name: &str) -> Selection {
    Selection::Policy(config.by_name[name])
}

fn chose(selection: Selection, reason: Reason) -> Choice {
    Choice { selection, reason }
}

#[test]
fn route_metadata_wins_over_rules() {
    let config = config(FULL_FORM);
    let mut facts = recording(
        Known::default()
            .with(RouteFact::MetadataPolicy, "public")
            .with(RouteFact::RouteName, "partner-api"),
    );
    assert_eq!(
        config.select(&mut facts),
        chose(index(&config, "public"), Reason::RouteMetadata)
    );
    assert_eq!(
        facts.source().reads,
        ["metadata"],
        "rules are not evaluated"
    );

    let mut facts = given().with(RouteFact::MetadataPolicy, "default");
    assert_eq!(
        config.select(&mut facts),
        chose(index(&config, "default"), Reason::RouteMetadata)
    );

    let mut facts = given().with(RouteFact::MetadataPolicy, "off");
    assert_eq!(
        config.select(&mut facts),
        chose(Selection::Untouched, Reason::RouteMetadata)
    );

    let mut facts = given().with(RouteFact::MetadataPolicy, "partnr");
    assert_eq!(
        config.select(&mut facts),
        chose(
            Selection::Unknown(b"partnr".to_vec()),
            Reason::RouteMetadata
        )
    );
    let mut facts = given().with(RouteFact::MetadataPolicy, b"\xffbad");
    assert_eq!(
        config.select(&mut facts),
        chose(
            Selection::Unknown(b"\xffbad".to_vec()),
            Reason::RouteMetadata
        )
    );
}

#[test]
fn rules_in_order_then_default() {
    let config = config(FULL_FORM);
    let authority = |host: &'static str| given().with(RouteFact::Authority, host);
    let cases: Vec<(RouteFacts<Known>, Choice)> = vec![
        (
            route("partner-api"),
            chose(index(&config, "partner"), Reason::Rule(0)),
        ),
        (
            authority("static.example.com"),
            chose(index(&config, "public"), Reason::Rule(1)),
        ),
        (
            authority("STATIC.example.com:8443"),
            chose(index(&config, "public"), Reason::Rule(1)),
        ),
        (
            authority("a.b.example.com").with(RouteFact::Path, "/internal/x"),
            chose(Selection::Untouched, Reason::Rule(2)),
        ),
        // The apex is not matched by *.example.com.
        (
            authority("example.com").with(RouteFact::Path, "/internal/x"),
            chose(index(&config, "default"), Reason::Default),
        ),
        // AND: host matches, path does not.
        (
            authority("a.example.com").with(RouteFact::Path, "/public/x"),
            chose(index(&config, "default"), Reason::Default),
        ),
        (
            given()
                .with(RouteFact::VirtualHost, "vh-public")
                .with(RouteFact::Path, "/pub/x"),
            chose(index(&config, "public"), Reason::Rule(3)),
        ),
        (
            route("other"),
            chose(index(&config, "default"), Reason::Default),
        ),
        (given(), chose(index(&config, "default"), Reason::Default)),
    ];
    for (mut facts, expected) in cases {
        let shown = format!("{facts:?}");
        let got = config.select(&mut facts);
        assert_eq!(got, expected, "facts {shown}");
    }
}

#[test]
fn facts_are_read_only_when_a_rule_needs_them() {
    let config = config(FULL_FORM);
    let mut facts = recording(Known::default().with(RouteFact::RouteName, "partner-api"));
    config.select(&mut facts);
    assert_eq!(facts.source().reads, ["metadata", "route"]);
    assert!(facts.was_read(RouteFact::RouteName));
    assert!(!facts.was_read(RouteFact::Authority));

    let short = self::config(r#"{"allow_origins": ["https://a.example.com"]}"#);
    let mut facts = recording(Known::default());
    assert_eq!(
        short.select(&mut facts),
        chose(Selection::Policy(0), Reason::Default)
    );
    assert_eq!(facts.source().reads, ["metadata"]);
}

#[test]
fn no_default_passes_through() {
    let config = config(r#"{"policies": {"p": {"allow_origins": ["*"]}}}"#);
    assert_eq!(
        config.select(&mut given()),
        chose(Selection::Untouched, Reason::Nothing)
    );
    let mut facts = given().with(RouteFact::MetadataPolicy, "p");
    assert_eq!(
        config.select(&mut facts),
        chose(Selection::Policy(0), Reason::RouteMetadata)
    );
}

#[test]
fn authority_host_strips_ports() {
    assert_eq!(
        routing::authority_host(b"a.example.com:8080"),
        b"a.example.com"
    );
    assert_eq!(routing::authority_host(b"a.example.com"), b"a.example.com");
    assert_eq!(routing::authority_host(b"[::1]:8080"), b"[::1]");
    assert_eq!(routing::authority_host(b"[::1]"), b"[::1]");
    assert_eq!(routing::authority_host(b""), b"");
}

// ---------------------------------------------------------------------------------------------
// Preflights (docs/policy.md, "What a request gets")

const RICH: &str = r#"{"allow_origins": ["https://app.example.com"],
    "allow_methods": ["GET", "PUT", "DELETE"], "allow_headers": ["X-Custom", "content-type"],
    "max_age": 600, "debug": true}"#;

#[test]
fn allowed_preflight_reply() {
    let config = config(RICH);
    let outcome = decide_default(
        &config,
        &preflight(APP, "PUT", Some("x-custom, Content-Type")),
    );
    assert_eq!(
        outcome.action,
        reply(
            204,
            &[
                ("access-control-allow-origin", APP),
                ("access-control-allow-methods", "GET, PUT, DELETE"),
                ("access-control-allow-headers", "X-Custom, content-type"),
                ("access-control-max-age", "600"),
                ("vary", PREFLIGHT_VARY),
            ]
        )
    );
    assert_eq!(outcome.counter, Some(Counter::PreflightAllowed));
    assert_eq!(outcome.policy, Some(0));

    // No ACRH: no Access-Control-Allow-Headers.
    let outcome = decide_default(&config, &preflight(APP, "DELETE", None));
    assert_eq!(
        outcome.action,
        reply(
            204,
            &[
                ("access-control-allow-origin", APP),
                ("access-control-allow-methods", "GET, PUT, DELETE"),
                ("access-control-max-age", "600"),
                ("vary", PREFLIGHT_VARY),
            ]
        )
    );
}

#[test]
fn preflight_checks_in_order() {
    let config = config(RICH);
    let cases = [
        // Origin first, even when everything else is wrong too.
        (
            preflight("https://evil.example.com", "PATCH", Some("x-nope")),
            DenyReason::Origin,
        ),
        (preflight(APP, "PATCH", Some("x-nope")), DenyReason::Method),
        // Methods are case-sensitive.
        (preflight(APP, "put", None), DenyReason::Method),
        (preflight(APP, "", None), DenyReason::Method),
        (preflight(APP, "PUT, DELETE", None), DenyReason::Method),
        (
            preflight(APP, "PUT", Some("x-custom, x-nope")),
            DenyReason::Headers,
        ),
        (
            preflight(APP, "PUT", Some("x-custom, bad header")),
            DenyReason::Headers,
        ),
        (
            preflight(APP, "PUT", Some("authorization")),
            DenyReason::Headers,
        ),
        (
            Request {
                acrpn: Some(b"true"),
                ..preflight(APP, "PUT", Some("x-custom"))
            },
            DenyReason::PrivateNetwork,
        ),
    ];
    for (request, reason) in cases {
        let outcome = decide_default(&config, &request);
        assert_eq!(
            outcome.action,
            reply(
                403,
                &[
                    ("vary", PREFLIGHT_VARY),
                    ("cors-deny-reason", reason.as_str())
                ]
            ),
            "{request:?}"
        );
        assert_eq!(outcome.counter, Some(Counter::PreflightDenied(reason)));
    }
}

#[test]
fn denied_preflight_without_debug_has_no_reason() {
    let config = config(r#"{"allow_origins": ["https://app.example.com"]}"#);
    let outcome = decide_default(&config, &preflight("https://evil.example", "GET", None));
    assert_eq!(outcome.action, reply(403, &[("vary", PREFLIGHT_VARY)]));
}

#[test]
fn safelisted_methods_are_always_allowed() {
    let config =
        config(r#"{"allow_origins": ["https://app.example.com"], "allow_methods": ["PUT"]}"#);
    for method in ["GET", "HEAD", "POST", "PUT"] {
        let outcome = decide_default(&config, &preflight(APP, method, None));
        assert_eq!(outcome.counter, Some(Counter::PreflightAllowed), "{method}");
    }
    let outcome = decide_default(&config, &preflight(APP, "DELETE", None));
    assert_eq!(
        outcome.counter,
        Some(Counter::PreflightDenied(DenyReason::Method))
    );
}

#[test]
fn empty_allow_methods_allows_only_safelisted_methods_and_sends_no_allow_methods() {
    let config = config(r#"{"allow_origins": ["https://app.example.com"], "allow_methods": []}"#);
    let outcome = decide_default(&config, &preflight(APP, "POST", None));
    assert_eq!(
        outcome.action,
        reply(
            204,
            &[
                ("access-control-allow-origin", APP),
                ("vary", PREFLIGHT_VARY)
            ]
        )
    );
    let outcome = decide_default(&config, &preflight(APP, "PUT", None));
    assert_eq!(
        outcome.counter,
        Some(Counter::PreflightDenied(DenyReason::Method))
    );
}

#[test]
fn request_header_list_parsing() {
    let config = config(RICH);
    for acrh in [
        "x-custom",
        "X-CUSTOM",
        " x-custom ,\tcontent-type\t",
        ",,x-custom,,",
        "x-custom,content-type,x-custom",
        "",
        " , ,",
    ] {
        let outcome = decide_default(&config, &preflight(APP, "PUT", Some(acrh)));
        assert_eq!(outcome.counter, Some(Counter::PreflightAllowed), "{acrh:?}");
    }
    // Empty lists send no Access-Control-Allow-Headers.
    let Action::Reply(reply) = decide_default(&config, &preflight(APP, "PUT", Some(" , "))).action
    else {
        panic!("expected a reply");
    };
    assert!(reply
        .headers
        .iter()
        .all(|(n, _)| *n != "access-control-allow-headers"));
    for acrh in ["x-custom;", "x-custom x", "x-custom\u{ff}", "(x)"] {
        let outcome = decide_default(&config, &preflight(APP, "PUT", Some(acrh)));
        assert_eq!(
            outcome.counter,
            Some(Counter::PreflightDenied(DenyReason::Headers)),
            "{acrh:?}"
        );
    }
}

#[test]
fn comma_storm_is_linear_and_denied_or_allowed_correctly() {
    let config = config(RICH);
    let storm = ",".repeat(60_000);
    let outcome = decide_default(&config, &preflight(APP, "PUT", Some(&storm)));
    assert_eq!(outcome.counter, Some(Counter::PreflightAllowed));
    let names = "x-custom,".repeat(6_000);
    let outcome = decide_default(&config, &preflight(APP, "PUT", Some(&names)));
    assert_eq!(outcome.counter, Some(Counter::PreflightAllowed));
    let long_name = "x".repeat(60_000);
    let outcome = decide_default(&config, &preflight(APP, "PUT", Some(&long_name)));
    assert_eq!(
        outcome.counter,
        Some(Counter::PreflightDenied(DenyReason::Headers))
    );
}

#[test]
fn wildcards_without_credentials() {
    let config = config(
        r#"{"allow_origins": ["*"], "allow_methods": ["*"], "allow_headers": ["*", "Authorization"]}"#,
    );
    let outcome = decide_default(
        &config,
        &preflight("https://any.example", "PATCH", Some("x-a, authorization")),
    );
    assert_eq!(
        outcome.action,
        reply(
            204,
            &[
                ("access-control-allow-origin", "*"),
                ("access-control-allow-methods", "*"),
                ("access-control-allow-headers", "*, authorization"),
                ("vary", PREFLIGHT_VARY),
            ]
        )
    );
    let outcome = decide_default(&config, &preflight("null", "PATCH", Some("x-a")));
    assert_eq!(
        outcome.action,
        reply(
            204,
            &[
                ("access-control-allow-origin", "*"),
                ("access-control-allow-methods", "*"),
                ("access-control-allow-headers", "*"),
                ("vary", PREFLIGHT_VARY),
            ]
        )
    );
    // `*` alone does not cover authorization.
    let config = self::config(r#"{"allow_origins": ["*"], "allow_headers": ["*"]}"#);
    let outcome = decide_default(
        &config,
        &preflight("https://a.example", "GET", Some("x-a, Authorization")),
    );
    assert_eq!(
        outcome.counter,
        Some(Counter::PreflightDenied(DenyReason::Headers))
    );
}

#[test]
fn wildcards_with_credentials_echo() {
    let config = config(
        r#"{"allow_origins": ["https://app.example.com"], "allow_credentials": true,
            "allow_methods": ["*"], "allow_headers": ["*"]}"#,
    );
    let echoing = |allow_headers: &str| {
        reply(
            204,
            &[
                ("access-control-allow-origin", APP),
                ("access-control-allow-credentials", "true"),
                ("access-control-allow-methods", "PATCH"),
                ("access-control-allow-headers", allow_headers),
                ("vary", PREFLIGHT_VARY),
            ],
        )
    };
    let outcome = decide_default(&config, &preflight(APP, "PATCH", Some("X-B, x-a, x-b")));
    assert_eq!(outcome.action, echoing("x-b, x-a"));
    // Past the first few names the repeats are found by hashing: same answer, first spelling
    // order, each name once whatever its case.
    let names: Vec<String> = (0..40).map(|i| format!("X-Name-{i}")).collect();
    let mut requested = names.clone();
    requested.extend(names.iter().rev().map(|n| n.to_ascii_lowercase()));
    requested.extend(names.iter().map(|n| n.to_ascii_uppercase()));
    let requested = requested.join(" , ");
    let outcome = decide_default(&config, &preflight(APP, "PATCH", Some(&requested)));
    let echoed: Vec<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
    assert_eq!(outcome.action, echoing(&echoed.join(", ")));
}

#[test]
fn long_method_and_header_lists_are_looked_up_exactly() {
    // More names than are compared one by one: the lists are hashed, with the same answers.
    let methods: Vec<String> = (0..12).map(|i| format!("\"M{i}\"")).collect();
    let headers: Vec<String> = (0..12).map(|i| format!("\"X-H{i}\"")).collect();
    let config = config(&format!(
        r#"{{"allow_origins": ["https://app.example.com"], "allow_methods": [{}], "allow_headers": [{}]}}"#,
        methods.join(", "),
        headers.join(", ")
    ));
    for i in 0..12 {
        let (method, header) = (format!("M{i}"), format!("x-h{i}"));
        let outcome = decide_default(&config, &preflight(APP, &method, Some(&header)));
        assert_eq!(outcome.counter, Some(Counter::PreflightAllowed), "{method}");
    }
    for (method, header, reason) in [
        ("m1", "x-h1", DenyReason::Method),
        ("M12", "x-h1", DenyReason::Method),
        ("M1", "x-h12", DenyReason::Headers),
        ("M1", "x-h1, x-h", DenyReason::Headers),
    ] {
        let outcome = decide_default(&config, &preflight(APP, method, Some(header)));
        assert_eq!(
            outcome.counter,
            Some(Counter::PreflightDenied(reason)),
            "{method} {header}"
        );
    }
}

#[test]
fn private_network_access() {
    let config = config(
        r#"{"allow_origins": ["https://app.example.com"], "allow_private_network": true,
            "preflight_status": 200}"#,
    );
    let vary = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, Access-Control-Request-Private-Network";
    // A preflight of GET from APP with this Access-Control-Request-Private-Network value.
    let pna_preflight = |acrpn: &'static str| Request {
        acrpn: Some(acrpn.as_bytes()),
        ..preflight(APP, "GET", None)
    };
    let outcome = decide_default(&config, &pna_preflight("true"));
    assert_eq!(
        outcome.action,
        reply(
            200,
            &[
                ("access-control-allow-origin", APP),
                ("access-control-allow-methods", "GET, HEAD, POST"),
                ("access-control-allow-private-network", "true"),
                ("vary", vary),
            ]
        )
    );
    let outcome = decide_default(&config, &preflight("https://evil.example", "GET", None));
    assert_eq!(outcome.action, reply(403, &[("vary", vary)]));
    // Only the exact value `true` asks for private network access (what browsers send).
    let without = self::config(r#"{"allow_origins": ["https://app.example.com"]}"#);
    for acrpn in ["TRUE", "true ", "true,true", "1", ""] {
        let outcome = decide_default(&without, &pna_preflight(acrpn));
        assert_eq!(
            outcome.counter,
            Some(Counter::PreflightAllowed),
            "{acrpn:?}"
        );
        let Action::Reply(reply) = outcome.action else {
            panic!("{acrpn:?}: answered locally");
        };
        assert!(
            reply
                .headers
                .iter()
                .all(|(name, _)| *name != "access-control-allow-private-network"),
            "{acrpn:?}"
        );
    }
    let outcome = decide_default(&without, &pna_preflight("true"));
    assert_eq!(
        outcome.counter,
        Some(Counter::PreflightDenied(DenyReason::PrivateNetwork))
    );
}

#[test]
fn forward_and_report_modes() {
    let forward = config(
        r#"{"allow_origins": ["https://app.example.com"], "unmatched_preflights": "forward"}"#,
    );
    let outcome = decide_default(&forward, &preflight(APP, "PATCH", None));
    assert_eq!(
        outcome.action,
        Action::Forward(ResponsePlan::VaryOnly { policy: 0 })
    );
    assert_eq!(
        outcome.counter,
        Some(Counter::PreflightDenied(DenyReason::Method))
    );
    // Allowed preflights are still answered locally.
    assert!(matches!(
        decide_default(&forward, &preflight(APP, "GET", None)).action,
        Action::Reply(LocalReply { status: 204, .. })
    ));

    let report = config(r#"{"allow_origins": ["https://app.example.com"], "mode": "report"}"#);
    let outcome = decide_default(&report, &preflight(APP, "GET", None));
    assert_eq!(outcome.action, Action::Untouched);
    assert_eq!(outcome.counter, Some(Counter::PreflightAllowed));
    let outcome = decide_default(&report, &preflight("https://evil.example", "GET", None));
    assert_eq!(outcome.action, Action::Untouched);
    assert_eq!(
        outcome.counter,
        Some(Counter::PreflightDenied(DenyReason::Origin))
    );
    let outcome = decide_default(&report, &actual("GET", Some(APP)));
    assert_eq!(outcome.action, Action::Untouched);
    assert_eq!(outcome.counter, Some(Counter::ActualAllowed));
}

#[test]
fn unknown_policy_fails_closed() {
    let config = config(FULL_FORM);
    let unknown = Selection::Unknown(b"nope".to_vec());
    let outcome = engine::decide(&config, &unknown, &preflight(APP, "GET", None));
    assert_eq!(outcome.action, reply(403, &[("vary", PREFLIGHT_VARY)]));
    assert!(outcome.unknown_policy);
    let outcome = engine::decide(&config, &unknown, &actual("GET", Some(APP)));
    assert_eq!(outcome.action, Action::Forward(ResponsePlan::StripCors));
    assert!(outcome.unknown_policy);
    let upstream: Vec<(&[u8], &[u8])> = vec![
        (b"access-control-allow-origin", b"*"),
        (b"content-type", b"text/plain"),
        (b"Access-Control-Expose-Headers", b"x"),
    ];
    assert_eq!(
        engine::response_edits(&config, &ResponsePlan::StripCors, &upstream),
        [
            HeaderEdit::Remove(b"access-control-allow-origin".to_vec()),
            HeaderEdit::Remove(b"access-control-expose-headers".to_vec()),
        ]
    );
}

#[test]
fn untouched_selection_does_nothing() {
    let config = config(FULL_FORM);
    let outcome = engine::decide(&config, &Selection::Untouched, &preflight(APP, "GET", None));
    assert_eq!(outcome.action, Action::Untouched);
    assert_eq!(outcome.counter, None);
}

// ---------------------------------------------------------------------------------------------
// Actual requests and Vary (docs/policy.md, "What a request gets")

#[test]
fn actual_requests() {
    let config = config(
        r#"{"allow_origins": ["https://app.example.com"], "allow_credentials": true, "expose_headers": ["X-Total", "x-page"]}"#,
    );
    let outcome = decide_default(&config, &actual("GET", Some(APP)));
    let plan = ResponsePlan::Cors {
        policy: 0,
        allow_origin: Some(AllowOrigin::Echo(APP.as_bytes().to_vec())),
    };
    assert_eq!(outcome.action, Action::Forward(plan.clone()));
    assert_eq!(outcome.counter, Some(Counter::ActualAllowed));
    assert_eq!(
        engine::response_edits(&config, &plan, &[]),
        [
            HeaderEdit::Set(
                "access-control-allow-origin",
                APP.as_bytes().to_vec().into()
            ),
            HeaderEdit::Set("access-control-allow-credentials", b"true".to_vec().into()),
            HeaderEdit::Set(
                "access-control-expose-headers",
                b"X-Total, x-page".to_vec().into()
            ),
            HeaderEdit::Set("vary", b"Origin".to_vec().into()),
        ]
    );

    // OPTIONS without ACRM is an actual request.
    let outcome = decide_default(&config, &actual("OPTIONS", Some(APP)));
    assert_eq!(outcome.counter, Some(Counter::ActualAllowed));

    for origin in [
        "https://evil.example",
        "https://app.example.com,https://app.example.com",
        "https://app.example.com https://app.example.com",
        "",
    ] {
        let outcome = decide_default(&config, &actual("GET", Some(origin)));
        let plan = ResponsePlan::Cors {
            policy: 0,
            allow_origin: None,
        };
        assert_eq!(outcome.action, Action::Forward(plan.clone()), "{origin:?}");
        assert_eq!(outcome.counter, Some(Counter::ActualDenied));
        assert_eq!(
            engine::response_edits(&config, &plan, &[]),
            [HeaderEdit::Set("vary", b"Origin".to_vec().into())]
        );
    }

    // No Origin: not a CORS request, nothing counted, Vary still set.
    let outcome = decide_default(&config, &actual("GET", None));
    assert_eq!(outcome.counter, None);
    assert_eq!(
        outcome.action,
        Action::Forward(ResponsePlan::Cors {
            policy: 0,
            allow_origin: None
        })
    );
}

#[test]
fn any_origin_never_admits_a_list_or_padded_origin() {
    // Several Origin headers (joined with ',') or whitespace never match, even `*`.
    let config = config(r#"{"allow_origins": ["*"], "max_age": 0}"#);
    let outcome = decide_default(&config, &preflight(APP, "GET", None));
    assert_eq!(
        outcome.action,
        reply(
            204,
            &[
                ("access-control-allow-origin", "*"),
                ("access-control-allow-methods", "GET, HEAD, POST"),
                ("access-control-max-age", "0"),
                ("vary", PREFLIGHT_VARY),
            ]
        )
    );
    for origin in [
        "https://app.example.com,https://b.example.com",
        "https://app.example.com ",
        "\thttps://app.example.com",
        "",
    ] {
        let outcome = decide_default(&config, &preflight(origin, "GET", None));
        assert_eq!(
            outcome.counter,
            Some(Counter::PreflightDenied(DenyReason::Origin)),
            "{origin:?}"
        );
        let outcome = decide_default(&config, &actual("GET", Some(origin)));
        assert_eq!(outcome.counter, Some(Counter::ActualDenied), "{origin:?}");
    }
}

#[test]
fn any_origin_sends_star_and_no_vary() {
    let config = config(r#"{"allow_origins": ["*"]}"#);
    let outcome = decide_default(&config, &actual("GET", Some(APP)));
    let Action::Forward(plan) = outcome.action else {
        panic!("expected forward")
    };
    assert_eq!(
        engine::response_edits(&config, &plan, &[(b"vary", b"Accept-Encoding")]),
        [HeaderEdit::Set(
            "access-control-allow-origin",
            b"*".to_vec().into()
        )]
    );
}

#[test]
fn vary_merging() {
    let config = config(r#"{"allow_origins": ["https://app.example.com"]}"#);
    let plan = ResponsePlan::Cors {
        policy: 0,
        allow_origin: None,
    };
    type Headers<'a> = Vec<(&'a [u8], &'a [u8])>;
    let cases: Vec<(Headers, Option<&str>)> = vec![
        (vec![], Some("Origin")),
        (
            vec![(b"vary", b"Accept-Encoding")],
            Some("Accept-Encoding, Origin"),
        ),
        (
            vec![(b"vary", b"Accept-Encoding, Cookie")],
            Some("Accept-Encoding, Cookie, Origin"),
        ),
        (
            vec![(b"vary", b"Accept-Encoding"), (b"vary", b"Cookie")],
            Some("Accept-Encoding, Cookie, Origin"),
        ),
        (vec![(b"vary", b"origin")], None),
        (vec![(b"vary", b"Accept, ORIGIN")], None),
        (vec![(b"vary", b"*")], None),
        (vec![(b"vary", b"")], Some("Origin")),
        // Optional whitespace, empty elements, case, several lines; a longer name is not Origin.
        (vec![(b"vary", b" * ")], None),
        (vec![(b"vary", b"Accept, *")], None),
        (vec![(b"vary", b"Accept"), (b"vary", b"*")], None),
        (vec![(b"vary", b"\torigin\t")], None),
        (vec![(b"vary", b"accept,,origin")], None),
        (vec![(b"vary", b"Accept"), (b"vary", b"ORIGIN")], None),
        (vec![(b"vary", b"X-Origin")], Some("X-Origin, Origin")),
    ];
    for (headers, expected) in cases {
        let edits = engine::response_edits(&config, &plan, &headers);
        let expected: Vec<HeaderEdit> = expected
            .map(|v| HeaderEdit::Set("vary", v.as_bytes().to_vec().into()))
            .into_iter()
            .collect();
        assert_eq!(edits, expected, "{headers:?}");
    }
}

#[test]
fn upstream_cors_headers_replace_and_keep() {
    let upstream: Vec<(&[u8], &[u8])> = vec![
        (b"access-control-allow-origin", b"https://up.example"),
        (b"access-control-allow-credentials", b"true"),
        (b"content-type", b"text/plain"),
    ];
    let replace = config(r#"{"allow_origins": ["https://app.example.com"]}"#);
    let allowed = ResponsePlan::Cors {
        policy: 0,
        allow_origin: Some(AllowOrigin::Echo(APP.as_bytes().to_vec())),
    };
    assert_eq!(
        engine::response_edits(&replace, &allowed, &upstream),
        [
            HeaderEdit::Remove(b"access-control-allow-origin".to_vec()),
            HeaderEdit::Remove(b"access-control-allow-credentials".to_vec()),
            HeaderEdit::Set(
                "access-control-allow-origin",
                APP.as_bytes().to_vec().into()
            ),
            HeaderEdit::Set("vary", b"Origin".to_vec().into()),
        ]
    );
    // Removed even when the request had no Origin.
    let no_origin = ResponsePlan::Cors {
        policy: 0,
        allow_origin: None,
    };
    assert_eq!(
        engine::response_edits(&replace, &no_origin, &upstream),
        [
            HeaderEdit::Remove(b"access-control-allow-origin".to_vec()),
            HeaderEdit::Remove(b"access-control-allow-credentials".to_vec()),
            HeaderEdit::Set("vary", b"Origin".to_vec().into()),
        ]
    );

    let keep = config(
        r#"{"allow_origins": ["https://app.example.com"], "upstream_cors_headers": "keep", "expose_headers": ["x-a"]}"#,
    );
    assert_eq!(
        engine::response_edits(&keep, &allowed, &upstream),
        [HeaderEdit::Set("vary", b"Origin".to_vec().into())]
    );
    // Keep, but the upstream set no ACAO: ours are written.
    let partial: Vec<(&[u8], &[u8])> = vec![(b"access-control-expose-headers", b"x-up")];
    assert_eq!(
        engine::response_edits(&keep, &allowed, &partial),
        [
            HeaderEdit::Set(
                "access-control-allow-origin",
                APP.as_bytes().to_vec().into()
            ),
            HeaderEdit::Set("access-control-expose-headers", b"x-a".to_vec().into()),
            HeaderEdit::Set("vary", b"Origin".to_vec().into()),
        ]
    );
}

#[test]
fn forwarded_denied_preflight_only_merges_vary() {
    let config = config(
        r#"{"allow_origins": ["https://app.example.com"], "unmatched_preflights": "forward"}"#,
    );
    let upstream: Vec<(&[u8], &[u8])> = vec![
        (b"access-control-allow-origin", b"*"),
        (b"vary", b"Accept-Encoding"),
    ];
    assert_eq!(
        engine::response_edits(&config, &ResponsePlan::VaryOnly { policy: 0 }, &upstream),
        [HeaderEdit::Set(
            "vary",
            b"Accept-Encoding, Origin".to_vec().into()
        )]
    );
}

#[test]
fn describe_is_one_line() {
    let config = config(RICH);
    let request = preflight(APP, "PATCH", None);
    let outcome = decide_default(&config, &request);
    assert_eq!(
        engine::describe(&config, &request, &outcome),
        "cors: policy=default preflight origin=\"https://app.example.com\" denied (method)"
    );
}

#[test]
fn large_policies_match_exactly() {
    let origins: Vec<String> = (0..10_000)
        .map(|i| format!("\"https://app{i}.example.com\""))
        .collect();
    let config = config(&format!(r#"{{"allow_origins": [{}]}}"#, origins.join(",")));
    for i in [0, 4_999, 9_999] {
        let origin = format!("https://app{i}.example.com");
        assert_eq!(
            decide_default(&config, &actual("GET", Some(&origin))).counter,
            Some(Counter::ActualAllowed)
        );
    }
    assert_eq!(
        decide_default(
            &config,
            &actual("GET", Some("https://app10000.example.com"))
        )
        .counter,
        Some(Counter::ActualDenied)
    );
}

/// `virtual_service` and `http_route` (docs/istio.md): the resource a route came from, as Istio
/// names it in the route's `istio.config` metadata and in the route name of an unnamed HTTPRoute rule.
#[test]
fn istio_resource_rules_match_what_istio_writes_and_nothing_else() {
    let config = config(
        r#"{
            "default": {"allow_origins": ["https://shop.example.com"]},
            "policies": {
                "partner": {"allow_origins": ["https://*.partner.example"]},
                "public": {"allow_origins": ["*"]}
            },
            "rules": [
                {"match": {"virtual_service": "shop/storefront"}, "policy": "partner"},
                {"match": {"http_route": "shop/catalog.v2"}, "policy": "public"}
            ]
        }"#,
    );
    let vs = |config: &'static str| given().with(RouteFact::IstioConfig, config);
    /// A route name, on a route of the VirtualService `ns/name`.
    fn generated(route: &'static str, vs: &str) -> RouteFacts<'static, Known<'static>> {
        let (ns, name) = vs.split_once('/').unwrap_or_default();
        let config: &'static str = Box::leak(
            format!("/apis/networking.istio.io/v1/namespaces/{ns}/virtual-service/{name}")
                .into_boxed_str(),
        );
        given()
            .with(RouteFact::RouteName, route)
            .with(RouteFact::IstioConfig, config)
    }
    const GENERATED_128: &str =
        "istio-system/istio-system~gateway~istio-autogenerated-k8s-gateway~shop~shop.example.com";
    let partner = index(&config, "partner");
    let public = index(&config, "public");
    let default = index(&config, "default");
    let cases: Vec<(RouteFacts<Known>, Selection)> = vec![
        (vs("/apis/networking.istio.io/v1/namespaces/shop/virtual-service/storefront"), partner.clone()),
        (vs("/apis/networking.istio.io/v1alpha3/namespaces/shop/virtual-service/storefront"), partner.clone()),
        (vs("/apis/networking.istio.io/v1beta1/namespaces/shop/virtual-service/storefront"), partner.clone()),
        // Another namespace, another name, a longer name, another kind, no version.
        (vs("/apis/networking.istio.io/v1/namespaces/shop2/virtual-service/storefront"), default.clone()),
        (vs("/apis/networking.istio.io/v1/namespaces/shop/virtual-service/storefront-eu"), default.clone()),
        (vs("/apis/networking.istio.io/v1/namespaces/shop/virtual-service/store"), default.clone()),
        (vs("/apis/networking.istio.io/v1/namespaces/shop/destination-rule/storefront"), default.clone()),
        (vs("/apis/networking.istio.io//namespaces/shop/virtual-service/storefront"), default.clone()),
        (vs("/apis/gateway.networking.k8s.io/v1/namespaces/shop/virtual-service/storefront"), default.clone()),
        // The VirtualService Istio generates from an HTTPRoute is not the HTTPRoute.
        (
            vs("/apis/networking.istio.io/v1/namespaces/shop/virtual-service/istio-system~gateway~istio-autogenerated-k8s-gateway~http~shop.example.com"),
            default.clone(),
        ),
        (generated("shop.catalog.v2.0", GENERATED_128), public.clone()),
        (generated("shop.catalog.v2.12", GENERATED_128), public.clone()),
        // Every naming of the generated VirtualService Istio used (1.26, 1.27, 1.28 on).
        (generated("shop.catalog.v2.0", "shop/catalog.v2-0-istio-autogenerated-k8s-gateway"), public.clone()),
        (generated("shop.catalog.v2.0", "shop/catalog.v2~gateway-istio-autogenerated-k8s-gateway-http~shop.example.com"), public.clone()),
        (generated("shop.catalog.v2.", GENERATED_128), default.clone()),
        (generated("shop.catalog.v2.x", GENERATED_128), default.clone()),
        (generated("shop.catalog.v2", GENERATED_128), default.clone()),
        (generated("shop.catalog.0", GENERATED_128), default.clone()),
        (generated("shops.catalog.v2.0", GENERATED_128), default.clone()),
        (generated("shop.catalog.v2.0.extra", GENERATED_128), default.clone()),
        // The same route name on a VirtualService written by hand, or with no istio.config.
        (generated("shop.catalog.v2.0", "web/rewrites"), default.clone()),
        (route("shop.catalog.v2.0"), default.clone()),
        (given(), default.clone()),
    ];
    for (mut facts, expected) in cases {
        let shown = format!("{facts:?}");
        let got = config.select(&mut facts).selection;
        assert_eq!(got, expected, "facts {shown}");
    }
}

#[test]
fn istio_config_is_read_only_by_a_virtual_service_rule_or_a_matching_http_route_rule() {
    let config = config(
        r#"{
            "default": {"allow_origins": ["https://shop.example.com"]},
            "rules": [
                {"match": {"route": "api"}, "policy": null},
                {"match": {"http_route": "shop/catalog"}, "policy": null},
                {"match": {"virtual_service": "shop/storefront"}, "policy": null}
            ]
        }"#,
    );
    // The route name is read from the proxy once, however many rules look at it; istio.config
    // once an http_route rule's route name matched.
    let mut facts = recording(
        Known::default()
            .with(RouteFact::RouteName, "shop.catalog.0")
            .with(
                RouteFact::IstioConfig,
                "/apis/networking.istio.io/v1/namespaces/shop/virtual-service/istio-system~gw~istio-autogenerated-k8s-gateway~shop~a.example",
            ),
    );
    assert_eq!(config.select(&mut facts).selection, Selection::Untouched);
    assert_eq!(facts.source().reads, ["metadata", "route", "istio_config"]);

    let mut facts = recording(Known::default().with(RouteFact::RouteName, "api"));
    assert_eq!(config.select(&mut facts).selection, Selection::Untouched);
    assert_eq!(facts.source().reads, ["metadata", "route"]);

    let mut facts = recording(Known::default().with(RouteFact::RouteName, "other"));
    assert_eq!(config.select(&mut facts).selection, Selection::Policy(0));
    assert_eq!(facts.source().reads, ["metadata", "route", "istio_config"]);

    let without = self::config(
        r#"{"default": {"allow_origins": ["https://a.example.com"]},
            "rules": [{"match": {"route": "api"}, "policy": null}]}"#,
    );
    let mut facts = recording(Known::default().with(RouteFact::RouteName, "other"));
    without.select(&mut facts);
    let reads = &facts.source().reads;
    assert!(!reads.contains(&"istio_config"), "{reads:?}");
}

/// A header list edited as Envoy edits a response: what the CLI prints after the edits.
#[test]
fn edits_on_a_header_list_replace_in_place_and_remove_every_copy() {
    let mut headers: Vec<(Vec<u8>, Vec<u8>)> = [
        ("Vary", "Accept"),
        ("access-control-allow-origin", "https://up.example"),
        ("x-other", "1"),
        ("vary", "Cookie"),
        ("Access-Control-Max-Age", "5"),
    ]
    .iter()
    .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
    .collect();
    engine::apply_edits(
        &[
            HeaderEdit::Remove(b"access-control-allow-origin".to_vec()),
            HeaderEdit::Remove(b"access-control-max-age".to_vec()),
            HeaderEdit::Set("vary", b"Accept, Cookie, Origin".to_vec().into()),
            HeaderEdit::Set(
                "access-control-allow-origin",
                b"https://app.example.com".to_vec().into(),
            ),
        ],
        &mut headers,
    );
    let text: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        text,
        [
            ("Vary", "Accept, Cookie, Origin"),
            ("x-other", "1"),
            ("access-control-allow-origin", "https://app.example.com"),
        ]
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
    );
}
