//! The fields of a policy object, declared once: name, type, default and documentation line.
//!
//! Validation (`document.rs`) reads each field by its declaration (type checks and defaults come
//! from here), and the JSON Schema (`cors-policy schema`, committed as
//! `schema/policy.schema.json`) is generated from the same table. Adding a field: a declaration
//! here and in [`POLICY_FIELDS`], its checked form and compilation in `document.rs`, and what it
//! changes in the engine.

/// One field of a policy object.
#[derive(Debug)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    /// What the field does: the schema's description (with the default appended). Not compiled
    /// into the filter, which never prints it.
    #[cfg(not(target_arch = "wasm32"))]
    pub doc: &'static str,
}

/// A [`Field`]; its documentation line is left out of the wasm build.
macro_rules! field {
    (name: $name:expr, kind: $kind:expr, doc: $doc:expr $(,)?) => {
        Field {
            name: $name,
            kind: $kind,
            #[cfg(not(target_arch = "wasm32"))]
            doc: $doc,
        }
    };
}

/// A field's JSON type, with its constraints and default.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    /// `true` or `false`.
    Bool { default: bool },
    /// An integer in `min..=max` (a float with a zero fraction counts); `None`: absent means
    /// the field's feature is off.
    Integer {
        min: i64,
        max: i64,
        default: Option<i64>,
    },
    /// One of these strings; the first is the default.
    Choice { options: &'static [&'static str] },
    /// A list of strings, each one an [`Items`]; `None`: the field is required.
    List {
        items: Items,
        default: Option<&'static [&'static str]>,
    },
}

/// What each string of a list field is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Items {
    /// An origin pattern (docs/policy.md, *Origin patterns*).
    OriginPattern,
    /// A regex matched against the whole origin.
    Regex,
    /// A method token, or `*`.
    Method,
    /// A header name token, or `*`.
    HeaderName,
}

pub const ALLOW_ORIGINS: Field = field! {
    name: "allow_origins",
    kind: Kind::List {
        items: Items::OriginPattern,
        default: None,
    },
    doc: "Origin patterns, matched byte-exact against Origin: scheme://host[:port] as browsers serialise it (lower case, no path, no default port), https://*.example.com (one or more labels), http://localhost:* (any port), * (any origin), null (the opaque origin).",
};
pub const ALLOW_ORIGIN_REGEXES: Field = field! {
    name: "allow_origin_regexes",
    kind: Kind::List {
        items: Items::Regex,
        default: Some(&[]),
    },
    doc: "regex-lite regexes, full match (^(?:…)$) against the exact Origin bytes; escape dots (\\.).",
};
pub const ALLOW_METHODS: Field = field! {
    name: "allow_methods",
    kind: Kind::List {
        items: Items::Method,
        default: Some(&["GET", "HEAD", "POST"]),
    },
    doc: "Method tokens, case-sensitive as sent; * = any method. GET, HEAD and POST are always allowed.",
};
pub const ALLOW_HEADERS: Field = field! {
    name: "allow_headers",
    kind: Kind::List {
        items: Items::HeaderName,
        default: Some(&[]),
    },
    doc: "Request header names, case-insensitive; * = any name except authorization (list authorization as well to allow it).",
};
pub const EXPOSE_HEADERS: Field = field! {
    name: "expose_headers",
    kind: Kind::List {
        items: Items::HeaderName,
        default: Some(&[]),
    },
    doc: "Response header names the page's JavaScript may read; * only without credentials.",
};
pub const ALLOW_CREDENTIALS: Field = field! {
    name: "allow_credentials",
    kind: Kind::Bool { default: false },
    doc: "Send Access-Control-Allow-Credentials: true.",
};
pub const MAX_AGE: Field = field! {
    name: "max_age",
    kind: Kind::Integer {
        min: 0,
        max: 86_400,
        default: None,
    },
    doc: "Access-Control-Max-Age of successful preflights, in seconds; absent = not sent. Browsers cap it (Chromium 7200, Firefox 86400).",
};
pub const ALLOW_PRIVATE_NETWORK: Field = field! {
    name: "allow_private_network",
    kind: Kind::Bool { default: false },
    doc:
        "Answer Private Network Access preflights with Access-Control-Allow-Private-Network: true.",
};
pub const UNMATCHED_PREFLIGHTS: Field = field! {
    name: "unmatched_preflights",
    kind: Kind::Choice {
        options: &["reject", "forward"],
    },
    doc:
        "A preflight that fails a check: reject = local 403; forward = send it upstream untouched.",
};
pub const PREFLIGHT_STATUS: Field = field! {
    name: "preflight_status",
    kind: Kind::Integer {
        min: 200,
        max: 299,
        default: Some(204),
    },
    doc: "Status of a successful preflight reply.",
};
pub const UPSTREAM_CORS_HEADERS: Field = field! {
    name: "upstream_cors_headers",
    kind: Kind::Choice {
        options: &["replace", "keep"],
    },
    doc: "replace: remove Access-Control-* headers the upstream set and write ours; keep: if the upstream set Access-Control-Allow-Origin, leave its CORS headers alone.",
};
pub const MODE: Field = field! {
    name: "mode",
    kind: Kind::Choice {
        options: &["enforce", "report"],
    },
    doc: "report: decide, count and log, but change nothing.",
};
pub const DEBUG: Field = field! {
    name: "debug",
    kind: Kind::Bool { default: false },
    doc: "Denied preflights carry cors-deny-reason; every decision is logged at debug level.",
};
pub const DANGEROUSLY_ALLOW_INSECURE_ORIGINS: Field = field! {
    name: "dangerously_allow_insecure_origins",
    kind: Kind::Bool { default: false },
    doc: "Allow non-loopback http:// origins together with allow_credentials: true.",
};

/// Every policy field, in the order the schema and the docs list them.
pub const POLICY_FIELDS: [&Field; 14] = [
    &ALLOW_ORIGINS,
    &ALLOW_ORIGIN_REGEXES,
    &ALLOW_METHODS,
    &ALLOW_HEADERS,
    &EXPOSE_HEADERS,
    &ALLOW_CREDENTIALS,
    &MAX_AGE,
    &ALLOW_PRIVATE_NETWORK,
    &UNMATCHED_PREFLIGHTS,
    &PREFLIGHT_STATUS,
    &UPSTREAM_CORS_HEADERS,
    &MODE,
    &DEBUG,
    &DANGEROUSLY_ALLOW_INSECURE_ORIGINS,
];

/// The names of [`POLICY_FIELDS`] (only the names reach the filter's code).
const POLICY_FIELD_NAMES: [&str; POLICY_FIELDS.len()] = {
    let mut names = [""; POLICY_FIELDS.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = POLICY_FIELDS[i].name;
        i += 1;
    }
    names
};

/// Is `name` a policy field?
pub fn is_policy_field(name: &str) -> bool {
    POLICY_FIELD_NAMES.contains(&name)
}

impl Field {
    /// The default as the docs write it (`false`, `204`, `["GET", "HEAD", "POST"]`, `reject`);
    /// `None` for a required field or one whose absence means "off".
    pub fn default_text(&self) -> Option<String> {
        match &self.kind {
            Kind::Bool { default } => Some(default.to_string()),
            Kind::Integer { default, .. } => default.map(|d| d.to_string()),
            Kind::Choice { options } => options.first().map(|o| (*o).to_owned()),
            Kind::List { default, .. } => default.map(|list| {
                let quoted: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
                format!("[{}]", quoted.join(", "))
            }),
        }
    }
}

/// A choice field's options as typed values, in the order the declaration lists them.
pub trait Choice: Copy + 'static {
    /// The values of `Kind::Choice { options }`, option by option (the first is the default).
    const VALUES: &'static [Self];
}

impl Choice for super::UnmatchedPreflights {
    const VALUES: &'static [Self] = &[Self::Reject, Self::Forward];
}

impl Choice for super::UpstreamCorsHeaders {
    const VALUES: &'static [Self] = &[Self::Replace, Self::Keep];
}

impl Choice for super::Mode {
    const VALUES: &'static [Self] = &[Self::Enforce, Self::Report];
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(field: &Field) -> &'static [&'static str] {
        match field.kind {
            Kind::Choice { options } => options,
            _ => &[],
        }
    }

    #[test]
    fn every_choice_has_one_value_per_option() {
        use super::super::{Mode, UnmatchedPreflights, UpstreamCorsHeaders};
        assert_eq!(
            options(&UNMATCHED_PREFLIGHTS).len(),
            UnmatchedPreflights::VALUES.len()
        );
        assert_eq!(
            options(&UPSTREAM_CORS_HEADERS).len(),
            UpstreamCorsHeaders::VALUES.len()
        );
        assert_eq!(options(&MODE).len(), Mode::VALUES.len());
    }

    #[test]
    fn names_are_unique_and_defaults_print_as_json() {
        for (i, field) in POLICY_FIELDS.iter().enumerate() {
            assert!(
                POLICY_FIELDS[..i].iter().all(|f| f.name != field.name),
                "{}",
                field.name
            );
        }
        assert_eq!(
            ALLOW_METHODS.default_text().as_deref(),
            Some(r#"["GET", "HEAD", "POST"]"#)
        );
        assert_eq!(ALLOW_ORIGINS.default_text(), None);
        assert_eq!(MAX_AGE.default_text(), None);
        assert_eq!(PREFLIGHT_STATUS.default_text().as_deref(), Some("204"));
        assert_eq!(MODE.default_text().as_deref(), Some("enforce"));
    }
}
