//! The policy document (docs/policy.md): its compiled form, and loading it from JSON with every error
//! reported at once, each with its JSON path.

pub mod document;
pub mod fields;
mod json;
pub mod origin;
#[cfg(feature = "docs")]
pub mod schema;
pub mod token;

use std::collections::HashMap;
use std::fmt;

use crate::lookup::NameSet;
pub use document::load;
use origin::OriginMatcher;

/// `Vary` of every preflight reply: the answer depends on all three request headers.
pub const PREFLIGHT_VARY: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";
/// [`PREFLIGHT_VARY`] of a policy with `allow_private_network`.
pub const PREFLIGHT_VARY_PRIVATE_NETWORK: &str = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, Access-Control-Request-Private-Network";

/// Loads a policy document as both shims do when Envoy configures them: warnings at `warn`, the
/// loaded policy at `info`; on errors, each error with its path at `error`, then one line saying
/// the configuration is refused. `None` when it is refused.
pub fn load_logged(document: &[u8]) -> Option<Config> {
    match load(&String::from_utf8_lossy(document)) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                log::warn!("cors-proxy-wasm: policy warning: {warning}");
            }
            log::info!(
                "cors-proxy-wasm: policy loaded ({} policies, {} rules)",
                loaded.config.policies.len(),
                loaded.config.rules.len()
            );
            Some(loaded.config)
        }
        Err(rejected) => {
            for warning in &rejected.warnings {
                log::warn!("cors-proxy-wasm: policy warning: {warning}");
            }
            for error in &rejected.errors {
                log::error!("cors-proxy-wasm: invalid policy: {error}");
            }
            log::error!(
                "cors-proxy-wasm: policy rejected with {} error(s); the configuration is refused",
                rejected.errors.len()
            );
            None
        }
    }
}

/// One problem found in a policy document, at a JSON path such as
/// `policies.partner.allow_origins[1]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// A document that failed validation: every error, and the warnings found on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

/// A document that passed validation, compiled for the request path.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<Problem>,
}

/// What a preflight that fails a check gets (`unmatched_preflights`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnmatchedPreflights {
    Reject,
    Forward,
}

/// What to do with `Access-Control-*` headers the upstream wrote (`upstream_cors_headers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamCorsHeaders {
    Replace,
    Keep,
}

/// `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Report,
}

/// The `allow_methods` of a policy.
#[derive(Debug)]
pub struct AllowedMethods {
    /// `*` was listed.
    pub any: bool,
    /// Listed methods, byte-exact (case-sensitive).
    pub listed: NameSet,
}

impl AllowedMethods {
    /// GET, HEAD and POST are always allowed; anything else must be listed (or `*`).
    pub fn allows(&self, method: &[u8]) -> bool {
        self.any || matches!(method, b"GET" | b"HEAD" | b"POST") || self.listed.contains(method)
    }
}

/// The `allow_headers` of a policy.
#[derive(Debug)]
pub struct AllowedHeaders {
    /// `*` was listed: any name except `authorization`.
    pub any: bool,
    /// Listed names, lower case.
    pub listed: NameSet,
    /// The longest listed name: longer requested names are denied without a lookup.
    pub longest: usize,
}

impl AllowedHeaders {
    /// Is this lower-case request header name allowed?
    pub fn allows(&self, lower_name: &[u8]) -> bool {
        if self.any && lower_name != b"authorization" {
            return true;
        }
        lower_name.len() <= self.longest && self.listed.contains(lower_name)
    }
}

/// What one response header of a policy says, decided when the policy is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    /// Always this value.
    Fixed(String),
    /// The request's own: the method a preflight asks for (`allow_methods: ["*"]` with
    /// credentials, where browsers do not accept `*`).
    Echo,
    /// No header.
    Omit,
}

/// What `Access-Control-Allow-Headers` says on an allowed preflight, decided at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowHeadersValue {
    /// The listed names.
    Fixed(String),
    /// `*` (any name but `authorization`, which the wildcard never covers). When `authorization`
    /// is listed too, a preflight asking for it gets `*, authorization`.
    Wildcard { authorization_listed: bool },
    /// The names the preflight asks for, lower case, each once (`*` with credentials).
    Echo,
    /// No header (no names allowed).
    Omit,
}

/// The values of a policy's response headers, precomputed so that a request only picks one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderValues {
    /// `Access-Control-Allow-Methods` of an allowed preflight (never [`HeaderValue::Omit`] unless
    /// `allow_methods: []`: the safelisted methods need no header).
    pub allow_methods: HeaderValue,
    pub allow_headers: AllowHeadersValue,
    /// `Access-Control-Expose-Headers` of an allowed actual response (fixed or omitted).
    pub expose_headers: HeaderValue,
    /// `Access-Control-Max-Age` of an allowed preflight (fixed or omitted).
    pub max_age: HeaderValue,
    /// `Vary` of preflight replies.
    pub preflight_vary: &'static str,
}

/// One compiled policy, with every response header value it can send precomputed.
#[derive(Debug)]
pub struct Policy {
    pub name: String,
    pub origins: OriginMatcher,
    pub methods: AllowedMethods,
    pub headers: AllowedHeaders,
    pub allow_credentials: bool,
    pub allow_private_network: bool,
    pub unmatched_preflights: UnmatchedPreflights,
    pub preflight_status: u16,
    pub upstream_cors_headers: UpstreamCorsHeaders,
    pub mode: Mode,
    pub debug: bool,
    /// What each response header says, decided at load.
    pub values: HeaderValues,
    /// Whether actual responses depend on the origin (all but any-origin without credentials).
    pub vary_on_origin: bool,
}

/// How a rule matches a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// `*.suffix`: one or more labels before `.suffix` (stored with its leading dot).
    Subdomain(String),
}

impl HostPattern {
    /// Matches the `:authority` (port stripped), case-insensitively.
    pub fn matches(&self, host: &[u8]) -> bool {
        match self {
            HostPattern::Exact(exact) => host.eq_ignore_ascii_case(exact.as_bytes()),
            HostPattern::Subdomain(dot_suffix) => {
                let suffix = dot_suffix.as_bytes();
                host.len() > suffix.len()
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                    && host[0] != b'.'
            }
        }
    }
}

/// A Kubernetes resource a rule names as `namespace/name` (`virtual_service`, `http_route`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceName {
    pub namespace: String,
    pub name: String,
}

impl ResourceName {
    /// Does the route's `filter_metadata.istio.config` name this VirtualService? Istio writes
    /// `/apis/networking.istio.io/<version>/namespaces/<ns>/virtual-service/<name>`; any version
    /// is accepted (`v1alpha3`, `v1beta1`, `v1` were all written by Istio releases).
    pub fn is_virtual_service_config(&self, config: &[u8]) -> bool {
        virtual_service_of_config(config) == Some((self.namespace.as_bytes(), self.name.as_bytes()))
    }

    /// Is this Envoy route name one Istio gives a rule of this Gateway API HTTPRoute? A rule
    /// without a `name` becomes the route `<namespace>.<name>.<rule index>`.
    pub fn is_http_route_rule(&self, route_name: &[u8]) -> bool {
        let Some(rest) = route_name
            .strip_prefix(self.namespace.as_bytes())
            .and_then(|r| r.strip_prefix(b".".as_slice()))
            .and_then(|r| r.strip_prefix(self.name.as_bytes()))
            .and_then(|r| r.strip_prefix(b".".as_slice()))
        else {
            return false;
        };
        !rest.is_empty() && rest.len() <= 10 && rest.iter().all(u8::is_ascii_digit)
    }
}

/// What every VirtualService Istio generates from Gateway API routes has in its name, in every
/// naming Istio used: `<route>-<n>-istio-autogenerated-k8s-gateway` (up to 1.26),
/// `…-istio-autogenerated-k8s-gateway-<listener>~<host>` (1.27),
/// `<gateway namespace>~<gateway>~istio-autogenerated-k8s-gateway~<namespace>~<host>` (1.28 on).
pub const GENERATED_VIRTUAL_SERVICE_MARK: &str = "istio-autogenerated-k8s-gateway";

/// `(namespace, name)` of the VirtualService a route's `filter_metadata.istio.config` names:
/// `/apis/networking.istio.io/<version>/namespaces/<ns>/virtual-service/<name>`, any version
/// (`v1alpha3`, `v1beta1`, `v1` were all written by Istio releases).
fn virtual_service_of_config(config: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = config.strip_prefix(b"/apis/networking.istio.io/".as_slice())?;
    let slash = rest.iter().position(|&b| b == b'/').filter(|&s| s > 0)?;
    let rest = rest[slash..].strip_prefix(b"/namespaces/".as_slice())?;
    let slash = rest.iter().position(|&b| b == b'/')?;
    let (namespace, rest) = rest.split_at(slash);
    let name = rest.strip_prefix(b"/virtual-service/".as_slice())?;
    Some((namespace, name))
}

/// Does a route's `istio.config` name a VirtualService Istio generated from Gateway API routes
/// (and not one a user wrote)?
pub fn is_generated_from_gateway_api(config: &[u8]) -> bool {
    virtual_service_of_config(config).is_some_and(|(_, name)| {
        name.windows(GENERATED_VIRTUAL_SERVICE_MARK.len())
            .any(|w| w == GENERATED_VIRTUAL_SERVICE_MARK.as_bytes())
    })
}

impl fmt::Display for ResourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One entry of `rules`: every given field must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub route: Option<String>,
    pub virtual_host: Option<String>,
    /// `virtual_service`: the Istio VirtualService the route came from (its `istio.config` metadata).
    pub virtual_service: Option<ResourceName>,
    /// `http_route`: the Gateway API HTTPRoute whose unnamed rule the route is (its route name),
    /// on a route Istio generated from Gateway API routes (its `istio.config`).
    pub http_route: Option<ResourceName>,
    pub host: Option<HostPattern>,
    pub path_prefix: Option<String>,
    /// Index into [`Config::policies`]; `None` = no CORS handling.
    pub policy: Option<usize>,
}

/// A validated, compiled policy document.
#[derive(Debug)]
pub struct Config {
    /// Every policy; `default` (if any) first.
    pub policies: Vec<Policy>,
    pub by_name: HashMap<String, usize>,
    pub default: Option<usize>,
    pub rules: Vec<Rule>,
}

impl Config {
    pub fn policy(&self, index: usize) -> Option<&Policy> {
        self.policies.get(index)
    }
}
