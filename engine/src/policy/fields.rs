//! Every key of a policy document that has a meaning of its own, declared once: the fields of a
//! policy object ([`POLICY_FIELDS`]), the keys of a rule ([`RULE_FIELDS`]) and of its `match`
//! ([`MATCH_FIELDS`]), each with its name, kind and documentation (its doc comment).
//!
//! Validation (`document.rs`) checks unknown keys against these tables and reads the scalar
//! policy fields (boolean, integer, choice) by their declaration alone: type checks, ranges and
//! defaults come from here, into [`Scalars`]. The JSON Schema (`cors-policy schema`, committed as
//! `schema/policy.schema.json`) and the field table of docs/policy.md (`cors-policy schema
//! --markdown-table`) are generated from the same tables.
//!
//! Adding a boolean, integer or choice field is one entry in `policy_fields!` below, with the
//! name of its checked value and that value's type after `=>`; then its use in `compile`
//! (`document.rs`), [`super::Policy`] and the engine. A list field, or a field that other checks
//! depend on, leaves out the `=>` part and is checked by hand in `document.rs`.

use std::fmt;

use super::{HostPattern, ResourceName};
use crate::routing::{authority_host, FactSource, RouteFact, RouteFacts};

/// One declared key: a policy field (`Field<Kind>`), a rule key or a `match` key.
#[derive(Debug)]
pub struct Field<K = Kind> {
    pub name: &'static str,
    pub kind: K,
    /// Its doc comment, line by line: what the key does ([`Field::description`]), and for a
    /// policy field, after an empty line, its row in the field table of docs/policy.md
    /// ([`Field::docs_meaning`]). Not compiled into the filter, which never prints it.
    #[cfg(feature = "docs")]
    pub doc: &'static str,
}

#[cfg(feature = "docs")]
impl<K> Field<K> {
    /// The doc comment's `n`th paragraph, its lines joined by a space.
    fn paragraph(&self, n: usize) -> String {
        let lines: Vec<&str> = self.doc.lines().map(str::trim).collect();
        let text = lines.split(|l| l.is_empty()).nth(n).unwrap_or_default();
        text.join(" ")
    }

    /// What the key does, in plain text: the schema's description (a policy field's with its
    /// default appended).
    pub fn description(&self) -> String {
        self.paragraph(0)
    }

    /// The meaning column of its row in the field table of docs/policy.md (Markdown).
    pub fn docs_meaning(&self) -> String {
        self.paragraph(1)
    }
}

/// Declares the keys of one table: a const per key (its doc comment is its documentation, left
/// out of the wasm build), `$all` with every key in order, and `$names` with their names.
macro_rules! declare {
    ($kind:ty, $all:ident, $names:ident; $(
        $(#[doc = $doc:literal])+
        $konst:ident = $name:literal, $value:expr;
    )*) => {
        $(
            $(#[doc = $doc])+
            pub const $konst: Field<$kind> = Field {
                name: $name,
                kind: $value,
                #[cfg(feature = "docs")]
                doc: concat!($($doc, "\n"),+),
            };
        )*
        /// The names of every key of this table, in order (only the names reach the filter's code).
        pub const $names: [&str; [$($name),*].len()] = [$($name),*];
        /// Every key of this table, in the order the schema and the docs list them.
        pub const $all: [&Field<$kind>; $names.len()] = [$(&$konst),*];
    };
}

/// Declares the policy fields ([`declare!`]) and [`Scalars`], the checked values of those given a
/// `=> name: type` (read by [`Scalars::read`] from their declaration alone).
macro_rules! policy_fields {
    ($(
        $(#[doc = $doc:literal])+
        $konst:ident = $name:literal, $value:expr $(=> $checked:ident: $ty:ty)?;
    )*) => {
        declare! { Kind, POLICY_FIELDS, POLICY_FIELD_NAMES; $($(#[doc = $doc])+ $konst = $name, $value;)* }

        /// The checked values of the policy fields validation reads by their declaration alone.
        #[derive(Debug)]
        pub struct Scalars {
            $($(
                #[doc = concat!("`", $name, "`, checked.")]
                pub $checked: $ty,
            )?)*
        }

        impl Scalars {
            /// Reads each field in declaration order (the reader decides when to report errors).
            pub fn read<C: ?Sized>(reader: &mut impl ReadField<C>, at: &C) -> Self {
                Scalars {
                    $($($checked: Scalar::read(reader, at, &$konst),)?)*
                }
            }
        }

        #[cfg(test)]
        #[test]
        fn every_checked_type_fits_its_declared_kind() {
            $($(
                assert!(<$ty as Scalar>::fits(&$konst.kind), "{}", $name);
            )?)*
        }
    };
}

/// A policy field's JSON type, with its constraints and default.
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

// Each field: its doc comment (the schema's description; after an empty line, the meaning column
// of the field table in docs/policy.md), const = name, kind, and for a field read by its kind
// alone `=> name: type` of its checked value in `Scalars`.
policy_fields! {
    /// Origin patterns, matched byte-exact against Origin: scheme://host[:port] as browsers serialise it (lower case, no path, no default port), https://*.example.com (one or more labels), http://localhost:* (any port), * (any origin), null (the opaque origin).
    ///
    /// origin patterns, see [below](#origin-patterns); may be `[]` when `allow_origin_regexes` is given
    ALLOW_ORIGINS = "allow_origins", Kind::List { items: Items::OriginPattern, default: None };
    /// regex-lite regexes, full match (^(?:…)$) against the exact Origin bytes; escape dots (\.).
    ///
    /// regex-lite syntax, full match (`^(?:…)$`) against the exact Origin bytes
    ALLOW_ORIGIN_REGEXES = "allow_origin_regexes", Kind::List { items: Items::Regex, default: Some(&[]) };
    /// Method tokens, case-sensitive as sent; * = any method. GET, HEAD and POST are always allowed.
    ///
    /// method tokens, case-sensitive; `"*"` = any. GET/HEAD/POST are always allowed
    ALLOW_METHODS = "allow_methods", Kind::List { items: Items::Method, default: Some(&["GET", "HEAD", "POST"]) };
    /// Request header names, case-insensitive; * = any name except authorization (list authorization as well to allow it).
    ///
    /// header names, case-insensitive; `"*"` = any name except `authorization` (list it too to allow it)
    ALLOW_HEADERS = "allow_headers", Kind::List { items: Items::HeaderName, default: Some(&[]) };
    /// Response header names the page's JavaScript may read; * only without credentials.
    ///
    /// response headers the page may read; `"*"` only without credentials
    EXPOSE_HEADERS = "expose_headers", Kind::List { items: Items::HeaderName, default: Some(&[]) };
    /// Send Access-Control-Allow-Credentials: true.
    ///
    /// send `Access-Control-Allow-Credentials: true`
    ALLOW_CREDENTIALS = "allow_credentials", Kind::Bool { default: false };
    /// Access-Control-Max-Age of successful preflights, in seconds; absent = not sent (browsers then reuse an answer for 5 s). Browsers cap it: WebKit (Safari) 600, Chromium 7200, Firefox 86400.
    ///
    /// `Access-Control-Max-Age` on allowed preflights; browsers cap it: WebKit (Safari) 600, Chromium 7200, Firefox 86400 (see [below](#what-browsers-make-of-it))
    MAX_AGE = "max_age", Kind::Integer { min: 0, max: MAX_AGE_SECONDS as i64, default: None } => max_age: Option<u32>;
    /// Answer Private Network Access preflights with Access-Control-Allow-Private-Network: true (sent by older Chromium only; current Chrome asks the user instead).
    ///
    /// answer Private Network Access preflights (older Chromium only, see [below](#what-browsers-make-of-it))
    ALLOW_PRIVATE_NETWORK = "allow_private_network", Kind::Bool { default: false } => allow_private_network: bool;
    /// A preflight that fails a check: reject = local 403; forward = send it upstream untouched.
    ///
    /// a preflight failing any check: local 403, or sent upstream untouched
    UNMATCHED_PREFLIGHTS = "unmatched_preflights", Kind::Choice { options: &["reject", "forward"] } => unmatched_preflights: super::UnmatchedPreflights;
    /// Status of a successful preflight reply.
    ///
    /// status of an allowed preflight reply
    PREFLIGHT_STATUS = "preflight_status", Kind::Integer { min: 200, max: 299, default: Some(204) } => preflight_status: u16;
    /// replace: remove Access-Control-* headers the upstream set and write ours; keep: if the upstream set Access-Control-Allow-Origin, leave its CORS headers alone.
    ///
    /// `replace`: drop the upstream's `Access-Control-*` headers and write ours; `keep`: if the upstream set `Access-Control-Allow-Origin`, leave its CORS headers alone
    UPSTREAM_CORS_HEADERS = "upstream_cors_headers", Kind::Choice { options: &["replace", "keep"] } => upstream_cors_headers: super::UpstreamCorsHeaders;
    /// report: decide, count and log, but change nothing.
    ///
    /// `report`: decide, count and log, but change nothing
    MODE = "mode", Kind::Choice { options: &["enforce", "report"] } => mode: super::Mode;
    /// Denied preflights carry cors-deny-reason; every decision is logged at debug level.
    ///
    /// denied preflights carry `cors-deny-reason: origin\|method\|headers\|private-network`; every decision is logged at debug level
    DEBUG = "debug", Kind::Bool { default: false } => debug: bool;
    /// Allow non-loopback http:// origins together with allow_credentials: true.
    ///
    /// allow non-loopback `http://` origins together with credentials (see [Credentials](#credentials))
    DANGEROUSLY_ALLOW_INSECURE_ORIGINS = "dangerously_allow_insecure_origins", Kind::Bool { default: false };
}

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

/// Reads one scalar field of the policy object `at` by its declaration, reporting a wrong value
/// (validation, `document.rs`); a wrong or absent value reads as the declared default.
pub trait ReadField<C: ?Sized> {
    /// A [`Kind::Bool`] field.
    fn boolean(&mut self, at: &C, field: &Field) -> bool;
    /// A [`Kind::Integer`] field in its range; `None` when absent without a default, or wrong.
    fn integer(&mut self, at: &C, field: &Field) -> Option<i64>;
    /// A [`Kind::Choice`] field: the index of its option (the first when absent or wrong).
    fn choice(&mut self, at: &C, field: &Field) -> usize;
}

/// A type a scalar policy field is checked into (the `=> name: type` of `policy_fields!`).
pub trait Scalar: Sized {
    fn read<C: ?Sized>(reader: &mut impl ReadField<C>, at: &C, field: &Field) -> Self;
    /// Does this type hold every value of a field of this kind?
    #[cfg(test)]
    fn fits(kind: &Kind) -> bool;
}

impl Scalar for bool {
    fn read<C: ?Sized>(reader: &mut impl ReadField<C>, at: &C, field: &Field) -> Self {
        reader.boolean(at, field)
    }
    #[cfg(test)]
    fn fits(kind: &Kind) -> bool {
        matches!(kind, Kind::Bool { .. })
    }
}

/// An integer field without a default: `None` when absent.
impl Scalar for Option<u32> {
    fn read<C: ?Sized>(reader: &mut impl ReadField<C>, at: &C, field: &Field) -> Self {
        reader
            .integer(at, field)
            .and_then(|n| u32::try_from(n).ok())
    }
    #[cfg(test)]
    fn fits(kind: &Kind) -> bool {
        matches!(kind, Kind::Integer { min, max, default: None }
            if u32::try_from(*min).is_ok() && u32::try_from(*max).is_ok())
    }
}

/// An integer field with a default.
impl Scalar for u16 {
    fn read<C: ?Sized>(reader: &mut impl ReadField<C>, at: &C, field: &Field) -> Self {
        reader
            .integer(at, field)
            .and_then(|n| u16::try_from(n).ok())
            .unwrap_or_default()
    }
    #[cfg(test)]
    fn fits(kind: &Kind) -> bool {
        matches!(kind, Kind::Integer { min, max, default: Some(_) }
            if u16::try_from(*min).is_ok() && u16::try_from(*max).is_ok())
    }
}

/// A choice field: the value of its option ([`Choice::VALUES`]).
impl<T: Choice> Scalar for T {
    fn read<C: ?Sized>(reader: &mut impl ReadField<C>, at: &C, field: &Field) -> Self {
        let index = reader.choice(at, field);
        T::VALUES.get(index).copied().unwrap_or(T::VALUES[0])
    }
    #[cfg(test)]
    fn fits(kind: &Kind) -> bool {
        matches!(kind, Kind::Choice { options } if options.len() == T::VALUES.len())
    }
}

/// A choice field's options as typed values, in the order the declaration lists them.
pub trait Choice: Copy + PartialEq + 'static {
    /// The values of `Kind::Choice { options }`, option by option (the first is the default).
    const VALUES: &'static [Self];
}

/// The largest `max_age` a policy takes, in seconds.
pub const MAX_AGE_SECONDS: u32 = 86_400;

impl Field {
    /// How a choice value of this field is written in a policy document (`None` if the field is
    /// no choice of that type).
    pub fn option<C: Choice>(&self, value: C) -> Option<&'static str> {
        let Kind::Choice { options } = self.kind else {
            return None;
        };
        let at = C::VALUES.iter().position(|v| *v == value)?;
        options.get(at).copied()
    }
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

/// What a key of a rule is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// An object of [`MATCH_FIELDS`].
    Match,
    /// A policy name, or null for no CORS handling.
    Policy,
}

declare! { RuleKind, RULE_FIELDS, RULE_FIELD_NAMES;
    /// Every field given must hold (AND). An empty match holds for every request.
    MATCH = "match", RuleKind::Match;
    /// A policy name (default or a key of policies), or null for no CORS handling.
    POLICY = "policy", RuleKind::Policy;
}

/// What the string of a `match` key is written as (its schema follows from it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    /// A name, matched exactly.
    Name,
    /// An exact lower-case host, or `*.domain`.
    Host,
    /// A path prefix, starting with `/`.
    PathPrefix,
    /// `namespace/name` of a Kubernetes resource.
    Resource,
}

/// Which `match` key: one per declaration below, in the same order (the order a rule's conditions
/// are checked and printed in). Its compiled form is a [`Condition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MatchKind {
    Route,
    VirtualHost,
    Host,
    PathPrefix,
    VirtualService,
    HttpRoute,
}

// A new `match` key: its declaration here, its `MatchKind` and `Condition` variants, and its arm in
// each `match` of `MatchKind::syntax`, `Condition::parse`, `Condition::holds` and `Condition`'s
// `Display` below. Validation, routing, the schema and `cors-policy explain` follow.
declare! { MatchKind, MATCH_FIELDS, MATCH_FIELD_NAMES;
    /// Exact Envoy route name (xds.route_name). In Istio: the VirtualService http[].name, plus .<match name> when the match has a name.
    ROUTE = "route", MatchKind::Route;
    /// Exact Envoy virtual host name (xds.virtual_host_name).
    VIRTUAL_HOST = "virtual_host", MatchKind::VirtualHost;
    /// The :authority without its port: an exact lower-case host, or *.domain for one or more labels before domain.
    HOST = "host", MatchKind::Host;
    /// A prefix of :path.
    PATH_PREFIX = "path_prefix", MatchKind::PathPrefix;
    /// namespace/name of the Istio VirtualService the route came from: matched against the route metadata filter_metadata.istio.config that Istio puts on every route it generates from a VirtualService (/apis/networking.istio.io/<version>/namespaces/<ns>/virtual-service/<name>).
    VIRTUAL_SERVICE = "virtual_service", MatchKind::VirtualService;
    /// namespace/name of a Gateway API HTTPRoute: matches the routes Istio generates for its rules that have no name (route name <namespace>.<name>.<rule index>) whose filter_metadata.istio.config names a VirtualService Istio generated from Gateway API routes (its name holds istio-autogenerated-k8s-gateway), so a hand-written VirtualService entry of the same name never matches. That metadata does not name the HTTPRoute: a route name is all that tells two HTTPRoutes apart. A rule with a name gives the route that name: match it with route.
    HTTP_ROUTE = "http_route", MatchKind::HttpRoute;
}

impl MatchKind {
    /// How the key's string is written.
    pub fn syntax(self) -> Syntax {
        match self {
            MatchKind::Route | MatchKind::VirtualHost => Syntax::Name,
            MatchKind::Host => Syntax::Host,
            MatchKind::PathPrefix => Syntax::PathPrefix,
            MatchKind::VirtualService | MatchKind::HttpRoute => Syntax::Resource,
        }
    }
}

/// One `match` key of a rule, compiled: it holds when the route facts it reads say so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Route(String),
    VirtualHost(String),
    Host(HostPattern),
    PathPrefix(String),
    VirtualService(ResourceName),
    HttpRoute(ResourceName),
}

impl Condition {
    /// Compiles the string of a `match` key; the error says what is wrong with it.
    pub fn parse(kind: MatchKind, text: &str) -> Result<Condition, String> {
        Ok(match kind {
            MatchKind::Route => Condition::Route(text.to_owned()),
            MatchKind::VirtualHost => Condition::VirtualHost(text.to_owned()),
            MatchKind::Host => Condition::Host(HostPattern::parse(text)?),
            MatchKind::PathPrefix if text.starts_with('/') => {
                Condition::PathPrefix(text.to_owned())
            }
            MatchKind::PathPrefix => return Err("a path prefix must start with /".into()),
            MatchKind::VirtualService => Condition::VirtualService(ResourceName::parse(text)?),
            MatchKind::HttpRoute => Condition::HttpRoute(ResourceName::parse(text)?),
        })
    }

    /// Does it hold for this request? Reads only the facts it needs.
    pub fn holds<'a, S: FactSource<'a>>(&self, facts: &mut RouteFacts<'a, S>) -> bool {
        match self {
            Condition::Route(route) => facts.get(RouteFact::RouteName) == Some(route.as_bytes()),
            Condition::VirtualHost(vhost) => {
                facts.get(RouteFact::VirtualHost) == Some(vhost.as_bytes())
            }
            Condition::Host(host) => facts
                .get(RouteFact::Authority)
                .is_some_and(|authority| host.matches(authority_host(authority))),
            Condition::PathPrefix(prefix) => facts
                .get(RouteFact::Path)
                .is_some_and(|path| path.starts_with(prefix.as_bytes())),
            Condition::VirtualService(resource) => facts
                .get(RouteFact::IstioConfig)
                .is_some_and(|config| resource.is_virtual_service_config(config)),
            Condition::HttpRoute(resource) => {
                facts
                    .get(RouteFact::RouteName)
                    .is_some_and(|route| resource.is_http_route_rule(route))
                    // A VirtualService written by hand can name an entry `<ns>.<name>.<index>` too.
                    && facts
                        .get(RouteFact::IstioConfig)
                        .is_some_and(super::is_generated_from_gateway_api)
            }
        }
    }

    /// Which key it is.
    pub fn kind(&self) -> MatchKind {
        match self {
            Condition::Route(_) => MatchKind::Route,
            Condition::VirtualHost(_) => MatchKind::VirtualHost,
            Condition::Host(_) => MatchKind::Host,
            Condition::PathPrefix(_) => MatchKind::PathPrefix,
            Condition::VirtualService(_) => MatchKind::VirtualService,
            Condition::HttpRoute(_) => MatchKind::HttpRoute,
        }
    }
}

/// `key="value"`, as `cors-policy explain` prints a rule.
impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Route(route) => write!(f, "{}={route:?}", ROUTE.name),
            Condition::VirtualHost(vhost) => write!(f, "{}={vhost:?}", VIRTUAL_HOST.name),
            Condition::Host(HostPattern::Exact(host)) => write!(f, "{}={host:?}", HOST.name),
            Condition::Host(HostPattern::Subdomain(suffix)) => {
                write!(f, "{}=\"*{suffix}\"", HOST.name)
            }
            Condition::PathPrefix(prefix) => write!(f, "{}={prefix:?}", PATH_PREFIX.name),
            Condition::VirtualService(resource) => {
                write!(f, "{}=\"{resource}\"", VIRTUAL_SERVICE.name)
            }
            Condition::HttpRoute(resource) => write!(f, "{}=\"{resource}\"", HTTP_ROUTE.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
