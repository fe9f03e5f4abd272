//! Choosing the policy for a request (docs/routing.md): route metadata, then `rules` in order,
//! then `default`, each choice with the reason it was made.
//!
//! The route facts rules look at are read lazily: in a proxy each read is a host call, and most
//! requests (no rules, or a first rule that decides) need one or two of them. [`RouteFacts`] is
//! the one cache of those reads; where the values come from is a [`FactSource`]: the proxy's
//! host in the shims, or [`Known`] values in the CLI, the tests, the fuzz targets and the
//! benches.
//!
//! Adding a fact: a [`RouteFact`] variant (and its place in [`RouteFact::ALL`]), what the shims
//! read for it, and the rule field that looks at it (`Config::rule_matches`).

use std::borrow::Cow;

use crate::policy::{self, Config, Rule};

/// A fact about a request's route that selection can look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteFact {
    /// `xds.route_metadata.filter_metadata.cors.policy`.
    MetadataPolicy,
    /// `xds.route_name`.
    RouteName,
    /// `xds.virtual_host_name`.
    VirtualHost,
    /// `xds.route_metadata.filter_metadata.istio.config`: the Istio resource the route came from,
    /// `/apis/<group>/<version>/namespaces/<ns>/<kind>/<name>` (docs/istio.md). Read only by
    /// rules with `virtual_service`, and by rules with `http_route` whose route name matched.
    IstioConfig,
    /// `:authority`, port included.
    Authority,
    /// `:path`.
    Path,
}

impl RouteFact {
    pub const COUNT: usize = 6;
    /// Every fact, in declaration order (`fact as usize` indexes this).
    pub const ALL: [RouteFact; RouteFact::COUNT] = [
        RouteFact::MetadataPolicy,
        RouteFact::RouteName,
        RouteFact::VirtualHost,
        RouteFact::IstioConfig,
        RouteFact::Authority,
        RouteFact::Path,
    ];
}

/// Where route facts come from. `'a` is how long a value the source hands back may be borrowed
/// (a header map, a host buffer, the caller's strings).
pub trait FactSource<'a> {
    /// Reads one fact; `None` when the route does not have it. Called at most once per fact.
    fn read(&mut self, fact: RouteFact) -> Option<Cow<'a, [u8]>>;
}

/// Facts known up front: the CLI's arguments, a test's or a fuzz input's values. A fact not
/// given is absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Known<'a>([Option<&'a [u8]>; RouteFact::COUNT]);

impl<'a> FactSource<'a> for Known<'a> {
    fn read(&mut self, fact: RouteFact) -> Option<Cow<'a, [u8]>> {
        self.0[fact as usize].map(Cow::Borrowed)
    }
}

/// The facts about one request's route, each read from its source at most once and only when
/// selection asks for it.
///
/// Built and dropped once per request: what each fact read as is a `Copy` [`Slot`], and the
/// values a source hands over owned are kept together in one buffer, so that a set of facts
/// that borrows everything (or reads nothing) has nothing to free.
#[derive(Debug)]
pub struct RouteFacts<'a, S> {
    source: S,
    read: [Slot<'a>; RouteFact::COUNT],
    /// The bytes of the facts read as [`Cow::Owned`], one after another.
    owned: Vec<u8>,
}

/// What one fact read as.
#[derive(Debug, Clone, Copy, Default)]
enum Slot<'a> {
    /// Not asked for yet.
    #[default]
    Unread,
    /// The route does not have it.
    Absent,
    Borrowed(&'a [u8]),
    /// `owned[start..end]`.
    Owned {
        start: usize,
        end: usize,
    },
}

impl<'a> Known<'a> {
    /// These facts with `fact` given as `value`.
    pub fn with<V: AsRef<[u8]> + ?Sized>(self, fact: RouteFact, value: &'a V) -> Self {
        self.with_optional(fact, Some(value.as_ref()))
    }

    /// These facts with `fact` given as `value`, or absent for `None`.
    pub fn with_optional(mut self, fact: RouteFact, value: Option<&'a [u8]>) -> Self {
        self.0[fact as usize] = value;
        self
    }
}

impl<'a> RouteFacts<'a, Known<'a>> {
    /// No fact given yet (see [`with`](Self::with)).
    pub fn known() -> Self {
        RouteFacts::new(Known::default())
    }

    /// The same facts with `fact` given as `value` ([`Known::with`]).
    pub fn with<V: AsRef<[u8]> + ?Sized>(self, fact: RouteFact, value: &'a V) -> Self {
        self.with_optional(fact, Some(value.as_ref()))
    }

    /// The same facts with `fact` given as `value`, or absent for `None` (built in place: a
    /// chain of these costs no copies of the whole set).
    pub fn with_optional(mut self, fact: RouteFact, value: Option<&'a [u8]>) -> Self {
        self.source.0[fact as usize] = value;
        self.read[fact as usize] = Slot::Unread;
        self
    }
}

impl<'a, S: FactSource<'a>> RouteFacts<'a, S> {
    /// Nothing read yet: every fact comes from `source` when first asked for.
    pub fn new(source: S) -> Self {
        RouteFacts {
            source,
            read: Default::default(),
            owned: Vec::new(),
        }
    }

    /// The fact, read from the source the first time it is asked for.
    #[inline]
    pub fn get(&mut self, fact: RouteFact) -> Option<&[u8]> {
        let slot = &mut self.read[fact as usize];
        if let Slot::Unread = slot {
            *slot = match self.source.read(fact) {
                None => Slot::Absent,
                Some(Cow::Borrowed(value)) => Slot::Borrowed(value),
                Some(Cow::Owned(value)) => keep(&mut self.owned, value),
            };
        }
        match *slot {
            Slot::Unread | Slot::Absent => None,
            Slot::Borrowed(value) => Some(value),
            Slot::Owned { start, end } => self.owned.get(start..end),
        }
    }

    /// Has selection asked for this fact (and so read it from the source)?
    pub fn was_read(&self, fact: RouteFact) -> bool {
        !matches!(self.read[fact as usize], Slot::Unread)
    }

    /// The source (a test's recording source, for instance).
    pub fn source(&self) -> &S {
        &self.source
    }
}

/// Appends an owned fact to `owned` (taking the value itself as the buffer when it is the first)
/// and says where it is.
fn keep<'a>(owned: &mut Vec<u8>, value: Vec<u8>) -> Slot<'a> {
    let start = owned.len();
    if start == 0 {
        *owned = value;
    } else {
        owned.extend_from_slice(&value);
    }
    Slot::Owned {
        start,
        end: owned.len(),
    }
}

/// The policy chosen for a request (docs/routing.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Index into [`Config::policies`].
    Policy(usize),
    /// No CORS handling: metadata `off`, a rule with `policy: null`, or nothing applies.
    Untouched,
    /// Route metadata names a policy that does not exist: fail closed.
    Unknown(Vec<u8>),
}

/// Why [`Config::select`] chose what it chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The route's metadata `filter_metadata.cors.policy` named a policy, `off`, or a name that
    /// is no policy ([`Selection::Unknown`]).
    RouteMetadata,
    /// `rules[n]` was the first rule that matched.
    Rule(usize),
    /// No route metadata and no rule matched: the `default` policy.
    Default,
    /// No route metadata, no rule matched, and there is no `default`.
    Nothing,
}

/// What [`Config::select`] returns: the selection and its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub selection: Selection,
    pub reason: Reason,
}

/// Strips the port from an `:authority` (`host`, `host:port`, `[v6]:port`).
pub fn authority_host(authority: &[u8]) -> &[u8] {
    if authority.first() == Some(&b'[') {
        let end = authority
            .iter()
            .position(|&b| b == b']')
            .map_or(authority.len(), |i| i + 1);
        return &authority[..end];
    }
    match authority.iter().rposition(|&b| b == b':') {
        Some(colon) => &authority[..colon],
        None => authority,
    }
}

impl Config {
    /// Chooses the policy: route metadata, then `rules` in order, then `default`.
    pub fn select<'a, S: FactSource<'a>>(&self, facts: &mut RouteFacts<'a, S>) -> Choice {
        if let Some(name) = facts.get(RouteFact::MetadataPolicy) {
            let selection = if name == b"off" {
                Selection::Untouched
            } else {
                let index = std::str::from_utf8(name)
                    .ok()
                    .and_then(|name| self.by_name.get(name));
                match index {
                    Some(&index) => Selection::Policy(index),
                    None => Selection::Unknown(name.to_vec()),
                }
            };
            return Choice {
                selection,
                reason: Reason::RouteMetadata,
            };
        }
        for (n, rule) in self.rules.iter().enumerate() {
            if self.rule_matches(rule, facts) {
                return Choice {
                    selection: rule.policy.map_or(Selection::Untouched, Selection::Policy),
                    reason: Reason::Rule(n),
                };
            }
        }
        match self.default {
            Some(index) => Choice {
                selection: Selection::Policy(index),
                reason: Reason::Default,
            },
            None => Choice {
                selection: Selection::Untouched,
                reason: Reason::Nothing,
            },
        }
    }

    /// Does this rule hold for the request? Every field the rule gives must hold.
    fn rule_matches<'a, S: FactSource<'a>>(
        &self,
        rule: &Rule,
        facts: &mut RouteFacts<'a, S>,
    ) -> bool {
        if let Some(route) = &rule.route {
            if facts.get(RouteFact::RouteName) != Some(route.as_bytes()) {
                return false;
            }
        }
        if let Some(vhost) = &rule.virtual_host {
            if facts.get(RouteFact::VirtualHost) != Some(vhost.as_bytes()) {
                return false;
            }
        }
        if let Some(resource) = &rule.http_route {
            match facts.get(RouteFact::RouteName) {
                Some(route) if resource.is_http_route_rule(route) => {}
                _ => return false,
            }
            // A VirtualService written by hand can name an entry `<ns>.<name>.<index>` too.
            match facts.get(RouteFact::IstioConfig) {
                Some(config) if policy::is_generated_from_gateway_api(config) => {}
                _ => return false,
            }
        }
        if let Some(resource) = &rule.virtual_service {
            match facts.get(RouteFact::IstioConfig) {
                Some(config) if resource.is_virtual_service_config(config) => {}
                _ => return false,
            }
        }
        if let Some(host) = &rule.host {
            match facts.get(RouteFact::Authority) {
                Some(authority) if host.matches(authority_host(authority)) => {}
                _ => return false,
            }
        }
        if let Some(prefix) = &rule.path_prefix {
            match facts.get(RouteFact::Path) {
                Some(path) if path.starts_with(prefix.as_bytes()) => {}
                _ => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the reads of each fact.
    struct Counting([usize; RouteFact::COUNT]);

    impl FactSource<'static> for Counting {
        fn read(&mut self, fact: RouteFact) -> Option<Cow<'static, [u8]>> {
            self.0[fact as usize] += 1;
            (fact == RouteFact::Path).then_some(Cow::Borrowed(b"/p".as_slice()))
        }
    }

    #[test]
    fn each_fact_is_read_from_its_source_once() {
        let mut facts = RouteFacts::new(Counting([0; RouteFact::COUNT]));
        for _ in 0..3 {
            assert_eq!(facts.get(RouteFact::Path), Some(b"/p".as_slice()));
            assert_eq!(facts.get(RouteFact::RouteName), None);
        }
        let mut expected = [0; RouteFact::COUNT];
        expected[RouteFact::Path as usize] = 1;
        expected[RouteFact::RouteName as usize] = 1;
        assert_eq!(facts.source().0, expected);
        assert!(facts.was_read(RouteFact::RouteName));
        assert!(!facts.was_read(RouteFact::Authority));
    }

    /// Hands every fact over owned, the path's value empty (as a host property can be).
    struct Owned;

    impl FactSource<'static> for Owned {
        fn read(&mut self, fact: RouteFact) -> Option<Cow<'static, [u8]>> {
            match fact {
                RouteFact::Path => Some(Cow::Owned(Vec::new())),
                RouteFact::IstioConfig => None,
                _ => Some(Cow::Owned(format!("{fact:?}").into_bytes())),
            }
        }
    }

    #[test]
    fn owned_facts_read_in_any_order_keep_their_own_values() {
        let orders = [
            RouteFact::ALL,
            [
                RouteFact::Path,
                RouteFact::Authority,
                RouteFact::IstioConfig,
                RouteFact::MetadataPolicy,
                RouteFact::VirtualHost,
                RouteFact::RouteName,
            ],
        ];
        for order in orders {
            let mut facts = RouteFacts::new(Owned);
            for (i, fact) in order.into_iter().enumerate() {
                let expected = Owned.read(fact);
                assert_eq!(facts.get(fact), expected.as_deref(), "{fact:?}");
                // The values read before are still the same.
                for earlier in &order[..i] {
                    assert_eq!(facts.get(*earlier), Owned.read(*earlier).as_deref());
                }
            }
        }
        let mut facts = RouteFacts::new(Owned);
        assert_eq!(
            facts.get(RouteFact::RouteName),
            Some(b"RouteName".as_slice())
        );
        assert_eq!(facts.get(RouteFact::Path), Some(b"".as_slice()));
        assert_eq!(facts.get(RouteFact::IstioConfig), None);
        assert_eq!(
            facts.get(RouteFact::Authority),
            Some(b"Authority".as_slice())
        );
        assert_eq!(
            facts.get(RouteFact::RouteName),
            Some(b"RouteName".as_slice())
        );
    }

    #[test]
    fn known_facts_are_what_was_given_and_nothing_else() {
        let host = String::from("a.example.com:8443");
        let mut facts = RouteFacts::known()
            .with(RouteFact::Authority, &host)
            .with(RouteFact::RouteName, "r")
            .with_optional(RouteFact::Path, None);
        assert_eq!(facts.get(RouteFact::Authority), Some(host.as_bytes()));
        assert_eq!(facts.get(RouteFact::RouteName), Some(b"r".as_slice()));
        for fact in RouteFact::ALL {
            if fact != RouteFact::Authority && fact != RouteFact::RouteName {
                assert_eq!(facts.get(fact), None, "{fact:?}");
            }
        }
        for (i, fact) in RouteFact::ALL.into_iter().enumerate() {
            assert_eq!(fact as usize, i);
        }
    }
}
