//! Validation of policy documents (docs/policy.md, *Validation*): table tests of valid and invalid documents, each
//! invalid one with the exact error lines it must produce, all at once.

use cors_engine::policy::{
    self, AllowHeadersValue, HeaderValue, Mode, UnmatchedPreflights, UpstreamCorsHeaders,
};

mod fixtures;

fn errors(document: &str) -> Vec<String> {
    match policy::load(document) {
        Ok(_) => Vec::new(),
        Err(rejected) => rejected.errors.iter().map(ToString::to_string).collect(),
    }
}

fn warnings(document: &str) -> Vec<String> {
    match policy::load(document) {
        Ok(loaded) => loaded.warnings.iter().map(ToString::to_string).collect(),
        Err(rejected) => rejected.warnings.iter().map(ToString::to_string).collect(),
    }
}

#[track_caller]
fn assert_valid(document: &str) {
    let errors = errors(document);
    assert!(
        errors.is_empty(),
        "{document} should be valid, got {errors:#?}"
    );
}

#[track_caller]
fn assert_errors(document: &str, expected: &[&str]) {
    let got = errors(document);
    assert_eq!(got, expected, "errors of {document}");
}

#[test]
fn valid_documents() {
    for document in [
        r#"{"allow_origins": ["https://app.example.com"]}"#,
        r#"{"allow_origins": ["https://app.example.com"], "allow_methods": ["GET", "PUT"], "max_age": 600}"#,
        r#"{"allow_origins": ["*"], "expose_headers": ["*"], "allow_headers": ["*"], "allow_methods": ["*"]}"#,
        r#"{"allow_origins": ["null"]}"#,
        r#"{"allow_origins": [], "allow_origin_regexes": ["https://[a-z]+\\.example\\.com"]}"#,
        r#"{"allow_origins": [], "allow_origin_regexes": ["https://[a-z]+\\.example\\.com"], "allow_credentials": true}"#,
        r#"{"allow_origins": ["http://localhost:*", "http://127.0.0.1:3000", "http://[::1]:8080"], "allow_credentials": true}"#,
        r#"{"allow_origins": ["http://app.example.com"], "allow_credentials": true, "dangerously_allow_insecure_origins": true}"#,
        r#"{"allow_origins": ["https://a.example.com", "https://a.example.com"]}"#,
        r#"{"allow_origins": ["https://a.example.com"], "max_age": 600.0, "preflight_status": 200.0}"#,
        r#"{"allow_origins": ["https://a.example.com"], "max_age": 0}"#,
        r#"{"allow_origins": ["https://a.example.com"], "max_age": 86400, "preflight_status": 299}"#,
        r#"{"allow_origins": ["https://a.example.com"], "unmatched_preflights": "forward", "upstream_cors_headers": "keep", "mode": "report", "debug": true, "allow_private_network": true}"#,
        r#"{"policies": {"partner": {"allow_origins": ["https://*.partner.example"]}}}"#,
        r#"{"default": {"allow_origins": ["https://app.example.com"]}}"#,
        r#"{"rules": [{"match": {"host": "static.example.com"}, "policy": null}]}"#,
        fixtures::FULL_FORM,
    ] {
        assert_valid(document);
    }
}

#[test]
fn v1_syntax_types_and_unknown_fields() {
    assert_errors(
        r#"{"allow_origins": ["https://a.example.com"],}"#,
        &["$: invalid JSON: trailing comma at line 1 column 45"],
    );
    assert_errors(
        "[]",
        &["$: the policy document must be a JSON object, got a list"],
    );
    assert_errors(
        r#"{"allow_origins": "https://a.example.com", "allow_credentials": "yes", "max_age": "600", "colour": 1}"#,
        &[
            "colour: unknown field",
            "allow_credentials: expected true or false, got a string",
            "allow_origins: expected a list of strings, got a string",
            "max_age: expected an integer, got a string",
        ],
    );
    assert_errors(
        r#"{"allow_origins": ["https://a.example.com", 7, null]}"#,
        &[
            "allow_origins[1]: expected a string, got a number",
            "allow_origins[2]: expected a string, got null",
        ],
    );
    assert_errors(
        r#"{"allow_methods": ["GET"]}"#,
        &["allow_origins: missing field allow_origins"],
    );
    // allow_origins is required even when regexes list the allowed origins.
    assert_errors(
        r#"{"allow_origin_regexes": ["https://[a-z]+\\.example\\.com"]}"#,
        &["allow_origins: missing field allow_origins (required; give [] when allow_origin_regexes lists every allowed origin)"],
    );
    assert_errors(
        r#"{"allow_origins": []}"#,
        &["allow_origins: must not be empty unless allow_origin_regexes is given"],
    );
    assert_errors(
        r#"{"mode": "audit", "unmatched_preflights": "drop", "upstream_cors_headers": true, "allow_origins": ["*"]}"#,
        &[
            "unmatched_preflights: \"drop\": expected \"reject\" or \"forward\"",
            "upstream_cors_headers: expected \"replace\" or \"keep\", got a boolean",
            "mode: \"audit\": expected \"enforce\" or \"report\"",
        ],
    );
}

#[test]
fn repeated_keys_are_errors_with_their_paths() {
    let repeated = "repeated key: only its last value would count; write each key once";
    assert_errors(
        r#"{"allow_origins": ["https://a.example.com"], "allow_origins": ["https://b.example.com"]}"#,
        &[&format!("allow_origins: {repeated}")],
    );
    // Every repeat, at any depth, together with the other errors of the document.
    assert_errors(
        r#"{"policies": {
                "p": {"allow_origins": ["https://a.example.com"], "max_age": 1, "max_age": 99999},
                "p": {"allow_origins": ["https://a.example.com"]}
            },
            "rules": [{"match": {"route": "r", "route": "s"}, "policy": "p"}]}"#,
        &[
            &format!("policies.p.max_age: {repeated}"),
            &format!("policies.p: {repeated}"),
            &format!("rules[0].match.route: {repeated}"),
        ],
    );
    assert_errors(
        r#"{"allow_origins": ["*"], "max_age": 1, "max_age": 99999}"#,
        &[
            &format!("max_age: {repeated}"),
            "max_age: 99999 is out of range 0..=86400",
        ],
    );
}

#[test]
fn v1_full_form_names_and_references() {
    assert_errors(
        r#"{
            "default": {"allow_origins": ["https://a.example.com"]},
            "allow_origins": ["https://b.example.com"],
            "policies": {
                "default": {"allow_origins": ["https://a.example.com"]},
                "off": {"allow_origins": ["https://a.example.com"]},
                "bad name": {"allow_origins": ["https://a.example.com"]},
                "ok": {"allow_origins": ["https://a.example.com"], "allow_origin": []},
                "num": 3
            },
            "rules": [
                {"match": {"route": "r1"}, "policy": "partnr"},
                {"match": {"route": "r2"}, "policy": "off"},
                {"match": {"rout": "r3", "host": "A.example.com", "path_prefix": "api/"}, "policy": "ok"},
                {"match": {"route": "r4"}},
                {"match": {"route": 5}, "policy": 5, "extra": true},
                "nope"
            ]
        }"#,
        &[
            "allow_origins: unknown field; expected one of default, policies, rules; in a document with default/policies/rules, policy fields go under default or policies.<name>",
            "policies[\"bad name\"]: a policy name must match [A-Za-z0-9_-]{1,64}",
            "policies.default: \"default\" is reserved: write the default policy as the top-level default",
            "policies.num: expected a policy object, got a number",
            "policies.off: \"off\" is reserved: it switches CORS off on a route",
            "policies.ok.allow_origin: unknown field",
            "rules[0].policy: \"partnr\": no such policy (known: default, num, ok)",
            "rules[1].policy: \"off\": use null for no CORS handling in a rule",
            "rules[2].match.host: \"A.example.com\": write the host in lower case (hosts are matched case-insensitively)",
            "rules[2].match.path_prefix: \"api/\": a path prefix must start with /",
            "rules[2].match.rout: unknown field; expected one of route, virtual_host, host, path_prefix, virtual_service, http_route",
            "rules[3].policy: missing field policy (a policy name, or null for no CORS handling)",
            "rules[4].extra: unknown field; expected match or policy",
            "rules[4].match.route: expected a string, got a number",
            "rules[4].policy: expected a policy name or null, got a number",
            "rules[5]: expected a rule object {\"match\": …, \"policy\": …}, got a string",
        ],
    );
    let long = "p".repeat(65);
    assert_errors(
        &format!(r#"{{"policies": {{"{long}": {{"allow_origins": ["*"]}}}}}}"#),
        &[&format!(
            "policies[\"{long}\"]: a policy name must match [A-Za-z0-9_-]{{1,64}}"
        )],
    );
    assert_valid(&format!(
        r#"{{"policies": {{"{}": {{"allow_origins": ["*"]}}}}}}"#,
        "p".repeat(64)
    ));
    // A badly named policy's body is still checked, and a rule naming a policy whose body is
    // not an object gets no second error.
    assert_errors(
        r#"{"policies": {
            "a.b": {"allow_origins": ["https://a.example.com"], "zzz": 1},
            "off": {"allow_origins": ["HTTPS://a.example.com"], "max_age": -5},
            "p": 5
        }, "rules": [{"match": {"route": "x"}, "policy": "p"}]}"#,
        &[
            "policies[\"a.b\"]: a policy name must match [A-Za-z0-9_-]{1,64}",
            "policies[\"a.b\"].zzz: unknown field",
            "policies.off: \"off\" is reserved: it switches CORS off on a route",
            "policies.off.allow_origins[0]: \"HTTPS://a.example.com\": upper case is not allowed: browsers send the scheme in lower case and origins are compared byte-exact",
            "policies.off.max_age: -5 is out of range 0..=86400",
            "policies.p: expected a policy object, got a number",
        ],
    );
    assert_errors(
        r#"{"default": [], "rules": [{"match": {"route": "x"}, "policy": "default"}]}"#,
        &["default: expected a policy object, got a list"],
    );
    assert_errors(
        r#"{"rules": [{"match": {}, "policy": "default"}]}"#,
        &["rules[0].policy: \"default\": no such policy (known: none)"],
    );
}

#[test]
fn v2_origin_patterns() {
    assert_errors(
        r#"{"policies": {"partner": {"allow_origins": [
            "https://ok.example.com",
            "https://*.com",
            "https://app.example.com/",
            "https://App.example.com",
            "https://app.example.com:443",
            "http://app.example.com:80",
            "https://app.example.com:0",
            "https://app.example.com:65536",
            "https://app.example.com:0443",
            "https://user@app.example.com",
            "https://app.example.com/path",
            "https://app.example.com?q",
            "https://app.example.com#f",
            "https://app..example.com",
            "https://a.*.example.com",
            "app.example.com",
            "https://app.example.com."
        ]}}}"#,
        &[
            "policies.partner.allow_origins[1]: \"https://*.com\": a wildcard must leave at least two labels",
            "policies.partner.allow_origins[2]: \"https://app.example.com/\": an origin has no path, query or fragment; this one has a trailing slash",
            "policies.partner.allow_origins[3]: \"https://App.example.com\": upper case is not allowed: browsers send the host in lower case and origins are compared byte-exact",
            "policies.partner.allow_origins[4]: \"https://app.example.com:443\": the default port 443 of https is never sent by browsers; drop it",
            "policies.partner.allow_origins[5]: \"http://app.example.com:80\": the default port 80 of http is never sent by browsers; drop it",
            "policies.partner.allow_origins[6]: \"https://app.example.com:0\": port 0 is not a valid port",
            "policies.partner.allow_origins[7]: \"https://app.example.com:65536\": port 65536 is out of range 1..=65535",
            "policies.partner.allow_origins[8]: \"https://app.example.com:0443\": a port must not have leading zeros",
            "policies.partner.allow_origins[9]: \"https://user@app.example.com\": an origin has no userinfo (user@ or user:password@)",
            "policies.partner.allow_origins[10]: \"https://app.example.com/path\": an origin has no path, query or fragment; this one has a path",
            "policies.partner.allow_origins[11]: \"https://app.example.com?q\": an origin has no path, query or fragment; this one has a query",
            "policies.partner.allow_origins[12]: \"https://app.example.com#f\": an origin has no path, query or fragment; this one has a fragment",
            "policies.partner.allow_origins[13]: \"https://app..example.com\": a host must not have an empty label",
            "policies.partner.allow_origins[14]: \"https://a.*.example.com\": a wildcard is only allowed as the whole leading label (https://*.example.com)",
            "policies.partner.allow_origins[15]: \"app.example.com\": not a serialised origin: expected scheme://host[:port]",
            "policies.partner.allow_origins[16]: \"https://app.example.com.\": a host must not end with a dot",
        ],
    );
    assert_errors(
        r#"{"allow_origins": ["https://[::0001]", "https://*.10.0.0.1", "http://1.2.3"]}"#,
        &[
            "allow_origins[0]: \"https://[::0001]\": an IPv6 address must be in RFC 5952 form as browsers send it: [::1]",
            "allow_origins[1]: \"https://*.10.0.0.1\": subdomain wildcards never apply to IP addresses",
            "allow_origins[2]: \"http://1.2.3\": \"1.2.3\" is not a dotted-quad IPv4 address in serialised form",
        ],
    );
}

#[test]
fn v3_regexes() {
    assert_errors(
        &format!(
            r#"{{"allow_origins": [], "allow_origin_regexes": ["(", "{}"]}}"#,
            "a".repeat(1001)
        ),
        &[
            "allow_origin_regexes[0]: \"(\": the regex does not compile: found open group without closing ')'",
            &format!("allow_origin_regexes[1]: \"{}\"…: a regex must not be longer than 1000 bytes (this one has 1001)", "a".repeat(80)),
        ],
    );
    assert_errors(
        r#"{"allow_credentials": true, "allow_origins": [], "allow_origin_regexes": [".*", "https?://.*", "null|https://a\\.example\\.com", "https://[a-z]+\\.example\\.com"]}"#,
        &[
            "allow_origin_regexes[0]: \".*\": with allow_credentials: true this regex would admit any origin (it matches \"https://evil.invalid\")",
            "allow_origin_regexes[1]: \"https?://.*\": with allow_credentials: true this regex would admit any origin (it matches \"https://evil.invalid\")",
            "allow_origin_regexes[2]: \"null|https://a\\\\.example\\\\.com\": with allow_credentials: true this regex would admit any origin (it matches \"null\")",
        ],
    );
    // Without credentials, admitting any origin is the policy's business.
    assert_valid(r#"{"allow_origins": [], "allow_origin_regexes": [".*"]}"#);
    // A likely unescaped dot is a warning, not an error.
    let document = r#"{"allow_origins": [], "allow_origin_regexes": ["https://app.example.com"]}"#;
    assert_valid(document);
    assert_eq!(
        warnings(document),
        ["allow_origin_regexes[0]: \"https://app.example.com\": unescaped '.' between two letters or digits matches any character; write \\. for a literal dot"]
    );
}

#[test]
fn v4_methods_and_headers() {
    assert_errors(
        r#"{"allow_origins": ["*"],
            "allow_methods": ["GET", "GE T", "connect", "Trace", "TRACK", ""],
            "allow_headers": ["x-ok", "Cookie", "sec-fetch-mode", "Proxy-Authorization", "Access-Control-Allow-Origin", "bad header", "Host"],
            "expose_headers": ["x-total", "Set-Cookie", "bad:name"]}"#,
        &[
            "allow_methods[1]: \"GE T\": not a method token (RFC 9110)",
            "allow_methods[2]: \"connect\": CONNECT, TRACE and TRACK can never be allowed",
            "allow_methods[3]: \"Trace\": CONNECT, TRACE and TRACK can never be allowed",
            "allow_methods[4]: \"TRACK\": CONNECT, TRACE and TRACK can never be allowed",
            "allow_methods[5]: \"\": not a method token (RFC 9110)",
            "allow_headers[1]: \"Cookie\": a forbidden request header (Fetch): browsers never let a page set it",
            "allow_headers[2]: \"sec-fetch-mode\": a forbidden request header (Fetch): browsers never let a page set it",
            "allow_headers[3]: \"Proxy-Authorization\": a forbidden request header (Fetch): browsers never let a page set it",
            "allow_headers[4]: \"Access-Control-Allow-Origin\": Access-Control-* headers are part of the CORS protocol and cannot be allowed",
            "allow_headers[5]: \"bad header\": not a header name token (RFC 9110)",
            "allow_headers[6]: \"Host\": a forbidden request header (Fetch): browsers never let a page set it",
            "expose_headers[1]: \"Set-Cookie\": browsers never expose Set-Cookie to a page",
            "expose_headers[2]: \"bad:name\": not a header name token (RFC 9110)",
        ],
    );
}

#[test]
fn v5_ranges() {
    assert_errors(
        r#"{"allow_origins": ["*"], "max_age": 86401, "preflight_status": 199}"#,
        &[
            "max_age: 86401 is out of range 0..=86400",
            "preflight_status: 199 is out of range 200..=299",
        ],
    );
    assert_errors(
        r#"{"allow_origins": ["*"], "max_age": -1, "preflight_status": 300}"#,
        &[
            "max_age: -1 is out of range 0..=86400",
            "preflight_status: 300 is out of range 200..=299",
        ],
    );
    assert_errors(
        r#"{"allow_origins": ["*"], "max_age": 600.5}"#,
        &["max_age: expected an integer, got 600.5"],
    );
    // Whole numbers beyond i64 or beyond exact floats are out of range, not "not an integer".
    assert_errors(
        r#"{"allow_origins": ["*"], "max_age": 18446744073709551615, "preflight_status": 1e15}"#,
        &[
            "max_age: 18446744073709551615 is out of range 0..=86400",
            "preflight_status: 1000000000000000.0 is out of range 200..=299",
        ],
    );
    assert_errors(
        r#"{"allow_origins": ["*"], "max_age": -1e300}"#,
        &["max_age: -1e+300 is out of range 0..=86400"],
    );
}

#[test]
fn v6_credentials() {
    assert_errors(
        r#"{"allow_credentials": true,
            "allow_origins": ["*", "null", "http://app.example.com", "http://*.example.com", "https://ok.example.com", "http://localhost:3000", "http://127.1.2.3", "http://[::1]:*"],
            "expose_headers": ["*"]}"#,
        &[
            "allow_origins[0]: \"*\": \"*\" is not allowed with allow_credentials: true (browsers refuse it); list the origins",
            "allow_origins[1]: \"null\": \"null\" is not allowed with allow_credentials: true (any sandboxed page sends it)",
            "allow_origins[2]: \"http://app.example.com\": an insecure http:// origin with allow_credentials: true (anyone on the network can act as it); use https://, or set dangerously_allow_insecure_origins",
            "allow_origins[3]: \"http://*.example.com\": an insecure http:// origin with allow_credentials: true (anyone on the network can act as it); use https://, or set dangerously_allow_insecure_origins",
            "expose_headers[0]: \"*\" is not allowed with allow_credentials: true (browsers read it as a header named *); list the headers",
        ],
    );
}

#[test]
fn v7_empty_documents() {
    assert_errors(
        "{}",
        &["$: the policy document is empty: give a policy (allow_origins, …) or default/policies/rules"],
    );
    assert_errors(
        r#"{"policies": {}, "rules": []}"#,
        &["$: the document has no default, no rules and no policies: nothing to apply"],
    );
    assert_errors(
        "",
        &["$: invalid JSON: EOF while parsing a value at line 1 column 0"],
    );
}

#[test]
fn every_error_is_reported_at_once_across_policies() {
    let got = errors(
        r#"{"default": {"allow_origins": ["https://*.com"]},
            "policies": {"a": {"allow_origins": ["HTTPS://x.example.com"], "max_age": 1e9},
                         "b": {"allow_origins": ["*"], "allow_credentials": true}}}"#,
    );
    assert_eq!(got.len(), 4, "{got:#?}");
    assert!(got[0].starts_with("default.allow_origins[0]: "));
    assert!(got[1].starts_with("policies.a.allow_origins[0]: "));
    assert!(got[2].starts_with("policies.a.max_age: "));
    assert!(got[3].starts_with("policies.b.allow_origins[0]: "));
}

#[test]
fn compiled_fields() {
    let loaded = policy::load(
        r#"{"allow_origins": ["https://a.example.com"], "allow_methods": ["PUT", "GET", "PUT"],
            "allow_headers": ["X-One", "x-one", "x-two"], "expose_headers": ["X-Total", "x-total"],
            "max_age": 600.0, "preflight_status": 200, "unmatched_preflights": "forward",
            "upstream_cors_headers": "keep", "mode": "report", "debug": true}"#,
    )
    .unwrap();
    let policy = &loaded.config.policies[0];
    assert_eq!(policy.name, "default");
    let fixed = |value: &str| HeaderValue::Fixed(value.to_owned());
    assert_eq!(policy.values.allow_methods, fixed("PUT, GET"));
    assert_eq!(
        policy.values.allow_headers,
        AllowHeadersValue::Fixed("X-One, x-two".to_owned())
    );
    assert_eq!(policy.values.expose_headers, fixed("X-Total"));
    assert_eq!(policy.values.max_age, fixed("600"));
    assert_eq!(policy.preflight_status, 200);
    assert_eq!(policy.unmatched_preflights, UnmatchedPreflights::Forward);
    assert_eq!(policy.upstream_cors_headers, UpstreamCorsHeaders::Keep);
    assert_eq!(policy.mode, Mode::Report);
    assert!(policy.debug);

    let defaults = policy::load(r#"{"allow_origins": ["https://a.example.com"]}"#).unwrap();
    let policy = &defaults.config.policies[0];
    assert_eq!(policy.values.allow_methods, fixed("GET, HEAD, POST"));
    assert_eq!(policy.values.allow_headers, AllowHeadersValue::Omit);
    assert_eq!(policy.values.expose_headers, HeaderValue::Omit);
    assert_eq!(policy.values.max_age, HeaderValue::Omit);
    assert_eq!(policy.preflight_status, 204);
    assert_eq!(policy.unmatched_preflights, UnmatchedPreflights::Reject);
    assert_eq!(policy.upstream_cors_headers, UpstreamCorsHeaders::Replace);
    assert_eq!(policy.mode, Mode::Enforce);
}

#[test]
fn header_values_say_what_each_header_sends() {
    let value = |document: &str| match policy::load(document) {
        Ok(loaded) => loaded.config.policies[0].values.clone(),
        Err(rejected) => panic!("{:?}", rejected.errors),
    };
    let credentialed = value(
        r#"{"allow_origins": ["https://a.example.com"], "allow_credentials": true,
            "allow_methods": ["*"], "allow_headers": ["*"]}"#,
    );
    assert_eq!(credentialed.allow_methods, HeaderValue::Echo);
    assert_eq!(credentialed.allow_headers, AllowHeadersValue::Echo);

    let wildcard = value(
        r#"{"allow_origins": ["https://a.example.com"], "allow_methods": ["*"],
            "allow_headers": ["*", "Authorization"]}"#,
    );
    assert_eq!(wildcard.allow_methods, HeaderValue::Fixed("*".to_owned()));
    assert_eq!(
        wildcard.allow_headers,
        AllowHeadersValue::Wildcard {
            authorization_listed: true
        }
    );
    let wildcard = value(r#"{"allow_origins": ["https://a.example.com"], "allow_headers": ["*"]}"#);
    assert_eq!(
        wildcard.allow_headers,
        AllowHeadersValue::Wildcard {
            authorization_listed: false
        }
    );

    let none = value(r#"{"allow_origins": ["https://a.example.com"], "allow_methods": []}"#);
    assert_eq!(none.allow_methods, HeaderValue::Omit);
    assert_eq!(none.preflight_vary, policy::PREFLIGHT_VARY);
}
