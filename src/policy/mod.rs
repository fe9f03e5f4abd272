//! The policy document (docs/policy.md): its compiled form, and loading it from JSON with every error
//! reported at once, each with its JSON path.

pub mod document;
mod json;
pub mod origin;
pub mod token;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

pub use document::load;
use origin::OriginMatcher;

/// The hasher of the request-path lookup sets (origins, methods, header names): a word at a time,
/// with a final avalanche, several times cheaper than the default SipHash on short keys. Those
/// sets are filled from the configuration only, never from requests, so resistance to hash
/// flooding is not needed: a request can only look up, and the worst lookup is bounded by the
/// table the configuration built.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            h = (h ^ u64::from_le_bytes(word))
                .wrapping_mul(K)
                .rotate_left(29);
        }
        let rest = chunks.remainder();
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59))
            .wrapping_mul(K)
            .rotate_left(29);
        self.0 = h;
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0 ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        // murmur3's fmix64: every input bit reaches the low bits hashbrown indexes with.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// A set of byte strings looked up per request (see [`KeyHasher`]).
pub type KeySet = HashSet<Box<[u8]>, BuildHasherDefault<KeyHasher>>;
/// A map from byte strings looked up per request (see [`KeyHasher`]).
pub type KeyMap<V> = HashMap<Box<[u8]>, V, BuildHasherDefault<KeyHasher>>;

/// `Vary` of every preflight reply: the answer depends on all three request headers.
pub const PREFLIGHT_VARY: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";
/// [`PREFLIGHT_VARY`] of a policy with `allow_private_network`.
pub const PREFLIGHT_VARY_PRIVATE_NETWORK: &str = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers, Access-Control-Request-Private-Network";

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

/// The allowed methods or header names of a policy, looked up once per element of a request
/// header list. Up to [`NameSet::COMPARED_IN_ORDER`] names are compared one by one, which costs
/// less than hashing the looked-up name (policies list a handful); longer lists are hashed.
#[derive(Debug)]
pub enum NameSet {
    Few(Vec<Box<[u8]>>),
    Many(KeySet),
}

impl NameSet {
    pub const COMPARED_IN_ORDER: usize = 8;

    pub fn contains(&self, name: &[u8]) -> bool {
        match self {
            NameSet::Few(names) => names.iter().any(|listed| **listed == *name),
            NameSet::Many(names) => names.contains(name),
        }
    }
}

impl FromIterator<Box<[u8]>> for NameSet {
    /// Duplicates are dropped.
    fn from_iter<I: IntoIterator<Item = Box<[u8]>>>(names: I) -> Self {
        let set: KeySet = names.into_iter().collect();
        if set.len() <= Self::COMPARED_IN_ORDER {
            NameSet::Few(set.into_iter().collect())
        } else {
            NameSet::Many(set)
        }
    }
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
    /// `Access-Control-Allow-Methods` of a successful preflight; `None` = echo the requested
    /// method (`*` with credentials).
    pub allow_methods_value: Option<String>,
    /// `Access-Control-Allow-Headers` of a successful preflight; `None` = echo the requested
    /// names (`*` with credentials). An empty string means the header is not sent.
    pub allow_headers_value: Option<String>,
    /// The same with `, authorization` appended, for `*` + `authorization` when it was requested.
    pub allow_headers_with_authorization: Option<String>,
    pub expose_headers_value: Option<String>,
    pub max_age_value: Option<String>,
    /// `Vary` of preflight replies.
    pub preflight_vary: &'static str,
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
        let Some(rest) = config.strip_prefix(b"/apis/networking.istio.io/".as_slice()) else {
            return false;
        };
        let Some(slash) = rest.iter().position(|&b| b == b'/') else {
            return false;
        };
        slash > 0
            && rest[slash..]
                .strip_prefix(b"/namespaces/".as_slice())
                .and_then(|r| r.strip_prefix(self.namespace.as_bytes()))
                .and_then(|r| r.strip_prefix(b"/virtual-service/".as_slice()))
                == Some(self.name.as_bytes())
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
    /// `http_route`: the Gateway API HTTPRoute whose unnamed rule the route is.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn key_hasher_separates_similar_keys_and_sets_find_exactly_their_members() {
        let keys: Vec<Box<[u8]>> = (0..10_000)
            .map(|i| {
                format!("https://app-{i:05}.example.com")
                    .into_bytes()
                    .into()
            })
            .collect();
        let build = BuildHasherDefault::<KeyHasher>::default();
        let hashes: HashSet<u64> = keys.iter().map(|k| build.hash_one(k)).collect();
        assert_eq!(hashes.len(), keys.len());
        // The low 14 bits (what a 16k-bucket table indexes with) are spread too.
        let low: HashSet<u64> = hashes.iter().map(|h| h & 0x3fff).collect();
        assert!(low.len() > 5_000, "{} distinct low-bit patterns", low.len());

        let set: KeySet = keys.iter().cloned().collect();
        assert!(keys.iter().all(|k| set.contains(k.as_ref())));
        for absent in [
            &b"https://app-10000.example.com"[..],
            b"https://app-0000.example.com",
            b"",
            b"https://app-00001.example.co",
        ] {
            assert!(!set.contains(absent));
        }
        // Same bytes, different split into `write` calls of a slice: the length prefix differs.
        assert_ne!(build.hash_one(&b"ab"[..]), build.hash_one(&b"abc"[..]));
    }
}
