//! ingress-nginx Ingresses: the `nginx.ingress.kubernetes.io/enable-cors` annotation and its
//! `cors-*` companions, per host and path.
//!
//! What ingress-nginx does with them (its annotation docs, `docs/user-guide/nginx-configuration/
//! annotations.md`, "Enable CORS"; the parser `internal/ingress/annotations/cors/main.go`; the
//! template functions `buildCorsOriginRegex` and `buildOriginRegex`):
//! - `cors-allow-origin`: a comma-separated list; absent means `*`; a value that is not an origin
//!   is skipped; `*` anywhere means every origin, answered with `Access-Control-Allow-Origin: *`.
//!   Otherwise the request's `Origin` is matched case-insensitively against the list, a leading
//!   `*.` standing for exactly one label (`[A-Za-z0-9-]+`), and echoed when it matches.
//! - `cors-allow-credentials`: default `true`, sent whatever the origin, `*` included.
//! - `cors-allow-methods` (default `GET, PUT, POST, DELETE, PATCH, OPTIONS`),
//!   `cors-allow-headers` (default `DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,
//!   Cache-Control,Content-Type,Range,Authorization`), `cors-expose-headers` (default none) are
//!   sent as they are; nginx checks neither the requested method nor the headers (the browser
//!   does).
//! - `cors-max-age`: default 1728000.
//! - A preflight (`OPTIONS`) from a matching origin is answered by nginx with 204; any other
//!   `OPTIONS` request goes to the backend.

use std::collections::BTreeMap;

use cors_engine::policy::fields;
use serde_json::{json, Value};

use super::{policy_name, split_list, Cors, Importer, Object};

const PREFIX: &str = "nginx.ingress.kubernetes.io/";
const DEFAULT_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
const DEFAULT_HEADERS: &str =
    "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";
const DEFAULT_MAX_AGE: &str = "1728000";
/// The annotations that configure CORS, each without [`PREFIX`].
const ANNOTATIONS: [&str; 7] = [
    "enable-cors",
    "cors-allow-origin",
    "cors-allow-methods",
    "cors-allow-headers",
    "cors-expose-headers",
    "cors-allow-credentials",
    "cors-max-age",
];

/// One path of one Ingress, and the policy it gets.
struct Location {
    host: Option<String>,
    path: String,
    policy: Value,
}

/// Go's `strconv.ParseBool`, which ingress-nginx reads boolean annotations with.
fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn annotation<'a>(ingress: &'a Value, name: &str) -> Option<&'a str> {
    ingress
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(format!("{PREFIX}{name}")))
        .and_then(Value::as_str)
}

/// A list value ingress-nginx accepts (`^([A-Za-z0-9\-\_]+,?\s?)+$` for names,
/// `^([A-Za-z]+,?\s?)+$` for methods, `*` too for exposed headers).
fn valid_list(text: &str, allow: impl Fn(char) -> bool) -> bool {
    !text.trim().is_empty()
        && text
            .split(',')
            .all(|item| !item.trim().is_empty() && item.trim().chars().all(&allow))
}

/// An origin as ingress-nginx's validation takes it: `scheme://host[:port]` with an optional
/// leading `*.`, or `null`.
fn valid_origin(origin: &str) -> bool {
    if origin == "null" {
        return true;
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    let host_port = rest.strip_prefix("*.").unwrap_or(rest);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (host_port, None),
    };
    !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && port.map_or(true, |p| {
            !p.is_empty() && p.chars().all(|c| c.is_ascii_digit())
        })
}

/// A regex-lite pattern for an origin with a leading `*.` (one label, as nginx matches it).
fn one_label_regex(origin: &str) -> Option<String> {
    let (scheme, rest) = origin.split_once("://")?;
    let rest = rest.strip_prefix("*.")?;
    let escaped: String = rest
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c == '.' {
                "\\.".to_owned()
            } else {
                c.to_string()
            }
        })
        .collect();
    Some(format!("{scheme}://[a-z0-9-]+\\.{escaped}"))
}

impl Importer {
    /// Every Ingress of the input at once: nginx chooses, per host, the longest matching path
    /// of every Ingress of that host, so paths without CORS take part as `policy: null`.
    pub(crate) fn ingresses(&mut self, all: &[Object]) {
        let mut locations: Vec<Location> = Vec::new();
        let mut cors_hosts: Vec<Option<String>> = Vec::new();
        for object in all.iter().filter(|o| o.kind() == "Ingress") {
            let enabled =
                annotation(&object.value, "enable-cors").and_then(parse_bool) == Some(true);
            let policy = if enabled {
                match self.ingress_policy(object) {
                    Some(policy) => policy,
                    None => continue,
                }
            } else {
                Value::Null
            };
            let namespace = object
                .namespace_or(self.namespace.as_deref())
                .map_or(String::new(), |ns| format!("{ns}/"));
            let label = format!(
                "{} (Ingress {namespace}{})",
                object.label,
                object.name().unwrap_or("(unnamed)")
            );
            let rules = object
                .value
                .pointer("/spec/rules")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if enabled && object.value.pointer("/spec/defaultBackend").is_some() {
                self.warn(
                    format!("{label}: spec.defaultBackend"),
                    "the Ingress's default backend serves requests no rule matches, on any host: no rule key can select only those: not imported (they get no CORS handling)",
                );
            }
            for (r, rule) in rules.iter().enumerate() {
                let host = rule
                    .get("host")
                    .and_then(Value::as_str)
                    .map(str::to_ascii_lowercase);
                if enabled {
                    if let Some(host) = host.as_deref().filter(|h| h.starts_with("*.")) {
                        self.warn(
                            format!("{label}: spec.rules[{r}].host"),
                            format!("{host:?}: nginx serves exactly one label in place of *, the host rule one or more: a request for a deeper subdomain gets this CORS policy, where nginx sent it to its default server"),
                        );
                    }
                }
                let paths = rule
                    .pointer("/http/paths")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for (p, entry) in paths.iter().enumerate() {
                    let at = format!("{label}: spec.rules[{r}].http.paths[{p}]");
                    let path = entry.get("path").and_then(Value::as_str).unwrap_or("/");
                    let path_type = entry
                        .get("pathType")
                        .and_then(Value::as_str)
                        .unwrap_or("ImplementationSpecific");
                    let regex = ["use-regex", "rewrite-target"]
                        .iter()
                        .any(|a| annotation(&object.value, a).is_some_and(|v| v != "false"));
                    let prefix = match path_type {
                        "Exact" => {
                            if enabled {
                                self.warn(
                                    format!("{at}.pathType"),
                                    format!("Exact {path:?}: no rule key matches one path alone (path_prefix also matches longer paths): no rule for it (requests for {path} get what a shorter path prefix of the host gives them, or no CORS handling)"),
                                );
                            }
                            continue;
                        }
                        _ if regex => {
                            if enabled {
                                self.warn(
                                    format!("{at}.path"),
                                    format!("{path:?} is a regular expression (use-regex or rewrite-target): no rule key matches a path by regex: not imported (these requests get no CORS handling)"),
                                );
                            }
                            continue;
                        }
                        "Prefix" if path != "/" && !path.ends_with('/') => {
                            if enabled {
                                self.warn(
                                    format!("{at}.path"),
                                    format!("Prefix {path:?} matches {path} and {path}/…, never {path}more: imported as path_prefix \"{path}/\", since path_prefix {path:?} would also match {path}more; requests for {path} itself get what a shorter path prefix of the host gives them, or no CORS handling"),
                                );
                            }
                            format!("{path}/")
                        }
                        _ => path.to_owned(),
                    };
                    locations.push(Location {
                        host: host.clone(),
                        path: prefix,
                        policy: policy.clone(),
                    });
                    if enabled && !cors_hosts.contains(&host) {
                        cors_hosts.push(host.clone());
                    }
                }
            }
        }
        if cors_hosts.is_empty() {
            return;
        }
        // Only the hosts where some path has CORS; per host the longest path first, then the
        // paths of Ingresses without a host (nginx's default server).
        // With CORS on the default server, every other host's requests must stay out of it.
        let hostless_cors = cors_hosts.contains(&None);
        locations.retain(|l| hostless_cors || cors_hosts.contains(&l.host) || l.host.is_none());
        let mut by_host: BTreeMap<Option<String>, Vec<Location>> = BTreeMap::new();
        for location in locations {
            by_host
                .entry(location.host.clone())
                .or_default()
                .push(location);
        }
        let hostless = by_host.remove(&None).unwrap_or_default();
        let mut rules = Vec::new();
        let groups = by_host.into_iter().chain(std::iter::once((None, hostless)));
        for (host, mut group) in groups {
            group.sort_by_key(|l| std::cmp::Reverse(l.path.len()));
            for location in &group {
                let mut matched = serde_json::Map::new();
                if let Some(host) = &host {
                    matched.insert(fields::HOST.name.into(), json!(host));
                }
                matched.insert(fields::PATH_PREFIX.name.into(), json!(location.path));
                rules.push(json!({ "match": matched, "policy": location.policy }));
            }
            if let (Some(host), true) = (&host, hostless_cors) {
                // The paths this host lacks are not served by the Ingresses without a host.
                rules.push(json!({ "match": { fields::HOST.name: host }, "policy": null }));
            }
        }
        self.specific_rules.extend(rules);
    }

    /// The policy of an Ingress with `enable-cors: "true"` (its name, or null when nothing is
    /// allowed); `None` when the Ingress cannot be imported at all.
    fn ingress_policy(&mut self, object: &Object) -> Option<Value> {
        let ingress = &object.value;
        let name = object.name().unwrap_or("(unnamed)").to_owned();
        let namespace = self.namespace_of(object)?;
        self.sources += 1;
        let here = format!(
            "{} (Ingress {namespace}/{name}): metadata.annotations",
            object.label
        );
        let at = |a: &str| format!("{here}[\"{PREFIX}{a}\"]");
        for a in ANNOTATIONS {
            if annotation(ingress, a).is_some() {
                self.note_removal(format!(
                    "Ingress {namespace}/{name}: metadata.annotations[\"{PREFIX}{a}\"]"
                ));
            }
        }
        let mut cors = Cors::default();
        match annotation(ingress, "cors-allow-origin") {
            None => {
                self.warn(
                    at("cors-allow-origin"),
                    "absent: ingress-nginx's default is every origin (*)",
                );
                cors.origins
                    .push((at("cors-allow-origin"), "exact".into(), "*".into()));
            }
            Some(list) => {
                for (k, origin) in list.split(',').map(str::trim).enumerate() {
                    let origin_path = format!("{}[{k}]", at("cors-allow-origin"));
                    if origin == "*" {
                        cors.origins = vec![(origin_path, "exact".into(), "*".into())];
                        break;
                    }
                    if !valid_origin(origin) {
                        self.warn(
                            origin_path,
                            format!("{origin:?} is not an origin; ingress-nginx skipped it too"),
                        );
                        continue;
                    }
                    match one_label_regex(origin) {
                        Some(regex) => {
                            self.warn(
                                origin_path.clone(),
                                format!("{origin:?}: ingress-nginx matches exactly one label in place of *; imported as the regex {regex:?} (a pattern https://*.… would match deeper subdomains too)"),
                            );
                            cors.origins.push((origin_path, "regex".into(), regex));
                        }
                        None => cors.origins.push((
                            origin_path,
                            "exact".into(),
                            origin.to_ascii_lowercase(),
                        )),
                    }
                }
                if cors.origins.is_empty() {
                    self.warn(
                        at("cors-allow-origin"),
                        "no valid origin: ingress-nginx then sends no CORS headers at all; imported as no CORS handling (policy null)",
                    );
                    return Some(Value::Null);
                }
            }
        }
        let list = |value: Option<&str>, default: &str, allow: &dyn Fn(char) -> bool| {
            let text = value.filter(|v| valid_list(v, allow)).unwrap_or(default);
            split_list(text)
        };
        let token = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == ' ';
        cors.methods = Some(list(
            annotation(ingress, "cors-allow-methods"),
            DEFAULT_METHODS,
            &|c: char| c.is_ascii_alphabetic() || c == ' ',
        ));
        cors.headers = Some(list(
            annotation(ingress, "cors-allow-headers"),
            DEFAULT_HEADERS,
            &token,
        ));
        let expose = list(
            annotation(ingress, "cors-expose-headers"),
            "",
            &|c: char| token(c) || c == '*',
        );
        if !expose.is_empty() {
            cors.expose = Some(expose);
        }
        let credentials = annotation(ingress, "cors-allow-credentials");
        cors.credentials = credentials.and_then(parse_bool).unwrap_or(true);
        cors.credentials_path = Some(at("cors-allow-credentials"));
        if credentials.and_then(parse_bool).is_none() && cors.credentials {
            let any = cors.origins.iter().any(|(_, _, o)| o == "*");
            if !any {
                self.warn(
                    at("cors-allow-credentials"),
                    "absent: ingress-nginx's default allows credentials; imported as allow_credentials: true, so the listed origins may still send cookies (set the annotation to \"false\" in the source first if no page needs them)",
                );
            }
        }
        cors.any_origin_credentials = Some("ingress-nginx answered Access-Control-Allow-Origin: * with Access-Control-Allow-Credentials: true, which browsers refuse for credentialed requests".into());
        let max_age = match annotation(ingress, "cors-max-age") {
            Some(age) if age.trim().parse::<i64>().is_ok() => age.trim().to_owned(),
            _ => {
                self.warn(
                    at("cors-max-age"),
                    format!("absent or not a whole number: ingress-nginx's default is {DEFAULT_MAX_AGE} seconds"),
                );
                DEFAULT_MAX_AGE.to_owned()
            }
        };
        cors.max_age = Some((at("cors-max-age"), format!("{max_age}s")));
        cors.forward_unmatched = true;
        cors.notes.push((
            here.clone(),
            "ingress-nginx answers every preflight from an allowed origin itself (204, whatever method or headers it asks for: the browser checks them) and passes the others to the backend; imported as unmatched_preflights: forward, which passes every preflight that fails any check (origin, method or headers) to the backend: the browser's outcome differs only where the backend answers such a preflight with CORS headers of its own".into(),
        ));
        let policy = self.policy(cors, &here);
        Some(self.add_policy(&policy_name(&format!("{namespace}-{name}")), policy))
    }
}
