//! Reads a policy document (docs/policy.md) from JSON, validates it and compiles it.
//!
//! The document is walked as a `serde_json::Value` rather than deserialised into structs, so that
//! every problem is reported at once, each with the JSON path of the value at fault. A key
//! written twice in one object is one of those problems (`serde_json` alone would keep the last).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::json::{self, field_path};
use super::origin::{self, OriginMatcher, OriginPattern};
use super::token;
use super::{
    AllowHeadersValue, AllowedHeaders, AllowedMethods, Config, HeaderValue, HeaderValues,
    HostPattern, Loaded, Mode, Policy, Problem, Rejected, ResourceName, Rule, UnmatchedPreflights,
    UpstreamCorsHeaders,
};

const POLICY_FIELDS: [&str; 14] = [
    "allow_origins",
    "allow_origin_regexes",
    "allow_methods",
    "allow_headers",
    "expose_headers",
    "allow_credentials",
    "max_age",
    "allow_private_network",
    "unmatched_preflights",
    "preflight_status",
    "upstream_cors_headers",
    "mode",
    "debug",
    "dangerously_allow_insecure_origins",
];
const FULL_FORM_FIELDS: [&str; 3] = ["default", "policies", "rules"];
const MATCH_FIELDS: [&str; 6] = [
    "route",
    "virtual_host",
    "host",
    "path_prefix",
    "virtual_service",
    "http_route",
];
const MAX_AGE_LIMIT: i64 = 86_400;
/// Origins that a regex must not match when credentials are on (it would admit any origin).
const CREDENTIALED_REGEX_PROBES: [&str; 3] =
    ["https://evil.invalid", "http://evil.invalid", "null"];

/// Loads a policy document: the compiled config, or every error with its JSON path.
pub fn load(text: &str) -> Result<Loaded, Rejected> {
    let mut walker = Walker::default();
    let config = match json::parse(text) {
        Ok(parsed) => {
            for path in parsed.repeated_keys {
                walker.error(
                    path,
                    "repeated key: only its last value would count; write each key once",
                );
            }
            walker.document(&parsed.value)
        }
        Err(e) => {
            walker.error("$", format!("invalid JSON: {e}"));
            None
        }
    };
    match config {
        Some(config) if walker.errors.is_empty() => Ok(Loaded {
            config,
            warnings: walker.warnings,
        }),
        _ => Err(Rejected {
            errors: walker.errors,
            warnings: walker.warnings,
        }),
    }
}

#[derive(Default)]
struct Walker {
    errors: Vec<Problem>,
    warnings: Vec<Problem>,
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A value as JSON, cut short when long so that one error stays one readable line.
fn quoted(text: &str) -> String {
    const LONGEST: usize = 80;
    match text.char_indices().nth(LONGEST) {
        None => Value::String(text.to_owned()).to_string(),
        Some((cut, _)) => format!("{}…", Value::String(text[..cut].to_owned())),
    }
}

fn is_valid_policy_name(name: &str) -> bool {
    name.len() <= 64 && json::is_plain_key(name)
}

fn policy_path(name: &str) -> String {
    if is_valid_policy_name(name) {
        format!("policies.{name}")
    } else {
        format!("policies[{}]", quoted(name))
    }
}

/// A policy field after type checks, before compilation.
struct PolicyFields<'a> {
    map: &'a Map<String, Value>,
    prefix: &'a str,
}

impl<'a> PolicyFields<'a> {
    fn path(&self, field: &str) -> String {
        field_path(self.prefix, field)
    }
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.map.get(field)
    }
}

impl Walker {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn warning(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn document(&mut self, value: &Value) -> Option<Config> {
        let Value::Object(map) = value else {
            self.error(
                "$",
                format!(
                    "the policy document must be a JSON object, got {}",
                    kind(value)
                ),
            );
            return None;
        };
        if map.is_empty() {
            self.error(
                "$",
                "the policy document is empty: give a policy (allow_origins, …) or default/policies/rules",
            );
            return None;
        }
        if FULL_FORM_FIELDS.iter().any(|f| map.contains_key(*f)) {
            self.full_form(map)
        } else {
            let policy = self.policy(map, "", "default")?;
            Some(Config {
                by_name: HashMap::from([("default".to_owned(), 0)]),
                policies: vec![policy],
                default: Some(0),
                rules: Vec::new(),
            })
        }
    }

    fn full_form(&mut self, map: &Map<String, Value>) -> Option<Config> {
        for key in map.keys() {
            if !FULL_FORM_FIELDS.contains(&key.as_str()) {
                let hint = if POLICY_FIELDS.contains(&key.as_str()) {
                    "; in a document with default/policies/rules, policy fields go under default or policies.<name>"
                } else {
                    ""
                };
                self.error(
                    key.clone(),
                    format!("unknown field; expected one of default, policies, rules{hint}"),
                );
            }
        }
        let mut policies: Vec<Option<Policy>> = Vec::new();
        let mut by_name: HashMap<String, usize> = HashMap::new();
        let mut default = None;
        if let Some(value) = map.get("default") {
            // Known by name even when its body is bad, so rules naming it get no second error.
            default = Some(0);
            by_name.insert("default".to_owned(), 0);
            policies.push(self.policy_value(value, "default", "default"));
        }
        match map.get("policies") {
            None => {}
            Some(Value::Object(named)) => {
                for (name, value) in named {
                    let path = policy_path(name);
                    let name_error = if name == "default" {
                        Some("\"default\" is reserved: write the default policy as the top-level default")
                    } else if name == "off" {
                        Some("\"off\" is reserved: it switches CORS off on a route")
                    } else if !is_valid_policy_name(name) {
                        Some("a policy name must match [A-Za-z0-9_-]{1,64}")
                    } else {
                        None
                    };
                    if let Some(message) = name_error {
                        self.error(path.clone(), message);
                    }
                    let body = self.policy_value(value, &path, name);
                    // A badly named policy's body is still checked (every error at once), but only
                    // a valid name is known to rules; a valid name with a bad body is known, so
                    // rules naming it get no second, misleading "no such policy".
                    if name_error.is_none() {
                        by_name.insert(name.clone(), policies.len());
                        policies.push(body);
                    }
                }
            }
            Some(other) => self.error(
                "policies",
                format!("expected an object of named policies, got {}", kind(other)),
            ),
        }
        let rules = match map.get("rules") {
            None => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| self.rule(item, i, &by_name))
                .collect(),
            Some(other) => {
                self.error(
                    "rules",
                    format!("expected a list of rules, got {}", kind(other)),
                );
                Vec::new()
            }
        };
        let non_empty = |field: &str| match map.get(field) {
            Some(Value::Object(o)) => !o.is_empty(),
            Some(Value::Array(a)) => !a.is_empty(),
            _ => false,
        };
        if default.is_none() && !non_empty("policies") && !non_empty("rules") {
            self.error(
                "$",
                "the document has no default, no rules and no policies: nothing to apply",
            );
        }
        let policies: Option<Vec<Policy>> = policies.into_iter().collect();
        Some(Config {
            policies: policies?,
            by_name,
            default,
            rules,
        })
    }

    fn rule(
        &mut self,
        item: &Value,
        index: usize,
        by_name: &HashMap<String, usize>,
    ) -> Option<Rule> {
        let path = format!("rules[{index}]");
        let Value::Object(map) = item else {
            self.error(
                path,
                format!(
                    "expected a rule object {{\"match\": …, \"policy\": …}}, got {}",
                    kind(item)
                ),
            );
            return None;
        };
        let before = self.errors.len();
        for key in map.keys() {
            if key != "match" && key != "policy" {
                self.error(
                    format!("{path}.{key}"),
                    "unknown field; expected match or policy",
                );
            }
        }
        let mut rule = Rule {
            route: None,
            virtual_host: None,
            virtual_service: None,
            http_route: None,
            host: None,
            path_prefix: None,
            policy: None,
        };
        match map.get("match") {
            None => self.error(format!("{path}.match"), "missing field match"),
            Some(Value::Object(fields)) => {
                for (key, value) in fields {
                    let field = format!("{path}.match.{key}");
                    if !MATCH_FIELDS.contains(&key.as_str()) {
                        self.error(
                            field,
                            "unknown field; expected one of route, virtual_host, host, path_prefix, virtual_service, http_route",
                        );
                        continue;
                    }
                    let Value::String(text) = value else {
                        self.error(field, format!("expected a string, got {}", kind(value)));
                        continue;
                    };
                    match key.as_str() {
                        "route" => rule.route = Some(text.clone()),
                        "virtual_host" => rule.virtual_host = Some(text.clone()),
                        "virtual_service" | "http_route" => match resource_name(text) {
                            Ok(resource) if key == "virtual_service" => {
                                rule.virtual_service = Some(resource);
                            }
                            Ok(resource) => rule.http_route = Some(resource),
                            Err(e) => self.error(field, format!("{}: {e}", quoted(text))),
                        },
                        "host" => match host_pattern(text) {
                            Ok(host) => rule.host = Some(host),
                            Err(e) => self.error(field, format!("{}: {e}", quoted(text))),
                        },
                        _ => {
                            if text.starts_with('/') {
                                rule.path_prefix = Some(text.clone());
                            } else {
                                self.error(
                                    field,
                                    format!("{}: a path prefix must start with /", quoted(text)),
                                );
                            }
                        }
                    }
                }
            }
            Some(other) => self.error(
                format!("{path}.match"),
                format!("expected an object, got {}", kind(other)),
            ),
        }
        let policy_field = format!("{path}.policy");
        match map.get("policy") {
            None => self.error(
                policy_field,
                "missing field policy (a policy name, or null for no CORS handling)",
            ),
            Some(Value::Null) => {}
            Some(Value::String(name)) => match by_name.get(name) {
                Some(&index) => rule.policy = Some(index),
                None if name == "off" => self.error(
                    policy_field,
                    "\"off\": use null for no CORS handling in a rule",
                ),
                None => {
                    let mut known: Vec<&str> = by_name.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    self.error(
                        policy_field,
                        format!(
                            "{}: no such policy (known: {})",
                            quoted(name),
                            if known.is_empty() {
                                "none".to_owned()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                }
            },
            Some(other) => self.error(
                policy_field,
                format!("expected a policy name or null, got {}", kind(other)),
            ),
        }
        (self.errors.len() == before).then_some(rule)
    }

    /// A policy given as any JSON value: compiled when it is an object, an error otherwise.
    fn policy_value(&mut self, value: &Value, path: &str, name: &str) -> Option<Policy> {
        match value {
            Value::Object(fields) => self.policy(fields, path, name),
            other => {
                self.error(
                    path,
                    format!("expected a policy object, got {}", kind(other)),
                );
                None
            }
        }
    }

    fn policy(&mut self, map: &Map<String, Value>, prefix: &str, name: &str) -> Option<Policy> {
        let before = self.errors.len();
        let fields = PolicyFields { map, prefix };
        for key in map.keys() {
            if !POLICY_FIELDS.contains(&key.as_str()) {
                self.error(fields.path(key), "unknown field");
            }
        }
        let credentials = self.boolean(&fields, "allow_credentials").unwrap_or(false);
        let insecure_ok = self
            .boolean(&fields, "dangerously_allow_insecure_origins")
            .unwrap_or(false);
        let allow_private_network = self
            .boolean(&fields, "allow_private_network")
            .unwrap_or(false);
        let debug = self.boolean(&fields, "debug").unwrap_or(false);

        let origin_texts = self.string_list(&fields, "allow_origins");
        let regex_texts = self.string_list(&fields, "allow_origin_regexes");
        let has_regexes = regex_texts.as_ref().is_some_and(|r| !r.is_empty());
        match (&origin_texts, fields.get("allow_origins")) {
            (_, None) => self.error(
                fields.path("allow_origins"),
                if has_regexes {
                    "missing field allow_origins (required; give [] when allow_origin_regexes lists every allowed origin)"
                } else {
                    "missing field allow_origins"
                },
            ),
            (Some(list), Some(_)) if list.is_empty() && !has_regexes => self.error(
                fields.path("allow_origins"),
                "must not be empty unless allow_origin_regexes is given",
            ),
            _ => {}
        }
        let patterns = self.origins(
            &fields,
            origin_texts.unwrap_or_default(),
            credentials,
            insecure_ok,
        );
        let regexes = self.regexes(&fields, regex_texts.unwrap_or_default(), credentials);

        let methods = self.methods(&fields);
        let headers = self.allow_headers(&fields);
        let expose = self.expose_headers(&fields, credentials);
        let max_age = self.integer(&fields, "max_age", 0, MAX_AGE_LIMIT);
        let preflight_status = self
            .integer(&fields, "preflight_status", 200, 299)
            .unwrap_or(204);
        let unmatched_preflights = self
            .choice(&fields, "unmatched_preflights", &["reject", "forward"])
            .map_or(UnmatchedPreflights::Reject, |i| {
                if i == 0 {
                    UnmatchedPreflights::Reject
                } else {
                    UnmatchedPreflights::Forward
                }
            });
        let upstream_cors_headers = self
            .choice(&fields, "upstream_cors_headers", &["replace", "keep"])
            .map_or(UpstreamCorsHeaders::Replace, |i| {
                if i == 0 {
                    UpstreamCorsHeaders::Replace
                } else {
                    UpstreamCorsHeaders::Keep
                }
            });
        let mode =
            self.choice(&fields, "mode", &["enforce", "report"])
                .map_or(Mode::Enforce, |i| {
                    if i == 0 {
                        Mode::Enforce
                    } else {
                        Mode::Report
                    }
                });

        if self.errors.len() != before {
            return None;
        }
        let origins = OriginMatcher::new(&patterns, regexes);
        let any_origin = origins.allows_any();
        let (methods_any, method_list) = methods;
        let (headers_any, header_list) = headers;
        let allow_methods = if methods_any {
            if credentials {
                HeaderValue::Echo
            } else {
                HeaderValue::Fixed("*".to_owned())
            }
        } else if method_list.is_empty() {
            HeaderValue::Omit
        } else {
            HeaderValue::Fixed(method_list.join(", "))
        };
        let allow_headers = if headers_any {
            if credentials {
                AllowHeadersValue::Echo
            } else {
                AllowHeadersValue::Wildcard {
                    authorization_listed: header_list
                        .iter()
                        .any(|h| h.eq_ignore_ascii_case("authorization")),
                }
            }
        } else if header_list.is_empty() {
            AllowHeadersValue::Omit
        } else {
            AllowHeadersValue::Fixed(header_list.join(", "))
        };
        let preflight_vary = if allow_private_network {
            super::PREFLIGHT_VARY_PRIVATE_NETWORK
        } else {
            super::PREFLIGHT_VARY
        };
        let values = HeaderValues {
            allow_methods,
            allow_headers,
            expose_headers: if expose.is_empty() {
                HeaderValue::Omit
            } else {
                HeaderValue::Fixed(expose.join(", "))
            },
            max_age: max_age.map_or(HeaderValue::Omit, |n| HeaderValue::Fixed(n.to_string())),
            preflight_vary,
        };
        Some(Policy {
            name: name.to_owned(),
            vary_on_origin: !any_origin || credentials,
            origins,
            methods: AllowedMethods {
                any: methods_any,
                listed: method_list.iter().map(|m| m.as_bytes().into()).collect(),
            },
            headers: AllowedHeaders {
                any: headers_any,
                longest: header_list.iter().map(String::len).max().unwrap_or(0),
                listed: header_list
                    .iter()
                    .map(|h| h.to_ascii_lowercase().into_bytes().into())
                    .collect(),
            },
            allow_credentials: credentials,
            allow_private_network,
            unmatched_preflights,
            preflight_status: u16::try_from(preflight_status).unwrap_or(204),
            upstream_cors_headers,
            mode,
            debug,
            values,
        })
    }

    fn boolean(&mut self, fields: &PolicyFields, field: &str) -> Option<bool> {
        match fields.get(field)? {
            Value::Bool(b) => Some(*b),
            other => {
                self.error(
                    fields.path(field),
                    format!("expected true or false, got {}", kind(other)),
                );
                None
            }
        }
    }

    /// An integer in `min..=max`; a float with a zero fraction (`600.0`, as Istio's YAML may send)
    /// counts as an integer.
    fn integer(&mut self, fields: &PolicyFields, field: &str, min: i64, max: i64) -> Option<i64> {
        let value = fields.get(field)?;
        // A whole number too large for i64 (or a float beyond exact integers) is out of range.
        let (number, whole) = match value {
            Value::Number(n) => match n.as_i64() {
                Some(i) => (Some(i), true),
                None => {
                    let f = n.as_f64().unwrap_or(f64::NAN);
                    let whole = n.is_u64() || (f.is_finite() && f.fract() == 0.0);
                    (
                        whole
                            .then_some(f)
                            .filter(|f| f.abs() < 1e15)
                            .map(|f| f as i64),
                        whole,
                    )
                }
            },
            _ => (None, false),
        };
        match number {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                self.error(
                    fields.path(field),
                    format!("{n} is out of range {min}..={max}"),
                );
                None
            }
            None if whole => {
                self.error(
                    fields.path(field),
                    format!("{value} is out of range {min}..={max}"),
                );
                None
            }
            None => {
                let got = match value {
                    Value::Number(n) => n.to_string(),
                    other => kind(other).to_owned(),
                };
                self.error(
                    fields.path(field),
                    format!("expected an integer, got {got}"),
                );
                None
            }
        }
    }

    fn choice(&mut self, fields: &PolicyFields, field: &str, options: &[&str]) -> Option<usize> {
        let value = fields.get(field)?;
        let expected = options
            .iter()
            .map(|o| quoted(o))
            .collect::<Vec<_>>()
            .join(" or ");
        match value {
            Value::String(text) => match options.iter().position(|o| o == text) {
                Some(i) => Some(i),
                None => {
                    self.error(
                        fields.path(field),
                        format!("{}: expected {expected}", quoted(text)),
                    );
                    None
                }
            },
            other => {
                self.error(
                    fields.path(field),
                    format!("expected {expected}, got {}", kind(other)),
                );
                None
            }
        }
    }

    /// A list of strings; `None` when absent or of the wrong type (reported).
    fn string_list(&mut self, fields: &PolicyFields, field: &str) -> Option<Vec<String>> {
        let value = fields.get(field)?;
        let Value::Array(items) = value else {
            self.error(
                fields.path(field),
                format!("expected a list of strings, got {}", kind(value)),
            );
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(text) => out.push(text.clone()),
                other => {
                    self.error(
                        format!("{}[{i}]", fields.path(field)),
                        format!("expected a string, got {}", kind(other)),
                    );
                    // Keep indices aligned for later messages.
                    out.push(String::new());
                }
            }
        }
        Some(out)
    }

    fn origins(
        &mut self,
        fields: &PolicyFields,
        texts: Vec<String>,
        credentials: bool,
        insecure_ok: bool,
    ) -> Vec<OriginPattern> {
        let mut patterns = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            if not_a_string(fields, "allow_origins", i) {
                continue; // already reported by string_list
            }
            let path = format!("{}[{i}]", fields.path("allow_origins"));
            let pattern = match origin::parse_pattern(text) {
                Ok(pattern) => pattern,
                Err(e) => {
                    self.error(path, format!("{}: {e}", quoted(text)));
                    continue;
                }
            };
            if credentials {
                let problem = match &pattern {
                    OriginPattern::Any => Some("\"*\" is not allowed with allow_credentials: true (browsers refuse it); list the origins"),
                    OriginPattern::Null => Some("\"null\" is not allowed with allow_credentials: true (any sandboxed page sends it)"),
                    p if p.scheme() == Some("http") && !p.is_loopback() && !insecure_ok => Some(
                        "an insecure http:// origin with allow_credentials: true (anyone on the network can act as it); use https://, or set dangerously_allow_insecure_origins",
                    ),
                    _ => None,
                };
                if let Some(problem) = problem {
                    self.error(path, format!("{}: {problem}", quoted(text)));
                    continue;
                }
            }
            patterns.push(pattern);
        }
        patterns
    }

    fn regexes(
        &mut self,
        fields: &PolicyFields,
        texts: Vec<String>,
        credentials: bool,
    ) -> Vec<regex_lite::Regex> {
        let mut out = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            if not_a_string(fields, "allow_origin_regexes", i) {
                continue; // already reported by string_list
            }
            let path = format!("{}[{i}]", fields.path("allow_origin_regexes"));
            let re = match origin::compile_regex(text) {
                Ok(re) => re,
                Err(e) => {
                    self.error(path, format!("{}: {e}", quoted(text)));
                    continue;
                }
            };
            if credentials {
                if let Some(probe) = CREDENTIALED_REGEX_PROBES.iter().find(|p| re.is_match(p)) {
                    self.error(
                        path,
                        format!(
                            "{}: with allow_credentials: true this regex would admit any origin (it matches {})",
                            quoted(text),
                            quoted(probe)
                        ),
                    );
                    continue;
                }
            }
            if origin::has_suspicious_dot(text) {
                self.warning(
                    path,
                    format!("{}: unescaped '.' between two letters or digits matches any character; write \\. for a literal dot", quoted(text)),
                );
            }
            out.push(re);
        }
        out
    }

    /// `(any, listed methods deduplicated in order)`.
    fn methods(&mut self, fields: &PolicyFields) -> (bool, Vec<String>) {
        let Some(texts) = self.string_list(fields, "allow_methods") else {
            let defaults = ["GET", "HEAD", "POST"].map(str::to_owned).to_vec();
            return (false, defaults);
        };
        let mut any = false;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            if not_a_string(fields, "allow_methods", i) {
                continue; // already reported by string_list
            }
            let path = format!("{}[{i}]", fields.path("allow_methods"));
            if text == "*" {
                any = true;
            } else if !token::is_token(text.as_bytes()) {
                self.error(
                    path,
                    format!("{}: not a method token (RFC 9110)", quoted(text)),
                );
            } else if token::is_forbidden_method(text) {
                self.error(
                    path,
                    format!(
                        "{}: CONNECT, TRACE and TRACK can never be allowed",
                        quoted(text)
                    ),
                );
            } else if seen.insert(text.clone()) {
                out.push(text.clone());
            }
        }
        (any, out)
    }

    /// `(any, listed names deduplicated case-insensitively, first spelling kept)`.
    fn allow_headers(&mut self, fields: &PolicyFields) -> (bool, Vec<String>) {
        let texts = self
            .string_list(fields, "allow_headers")
            .unwrap_or_default();
        let mut any = false;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            if not_a_string(fields, "allow_headers", i) {
                continue; // already reported by string_list
            }
            let path = format!("{}[{i}]", fields.path("allow_headers"));
            let lower = text.to_ascii_lowercase();
            if text == "*" {
                any = true;
            } else if !token::is_token(text.as_bytes()) {
                self.error(
                    path,
                    format!("{}: not a header name token (RFC 9110)", quoted(text)),
                );
            } else if let Some(why) = token::disallowed_request_header(&lower) {
                self.error(path, format!("{}: {why}", quoted(text)));
            } else if seen.insert(lower) {
                out.push(text.clone());
            }
        }
        (any, out)
    }

    fn expose_headers(&mut self, fields: &PolicyFields, credentials: bool) -> Vec<String> {
        let texts = self
            .string_list(fields, "expose_headers")
            .unwrap_or_default();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            if not_a_string(fields, "expose_headers", i) {
                continue; // already reported by string_list
            }
            let path = format!("{}[{i}]", fields.path("expose_headers"));
            let lower = text.to_ascii_lowercase();
            if text == "*" && credentials {
                self.error(path, "\"*\" is not allowed with allow_credentials: true (browsers read it as a header named *); list the headers");
            } else if !token::is_token(text.as_bytes()) {
                self.error(
                    path,
                    format!("{}: not a header name token (RFC 9110)", quoted(text)),
                );
            } else if let Some(why) = token::disallowed_exposed_header(&lower) {
                self.error(path, format!("{}: {why}", quoted(text)));
            } else if seen.insert(lower) {
                out.push(text.clone());
            }
        }
        out
    }
}

/// Was item `i` of this list field something other than a string? (`string_list` reported it
/// and put an empty placeholder in its place, which must not be reported a second time.)
fn not_a_string(fields: &PolicyFields, field: &str, i: usize) -> bool {
    fields
        .get(field)
        .and_then(Value::as_array)
        .and_then(|list| list.get(i))
        .is_some_and(|v| !v.is_string())
}

/// A rule's `host`: an exact lower-case host or `*.` followed by a domain.
/// `namespace/name` of a Kubernetes resource: the namespace a DNS label (RFC 1123: lower-case
/// letters, digits and `-`, at most 63), the name a DNS subdomain (labels of those joined by `.`,
/// at most 253), as Kubernetes requires of VirtualServices and HTTPRoutes.
fn resource_name(text: &str) -> Result<ResourceName, String> {
    let Some((namespace, name)) = text.split_once('/') else {
        return Err("expected namespace/name".into());
    };
    if namespace.is_empty() || name.is_empty() {
        return Err("expected namespace/name, both non-empty".into());
    }
    let label_problem = |label: &str| -> Option<String> {
        if label.is_empty() {
            return Some("an empty label".into());
        }
        if label.len() > 63 {
            return Some(format!(
                "a label longer than 63 characters ({})",
                label.len()
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Some(format!("'{c}' (only a-z, 0-9, - and . in names)"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some("a label starting or ending with -".into());
        }
        None
    };
    if namespace.contains('.') {
        return Err("a namespace has no '.' (a Kubernetes namespace is a DNS label)".into());
    }
    if let Some(problem) = label_problem(namespace) {
        return Err(format!("the namespace has {problem}"));
    }
    if name.len() > 253 {
        return Err(format!(
            "the name is longer than 253 characters ({})",
            name.len()
        ));
    }
    if let Some(problem) = name.split('.').find_map(label_problem) {
        return Err(format!("the name has {problem}"));
    }
    Ok(ResourceName {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    })
}

fn host_pattern(text: &str) -> Result<HostPattern, String> {
    let (wildcard, host) = match text.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    if host.contains('*') {
        return Err("a wildcard is only allowed as a leading *.".into());
    }
    if host.contains(':') && !host.starts_with('[') {
        return Err("a host has no port (the port of :authority is ignored)".into());
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("write the host in lower case (hosts are matched case-insensitively)".into());
    }
    if !host.starts_with('[') {
        if host.split('.').any(str::is_empty) {
            return Err("a host must not have an empty label".into());
        }
        if let Some(c) = host.chars().find(|c| {
            !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
        }) {
            return Err(format!("'{c}' is not allowed in a host name"));
        }
    }
    Ok(if wildcard {
        HostPattern::Subdomain(format!(".{host}"))
    } else {
        HostPattern::Exact(host.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::load;

    #[test]
    fn a_non_string_list_item_is_reported_once() {
        let rejected = match load(
            r#"{"allow_origins": ["https://a.example"], "allow_methods": ["GET", 1], "allow_headers": [true], "expose_headers": [null]}"#,
        ) {
            Ok(_) => panic!("accepted"),
            Err(rejected) => rejected,
        };
        let errors: Vec<String> = rejected.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            errors,
            [
                "allow_methods[1]: expected a string, got a number",
                "allow_headers[0]: expected a string, got a boolean",
                "expose_headers[0]: expected a string, got null",
            ]
        );
    }
}
