//! Reads a policy document (docs/policy.md) from JSON, validates it and compiles it.
//!
//! The document is walked as a `serde_json::Value` rather than deserialised into structs, so that
//! every problem is reported at once, each with the JSON path of the value at fault. A key
//! written twice in one object is one of those problems (`serde_json` alone would keep the last).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::fields::{self, Field, Kind, MatchKind, ReadField, Scalars};
use super::json::{self, field_path};
use super::origin::{self, OriginMatcher, OriginPattern};
use super::token;
use super::{
    AllowHeadersValue, AllowedHeaders, AllowedMethods, Config, HeaderValue, HeaderValues,
    HostPattern, Loaded, Policy, Problem, Rejected, ResourceName, Rule,
};

const FULL_FORM_FIELDS: [&str; 3] = ["default", "policies", "rules"];
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
    /// Errors of a policy's integer and choice fields, held until its lists are checked (the
    /// order of [`Walker::check_policy`]).
    integer_errors: Vec<Problem>,
    choice_errors: Vec<Problem>,
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

/// A policy object being checked, and where its fields are in the document.
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
        hold(&mut self.errors, path, message);
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
                let hint = if fields::is_policy_field(key) {
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
            if !fields::RULE_FIELD_NAMES.contains(&key.as_str()) {
                self.error(
                    format!("{path}.{key}"),
                    format!(
                        "unknown field; expected {}",
                        fields::RULE_FIELD_NAMES.join(" or ")
                    ),
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
        let match_key = fields::MATCH.name;
        match map.get(match_key) {
            None => self.error(
                format!("{path}.{match_key}"),
                format!("missing field {match_key}"),
            ),
            Some(Value::Object(keys)) => {
                for (key, value) in keys {
                    let path = format!("{path}.{match_key}.{key}");
                    let Some(field) = fields::MATCH_FIELDS.iter().find(|f| f.name == key) else {
                        self.error(
                            path,
                            format!(
                                "unknown field; expected one of {}",
                                fields::MATCH_FIELD_NAMES.join(", ")
                            ),
                        );
                        continue;
                    };
                    let Value::String(text) = value else {
                        self.error(path, format!("expected a string, got {}", kind(value)));
                        continue;
                    };
                    if let Err(e) = match_field(&mut rule, field, text) {
                        self.error(path, format!("{}: {e}", quoted(text)));
                    }
                }
            }
            Some(other) => self.error(
                format!("{path}.{match_key}"),
                format!("expected an object, got {}", kind(other)),
            ),
        }
        let policy_field = format!("{path}.{}", fields::POLICY.name);
        match map.get(fields::POLICY.name) {
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

    /// A policy object: validated into its checked fields, then compiled.
    fn policy(&mut self, map: &Map<String, Value>, prefix: &str, name: &str) -> Option<Policy> {
        let before = self.errors.len();
        let checked = self.check_policy(&PolicyFields { map, prefix });
        (self.errors.len() == before).then(|| compile(checked, name))
    }

    /// Every check of one policy object, errors reported in the order of the golden files:
    /// unknown fields, booleans, origins, methods and headers, integers, choices (each kind in
    /// declaration order, the two booleans the origin checks depend on first). The result is
    /// meaningful only when no error was reported.
    fn check_policy(&mut self, fields: &PolicyFields) -> CheckedPolicy {
        for key in fields.map.keys() {
            if !fields::is_policy_field(key) {
                self.error(fields.path(key), "unknown field");
            }
        }
        let credentials = self.boolean(fields, &fields::ALLOW_CREDENTIALS);
        let insecure_ok = self.boolean(fields, &fields::DANGEROUSLY_ALLOW_INSECURE_ORIGINS);
        let scalars = Scalars::read(self, fields);
        let origin_texts = self.string_list(fields, &fields::ALLOW_ORIGINS);
        let regex_texts = self.string_list(fields, &fields::ALLOW_ORIGIN_REGEXES);
        let has_regexes = regex_texts.as_ref().is_some_and(|r| r.len > 0);
        let allow_origins = fields::ALLOW_ORIGINS.name;
        match (&origin_texts, fields.get(allow_origins)) {
            (_, None) => self.error(
                fields.path(allow_origins),
                if has_regexes {
                    "missing field allow_origins (required; give [] when allow_origin_regexes lists every allowed origin)"
                } else {
                    "missing field allow_origins"
                },
            ),
            (Some(list), Some(_)) if list.len == 0 && !has_regexes => self.error(
                fields.path(allow_origins),
                "must not be empty unless allow_origin_regexes is given",
            ),
            _ => {}
        }
        let origins = self.origins(fields, origin_texts, credentials, insecure_ok);
        let regexes = self.regexes(fields, regex_texts, credentials);

        let methods = self.methods(fields);
        let headers = self.allow_headers(fields);
        let expose_headers = self.expose_headers(fields, credentials);
        self.errors.append(&mut self.integer_errors);
        self.errors.append(&mut self.choice_errors);
        CheckedPolicy {
            origins,
            regexes,
            methods,
            headers,
            expose_headers,
            allow_credentials: credentials,
            scalars,
        }
    }

    /// A list-of-strings field: `None` when absent or not a list (reported). Items that are not
    /// strings are reported here and left out; the strings keep their index for later messages.
    fn string_list(&mut self, fields: &PolicyFields, field: &Field) -> Option<StringList> {
        let value = fields.get(field.name)?;
        let Value::Array(items) = value else {
            self.error(
                fields.path(field.name),
                format!("expected a list of strings, got {}", kind(value)),
            );
            return None;
        };
        let mut strings = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match item {
                Value::String(text) => strings.push((i, text.clone())),
                other => self.error(
                    format!("{}[{i}]", fields.path(field.name)),
                    format!("expected a string, got {}", kind(other)),
                ),
            }
        }
        Some(StringList {
            len: items.len(),
            strings,
        })
    }

    fn origins(
        &mut self,
        fields: &PolicyFields,
        texts: Option<StringList>,
        credentials: bool,
        insecure_ok: bool,
    ) -> Vec<OriginPattern> {
        let texts = texts.map(|t| t.strings).unwrap_or_default();
        let mut patterns = Vec::with_capacity(texts.len());
        for (i, text) in &texts {
            let path = format!("{}[{i}]", fields.path(fields::ALLOW_ORIGINS.name));
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
        texts: Option<StringList>,
        credentials: bool,
    ) -> Vec<regex_lite::Regex> {
        let texts = texts.map(|t| t.strings).unwrap_or_default();
        let mut out = Vec::with_capacity(texts.len());
        for (i, text) in &texts {
            let path = format!("{}[{i}]", fields.path(fields::ALLOW_ORIGIN_REGEXES.name));
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

    /// `allow_methods`: `*`, and the listed methods deduplicated in order (the declared default
    /// when absent or not a list).
    fn methods(&mut self, fields: &PolicyFields) -> Listed {
        let field = &fields::ALLOW_METHODS;
        let Some(texts) = self.string_list(fields, field) else {
            return Listed::default_of(field);
        };
        let mut listed = Listed::default();
        let mut seen = HashSet::new();
        for (i, text) in &texts.strings {
            let path = format!("{}[{i}]", fields.path(field.name));
            if text == "*" {
                listed.any = true;
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
                listed.names.push(text.clone());
            }
        }
        listed
    }

    /// `allow_headers`: `*`, and the listed names deduplicated case-insensitively (first
    /// spelling kept).
    fn allow_headers(&mut self, fields: &PolicyFields) -> Listed {
        let field = &fields::ALLOW_HEADERS;
        let texts = self.string_list(fields, field);
        let mut listed = Listed::default();
        let mut seen = HashSet::new();
        for (i, text) in texts.iter().flat_map(|t| &t.strings) {
            let path = format!("{}[{i}]", fields.path(field.name));
            let lower = text.to_ascii_lowercase();
            if text == "*" {
                listed.any = true;
            } else if !token::is_token(text.as_bytes()) {
                self.error(
                    path,
                    format!("{}: not a header name token (RFC 9110)", quoted(text)),
                );
            } else if let Some(why) = token::disallowed_request_header(&lower) {
                self.error(path, format!("{}: {why}", quoted(text)));
            } else if seen.insert(lower) {
                listed.names.push(text.clone());
            }
        }
        listed
    }

    /// `expose_headers`, deduplicated case-insensitively; `*` only without credentials.
    fn expose_headers(&mut self, fields: &PolicyFields, credentials: bool) -> Vec<String> {
        let field = &fields::EXPOSE_HEADERS;
        let texts = self.string_list(fields, field);
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (i, text) in texts.iter().flat_map(|t| &t.strings) {
            let path = format!("{}[{i}]", fields.path(field.name));
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

/// Adds a problem to `held` (the walker's errors, or errors held for later).
fn hold(held: &mut Vec<Problem>, path: impl Into<String>, message: impl Into<String>) {
    held.push(Problem {
        path: path.into(),
        message: message.into(),
    });
}

/// The scalar policy fields, read by their declaration ([`Scalars::read`]).
impl ReadField<PolicyFields<'_>> for Walker {
    /// A boolean field; its declared default when absent (or wrong, which is reported).
    fn boolean(&mut self, fields: &PolicyFields, field: &Field) -> bool {
        let Kind::Bool { default } = field.kind else {
            return false;
        };
        match fields.get(field.name) {
            None => default,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.error(
                    fields.path(field.name),
                    format!("expected true or false, got {}", kind(other)),
                );
                default
            }
        }
    }

    /// An integer field in its declared range, or its declared default (`None`: absent, off). A
    /// float with a zero fraction (`600.0`, as Istio's YAML may send) counts as an integer.
    fn integer(&mut self, fields: &PolicyFields, field: &Field) -> Option<i64> {
        let Kind::Integer { min, max, default } = field.kind else {
            return None;
        };
        let Some(value) = fields.get(field.name) else {
            return default;
        };
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
        let path = fields.path(field.name);
        match number {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                hold(
                    &mut self.integer_errors,
                    path,
                    format!("{n} is out of range {min}..={max}"),
                );
                None
            }
            None if whole => {
                hold(
                    &mut self.integer_errors,
                    path,
                    format!("{value} is out of range {min}..={max}"),
                );
                None
            }
            None => {
                let got = match value {
                    Value::Number(n) => n.to_string(),
                    other => kind(other).to_owned(),
                };
                hold(
                    &mut self.integer_errors,
                    path,
                    format!("expected an integer, got {got}"),
                );
                None
            }
        }
    }

    /// A choice field: the index of its option; the first when absent (or wrong, reported).
    fn choice(&mut self, fields: &PolicyFields, field: &Field) -> usize {
        let Kind::Choice { options } = field.kind else {
            return 0;
        };
        let Some(value) = fields.get(field.name) else {
            return 0;
        };
        let expected = options
            .iter()
            .map(|o| quoted(o))
            .collect::<Vec<_>>()
            .join(" or ");
        match value {
            Value::String(text) => {
                if let Some(index) = options.iter().position(|o| o == text) {
                    return index;
                }
                hold(
                    &mut self.choice_errors,
                    fields.path(field.name),
                    format!("{}: expected {expected}", quoted(text)),
                );
            }
            other => hold(
                &mut self.choice_errors,
                fields.path(field.name),
                format!("expected {expected}, got {}", kind(other)),
            ),
        }
        0
    }
}

/// The strings of a list field, each with its index in the document's list.
struct StringList {
    /// Items in the document's list, strings or not.
    len: usize,
    strings: Vec<(usize, String)>,
}

/// A method or header name list after validation: `*` given, and the other names.
#[derive(Default)]
struct Listed {
    any: bool,
    names: Vec<String>,
}

impl Listed {
    /// The declared default of a list field.
    fn default_of(field: &Field) -> Self {
        let names = match field.kind {
            Kind::List {
                default: Some(names),
                ..
            } => names.iter().map(|n| (*n).to_owned()).collect(),
            _ => Vec::new(),
        };
        Listed { any: false, names }
    }
}

/// A policy object after validation: every field of the right type and every item valid (the
/// cross-field rules on credentials included). What [`compile`] turns into a [`Policy`].
struct CheckedPolicy {
    origins: Vec<OriginPattern>,
    regexes: Vec<regex_lite::Regex>,
    methods: Listed,
    headers: Listed,
    expose_headers: Vec<String>,
    allow_credentials: bool,
    /// The fields read by their declaration alone.
    scalars: Scalars,
}

/// Compiles a checked policy for the request path: the matchers and lookup sets, and every
/// response header value precomputed ([`HeaderValues`]). Cannot fail.
fn compile(checked: CheckedPolicy, name: &str) -> Policy {
    let CheckedPolicy {
        origins,
        regexes,
        methods,
        headers,
        expose_headers,
        allow_credentials: credentials,
        scalars,
    } = checked;
    let origins = OriginMatcher::new(&origins, regexes);
    let any_origin = origins.allows_any();
    let allow_methods = if methods.any {
        if credentials {
            HeaderValue::Echo
        } else {
            HeaderValue::Fixed("*".to_owned())
        }
    } else if methods.names.is_empty() {
        HeaderValue::Omit
    } else {
        HeaderValue::Fixed(methods.names.join(", "))
    };
    let allow_headers = if headers.any {
        if credentials {
            AllowHeadersValue::Echo
        } else {
            AllowHeadersValue::Wildcard {
                authorization_listed: headers
                    .names
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case("authorization")),
            }
        }
    } else if headers.names.is_empty() {
        AllowHeadersValue::Omit
    } else {
        AllowHeadersValue::Fixed(headers.names.join(", "))
    };
    let values = HeaderValues {
        allow_methods,
        allow_headers,
        expose_headers: if expose_headers.is_empty() {
            HeaderValue::Omit
        } else {
            HeaderValue::Fixed(expose_headers.join(", "))
        },
        max_age: scalars
            .max_age
            .map_or(HeaderValue::Omit, |n| HeaderValue::Fixed(n.to_string())),
        preflight_vary: if scalars.allow_private_network {
            super::PREFLIGHT_VARY_PRIVATE_NETWORK
        } else {
            super::PREFLIGHT_VARY
        },
    };
    Policy {
        name: name.to_owned(),
        vary_on_origin: !any_origin || credentials,
        origins,
        methods: AllowedMethods {
            any: methods.any,
            listed: methods.names.iter().map(|m| m.as_bytes().into()).collect(),
        },
        headers: AllowedHeaders {
            any: headers.any,
            longest: headers.names.iter().map(String::len).max().unwrap_or(0),
            listed: headers
                .names
                .iter()
                .map(|h| h.to_ascii_lowercase().into_bytes().into())
                .collect(),
        },
        allow_credentials: credentials,
        allow_private_network: scalars.allow_private_network,
        unmatched_preflights: scalars.unmatched_preflights,
        preflight_status: scalars.preflight_status,
        upstream_cors_headers: scalars.upstream_cors_headers,
        mode: scalars.mode,
        debug: scalars.debug,
        values,
    }
}

/// One `match` key's string, checked by its declared kind and stored in the rule; the error
/// message when it is not valid.
fn match_field(rule: &mut Rule, field: &Field<MatchKind>, text: &str) -> Result<(), String> {
    let is = |other: &Field<MatchKind>| field.name == other.name;
    match field.kind {
        MatchKind::Name if is(&fields::ROUTE) => rule.route = Some(text.to_owned()),
        MatchKind::Name => rule.virtual_host = Some(text.to_owned()),
        MatchKind::Host => rule.host = Some(host_pattern(text)?),
        MatchKind::PathPrefix if text.starts_with('/') => rule.path_prefix = Some(text.to_owned()),
        MatchKind::PathPrefix => return Err("a path prefix must start with /".into()),
        MatchKind::Resource if is(&fields::VIRTUAL_SERVICE) => {
            rule.virtual_service = Some(resource_name(text)?);
        }
        MatchKind::Resource => rule.http_route = Some(resource_name(text)?),
    }
    Ok(())
}

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

/// A rule's `host`: an exact lower-case host or `*.` followed by a domain.
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

    fn errors(document: &str) -> Vec<String> {
        match load(document) {
            Ok(_) => panic!("accepted"),
            Err(rejected) => rejected.errors.iter().map(ToString::to_string).collect(),
        }
    }

    /// Booleans (the two the origin checks read first), lists, integers, then choices, each kind
    /// in declaration order, whatever the order of the document.
    #[test]
    fn scalar_errors_come_in_the_order_of_their_kinds() {
        assert_eq!(
            errors(
                r#"{"allow_origins": 1, "debug": 1, "mode": 1, "preflight_status": "x", "unmatched_preflights": 2, "max_age": -1, "allow_private_network": 1, "dangerously_allow_insecure_origins": 1, "allow_credentials": 1, "allow_methods": 1, "expose_headers": [1], "upstream_cors_headers": "no", "bogus": 1}"#
            ),
            [
                "bogus: unknown field",
                "allow_credentials: expected true or false, got a number",
                "dangerously_allow_insecure_origins: expected true or false, got a number",
                "allow_private_network: expected true or false, got a number",
                "debug: expected true or false, got a number",
                "allow_origins: expected a list of strings, got a number",
                "allow_methods: expected a list of strings, got a number",
                "expose_headers[0]: expected a string, got a number",
                "max_age: -1 is out of range 0..=86400",
                "preflight_status: expected an integer, got a string",
                "unmatched_preflights: expected \"reject\" or \"forward\", got a number",
                "upstream_cors_headers: \"no\": expected \"replace\" or \"keep\"",
                "mode: expected \"enforce\" or \"report\", got a number",
            ]
        );
    }

    /// Rule and match keys are checked against their declarations, each key by its kind.
    #[test]
    fn rule_keys_are_checked_by_their_declarations() {
        assert_eq!(
            errors(
                r#"{"policies": {"a": {"allow_origins": ["https://a.example"]}}, "rules": [{"match": {"route": 1, "zzz": "x", "host": "A.example", "path_prefix": "x", "virtual_service": "a", "http_route": "b/C", "virtual_host": 2}, "policy": "a", "extra": 1}, {"policy": "a"}, {"match": []}]}"#
            ),
            [
                "rules[0].extra: unknown field; expected match or policy",
                "rules[0].match.host: \"A.example\": write the host in lower case (hosts are matched case-insensitively)",
                "rules[0].match.http_route: \"b/C\": the name has 'C' (only a-z, 0-9, - and . in names)",
                "rules[0].match.path_prefix: \"x\": a path prefix must start with /",
                "rules[0].match.route: expected a string, got a number",
                "rules[0].match.virtual_host: expected a string, got a number",
                "rules[0].match.virtual_service: \"a\": expected namespace/name",
                "rules[0].match.zzz: unknown field; expected one of route, virtual_host, host, path_prefix, virtual_service, http_route",
                "rules[1].match: missing field match",
                "rules[2].match: expected an object, got a list",
                "rules[2].policy: missing field policy (a policy name, or null for no CORS handling)",
            ]
        );
    }
}
