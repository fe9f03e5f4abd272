//! Gateway API HTTPRoutes with `CORS` filters (GEP-1767; `HTTPCORSFilter` in
//! `apis/v1/httproute_types.go`; standard channel since v1.5, experimental before, with the same
//! field names: `allowOrigins`, `allowCredentials`, `allowMethods`, `allowHeaders`,
//! `exposeHeaders`, `maxAge`).
//!
//! What the API says a gateway answers:
//! - `allowOrigins`: `<scheme>://<host>[:<port>]`, the port defaulting to the scheme's; a `*`
//!   in the host matches any number of labels to its left; `*` alone is every origin. A matching
//!   origin is echoed in `Access-Control-Allow-Origin`. With `*` and `allowCredentials: true`
//!   the gateway must echo the origin: every site may then read credentialed responses.
//! - `allowMethods` / `allowHeaders`: `*` is every method / header; with credentials the gateway
//!   echoes what the preflight asked for (the `Authorization` header included).
//! - `maxAge`: seconds, default 5.
//! - A preflight whose origin does not match gets 200/204 without CORS headers, or 403.
//!
//! Rules are keyed on the route names Istio gives an HTTPRoute's rules (`convertHTTPRoute`,
//! `pilot/pkg/config/kube/gateway/conversion.go`): the rule's `name`, or
//! `<namespace>.<name>.<rule index>` for a rule without one.

use cors_engine::policy::fields;
use serde_json::{json, Value};

use super::{policy_name, Cors, Importer, Object};

/// An origin of `allowOrigins` (Gateway API or Envoy Gateway) as `(kind, pattern)` for
/// [`Cors::origins`]; `Err` says why it has no equivalent.
pub(crate) fn origin(text: &str) -> Result<(&'static str, String), String> {
    if text == "*" {
        return Ok(("exact", "*".to_owned()));
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(format!("{text:?} is not <scheme>://<host>[:<port>]"));
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    // Browsers never send the scheme's default port.
    let rest = match (scheme, rest.rsplit_once(':')) {
        ("https", Some((host, "443"))) | ("http", Some((host, "80"))) => host,
        _ => rest,
    };
    if rest == "*" || rest.starts_with("*:") {
        return Err(format!("{text:?} matches every host of that scheme, which no origin pattern here can say (only every origin, or the subdomains of a domain)"));
    }
    if rest.get(1..).unwrap_or_default().contains('*')
        || (rest.starts_with('*') && !rest.starts_with("*."))
    {
        return Err(format!(
            "{text:?}: a wildcard other than a leading \"*.\" has no origin pattern here"
        ));
    }
    Ok((
        "exact",
        format!(
            "{}://{}",
            scheme.to_ascii_lowercase(),
            rest.to_ascii_lowercase()
        ),
    ))
}

/// The strings of a list field.
pub(crate) fn strings(value: Option<&Value>) -> Option<Vec<String>> {
    value.and_then(Value::as_array).map(|items| {
        items
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                _ => None,
            })
            .collect()
    })
}

impl Importer {
    /// `allowOrigins` into `cors.origins`, each origin that has no equivalent a warning.
    pub(crate) fn gateway_origins(&mut self, cors: &mut Cors, items: &[Value], path: &str) {
        for (k, item) in items.iter().enumerate() {
            let at = format!("{path}.allowOrigins[{k}]");
            // Envoy Gateway before v1.0: {type: Exact|RegularExpression, value}.
            let (text, regex) = match item {
                Value::String(text) => (text.as_str(), false),
                other => (
                    other.get("value").and_then(Value::as_str).unwrap_or(""),
                    other.get("type").and_then(Value::as_str) == Some("RegularExpression"),
                ),
            };
            if regex {
                cors.origins.push((at, "regex".into(), text.to_owned()));
                continue;
            }
            match origin(text) {
                Ok((kind, pattern)) => cors.origins.push((at, kind.into(), pattern)),
                Err(why) => self.warn(at, format!("{why}: not imported")),
            }
        }
    }

    /// The CORS configuration of an `HTTPCORSFilter` (or an Envoy Gateway `cors`).
    pub(crate) fn gateway_cors(&mut self, filter: &Value, path: &str) -> Cors {
        let mut cors = Cors::default();
        let origins = filter
            .get("allowOrigins")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        self.gateway_origins(&mut cors, &origins, path);
        cors.methods = strings(filter.get("allowMethods"));
        cors.headers = strings(filter.get("allowHeaders"));
        cors.expose = strings(filter.get("exposeHeaders"));
        cors.credentials = filter.get("allowCredentials").and_then(Value::as_bool) == Some(true);
        cors.credentials_path = Some(format!("{path}.allowCredentials"));
        cors.notes.push((
            path.to_owned(),
            "a preflight that does not match gets 200/204 without CORS headers (or 403) from the gateway; imported as unmatched_preflights: reject, a 403 without CORS headers: the browser refuses both alike".into(),
        ));
        if cors
            .headers
            .as_ref()
            .is_some_and(|h| h.iter().any(|h| h == "*"))
        {
            let listed = cors
                .headers
                .as_ref()
                .is_some_and(|h| h.iter().any(|h| h.eq_ignore_ascii_case("authorization")));
            if !listed {
                self.warn(
                    format!("{path}.allowHeaders"),
                    "\"*\": a gateway that echoes the requested headers (as the API requires with credentials) also allows Authorization; imported as \"*\", which, as the Fetch standard reads it, does not: a preflight asking for authorization is now refused (add \"authorization\" to allow_headers if pages send it)",
                );
            }
        }
        cors
    }

    /// An HTTPRoute: one rule per route rule with a `CORS` filter, keyed on Istio's route names,
    /// or (`--proxy envoy-gateway`) on the HTTPRoute's hostnames and path prefixes.
    pub(crate) fn http_route(&mut self, object: &Object, all: &[Object]) {
        let route = &object.value;
        let rules = route
            .pointer("/spec/rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let cors_filter = |rule: &Value| -> Option<(usize, Value)> {
            let filters = rule.get("filters").and_then(Value::as_array)?;
            filters.iter().enumerate().find_map(|(k, f)| {
                (f.get("type").and_then(Value::as_str) == Some("CORS"))
                    .then(|| (k, f.get("cors").cloned().unwrap_or(Value::Null)))
            })
        };
        let backend_cors = |rule: &Value| {
            rule.get("backendRefs")
                .and_then(Value::as_array)
                .is_some_and(|refs| refs.iter().any(|r| cors_filter(r).is_some()))
        };
        if !rules
            .iter()
            .any(|r| cors_filter(r).is_some() || backend_cors(r))
        {
            return;
        }
        let Some(name) = object.name().map(str::to_owned) else {
            self.warn(
                format!("{}: metadata.name", object.label),
                "an HTTPRoute without a name: not imported",
            );
            return;
        };
        let Some(namespace) = self.namespace_of(object) else {
            return;
        };
        self.sources += 1;
        let here = format!("{} (HTTPRoute {namespace}/{name})", object.label);
        let mut converted: Vec<(usize, Option<String>, Option<Value>)> = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            if backend_cors(rule) {
                self.warn(
                    format!("{here}: spec.rules[{i}].backendRefs"),
                    "a CORS filter on a backendRef applies to the requests sent to that backend only, which no rule key can select: not imported (those requests get no CORS handling)",
                );
            }
            let Some((k, filter)) = cors_filter(rule) else {
                continue;
            };
            let path = format!("{here}: spec.rules[{i}].filters[{k}].cors");
            self.note_removal(format!(
                "HTTPRoute {namespace}/{name}: spec.rules[{i}].filters[{k}] (type: CORS)"
            ));
            let mut cors = self.gateway_cors(&filter, &path);
            let age = filter.get("maxAge").and_then(Value::as_i64).unwrap_or(5);
            cors.max_age = Some((format!("{path}.maxAge"), format!("{age}s")));
            let policy = self.policy(cors, &path);
            let rule_name = rule.get("name").and_then(Value::as_str).map(str::to_owned);
            converted.push((i, rule_name, policy));
        }
        if self.host_path_keys {
            let mut by_rule: Vec<Option<Value>> = vec![Some(Value::Null); rules.len()];
            for (i, rule_name, policy) in converted {
                let label = rule_name.unwrap_or_else(|| i.to_string());
                let name = policy_name(&format!("{namespace}-{name}-{label}"));
                if let Some(slot) = by_rule.get_mut(i) {
                    *slot = Some(self.add_policy(&name, policy));
                }
            }
            let at = format!("{here}: spec.rules");
            self.host_path_rules(&at, object, all, &|i| by_rule.get(i).cloned().flatten());
            return;
        }
        let all_unnamed_same = converted.len() == rules.len()
            && converted.iter().all(|(_, n, _)| n.is_none())
            && converted.windows(2).all(|w| w[0].2 == w[1].2);
        if all_unnamed_same {
            let policy = converted.first().and_then(|(_, _, p)| p.clone());
            let policy = self.add_policy(&policy_name(&format!("{namespace}-{name}")), policy);
            self.specific_rules.push(json!({
                "match": { fields::HTTP_ROUTE.name: format!("{namespace}/{name}") },
                "policy": policy,
            }));
            return;
        }
        for (i, rule_name, policy) in converted {
            let route_name = match &rule_name {
                Some(rule_name) => {
                    self.warn(
                        format!("{here}: spec.rules[{i}].name"),
                        format!("Istio names the route of this rule {rule_name:?}, which nothing ties to this HTTPRoute: a route of the same name from another HTTPRoute or VirtualService on the proxy gets this policy too"),
                    );
                    rule_name.clone()
                }
                None => format!("{namespace}.{name}.{i}"),
            };
            let policy = self.add_policy(
                &policy_name(&format!(
                    "{namespace}-{name}-{}",
                    rule_name.as_deref().unwrap_or(&i.to_string())
                )),
                policy,
            );
            self.specific_rules.push(json!({
                "match": { fields::ROUTE.name: route_name },
                "policy": policy,
            }));
        }
    }
}
