//! Envoy Gateway `SecurityPolicy` with `spec.cors` (Envoy Gateway's CORS task,
//! `site/content/en/latest/tasks/security/cors.md`, and its API reference): `allowOrigins` (an
//! origin, a leading `*.` for every subdomain, or `*`; `{type, value}` objects before v1.0),
//! `allowMethods`, `allowHeaders`, `exposeHeaders`, `maxAge` (a duration; the task's answer
//! without one carries `access-control-max-age: 86400`) and `allowCredentials`, attached to
//! Gateway API objects by `targetRefs` (`targetRef` before v1.1).
//!
//! Envoy Gateway names its Envoy routes after the HTTPRoute rule and match they come from, not
//! in a form a rule key can select, so the routes a policy targets are selected by what the
//! HTTPRoute matches on: its `hostnames` (`host`) and its path prefixes (`path_prefix`). That
//! needs the targeted HTTPRoute in the input; the other HTTPRoutes of the same hosts come in as
//! `policy: null` rules, so a longer path of theirs keeps no CORS handling, as before.

use std::collections::BTreeMap;

use cors_engine::policy::fields;
use serde_json::{json, Map, Value};

use super::{policy_name, Importer, Object};

/// The hostnames of an HTTPRoute, lower case (none: every host).
fn hostnames(route: &Value) -> Vec<String> {
    route
        .pointer("/spec/hostnames")
        .and_then(Value::as_array)
        .map(|h| {
            h.iter()
                .filter_map(Value::as_str)
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default()
}

impl Importer {
    pub(crate) fn security_policy(&mut self, object: &Object, all: &[Object]) {
        let Some(cors) = object.value.pointer("/spec/cors").filter(|c| !c.is_null()) else {
            return;
        };
        let name = object.name().unwrap_or("(unnamed)").to_owned();
        let Some(namespace) = self.namespace_of(object) else {
            return;
        };
        self.sources += 1;
        let here = format!("{} (SecurityPolicy {namespace}/{name})", object.label);
        let path = format!("{here}: spec.cors");
        self.note_removal(format!("SecurityPolicy {namespace}/{name}: spec.cors"));
        let mut imported = self.gateway_cors(cors, &path);
        let age = match cors.get("maxAge") {
            Some(Value::String(age)) => age.clone(),
            Some(Value::Number(n)) => format!("{n}s"),
            _ => "86400s".to_owned(),
        };
        imported.max_age = Some((format!("{path}.maxAge"), age));
        let policy = self.policy(imported, &path);
        let policy = self.add_policy(&policy_name(&format!("{namespace}-{name}")), policy);

        let mut targets: Vec<(String, Value)> = Vec::new();
        if let Some(refs) = object
            .value
            .pointer("/spec/targetRefs")
            .and_then(Value::as_array)
        {
            for (k, r) in refs.iter().enumerate() {
                targets.push((format!("{here}: spec.targetRefs[{k}]"), r.clone()));
            }
        }
        if let Some(r) = object.value.pointer("/spec/targetRef") {
            targets.push((format!("{here}: spec.targetRef"), r.clone()));
        }
        if object.value.pointer("/spec/targetSelectors").is_some() {
            self.warn(
                format!("{here}: spec.targetSelectors"),
                "targets chosen by labels: the input does not say which objects carry them: not imported for those (add targetRefs, or import the selected HTTPRoutes' policies by hand)",
            );
        }
        for (at, target) in targets {
            let kind = target.get("kind").and_then(Value::as_str).unwrap_or("");
            let Some(target_name) = target.get("name").and_then(Value::as_str) else {
                self.warn(at, "a target without a name: not imported");
                continue;
            };
            let found = all.iter().find(|o| {
                o.kind() == kind
                    && o.name() == Some(target_name)
                    && o.namespace_or(self.namespace.as_deref()) == Some(namespace.as_str())
            });
            match (kind, found) {
                ("HTTPRoute", Some(route)) => self.targeted_route(&at, route, all, &policy),
                ("Gateway", Some(gateway)) => self.targeted_gateway(&at, gateway, &policy),
                ("HTTPRoute" | "Gateway", None) => self.warn(
                    at,
                    format!("{kind} {namespace}/{target_name} is not in the input: the hosts and paths it routes are what rules select it by: not imported for it (those requests get no CORS handling; import it together with this SecurityPolicy)"),
                ),
                _ => self.warn(
                    at,
                    format!("a {kind:?} target: no rule key selects its requests: not imported for it (those requests get no CORS handling)"),
                ),
            }
        }
    }

    /// Rules for the requests of one HTTPRoute: its hostnames and path prefixes.
    fn targeted_route(&mut self, at: &str, route: &Object, all: &[Object], policy: &Value) {
        self.host_path_rules(at, route, all, &|_| Some(policy.clone()));
    }

    /// Rules for the requests of one HTTPRoute by its hostnames and path prefixes, each rule of
    /// it with the policy `policy_of(rule index)` (`None`: the rule is not selected).
    pub(crate) fn host_path_rules(
        &mut self,
        at: &str,
        route: &Object,
        all: &[Object],
        policy_of: &dyn Fn(usize) -> Option<Value>,
    ) {
        let hosts = hostnames(&route.value);
        let mut prefixes: Vec<(Option<String>, String, Value)> = Vec::new();
        let route_label = format!(
            "{} (HTTPRoute {}/{})",
            route.label,
            route.namespace_or(self.namespace.as_deref()).unwrap_or("?"),
            route.name().unwrap_or("(unnamed)")
        );
        for (i, prefix, warning) in self.route_prefixes(&route.value, &route_label) {
            let Some(policy) = policy_of(i) else {
                continue;
            };
            if let Some((path, message)) = warning {
                self.warn(path, message);
            }
            if let Some(prefix) = prefix {
                for host in hosts_or_any(&hosts) {
                    prefixes.push((host, prefix.clone(), policy.clone()));
                }
            }
        }
        if prefixes.is_empty() {
            self.warn(
                at.to_owned(),
                "no path of the targeted HTTPRoute can be selected by a rule: not imported for it",
            );
            return;
        }
        // The other HTTPRoutes of these hosts: their paths keep what they had (nothing).
        for other in all.iter().filter(|o| o.kind() == "HTTPRoute") {
            if std::ptr::eq(other, route) {
                continue;
            }
            let other_hosts = hostnames(&other.value);
            let shared: Vec<Option<String>> = hosts_or_any(&hosts)
                .into_iter()
                .filter(|h| hosts_or_any(&other_hosts).contains(h))
                .collect();
            for (_, prefix, _) in self.route_prefixes(&other.value, "") {
                for host in &shared {
                    if let Some(prefix) = &prefix {
                        prefixes.push((host.clone(), prefix.clone(), Value::Null));
                    }
                }
            }
        }
        let mut by_host: BTreeMap<Option<String>, Vec<(String, Value)>> = BTreeMap::new();
        for (host, prefix, policy) in prefixes {
            let list = by_host.entry(host).or_default();
            if !list.iter().any(|(p, _)| *p == prefix) || !policy.is_null() {
                list.retain(|(p, _)| *p != prefix);
                list.push((prefix, policy));
            }
        }
        for (host, mut list) in by_host {
            list.sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
            for (prefix, policy) in list {
                let mut matched = Map::new();
                if let Some(host) = &host {
                    matched.insert(fields::HOST.name.into(), json!(host));
                }
                matched.insert(fields::PATH_PREFIX.name.into(), json!(prefix));
                self.specific_rules
                    .push(json!({ "match": matched, "policy": policy }));
            }
        }
    }

    /// Each match of an HTTPRoute as its rule's index and a path prefix a rule can use (`None`
    /// when there is none), with the warning that goes with it (only given when `label` is not
    /// empty).
    #[allow(clippy::type_complexity)]
    fn route_prefixes(
        &self,
        route: &Value,
        label: &str,
    ) -> Vec<(usize, Option<String>, Option<(String, String)>)> {
        let mut out = Vec::new();
        let rules = route
            .pointer("/spec/rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (i, rule) in rules.iter().enumerate() {
            let matches = rule
                .get("matches")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_else(|| vec![json!({})]);
            for (j, m) in matches.iter().enumerate() {
                let at = format!("{label}: spec.rules[{i}].matches[{j}]");
                let warn = |message: String| (!label.is_empty()).then(|| (at.clone(), message));
                let kind = m
                    .pointer("/path/type")
                    .and_then(Value::as_str)
                    .unwrap_or("PathPrefix");
                let value = m
                    .pointer("/path/value")
                    .and_then(Value::as_str)
                    .unwrap_or("/");
                if ["headers", "queryParams", "method"]
                    .iter()
                    .any(|k| m.get(*k).is_some())
                {
                    out.push((i, None, warn("matches on headers, query parameters or method, which no rule key can: not imported for this match (its requests get no CORS handling)".to_owned())));
                    continue;
                }
                match kind {
                    "PathPrefix" if value == "/" || value.ends_with('/') => {
                        out.push((i, Some(value.to_owned()), None));
                    }
                    "PathPrefix" => out.push((
                        i,
                        Some(format!("{value}/")),
                        warn(format!("PathPrefix {value:?} matches {value} and {value}/…, never {value}more: imported as path_prefix \"{value}/\", since path_prefix {value:?} would also match {value}more; requests for {value} itself get what a shorter path prefix of the host gives them, or no CORS handling")),
                    )),
                    other => out.push((
                        i,
                        None,
                        warn(format!("{other} {value:?}: no rule key matches it: not imported for this match (its requests get no CORS handling)")),
                    )),
                }
            }
        }
        out
    }

    /// Rules for every request through a Gateway: its listeners' hostnames.
    fn targeted_gateway(&mut self, at: &str, gateway: &Object, policy: &Value) {
        let listeners = gateway
            .value
            .pointer("/spec/listeners")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let hosts: Vec<Option<String>> = listeners
            .iter()
            .map(|l| {
                l.get("hostname")
                    .and_then(Value::as_str)
                    .map(str::to_ascii_lowercase)
            })
            .collect();
        if hosts.is_empty() || hosts.iter().any(Option::is_none) {
            self.warn(
                at.to_owned(),
                "a Gateway with a listener for every host: no rule key selects only its requests: not imported for it (attach the filter to this Gateway with an EnvoyExtensionPolicy and make this policy its \"default\")",
            );
            return;
        }
        for host in hosts.into_iter().flatten() {
            self.broad_rules
                .push(json!({ "match": { fields::HOST.name: host }, "policy": policy }));
        }
    }
}

/// The hosts as rule keys: `None` stands for every host.
fn hosts_or_any(hosts: &[String]) -> Vec<Option<String>> {
    if hosts.is_empty() {
        vec![None]
    } else {
        hosts.iter().cloned().map(Some).collect()
    }
}
