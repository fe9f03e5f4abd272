//! Istio VirtualServices that delegate (`http[].delegate`) and the delegates themselves.
//!
//! Istio merges a delegate's `http` entries into the root's entry that names it
//! (`mergeHTTPRoute`, `pilot/pkg/model/virtualservice.go`): the merged route is named
//! `<root entry name>-<delegate entry name>` (the one that is set, when only one is), takes the
//! root's `corsPolicy` when it has none of its own, and is generated as a route of the root
//! VirtualService, whose `istio.config` it carries. A delegate has no `hosts`; nothing else
//! routes to it.

use serde_json::Value;

use super::{Importer, Object};

/// One `http` entry as Istio generates routes from it, delegates merged in.
pub(crate) struct Entry {
    /// Where it is, for warnings.
    pub path: String,
    /// The route name Istio gives it (before a match name is appended).
    pub name: Option<String>,
    /// The `name` of each match (`None` for a match without one); empty: no match.
    pub match_names: Vec<Option<String>>,
    /// `(corsPolicy, its path, what to remove)`.
    pub cors: Option<(Value, String, String)>,
}

/// A VirtualService that can only be a delegate: Istio ignores `hosts` on one and requires them
/// on every other.
pub(crate) fn is_delegate(vs: &Value) -> bool {
    vs.pointer("/spec/hosts")
        .and_then(Value::as_array)
        .map_or(true, Vec::is_empty)
}

/// The `(namespace, name)` a `delegate` reference names; the namespace defaults to the root's.
fn delegate_target(entry: &Value, root_namespace: &str) -> Option<(String, String)> {
    let delegate = entry.get("delegate")?;
    let name = delegate.get("name").and_then(Value::as_str)?;
    let namespace = delegate
        .get("namespace")
        .and_then(Value::as_str)
        .filter(|ns| !ns.is_empty())
        .unwrap_or(root_namespace);
    Some((namespace.to_owned(), name.to_owned()))
}

/// The root VirtualServices (and the index of their entry) that delegate to `namespace/name`.
fn roots<'a>(
    all: &'a [Object],
    namespace: &str,
    name: &str,
    fallback: Option<&str>,
) -> Vec<(&'a Object, usize)> {
    let mut found = Vec::new();
    for object in all.iter().filter(|o| o.kind() == "VirtualService") {
        let Some(root_namespace) = object.namespace_or(fallback) else {
            continue;
        };
        let http = object.value.pointer("/spec/http").and_then(Value::as_array);
        for (i, entry) in http.into_iter().flatten().enumerate() {
            if delegate_target(entry, root_namespace)
                == Some((namespace.to_owned(), name.to_owned()))
            {
                found.push((object, i));
            }
        }
    }
    found
}

/// Is there a VirtualService in the input that delegates to `namespace/name`?
pub(crate) fn has_root(
    all: &[Object],
    namespace: &str,
    name: &str,
    fallback: Option<&str>,
) -> bool {
    !roots(all, namespace, name, fallback).is_empty()
}

fn cors_of(entry: &Value) -> Option<&Value> {
    entry.get("corsPolicy").filter(|c| !c.is_null())
}

fn match_names(entry: &Value) -> Vec<Option<String>> {
    entry
        .get("match")
        .and_then(Value::as_array)
        .map(|matches| {
            matches
                .iter()
                .map(|m| m.get("name").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The entries of a root VirtualService as Istio generates its routes: each entry that
/// delegates is replaced by the delegate's entries, merged.
pub(crate) fn entries(
    importer: &mut Importer,
    here: &str,
    namespace: &str,
    http: &[Value],
    all: &[Object],
) -> Vec<Entry> {
    let resource = match here.rsplit_once("VirtualService ") {
        Some((_, rest)) => rest.trim_end_matches(')').to_owned(),
        None => here.to_owned(),
    };
    let mut out = Vec::new();
    for (i, entry) in http.iter().enumerate() {
        let path = format!("{here}: spec.http[{i}]");
        let name = entry.get("name").and_then(Value::as_str);
        let own_cors = cors_of(entry).map(|c| {
            (
                c.clone(),
                format!("{path}.corsPolicy"),
                format!("VirtualService {resource}: spec.http[{i}].corsPolicy"),
            )
        });
        let Some((delegate_ns, delegate_name)) = delegate_target(entry, namespace) else {
            out.push(Entry {
                path,
                name: name.map(str::to_owned),
                match_names: match_names(entry),
                cors: own_cors,
            });
            continue;
        };
        let delegate = all.iter().find(|o| {
            o.kind() == "VirtualService"
                && o.name() == Some(delegate_name.as_str())
                && o.namespace_or(importer.namespace.as_deref()) == Some(delegate_ns.as_str())
        });
        let Some(delegate) = delegate else {
            if own_cors.is_some() {
                importer.warn(
                    format!("{path}.delegate"),
                    format!("delegates to VirtualService {delegate_ns}/{delegate_name}, which is not in the input: the corsPolicy of this entry applies to its routes, whose names come from the delegate: not imported (these routes get no CORS handling; import the delegate too)"),
                );
                if let Some((_, _, remove)) = own_cors {
                    importer.note_removal(remove);
                }
            }
            continue;
        };
        if match_names(entry).iter().any(Option::is_some) {
            importer.warn(
                format!("{path}.match"),
                "a match with a name on an entry that delegates: Istio merges it with the delegate's matches, and the route names of the merge were not imported from it (only the delegate's match names are)",
            );
        }
        let delegate_here = format!(
            "{} (VirtualService {delegate_ns}/{delegate_name}, delegate of {resource})",
            delegate.label
        );
        let delegate_http = delegate
            .value
            .pointer("/spec/http")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (j, sub) in delegate_http.iter().enumerate() {
            let sub_path = format!("{delegate_here}: spec.http[{j}]");
            let sub_name = sub.get("name").and_then(Value::as_str);
            // mergeHTTPRoute: the delegate's name, prefixed by the root's when both are set.
            let merged_name = match (name, sub_name) {
                (Some(root), Some(sub)) => Some(format!("{root}-{sub}")),
                (root, sub) => sub.or(root).map(str::to_owned),
            };
            let cors = match cors_of(sub) {
                Some(c) => Some((
                    c.clone(),
                    format!("{sub_path}.corsPolicy"),
                    format!(
                        "VirtualService {delegate_ns}/{delegate_name}: spec.http[{j}].corsPolicy"
                    ),
                )),
                None => own_cors.clone(),
            };
            out.push(Entry {
                path: sub_path,
                name: merged_name,
                match_names: match_names(sub),
                cors,
            });
        }
        // The root's corsPolicy is removed too once its routes are served by the filter.
        if let Some((_, _, remove)) = &own_cors {
            importer.note_removal(remove.clone());
        }
    }
    out
}

/// `check`'s warnings about rules whose `virtual_service` names a VirtualService of `text` (the
/// same YAML file) that can only be a delegate: its routes carry the root's `istio.config`, so
/// such a rule never matches.
pub fn delegate_rule_warnings(text: &str, rules: &[(usize, String, String)]) -> Vec<String> {
    let Ok(objects) = super::objects(text) else {
        return Vec::new();
    };
    let mut warnings = Vec::new();
    for (index, namespace, name) in rules {
        let is_delegate_here = objects.iter().any(|o| {
            o.kind() == "VirtualService"
                && o.name() == Some(name.as_str())
                && o.namespace_or(None) == Some(namespace.as_str())
                && is_delegate(&o.value)
        });
        if !is_delegate_here {
            continue;
        }
        let root_names: Vec<String> = roots(&objects, namespace, name, None)
            .iter()
            .filter_map(|(root, i)| {
                let ns = root.namespace_or(None)?;
                let entry = root.value.pointer(&format!("/spec/http/{i}/name"));
                Some(match entry.and_then(Value::as_str) {
                    Some(route) => format!(
                        "{ns}/{} (routes named {route}-<route>)",
                        root.name().unwrap_or("?")
                    ),
                    None => format!("{ns}/{}", root.name().unwrap_or("?")),
                })
            })
            .collect();
        let instead = if root_names.is_empty() {
            "name the VirtualService that delegates to it".to_owned()
        } else {
            format!("name its root {}", root_names.join(", "))
        };
        warnings.push(format!(
            "rules[{index}].match.virtual_service: {namespace}/{name} is a delegate VirtualService (it has no hosts): Istio generates its routes as routes of the root VirtualService, with the root's istio.config (mergeHTTPRoute), so this rule never matches; {instead}"
        ));
    }
    warnings
}
