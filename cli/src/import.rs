//! `cors-policy import FILE`: a policy document equivalent to the CORS configuration users already
//! have, with rules keyed on where each came from, read from any mix of:
//! - Istio VirtualServices (`http[].corsPolicy`, delegates included), below;
//! - Envoy route configurations (`CorsPolicy` per virtual host or route), below;
//! - ingress-nginx Ingresses (the `nginx.ingress.kubernetes.io/*cors*` annotations): [`ingress_nginx`];
//! - Gateway API HTTPRoutes with `CORS` filters: [`gateway_api`];
//! - Envoy Gateway `SecurityPolicy` with `cors`: [`envoy_gateway`].
//!
//! YAML or JSON, several documents, and `kind: List` (what `kubectl get -o yaml` prints).
//!
//! What has no exact equivalent is reported as a warning, with the path of the value in the input
//! and what was imported in its place, which never allows more than the input did: a prefix match
//! becomes its exact origin, a value the policy refuses is left out, an entry whose routes cannot
//! be told apart is not imported (those routes keep no CORS handling). Every source object and
//! field that would go on acting on the same requests is listed in [`Imported::remove`].

mod envoy_gateway;
mod gateway_api;
mod ingress_nginx;
pub mod istio;

use std::collections::BTreeMap;

use cors_engine::policy::{self, fields};
use serde_json::{json, Map, Value};

/// One value the import could not carry over exactly.
pub struct Warning {
    /// Where in the input: `<document>: <path>`.
    pub path: String,
    pub message: String,
}

/// The import's result: the policy document (if anything was imported) and the warnings.
pub struct Imported {
    pub document: Option<Value>,
    pub warnings: Vec<Warning>,
    /// Input that cannot be imported without a guess (a resource without a namespace): nothing is
    /// printed when there is any.
    pub errors: Vec<Warning>,
    /// What to remove or disable once the filter serves those routes, so that two CORS
    /// implementations never act on one request: `<resource>: <field>`.
    pub remove: Vec<String>,
    /// How many resources / route configurations held CORS configuration.
    pub sources: usize,
}

/// One Kubernetes object (or other document) of the input.
pub(crate) struct Object {
    /// `document N` (`document N, items[K]` inside a `kind: List`).
    pub label: String,
    pub value: Value,
}

impl Object {
    pub fn kind(&self) -> &str {
        self.value.get("kind").and_then(Value::as_str).unwrap_or("")
    }

    pub fn name(&self) -> Option<&str> {
        self.value.pointer("/metadata/name").and_then(Value::as_str)
    }

    /// Its namespace as the input gives it, else `fallback` (`--namespace`).
    pub fn namespace_or<'a>(&'a self, fallback: Option<&'a str>) -> Option<&'a str> {
        self.value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .or(fallback)
    }
}

#[derive(Default)]
pub(crate) struct Importer {
    policies: Map<String, Value>,
    /// Rules keyed on a route or a route name come before those keyed on a whole resource.
    specific_rules: Vec<Value>,
    broad_rules: Vec<Value>,
    warnings: Vec<Warning>,
    errors: Vec<Warning>,
    remove: Vec<String>,
    sources: usize,
    /// `--namespace`: the namespace of resources that have none.
    namespace: Option<String>,
    /// `--proxy envoy-gateway`: key HTTPRoute CORS filters on hosts and paths, not on the route
    /// names Istio gives them.
    host_path_keys: bool,
}

/// The proxy that will run the filter, where the sources' keys depend on it (`--proxy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proxy {
    /// Istio (gateways, sidecars, waypoints): route names as Istio generates them.
    Istio,
    /// Envoy Gateway (or any proxy): HTTPRoutes by their hostnames and path prefixes.
    EnvoyGateway,
}

/// The objects of a (multi-document) YAML or JSON text, `kind: List` items one by one. `Err` is a
/// text that cannot be read at all.
pub(crate) fn objects(text: &str) -> Result<Vec<Object>, String> {
    fn push(objects: &mut Vec<Object>, label: String, value: Value) {
        if value.get("kind").and_then(Value::as_str) == Some("List") {
            let items = value.get("items").and_then(Value::as_array).cloned();
            for (k, item) in items.unwrap_or_default().into_iter().enumerate() {
                push(objects, format!("{label}, items[{k}]"), item);
            }
        } else if !value.is_null() {
            objects.push(Object { label, value });
        }
    }
    let mut found = Vec::new();
    for (index, yaml) in serde_norway::Deserializer::from_str(text).enumerate() {
        let document: Value = serde::Deserialize::deserialize(yaml)
            .map_err(|e| format!("YAML document {}: {e}", index + 1))?;
        push(&mut found, format!("document {}", index + 1), document);
    }
    Ok(found)
}

/// Imports every source of a (multi-document) YAML or JSON text. `namespace` stands for the
/// namespace of resources that have none (`--namespace`); without it they are errors. `proxy` is
/// where the filter will run (`--proxy`). `Err` is a text that cannot be read at all.
pub fn import(text: &str, namespace: Option<&str>, proxy: Proxy) -> Result<Imported, String> {
    let objects = objects(text)?;
    let mut importer = Importer {
        namespace: namespace.map(str::to_owned),
        host_path_keys: proxy == Proxy::EnvoyGateway,
        ..Importer::default()
    };
    for object in &objects {
        match object.kind() {
            "VirtualService" => importer.virtual_service(object, &objects),
            "Ingress" => {}
            "HTTPRoute" => importer.http_route(object, &objects),
            "SecurityPolicy" => importer.security_policy(object, &objects),
            _ => importer.envoy(&object.value, &object.label, ""),
        }
    }
    // Ingresses together: nginx chooses among the paths of every Ingress of a host.
    importer.ingresses(&objects);
    let Importer {
        policies,
        mut specific_rules,
        broad_rules,
        warnings,
        errors,
        remove,
        sources,
        ..
    } = importer;
    specific_rules.extend(broad_rules);
    // Rules alone (each with policy null) would import nothing.
    let document = (!policies.is_empty() && errors.is_empty()).then(|| {
        let mut doc = Map::new();
        doc.insert("policies".into(), Value::Object(policies));
        doc.insert("rules".into(), Value::Array(specific_rules));
        Value::Object(doc)
    });
    Ok(Imported {
        document,
        warnings,
        errors,
        remove,
        sources,
    })
}

/// The `unmatched_preflights` option for forwarding or rejecting, as the policy declares it.
fn unmatched_preflights(forward: bool) -> &'static str {
    use fields::Choice as _;
    let wanted = if forward {
        policy::UnmatchedPreflights::Forward
    } else {
        policy::UnmatchedPreflights::Reject
    };
    let index = policy::UnmatchedPreflights::VALUES
        .iter()
        .position(|v| *v == wanted);
    match (fields::UNMATCHED_PREFLIGHTS.kind, index) {
        (fields::Kind::Choice { options }, Some(i)) => options.get(i).copied().unwrap_or_default(),
        _ => "",
    }
}

/// The largest `max_age` a policy takes.
pub(crate) fn max_age_cap() -> f64 {
    match fields::MAX_AGE.kind {
        fields::Kind::Integer { max, .. } => max as f64,
        _ => 0.0,
    }
}

/// A policy name from free text: `[A-Za-z0-9_-]`, at most 64 characters.
fn policy_name(text: &str) -> String {
    let mut name: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.len() > 64 {
        name.truncate(64);
    }
    if name.is_empty() || name == "default" || name == "off" {
        name.insert_str(0, "imported-");
    }
    name
}

/// Seconds of an Istio duration (`600s`, `1m30s`, `1.5h`, `24h`).
fn duration_seconds(text: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let (unit, len) = [
            ("ms", 0.001),
            ("us", 0.000_001),
            ("µs", 0.000_001),
            ("ns", 0.000_000_001),
            ("h", 3600.0),
            ("m", 60.0),
            ("s", 1.0),
        ]
        .iter()
        .find(|(u, _)| rest.starts_with(u))
        .map(|(u, f)| (*f, u.len()))?;
        total += number * unit;
        rest = &rest[len..];
    }
    Some(total)
}

/// The pieces of a CORS configuration, whichever format it came in.
#[derive(Default)]
pub(crate) struct Cors {
    /// `(path, kind, value)`: kind is exact, prefix, suffix, regex, contains.
    origins: Vec<(String, String, String)>,
    methods: Option<Vec<String>>,
    headers: Option<Vec<String>>,
    expose: Option<Vec<String>>,
    max_age: Option<(String, String)>,
    credentials: bool,
    private_network: bool,
    forward_unmatched: bool,
    /// `(path, note)` of settings carried over with a different detail (not a widening).
    notes: Vec<(String, String)>,
    /// Where credentials were allowed, for the warning when they go with any origin.
    credentials_path: Option<String>,
    /// What a browser got from the source for any origin with credentials, when the source's
    /// answer was not "every site may read credentialed responses".
    any_origin_credentials: Option<String>,
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn string_list(value: Option<&Value>) -> Option<Vec<String>> {
    value.and_then(Value::as_array).map(|items| {
        items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    })
}

impl Importer {
    /// Adds to the list of what to remove (once).
    fn note_removal(&mut self, item: String) {
        if !self.remove.contains(&item) {
            self.remove.push(item);
        }
    }

    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Warning {
            path: path.into(),
            message: message.into(),
        });
    }

    // --------------------------------------------------------------------------------------------
    // Istio VirtualService
    // --------------------------------------------------------------------------------------------

    /// The namespace of a resource: its own, else `--namespace`; without either an error (never a
    /// guess: the namespace is part of every key a rule matches on).
    pub(crate) fn namespace_of(&mut self, object: &Object) -> Option<String> {
        if let Some(namespace) = object.namespace_or(self.namespace.as_deref()) {
            return Some(namespace.to_owned());
        }
        self.errors.push(Warning {
            path: format!(
                "{} ({} {}): metadata.namespace",
                object.label,
                object.kind(),
                object.name().unwrap_or("(unnamed)")
            ),
            message: "missing: rules name resources by namespace; export with the namespace (kubectl get -o yaml prints it) or give --namespace NS for the resources that have none".into(),
        });
        None
    }

    fn virtual_service(&mut self, object: &Object, all: &[Object]) {
        let vs = &object.value;
        let label = object.label.as_str();
        let Some(name) = object.name() else {
            self.warn(
                format!("{label}: metadata.name"),
                "a VirtualService without a name: not imported",
            );
            return;
        };
        let http = vs
            .pointer("/spec/http")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let has_cors = http
            .iter()
            .any(|e| e.get("corsPolicy").is_some_and(|c| !c.is_null()));
        let delegates = http.iter().any(|e| e.get("delegate").is_some());
        if !has_cors && !delegates {
            return;
        }
        let Some(namespace) = self.namespace_of(object) else {
            return;
        };
        let here = format!("{label} (VirtualService {namespace}/{name})");
        let resource = format!("{namespace}/{name}");
        if istio::is_delegate(vs) {
            // Its routes are imported with the root that delegates to it.
            if has_cors && !istio::has_root(all, &namespace, name, self.namespace.as_deref()) {
                self.sources += 1;
                self.warn(
                    format!("{here}: spec.hosts"),
                    "a delegate VirtualService (no hosts): Istio names its routes <root route>-<route> and gives them the root VirtualService's istio.config (mergeHTTPRoute), so no rule naming this VirtualService can select them; its root is not in the input: not imported (these routes get no CORS handling; import it together with its root)",
                );
                for (i, entry) in http.iter().enumerate() {
                    if entry.get("corsPolicy").is_some_and(|c| !c.is_null()) {
                        self.note_removal(format!(
                            "VirtualService {resource}: spec.http[{i}].corsPolicy"
                        ));
                    }
                }
            }
            return;
        }
        let entries = istio::entries(self, &here, &namespace, &http, all);
        let with_cors: Vec<usize> = (0..entries.len())
            .filter(|&i| entries[i].cors.is_some())
            .collect();
        if with_cors.is_empty() {
            return;
        }
        self.sources += 1;
        let converted: Vec<(usize, Option<Value>)> = with_cors
            .iter()
            .map(|&i| {
                let (cors, path, remove) = entries[i].cors.clone().unwrap_or_default();
                let cors = self.istio_cors(&cors, &path);
                self.note_removal(remove);
                (i, self.policy(cors, &path))
            })
            .collect();
        // One rule for the whole VirtualService when every http entry has the same CORS policy.
        let same_everywhere =
            with_cors.len() == entries.len() && converted.windows(2).all(|w| w[0].1 == w[1].1);
        if same_everywhere {
            let policy = converted.first().and_then(|(_, p)| p.clone());
            let policy = self.add_policy(&policy_name(&format!("{namespace}-{name}")), policy);
            self.broad_rules.push(json!({
                "match": { fields::VIRTUAL_SERVICE.name: resource },
                "policy": policy,
            }));
            return;
        }
        for (i, policy) in converted {
            let entry = &entries[i];
            // An unnamed entry whose every match has a name: Istio names its routes
            // `.<match name>` (the empty entry name, a dot, the match name).
            let named_matches =
                !entry.match_names.is_empty() && entry.match_names.iter().all(Option::is_some);
            let Some(route) = entry.name.as_deref().or(named_matches.then_some("")) else {
                self.warn(
                    entry.path.clone(),
                    "an http entry without a name shares its routes' names with the VirtualService's other entries, which have another CORS policy: not imported (its routes get no CORS handling; give the entry a name and import again)",
                );
                continue;
            };
            let first_match = entry.match_names.iter().flatten().next();
            let label = if route.is_empty() {
                first_match.map_or("", String::as_str)
            } else {
                route
            };
            let policy =
                self.add_policy(&policy_name(&format!("{namespace}-{name}-{label}")), policy);
            // Istio names the route `<name>.<match name>` for a match with a name.
            let mut routes: Vec<String> = Vec::new();
            if entry.match_names.is_empty() {
                routes.push(route.to_owned());
            }
            for match_name in &entry.match_names {
                let full = match match_name {
                    Some(match_name) => format!("{route}.{match_name}"),
                    None => route.to_owned(),
                };
                if !routes.contains(&full) {
                    routes.push(full);
                }
            }
            for route in routes {
                self.specific_rules.push(json!({
                    "match": { fields::VIRTUAL_SERVICE.name: resource, fields::ROUTE.name: route },
                    "policy": policy,
                }));
            }
        }
    }

    pub(crate) fn istio_cors(&mut self, cors: &Value, path: &str) -> Cors {
        let mut out = Cors::default();
        let mut origins_given = false;
        if let Some(items) = cors.get("allowOrigins").and_then(Value::as_array) {
            origins_given = true;
            for (k, item) in items.iter().enumerate() {
                let item_path = format!("{path}.allowOrigins[{k}]");
                let found = ["exact", "prefix", "regex"]
                    .iter()
                    .find_map(|kind| item.get(*kind).and_then(Value::as_str).map(|v| (*kind, v)));
                match found {
                    Some((kind, value)) => {
                        out.origins.push((
                            format!("{item_path}.{kind}"),
                            kind.into(),
                            value.into(),
                        ));
                    }
                    None => self.warn(
                        item_path,
                        "not an exact, prefix or regex match: not imported",
                    ),
                }
            }
        }
        // `allowOrigin` (deprecated): exact origins.
        if let Some(items) = string_list(cors.get("allowOrigin")) {
            if !origins_given {
                for (k, value) in items.into_iter().enumerate() {
                    out.origins
                        .push((format!("{path}.allowOrigin[{k}]"), "exact".into(), value));
                }
            }
        }
        out.methods = string_list(cors.get("allowMethods"));
        out.headers = string_list(cors.get("allowHeaders"));
        out.expose = string_list(cors.get("exposeHeaders"));
        if let Some(age) = cors.get("maxAge").and_then(Value::as_str) {
            out.max_age = Some((format!("{path}.maxAge"), age.to_owned()));
        }
        out.credentials = cors.get("allowCredentials").and_then(Value::as_bool) == Some(true);
        out.credentials_path = Some(format!("{path}.allowCredentials"));
        // Istio forwards preflights that do not match unless unmatchedPreflights is IGNORE.
        match cors.get("unmatchedPreflights").and_then(Value::as_str) {
            Some("IGNORE") => {
                out.forward_unmatched = false;
                out.notes.push((
                    format!("{path}.unmatchedPreflights"),
                    "IGNORE: Envoy answers a preflight that does not match itself with 200 and no CORS headers; imported as unmatched_preflights: reject, which answers 403 and no CORS headers (the browser refuses both alike)".into(),
                ));
            }
            other => {
                out.forward_unmatched = true;
                out.notes.push((
                    format!("{path}.unmatchedPreflights"),
                    format!("{} Envoy forwards a preflight upstream only when its origin does not match, and answers every preflight from an allowed origin itself (one asking for a method or header outside the lists gets 200 without the grant, which the browser refuses); imported as unmatched_preflights: forward, which forwards every preflight that fails any check (origin, method or headers): the browser's outcome differs only where the upstream answers such a preflight with CORS headers of its own", match other {
                        Some(value) => format!("{value}:"),
                        None => "absent (FORWARD):".to_owned(),
                    }),
                ));
            }
        }
        out
    }

    // --------------------------------------------------------------------------------------------
    // Envoy route configuration
    // --------------------------------------------------------------------------------------------

    /// Finds every `virtual_hosts` list (a RouteConfiguration, an RDS response, an HTTP connection
    /// manager or a whole bootstrap) and imports the CORS policies of its virtual hosts and routes.
    fn envoy(&mut self, value: &Value, label: &str, path: &str) {
        match value {
            Value::Object(map) => {
                if let Some(Value::Array(vhosts)) = map.get("virtual_hosts") {
                    let config_path = if path.is_empty() {
                        "virtual_hosts".to_owned()
                    } else {
                        format!("{path}.virtual_hosts")
                    };
                    self.route_configuration(vhosts, &format!("{label}: {config_path}"));
                }
                for (key, child) in map {
                    if key == "virtual_hosts" {
                        continue;
                    }
                    let child_path = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    self.envoy(child, label, &child_path);
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    self.envoy(child, label, &format!("{path}[{i}]"));
                }
            }
            _ => {}
        }
    }

    fn route_configuration(&mut self, vhosts: &[Value], path: &str) {
        let mut found = false;
        for (v, vhost) in vhosts.iter().enumerate() {
            let vhost_path = format!("{path}[{v}]");
            let vhost_name = vhost.get("name").and_then(Value::as_str).unwrap_or("");
            let routes = vhost
                .get("routes")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let vhost_policy = envoy_cors_of(vhost, &vhost_path).map(|(cors, cors_path)| {
                found = true;
                self.note_removal(cors_path.clone());
                let cors = self.envoy_cors(cors, &cors_path);
                let policy = self.policy(cors, &cors_path);
                self.add_policy(&policy_name(vhost_name), policy)
            });
            // A route without a name that has a policy of its own cannot be told apart from the
            // virtual host's other routes: the virtual host's policy then goes to its named routes
            // one by one, so that route does not get it.
            let unnamed_own = routes
                .iter()
                .any(|r| r.get("name").is_none() && envoy_cors_of(r, "").is_some());
            for (r, route) in routes.iter().enumerate() {
                let route_path = format!("{vhost_path}.routes[{r}]");
                let route_name = route.get("name").and_then(Value::as_str);
                let Some((cors, cors_path)) = envoy_cors_of(route, &route_path) else {
                    match (&vhost_policy, route_name) {
                        (Some(policy), Some(route_name)) if unnamed_own => {
                            self.specific_rules.push(json!({
                                "match": { "virtual_host": vhost_name, "route": route_name },
                                "policy": policy,
                            }));
                        }
                        (Some(_), None) if unnamed_own => self.warn(
                            route_path,
                            "a route without a name, in a virtual host where another route without a name has its own CORS policy: not imported (it gets no CORS handling; give the routes names and import again)",
                        ),
                        _ => {}
                    }
                    continue;
                };
                found = true;
                self.note_removal(cors_path.clone());
                let Some(route_name) = route_name else {
                    self.warn(
                        route_path,
                        "a route without a name cannot be chosen by a rule: not imported (it gets no CORS handling; give the route a name and import again)",
                    );
                    continue;
                };
                let cors = self.envoy_cors(cors, &cors_path);
                let policy = self.policy(cors, &cors_path);
                let policy = self.add_policy(&policy_name(route_name), policy);
                self.specific_rules.push(json!({
                    "match": { "virtual_host": vhost_name, "route": route_name },
                    "policy": policy,
                }));
            }
            if let Some(policy) = vhost_policy {
                if !unnamed_own {
                    self.broad_rules.push(json!({
                        "match": { "virtual_host": vhost_name },
                        "policy": policy,
                    }));
                }
            }
        }
        if found {
            self.sources += 1;
            self.note_removal(format!("{path}: the envoy.filters.http.cors HTTP filter of this route configuration's listener, once no route needs it"));
        }
    }

    fn envoy_cors(&mut self, cors: &Value, path: &str) -> Cors {
        let mut out = Cors::default();
        if let Some(items) = cors
            .get("allow_origin_string_match")
            .and_then(Value::as_array)
        {
            for (k, item) in items.iter().enumerate() {
                let item_path = format!("{path}.allow_origin_string_match[{k}]");
                let ignore_case = item.get("ignore_case").and_then(Value::as_bool) == Some(true);
                let found = ["exact", "prefix", "suffix", "contains"]
                    .iter()
                    .find_map(|kind| {
                        item.get(*kind)
                            .and_then(Value::as_str)
                            .map(|v| (*kind, v.to_owned()))
                    })
                    .or_else(|| {
                        item.pointer("/safe_regex/regex")
                            .and_then(Value::as_str)
                            .map(|v| ("regex", v.to_owned()))
                    });
                match found {
                    Some((kind, mut value)) => {
                        if ignore_case && kind != "regex" {
                            // Browsers send scheme and host in lower case.
                            value = value.to_ascii_lowercase();
                        }
                        out.origins
                            .push((format!("{item_path}.{kind}"), kind.into(), value));
                    }
                    None => self.warn(
                        item_path,
                        "no exact, prefix, suffix, contains or safe_regex match: not imported",
                    ),
                }
            }
        }
        let text = |field: &str| cors.get(field).and_then(Value::as_str).map(split_list);
        out.methods = text("allow_methods");
        out.headers = text("allow_headers");
        out.expose = text("expose_headers");
        if let Some(age) = cors.get("max_age").and_then(Value::as_str) {
            out.max_age = Some((format!("{path}.max_age"), format!("{age}s")));
        }
        out.credentials = cors.get("allow_credentials").and_then(Value::as_bool) == Some(true);
        out.credentials_path = Some(format!("{path}.allow_credentials"));
        out.private_network = cors
            .get("allow_private_network_access")
            .and_then(Value::as_bool)
            == Some(true);
        out.forward_unmatched = cors
            .get("forward_not_matching_preflights")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        if !out.forward_unmatched {
            out.notes.push((
                format!("{path}.forward_not_matching_preflights"),
                "false: Envoy answers a preflight that does not match itself with 200 and no CORS headers; imported as unmatched_preflights: reject, which answers 403 and no CORS headers (the browser refuses both alike)".into(),
            ));
        }
        out
    }

    // --------------------------------------------------------------------------------------------
    // The policy
    // --------------------------------------------------------------------------------------------

    /// The policy of one CORS configuration; `None` (no CORS handling) when no origin is left.
    pub(crate) fn policy(&mut self, cors: Cors, path: &str) -> Option<Value> {
        for (note_path, note) in &cors.notes {
            self.warn(note_path.clone(), note.clone());
        }
        let mut origins: Vec<String> = Vec::new();
        let mut regexes: Vec<String> = Vec::new();
        // Where each pattern came from, for the warning if the policy refuses it.
        let mut from: BTreeMap<String, String> = BTreeMap::new();
        let any_paths: Vec<String> = cors
            .origins
            .iter()
            .filter(|(_, kind, value)| is_any_origin(kind, value))
            .map(|(p, _, _)| p.clone())
            .collect();
        let listed = cors.origins.len() > any_paths.len();
        let mut credentials = cors.credentials;
        // Any origin with credentials: keep the listed origins' credentials when there are
        // any, else every origin without credentials.
        let mut any = !any_paths.is_empty();
        if any && credentials {
            let before = cors.any_origin_credentials.clone().unwrap_or_else(|| {
                "every site could read responses to credentialed requests (cookies, HTTP authentication): the origin was echoed with Access-Control-Allow-Credentials: true".to_owned()
            });
            if listed {
                any = false;
                for any_path in &any_paths {
                    self.warn(
                        any_path.clone(),
                        format!("any origin with credentials: {before}; not imported: the listed origins keep credentialed access, and a browser now refuses every other origin"),
                    );
                }
            } else {
                credentials = false;
                self.warn(
                    cors.credentials_path.clone().unwrap_or_else(|| path.to_owned()),
                    format!("any origin with credentials: {before}; imported as any origin without credentials (Access-Control-Allow-Origin: *): a browser still sends uncredentialed requests from any origin, and refuses credentialed ones; list the origins that need credentials instead"),
                );
            }
        }
        for (origin_path, kind, value) in &cors.origins {
            if is_any_origin(kind, value) {
                if any && !origins.iter().any(|o| o == "*") {
                    origins.push("*".to_owned());
                }
                continue;
            }
            if any {
                // `*` covers every other pattern.
                continue;
            }
            match kind.as_str() {
                "exact" => {
                    from.insert(format!("o:{value}"), origin_path.clone());
                    origins.push(value.clone());
                }
                "regex" => {
                    from.insert(format!("r:{value}"), origin_path.clone());
                    regexes.push(value.clone());
                }
                "prefix" => match prefix_origin(value) {
                    Some(origin) => {
                        self.warn(
                            origin_path.clone(),
                            format!(
                                "prefix {value:?} also matches {value}.evil.example and any port; imported as the exact origin {origin:?} (add \"{origin}:*\" or a subdomain pattern if you meant those)"
                            ),
                        );
                        from.insert(format!("o:{origin}"), origin_path.clone());
                        origins.push(origin);
                    }
                    None => self.warn(
                        origin_path.clone(),
                        format!("prefix {value:?} has no safe pattern (it matches origins of hosts no one listed): not imported"),
                    ),
                },
                "suffix" => match suffix_hosts(value) {
                    Some((patterns, note)) => {
                        self.warn(
                            origin_path.clone(),
                            format!("suffix {value:?}: imported as {}{note}", patterns.join(", ")),
                        );
                        for p in patterns {
                            from.insert(format!("o:{p}"), origin_path.clone());
                            origins.push(p);
                        }
                    }
                    None => self.warn(
                        origin_path.clone(),
                        format!("suffix {value:?} has no safe pattern: not imported"),
                    ),
                },
                _ => self.warn(
                    origin_path.clone(),
                    format!("{kind} {value:?} has no safe pattern: not imported"),
                ),
            }
        }
        if origins.is_empty() && regexes.is_empty() {
            self.warn(
                path.to_owned(),
                "no origin could be imported: the routes get no CORS handling (policy null)",
            );
            return None;
        }
        let mut policy = Map::new();
        policy.insert(fields::ALLOW_ORIGINS.name.into(), json!(origins));
        if !regexes.is_empty() {
            policy.insert(fields::ALLOW_ORIGIN_REGEXES.name.into(), json!(regexes));
        }
        if let Some(methods) = cors.methods {
            policy.insert(fields::ALLOW_METHODS.name.into(), json!(methods));
        }
        if let Some(headers) = cors.headers {
            let lower: Vec<String> = headers.iter().map(|h| h.to_ascii_lowercase()).collect();
            policy.insert(fields::ALLOW_HEADERS.name.into(), json!(lower));
        }
        if let Some(expose) = cors.expose {
            policy.insert(fields::EXPOSE_HEADERS.name.into(), json!(expose));
        }
        if let Some((age_path, age)) = &cors.max_age {
            match duration_seconds(age) {
                Some(seconds) => {
                    let whole = seconds.floor();
                    let cap = max_age_cap();
                    let capped = whole.min(cap);
                    if capped != seconds {
                        let browser = if whole > cap {
                            format!(" (no browser caches a preflight longer: Firefox stops at {cap}, Chromium at 7200; nothing changes for a browser)")
                        } else {
                            String::new()
                        };
                        self.warn(
                            age_path.clone(),
                            format!("{age:?}: imported as {capped} seconds (whole seconds, at most {cap}){browser}"),
                        );
                    }
                    policy.insert(fields::MAX_AGE.name.into(), json!(capped as u64));
                }
                None => self.warn(
                    age_path.clone(),
                    format!("{age:?} is not a duration: not imported (no Access-Control-Max-Age)"),
                ),
            }
        }
        if credentials {
            policy.insert(fields::ALLOW_CREDENTIALS.name.into(), json!(true));
        }
        if cors.private_network {
            policy.insert(fields::ALLOW_PRIVATE_NETWORK.name.into(), json!(true));
        }
        policy.insert(
            fields::UNMATCHED_PREFLIGHTS.name.into(),
            json!(unmatched_preflights(cors.forward_unmatched)),
        );
        self.repaired(policy, path, &from)
    }

    /// Loads the policy alone; removes every value the policy refuses (each a warning) until it
    /// loads. What is left allows no more than what was given.
    fn repaired(
        &mut self,
        mut policy: Map<String, Value>,
        path: &str,
        from: &BTreeMap<String, String>,
    ) -> Option<Value> {
        for _ in 0..64 {
            if policy
                .get(fields::ALLOW_ORIGIN_REGEXES.name)
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty)
            {
                policy.remove(fields::ALLOW_ORIGIN_REGEXES.name);
            }
            let text = Value::Object(policy.clone()).to_string();
            let errors = match policy::load(&text) {
                Ok(_) => return Some(Value::Object(policy)),
                Err(rejected) => rejected.errors,
            };
            let mut removed = false;
            // Each refused item once (an item can have several problems), highest index first so
            // that removing one leaves the others' indexes as reported.
            let mut refused: Vec<(&str, usize, Vec<&str>)> = Vec::new();
            for error in &errors {
                let Some((field, index)) = list_item(&error.path) else {
                    continue;
                };
                match refused
                    .iter_mut()
                    .find(|(f, i, _)| *f == field && *i == index)
                {
                    Some((_, _, messages)) => messages.push(&error.message),
                    None => refused.push((field, index, vec![&error.message])),
                }
            }
            refused.sort_by(|a, b| (b.0, b.1).cmp(&(a.0, a.1)));
            for (field, index, messages) in refused {
                let Some(Value::Array(items)) = policy.get_mut(field) else {
                    continue;
                };
                if index >= items.len() {
                    continue;
                }
                let item = items.remove(index);
                removed = true;
                let value = item.as_str().unwrap_or_default().to_owned();
                let key = if field == fields::ALLOW_ORIGIN_REGEXES.name {
                    format!("r:{value}")
                } else if field == fields::ALLOW_ORIGINS.name {
                    format!("o:{value}")
                } else {
                    String::new()
                };
                let source = from
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(|| format!("{path} ({field}: {value:?})"));
                self.warn(source, format!("{}: not imported", messages.join("; ")));
            }
            let no_origin = policy
                .get(fields::ALLOW_ORIGINS.name)
                .and_then(Value::as_array)
                .map_or(true, Vec::is_empty)
                && policy
                    .get(fields::ALLOW_ORIGIN_REGEXES.name)
                    .and_then(Value::as_array)
                    .map_or(true, Vec::is_empty);
            if no_origin {
                self.warn(
                    path.to_owned(),
                    "no origin could be imported: the routes get no CORS handling (policy null)",
                );
                return None;
            }
            if !removed {
                for error in errors {
                    self.warn(
                        format!("{path} ({})", error.path),
                        format!("{}: not imported", error.message),
                    );
                }
                return None;
            }
        }
        None
    }

    /// Adds a policy under a name (reusing an identical one); the name, or null for none.
    pub(crate) fn add_policy(&mut self, name: &str, policy: Option<Value>) -> Value {
        let Some(policy) = policy else {
            return Value::Null;
        };
        if let Some((existing, _)) = self.policies.iter().find(|(_, p)| **p == policy) {
            return json!(existing);
        }
        let mut unique = name.to_owned();
        let mut n = 2;
        while self.policies.contains_key(&unique) {
            unique = format!("{name}-{n}");
            n += 1;
        }
        self.policies.insert(unique.clone(), policy);
        json!(unique)
    }
}

/// `*`, or an Istio/Envoy regex that matches every origin.
fn is_any_origin(kind: &str, value: &str) -> bool {
    match kind {
        "exact" => value == "*",
        "regex" => matches!(value, ".*" | "^.*$" | ".+" | "^.+$" | "(.*)"),
        _ => false,
    }
}

/// The CorsPolicy of an Envoy virtual host or route: `typed_per_filter_config` of
/// `envoy.filters.http.cors`, or the older `cors` field.
fn envoy_cors_of<'a>(value: &'a Value, path: &str) -> Option<(&'a Value, String)> {
    if let Some(cors) = value.pointer("/typed_per_filter_config/envoy.filters.http.cors") {
        return Some((
            cors,
            format!("{path}.typed_per_filter_config[\"envoy.filters.http.cors\"]"),
        ));
    }
    if let Some(cors) = value.get("cors") {
        return Some((cors, format!("{path}.cors")));
    }
    value
        .pointer("/route/cors")
        .map(|cors| (cors, format!("{path}.route.cors")))
}

/// `allow_origins[3]` -> (`allow_origins`, 3).
fn list_item(path: &str) -> Option<(&str, usize)> {
    let (field, rest) = path.split_once('[')?;
    let index = rest.strip_suffix(']')?.parse().ok()?;
    Some((field, index))
}

/// The exact origin a prefix match names, when the prefix is a whole serialised origin
/// (`https://app.example.com`); `None` for anything shorter (`https://`, `https://app.`).
fn prefix_origin(prefix: &str) -> Option<String> {
    let (scheme, host) = prefix.split_once("://")?;
    if !matches!(scheme, "http" | "https") || host.is_empty() || host.ends_with('.') {
        return None;
    }
    if host.contains(['/', '*', '?', '#', '@']) {
        return None;
    }
    Some(prefix.to_owned())
}

/// The patterns a suffix match stands for: `.example.com` -> `https://*.example.com`,
/// `http://*.example.com` (other schemes left out); `None` when it is not a host suffix.
fn suffix_hosts(suffix: &str) -> Option<(Vec<String>, String)> {
    let (domain, note) = match suffix.strip_prefix('.') {
        Some(domain) => (domain, String::new()),
        None => (
            suffix,
            format!(" (the suffix also matched hosts merely ending in {suffix:?}; only the domain and its subdomains were imported)"),
        ),
    };
    if domain.is_empty()
        || domain.contains([':', '/', '*'])
        || domain.split('.').any(str::is_empty)
        || !domain.contains('.')
    {
        return None;
    }
    let mut patterns = Vec::new();
    for scheme in ["https", "http"] {
        if !suffix.starts_with('.') {
            patterns.push(format!("{scheme}://{domain}"));
        }
        patterns.push(format!("{scheme}://*.{domain}"));
    }
    Some((patterns, note))
}
