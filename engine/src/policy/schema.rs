//! The JSON Schema (draft 2020-12) of the policy document, generated: the properties of a policy
//! object and of a rule and its `match` come from their declarations ([`super::fields`]), the
//! rest (the full form, the cross-field rules on credentials) is written here. `cors-policy schema` prints it;
//! `schema/policy.schema.json` is that output, committed (a test compares the two).
//!
//! The schema is looser than the filter's validation (`cors-policy check`): it cannot check
//! origin serialisation, regexes, forbidden header names or policy references.

use super::fields::{
    Field, Items, Kind, MatchKind, RuleKind, MATCH_FIELDS, POLICY_FIELDS, RULE_FIELDS,
};

/// A JSON value whose objects keep the order they are written in (the schema reads top-down).
enum Json {
    Bool(bool),
    Int(i64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

fn obj<const N: usize>(pairs: [(&str, Json); N]) -> Json {
    Json::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn s(text: &str) -> Json {
    Json::Str(text.to_owned())
}

fn strings(list: &[&str]) -> Json {
    Json::Array(list.iter().map(|t| s(t)).collect())
}

impl Json {
    /// The value on one line, when it is short enough to read that way.
    fn inline(&self) -> Option<String> {
        const WIDEST: usize = 72;
        let text = match self {
            Json::Bool(b) => b.to_string(),
            Json::Int(n) => n.to_string(),
            Json::Str(text) => serde_json::Value::String(text.clone()).to_string(),
            Json::Array(items) => {
                let items: Option<Vec<String>> = items.iter().map(Json::inline).collect();
                format!("[{}]", items?.join(", "))
            }
            Json::Object(pairs) if pairs.is_empty() => "{}".to_owned(),
            Json::Object(pairs) => {
                let pairs: Option<Vec<String>> = pairs
                    .iter()
                    .map(|(k, v)| {
                        Some(format!(
                            "{}: {}",
                            Json::Str(k.clone()).inline()?,
                            v.inline()?
                        ))
                    })
                    .collect();
                format!("{{ {} }}", pairs?.join(", "))
            }
        };
        (text.len() <= WIDEST || matches!(self, Json::Str(_))).then_some(text)
    }

    fn write(&self, out: &mut String, indent: usize) {
        if let Some(text) = self.inline() {
            out.push_str(&text);
            return;
        }
        let pad = |out: &mut String, n: usize| out.push_str(&" ".repeat(n));
        match self {
            Json::Array(items) => {
                out.push_str("[\n");
                for (i, item) in items.iter().enumerate() {
                    pad(out, indent + 2);
                    item.write(out, indent + 2);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                pad(out, indent);
                out.push(']');
            }
            Json::Object(pairs) => {
                out.push_str("{\n");
                for (i, (key, value)) in pairs.iter().enumerate() {
                    pad(out, indent + 2);
                    Json::Str(key.clone()).write(out, indent + 2);
                    out.push_str(": ");
                    value.write(out, indent + 2);
                    out.push_str(if i + 1 < pairs.len() { ",\n" } else { "\n" });
                }
                pad(out, indent);
                out.push('}');
            }
            // Scalars are always written inline above.
            Json::Bool(_) | Json::Int(_) | Json::Str(_) => {}
        }
    }
}

/// The field table of docs/policy.md, as `cors-policy schema --markdown-table` prints it: each
/// policy field with its type and default (from its kind) and its meaning (from its doc comment).
pub fn markdown_table() -> String {
    let mut out = String::from("| field | type, default | meaning |\n|---|---|---|\n");
    for field in POLICY_FIELDS {
        let code = |text: &str| format!("`{text}`");
        let type_default = match &field.kind {
            Kind::Bool { .. } => "bool".to_owned(),
            Kind::Integer { min, max, .. } => format!("integer {min}..={max}"),
            Kind::Choice { options } => options
                .iter()
                .map(|o| code(&format!("{o:?}")))
                .collect::<Vec<_>>()
                .join(" \\| "),
            Kind::List { .. } => "list".to_owned(),
        };
        let default = match (&field.kind, field.default_text()) {
            (Kind::Choice { .. }, Some(first)) => code(&format!("{first:?}")),
            (_, Some(default)) => code(&default),
            (Kind::List { .. }, None) => "**required**".to_owned(),
            (_, None) => "absent".to_owned(),
        };
        out.push_str(&format!(
            "| `{}` | {type_default}, {default} | {} |\n",
            field.name,
            field.docs_meaning()
        ));
    }
    out
}

/// The schema as `cors-policy schema` prints it (ending with a newline).
pub fn json_schema() -> String {
    let mut out = String::new();
    document().write(&mut out, 0);
    out.push('\n');
    out
}

const RESOURCE_NAME_PATTERN: &str =
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

fn document() -> Json {
    let has = |key: &str| obj([("required", strings(&[key]))]);
    obj([
        ("$schema", s("https://json-schema.org/draft/2020-12/schema")),
        (
            "$id",
            s("https://github.com/cors-proxy-wasm/cors-proxy-wasm/schema/policy.schema.json"),
        ),
        ("title", s("cors-proxy-wasm policy document")),
        (
            "description",
            s("The JSON policy document of the cors-proxy-wasm filter (Envoy plugin configuration, or the pluginConfig of an Istio WasmPlugin). Short form: the whole document is one policy. Full form: any of default, policies, rules. The filter's own validation (`cors-policy check`) is stricter than this schema: it also checks origin serialisation, regexes, forbidden header names and policy references."),
        ),
        ("type", s("object")),
        (
            "if",
            obj([(
                "anyOf",
                Json::Array(vec![has("default"), has("policies"), has("rules")]),
            )]),
        ),
        ("then", obj([("$ref", s("#/$defs/fullForm"))])),
        ("else", obj([("$ref", s("#/$defs/policy"))])),
        (
            "$defs",
            obj([
                ("fullForm", full_form()),
                ("rule", rule()),
                (
                    "token",
                    obj([
                        ("description", s("An RFC 9110 token.")),
                        ("type", s("string")),
                        ("pattern", s("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")),
                    ]),
                ),
                ("policy", policy()),
            ]),
        ),
    ])
}

fn full_form() -> Json {
    obj([
        ("description", s("Named policies and a choice per route. First that applies wins: route metadata filter_metadata.cors.policy, then rules in order, then default.")),
        ("type", s("object")),
        ("additionalProperties", Json::Bool(false)),
        (
            "properties",
            obj([
                (
                    "default",
                    obj([
                        ("description", s("The policy of requests no route metadata and no rule chooses a policy for.")),
                        ("$ref", s("#/$defs/policy")),
                    ]),
                ),
                (
                    "policies",
                    obj([
                        ("description", s("Named policies, chosen by rules or by route metadata (filter_metadata.cors.policy). The names default and off are reserved.")),
                        ("type", s("object")),
                        (
                            "propertyNames",
                            obj([
                                ("pattern", s("^[A-Za-z0-9_-]{1,64}$")),
                                ("not", obj([("enum", strings(&["default", "off"]))])),
                            ]),
                        ),
                        ("additionalProperties", obj([("$ref", s("#/$defs/policy"))])),
                    ]),
                ),
                (
                    "rules",
                    obj([
                        ("description", s("Tried in order; the first whose every match field holds chooses the policy.")),
                        ("type", s("array")),
                        ("items", obj([("$ref", s("#/$defs/rule"))])),
                    ]),
                ),
            ]),
        ),
        (
            "anyOf",
            Json::Array(vec![
                obj([("required", strings(&["default"]))]),
                obj([
                    ("required", strings(&["policies"])),
                    (
                        "properties",
                        obj([("policies", obj([("minProperties", Json::Int(1))]))]),
                    ),
                ]),
                obj([
                    ("required", strings(&["rules"])),
                    (
                        "properties",
                        obj([("rules", obj([("minItems", Json::Int(1))]))]),
                    ),
                ]),
            ]),
        ),
    ])
}

fn rule() -> Json {
    let properties = RULE_FIELDS
        .iter()
        .map(|f| {
            let mut pairs = vec![("description".to_owned(), Json::Str(f.description()))];
            match f.kind {
                RuleKind::Match => {
                    let keys = MATCH_FIELDS
                        .iter()
                        .map(|f| (f.name.to_owned(), match_field(f)))
                        .collect();
                    pairs.push(("type".to_owned(), s("object")));
                    pairs.push(("additionalProperties".to_owned(), Json::Bool(false)));
                    pairs.push(("properties".to_owned(), Json::Object(keys)));
                }
                RuleKind::Policy => {
                    pairs.push(("type".to_owned(), strings(&["string", "null"])));
                    pairs.push(("not".to_owned(), obj([("const", s("off"))])));
                }
            }
            (f.name.to_owned(), Json::Object(pairs))
        })
        .collect();
    let required: Vec<&str> = RULE_FIELDS.iter().map(|f| f.name).collect();
    obj([
        ("type", s("object")),
        ("additionalProperties", Json::Bool(false)),
        ("required", strings(&required)),
        ("properties", Json::Object(properties)),
    ])
}

/// One `match` key's schema, from its declaration.
fn match_field(field: &Field<MatchKind>) -> Json {
    let mut pairs = vec![
        ("description".to_owned(), Json::Str(field.description())),
        ("type".to_owned(), s("string")),
    ];
    match field.kind {
        MatchKind::Name => {}
        MatchKind::Host => pairs.push((
            "pattern".to_owned(),
            s("^(\\*\\.)?([a-z0-9_-]+(\\.[a-z0-9_-]+)*|\\[[0-9a-f:.]+\\])$"),
        )),
        MatchKind::PathPrefix => pairs.push(("pattern".to_owned(), s("^/"))),
        MatchKind::Resource => {
            pairs.push(("maxLength".to_owned(), Json::Int(317)));
            pairs.push(("pattern".to_owned(), s(RESOURCE_NAME_PATTERN)));
        }
    }
    Json::Object(pairs)
}

/// One policy field's schema, from its declaration.
fn field(field: &Field) -> Json {
    let mut pairs = Vec::new();
    let description = match field.default_text() {
        Some(default) => format!("{} Default {default}.", field.description()),
        None => field.description(),
    };
    pairs.push(("description".to_owned(), Json::Str(description)));
    match &field.kind {
        Kind::Bool { default } => {
            pairs.push(("type".to_owned(), s("boolean")));
            pairs.push(("default".to_owned(), Json::Bool(*default)));
        }
        Kind::Integer { min, max, default } => {
            pairs.push(("type".to_owned(), s("integer")));
            pairs.push(("minimum".to_owned(), Json::Int(*min)));
            pairs.push(("maximum".to_owned(), Json::Int(*max)));
            if let Some(default) = default {
                pairs.push(("default".to_owned(), Json::Int(*default)));
            }
        }
        Kind::Choice { options } => {
            pairs.push(("enum".to_owned(), strings(options)));
            if let Some(first) = options.first() {
                pairs.push(("default".to_owned(), s(first)));
            }
        }
        Kind::List { items, default } => {
            pairs.push(("type".to_owned(), s("array")));
            pairs.push(("items".to_owned(), item(*items)));
            if let Some(default) = default {
                pairs.push(("default".to_owned(), strings(default)));
            }
        }
    }
    Json::Object(pairs)
}

fn item(items: Items) -> Json {
    match items {
        Items::OriginPattern => obj([
            ("type", s("string")),
            (
                "anyOf",
                Json::Array(vec![
                    obj([("enum", strings(&["*", "null"]))]),
                    obj([("pattern", s("^[a-z][a-z0-9+.-]*://[^/?#@\\sA-Z]+$"))]),
                ]),
            ),
        ]),
        Items::Regex => obj([
            ("type", s("string")),
            ("minLength", Json::Int(1)),
            ("maxLength", Json::Int(1000)),
        ]),
        Items::Method => obj([
            ("$ref", s("#/$defs/token")),
            (
                "not",
                obj([(
                    "pattern",
                    s("^([Cc][Oo][Nn][Nn][Ee][Cc][Tt]|[Tt][Rr][Aa][Cc][Ee]|[Tt][Rr][Aa][Cc][Kk])$"),
                )]),
            ),
        ]),
        Items::HeaderName => obj([("$ref", s("#/$defs/token"))]),
    }
}

fn policy() -> Json {
    let required: Vec<&str> = POLICY_FIELDS
        .iter()
        .filter(|f| matches!(f.kind, Kind::List { default: None, .. }))
        .map(|f| f.name)
        .collect();
    let properties = POLICY_FIELDS
        .iter()
        .map(|f| (f.name.to_owned(), field(f)))
        .collect();
    let min_items = |field: &str| obj([(field, obj([("minItems", Json::Int(1))]))]);
    obj([
        ("description", s("One CORS policy.")),
        ("type", s("object")),
        ("additionalProperties", Json::Bool(false)),
        ("properties", Json::Object(properties)),
        ("required", strings(&required)),
        // Cross-field rules: some origin must be allowed, and credentials exclude the wildcards.
        (
            "anyOf",
            Json::Array(vec![
                obj([("properties", min_items("allow_origins"))]),
                obj([
                    ("required", strings(&["allow_origin_regexes"])),
                    ("properties", min_items("allow_origin_regexes")),
                ]),
            ]),
        ),
        (
            "if",
            obj([
                ("required", strings(&["allow_credentials"])),
                (
                    "properties",
                    obj([("allow_credentials", obj([("const", Json::Bool(true))]))]),
                ),
            ]),
        ),
        (
            "then",
            obj([(
                "properties",
                obj([
                    (
                        "allow_origins",
                        obj([(
                            "items",
                            obj([("not", obj([("enum", strings(&["*", "null"]))]))]),
                        )]),
                    ),
                    (
                        "expose_headers",
                        obj([("items", obj([("not", obj([("const", s("*"))]))]))]),
                    ),
                ]),
            )]),
        ),
    ])
}
