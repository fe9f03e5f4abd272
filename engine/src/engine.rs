//! The request path, with no proxy in sight (docs/policy.md): under the policy chosen for a
//! request ([`crate::routing`]), what the request gets (a local preflight reply, or passage
//! upstream with a plan for the response), and which header edits that plan makes on the
//! response.
//!
//! Data flows one way: request bytes → [`Request`] → [`Outcome`] → [`ResponsePlan`] →
//! [`HeaderEdit`]s. Nothing here allocates per request beyond the values it hands back.

use std::borrow::Cow;

use crate::lookup::{EchoedNames, Lowercase};
use crate::policy::{
    AllowHeadersValue, Config, HeaderValue, Mode, Policy, UnmatchedPreflights, UpstreamCorsHeaders,
    PREFLIGHT_VARY,
};
use crate::routing::Selection;

pub const ACAO: &str = "access-control-allow-origin";
pub const ACAC: &str = "access-control-allow-credentials";
pub const ACAM: &str = "access-control-allow-methods";
pub const ACAH: &str = "access-control-allow-headers";
pub const ACEH: &str = "access-control-expose-headers";
pub const ACMA: &str = "access-control-max-age";
pub const ACAPN: &str = "access-control-allow-private-network";
pub const VARY: &str = "vary";
pub const DENY_REASON: &str = "cors-deny-reason";

/// What the filter reads of a request. Header values are raw bytes; repeated headers arrive
/// joined with `,` (as Envoy hands them over).
#[derive(Debug, Default, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a [u8],
    pub origin: Option<&'a [u8]>,
    /// `Access-Control-Request-Method`.
    pub acrm: Option<&'a [u8]>,
    /// `Access-Control-Request-Headers`.
    pub acrh: Option<&'a [u8]>,
    /// `Access-Control-Request-Private-Network`.
    pub acrpn: Option<&'a [u8]>,
}

impl Request<'_> {
    /// `OPTIONS` with an `Origin` and an `Access-Control-Request-Method`.
    pub fn is_preflight(&self) -> bool {
        self.method == b"OPTIONS" && self.origin.is_some() && self.acrm.is_some()
    }
}

/// Why a preflight was denied: the first check that failed (origin, method, headers, private network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    Origin,
    Method,
    Headers,
    PrivateNetwork,
}

impl DenyReason {
    /// The value of `cors-deny-reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::Origin => "origin",
            DenyReason::Method => "method",
            DenyReason::Headers => "headers",
            DenyReason::PrivateNetwork => "private-network",
        }
    }
}

/// A counter to bump (docs/operations.md, *Metrics*). `Counter::index` numbers them within a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    PreflightAllowed,
    PreflightDenied(DenyReason),
    ActualAllowed,
    ActualDenied,
}

/// The name of the counter of requests whose route names a policy that does not exist.
pub const UNKNOWN_POLICY_COUNTER: &str = "cors.unknown_policy";

/// The names of every policy's counters (`cors.<policy>.<counter>`), in the order the shims
/// index them: policy by policy, each in [`Counter::ALL`] order ([`Counter::index`]).
pub fn counter_names(config: &Config) -> impl Iterator<Item = String> + '_ {
    config.policies.iter().flat_map(|p| {
        Counter::ALL
            .iter()
            .map(move |c| format!("cors.{}.{}", p.name, c.suffix()))
    })
}

impl Counter {
    pub const PER_POLICY: usize = 7;
    pub const ALL: [Counter; Counter::PER_POLICY] = [
        Counter::PreflightAllowed,
        Counter::PreflightDenied(DenyReason::Origin),
        Counter::PreflightDenied(DenyReason::Method),
        Counter::PreflightDenied(DenyReason::Headers),
        Counter::PreflightDenied(DenyReason::PrivateNetwork),
        Counter::ActualAllowed,
        Counter::ActualDenied,
    ];

    pub fn index(self) -> usize {
        match self {
            Counter::PreflightAllowed => 0,
            Counter::PreflightDenied(DenyReason::Origin) => 1,
            Counter::PreflightDenied(DenyReason::Method) => 2,
            Counter::PreflightDenied(DenyReason::Headers) => 3,
            Counter::PreflightDenied(DenyReason::PrivateNetwork) => 4,
            Counter::ActualAllowed => 5,
            Counter::ActualDenied => 6,
        }
    }

    /// The metric name after `cors.<policy>.`.
    pub fn suffix(self) -> &'static str {
        match self {
            Counter::PreflightAllowed => "preflight_allowed",
            Counter::PreflightDenied(DenyReason::Origin) => "preflight_denied.origin",
            Counter::PreflightDenied(DenyReason::Method) => "preflight_denied.method",
            Counter::PreflightDenied(DenyReason::Headers) => "preflight_denied.headers",
            Counter::PreflightDenied(DenyReason::PrivateNetwork) => {
                "preflight_denied.private_network"
            }
            Counter::ActualAllowed => "actual_allowed",
            Counter::ActualDenied => "actual_denied",
        }
    }
}

/// A local reply the filter sends instead of forwarding the request. Header values borrow the
/// policy's precomputed values and the request's bytes wherever they can (`'a`): an allowed
/// preflight allocates only the header list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply<'a> {
    pub status: u16,
    pub headers: ReplyHeaders<'a>,
}

impl LocalReply<'_> {
    /// Envoy's response code details for this reply (in access logs as `%RESPONSE_CODE_DETAILS%`).
    #[inline]
    pub fn details(&self) -> &'static str {
        if self.status == 403 {
            "cors_preflight_denied"
        } else {
            "cors_preflight_allowed"
        }
    }
}

/// The headers of a [`LocalReply`]: lower-case names, values borrowed where possible.
pub type ReplyHeaders<'a> = Vec<(&'static str, Cow<'a, [u8]>)>;

/// What `Access-Control-Allow-Origin` says on an allowed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowOrigin {
    Any,
    Echo(Vec<u8>),
}

impl AllowOrigin {
    fn value(&self) -> &[u8] {
        match self {
            AllowOrigin::Any => b"*",
            AllowOrigin::Echo(origin) => origin,
        }
    }
}

/// What to do to the response of a request that went upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponsePlan {
    /// A handled route in enforce mode: upstream CORS headers per `upstream_cors_headers`, ours
    /// when the origin is allowed, `Origin` merged into `Vary`.
    Cors {
        policy: usize,
        allow_origin: Option<AllowOrigin>,
    },
    /// A denied preflight forwarded upstream: only the `Vary` merge.
    VaryOnly { policy: usize },
    /// The route names an unknown policy: no CORS headers at all.
    StripCors,
}

/// What the request gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action<'a> {
    /// Leave the request and its response alone.
    Untouched,
    /// Answer now, locally.
    Reply(LocalReply<'a>),
    /// Let it go upstream, and edit the response.
    Forward(ResponsePlan),
}

/// The decision for one request, and what to count and log about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome<'a> {
    pub action: Action<'a>,
    /// The policy that decided, if any.
    pub policy: Option<usize>,
    pub counter: Option<Counter>,
    /// The route named a policy that does not exist.
    pub unknown_policy: bool,
}

impl Outcome<'_> {
    fn untouched() -> Self {
        Outcome {
            action: Action::Untouched,
            policy: None,
            counter: None,
            unknown_policy: false,
        }
    }
}

/// Decides what a request gets under the selected policy.
pub fn decide<'a>(config: &'a Config, selection: &Selection, request: &Request<'a>) -> Outcome<'a> {
    let index = match selection {
        Selection::Untouched => return Outcome::untouched(),
        Selection::Unknown(_) => {
            let action = if request.is_preflight() {
                Action::Reply(LocalReply {
                    status: 403,
                    headers: vec![(VARY, Cow::Borrowed(PREFLIGHT_VARY.as_bytes()))],
                })
            } else {
                Action::Forward(ResponsePlan::StripCors)
            };
            return Outcome {
                action,
                policy: None,
                counter: None,
                unknown_policy: true,
            };
        }
        Selection::Policy(index) => *index,
    };
    let Some(policy) = config.policy(index) else {
        return Outcome::untouched();
    };
    let (action, counter) = if request.is_preflight() {
        preflight(policy, index, request)
    } else {
        actual(policy, index, request)
    };
    Outcome {
        action: if policy.mode == Mode::Report {
            Action::Untouched
        } else {
            action
        },
        policy: Some(index),
        counter,
        unknown_policy: false,
    }
}

fn allow_origin(policy: &Policy, origin: &[u8]) -> Option<AllowOrigin> {
    if !policy.origins.matches(origin) {
        return None;
    }
    Some(if policy.origins.allows_any() {
        AllowOrigin::Any
    } else {
        AllowOrigin::Echo(origin.to_vec())
    })
}

fn actual(policy: &Policy, index: usize, request: &Request) -> (Action<'static>, Option<Counter>) {
    let (allow_origin, counter) = match request.origin {
        None => (None, None),
        Some(origin) => match allow_origin(policy, origin) {
            Some(allow) => (Some(allow), Some(Counter::ActualAllowed)),
            None => (None, Some(Counter::ActualDenied)),
        },
    };
    (
        Action::Forward(ResponsePlan::Cors {
            policy: index,
            allow_origin,
        }),
        counter,
    )
}

fn preflight<'a>(
    policy: &'a Policy,
    index: usize,
    request: &Request<'a>,
) -> (Action<'a>, Option<Counter>) {
    match check_preflight(policy, request) {
        Ok(headers) => (
            Action::Reply(LocalReply {
                status: policy.preflight_status,
                headers,
            }),
            Some(Counter::PreflightAllowed),
        ),
        Err(reason) => {
            let action = match policy.unmatched_preflights {
                UnmatchedPreflights::Forward => {
                    Action::Forward(ResponsePlan::VaryOnly { policy: index })
                }
                UnmatchedPreflights::Reject => {
                    let mut headers =
                        vec![(VARY, Cow::Borrowed(policy.values.preflight_vary.as_bytes()))];
                    if policy.debug {
                        headers.push((DENY_REASON, Cow::Borrowed(reason.as_str().as_bytes())));
                    }
                    Action::Reply(LocalReply {
                        status: 403,
                        headers,
                    })
                }
            };
            (action, Some(Counter::PreflightDenied(reason)))
        }
    }
}

/// The four preflight checks in order; on success, the reply's headers.
fn check_preflight<'a>(
    policy: &'a Policy,
    request: &Request<'a>,
) -> Result<ReplyHeaders<'a>, DenyReason> {
    let origin = request.origin.unwrap_or_default();
    if !policy.origins.matches(origin) {
        return Err(DenyReason::Origin);
    }
    let method = request.acrm.unwrap_or_default();
    if !crate::policy::token::is_token(method) || !policy.methods.allows(method) {
        return Err(DenyReason::Method);
    }
    let allow_headers = match request.acrh {
        None => None,
        Some(acrh) => match check_request_headers(policy, acrh) {
            RequestedHeaders::Refused => return Err(DenyReason::Headers),
            RequestedHeaders::NoNames => None,
            RequestedHeaders::Allowed(value) => Some(value),
        },
    };
    let private_network = request.acrpn == Some(b"true".as_slice());
    if private_network && !policy.allow_private_network {
        return Err(DenyReason::PrivateNetwork);
    }

    let mut headers = Vec::with_capacity(7);
    let allow: &[u8] = if policy.origins.allows_any() {
        b"*"
    } else {
        origin
    };
    headers.push((ACAO, Cow::Borrowed(allow)));
    if policy.allow_credentials {
        headers.push((ACAC, Cow::Borrowed(b"true".as_slice())));
    }
    let values = &policy.values;
    match &values.allow_methods {
        HeaderValue::Fixed(value) => headers.push((ACAM, Cow::Borrowed(value.as_bytes()))),
        HeaderValue::Echo => headers.push((ACAM, Cow::Borrowed(method))),
        HeaderValue::Omit => {}
    }
    if let Some(value) = allow_headers {
        headers.push((ACAH, value));
    }
    if let HeaderValue::Fixed(max_age) = &values.max_age {
        headers.push((ACMA, Cow::Borrowed(max_age.as_bytes())));
    }
    if private_network {
        headers.push((ACAPN, Cow::Borrowed(b"true".as_slice())));
    }
    headers.push((VARY, Cow::Borrowed(values.preflight_vary.as_bytes())));
    Ok(headers)
}

/// What a preflight's `Access-Control-Request-Headers` gets under a policy.
enum RequestedHeaders<'a> {
    /// A name is not a token, or not allowed: the preflight is denied.
    Refused,
    /// The list holds no name (only commas and spaces): nothing to allow, no header.
    NoNames,
    /// Every name is allowed: the reply's `Access-Control-Allow-Headers` value.
    Allowed(Cow<'a, [u8]>),
}

/// Checks every name of `Access-Control-Request-Headers`. Linear in the length of the value, one
/// lower-casing buffer reused for every name.
#[inline(never)]
fn check_request_headers<'a>(policy: &'a Policy, acrh: &[u8]) -> RequestedHeaders<'a> {
    let echo = matches!(policy.values.allow_headers, AllowHeadersValue::Echo);
    let mut echoed: Vec<u8> = Vec::new();
    let mut seen = EchoedNames::new(acrh);
    let mut authorization_requested = false;
    let mut any_name = false;
    let mut lowercase = Lowercase::new();
    for element in acrh.split(|&b| b == b',') {
        let name = trim_ows(element);
        if name.is_empty() {
            continue;
        }
        if !crate::policy::token::is_token(name) {
            return RequestedHeaders::Refused;
        }
        let lower = lowercase.of(name);
        if !policy.headers.allows(lower) {
            return RequestedHeaders::Refused;
        }
        any_name = true;
        authorization_requested |= lower == b"authorization";
        if echo && seen.insert(name) {
            if !echoed.is_empty() {
                echoed.extend_from_slice(b", ");
            }
            echoed.extend_from_slice(lower);
        }
    }
    if !any_name {
        return RequestedHeaders::NoNames;
    }
    RequestedHeaders::Allowed(match &policy.values.allow_headers {
        AllowHeadersValue::Echo => Cow::Owned(echoed),
        AllowHeadersValue::Wildcard {
            authorization_listed: true,
        } if authorization_requested => Cow::Borrowed(b"*, authorization".as_slice()),
        AllowHeadersValue::Wildcard { .. } => Cow::Borrowed(b"*".as_slice()),
        AllowHeadersValue::Fixed(value) => Cow::Borrowed(value.as_bytes()),
        // No name is allowed: any name was refused above.
        AllowHeadersValue::Omit => return RequestedHeaders::Refused,
    })
}

/// Without optional whitespace (SP, HTAB) at either end. Inlined into the per-element loops:
/// a list of empty elements costs no call per comma.
#[inline]
fn trim_ows(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// One change to the response headers. A value the policy or the plan already holds is
/// borrowed from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit<'a> {
    /// Remove every header of this (lower-case) name.
    Remove(Vec<u8>),
    /// Set this header, replacing any of the same name.
    Set(&'static str, Cow<'a, [u8]>),
}

/// Where [`HeaderEdit`]s land: the proxy's response headers in the shims, a header list
/// (`Vec<(name, value)>`) in the CLI and the tests.
pub trait EditTarget {
    /// Sets the header, replacing every header of that name.
    fn set(&mut self, name: &'static str, value: &[u8]);
    /// Removes every header of this (lower-case) name.
    fn remove(&mut self, name: &[u8]);
}

/// Makes the edits on `target`, in order: the one place an edit turns into a set or a remove.
pub fn apply_edits(edits: &[HeaderEdit<'_>], target: &mut impl EditTarget) {
    for edit in edits {
        match edit {
            HeaderEdit::Remove(name) => target.remove(name),
            HeaderEdit::Set(name, value) => target.set(name, value),
        }
    }
}

/// A response's headers as a list, edited as Envoy edits its header map (names compared without
/// ASCII case): a set replaces the value of the first header of that name where it stands and
/// drops the others, or appends the header when there is none; a remove drops every header of
/// that name.
impl EditTarget for Vec<(Vec<u8>, Vec<u8>)> {
    fn set(&mut self, name: &'static str, value: &[u8]) {
        let name = name.as_bytes();
        match self.iter().position(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some(first) => {
                self[first].1 = value.to_vec();
                let mut i = 0;
                self.retain(|(n, _)| {
                    i += 1;
                    i - 1 == first || !n.eq_ignore_ascii_case(name)
                });
            }
            None => self.push((name.to_vec(), value.to_vec())),
        }
    }

    fn remove(&mut self, name: &[u8]) {
        self.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }
}

/// The edits a plan makes to a response with these headers (lower-case names, as Envoy gives).
pub fn response_edits<'a>(
    config: &'a Config,
    plan: &'a ResponsePlan,
    headers: &[(&[u8], &[u8])],
) -> Vec<HeaderEdit<'a>> {
    let mut edits = Vec::new();
    match plan {
        ResponsePlan::StripCors => remove_cors_headers(headers, &mut edits),
        ResponsePlan::VaryOnly { policy } => {
            if config.policy(*policy).is_some_and(|p| p.vary_on_origin) {
                edits.extend(merge_vary(headers));
            }
        }
        ResponsePlan::Cors {
            policy,
            allow_origin,
        } => {
            let Some(policy) = config.policy(*policy) else {
                return edits;
            };
            let keep_upstream = policy.upstream_cors_headers == UpstreamCorsHeaders::Keep
                && headers
                    .iter()
                    .any(|(name, _)| name.eq_ignore_ascii_case(ACAO.as_bytes()));
            if policy.upstream_cors_headers == UpstreamCorsHeaders::Replace {
                remove_cors_headers(headers, &mut edits);
            }
            if let (Some(allow), false) = (allow_origin, keep_upstream) {
                edits.push(HeaderEdit::Set(ACAO, Cow::Borrowed(allow.value())));
                if policy.allow_credentials {
                    edits.push(HeaderEdit::Set(ACAC, Cow::Borrowed(b"true")));
                }
                if let HeaderValue::Fixed(expose) = &policy.values.expose_headers {
                    edits.push(HeaderEdit::Set(ACEH, Cow::Borrowed(expose.as_bytes())));
                }
            }
            if policy.vary_on_origin {
                edits.extend(merge_vary(headers));
            }
        }
    }
    edits
}

fn remove_cors_headers(headers: &[(&[u8], &[u8])], edits: &mut Vec<HeaderEdit<'_>>) {
    for (name, _) in headers {
        let is_cors = name.len() > 15 && name[..15].eq_ignore_ascii_case(b"access-control-");
        if is_cors {
            let lower = name.to_ascii_lowercase();
            if !edits.contains(&HeaderEdit::Remove(lower.clone())) {
                edits.push(HeaderEdit::Remove(lower));
            }
        }
    }
}

/// `Origin` merged into the response's `Vary` (docs/policy.md, *Vary*): `None` when it is already there or
/// `Vary: *`.
fn merge_vary(headers: &[(&[u8], &[u8])]) -> Option<HeaderEdit<'static>> {
    let mut merged: Vec<u8> = Vec::new();
    for (_, value) in headers
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case(b"vary"))
    {
        for element in value.split(|&b| b == b',') {
            let element = trim_ows(element);
            if element == b"*" || element.eq_ignore_ascii_case(b"origin") {
                return None;
            }
        }
        let value = trim_ows(value);
        if !value.is_empty() {
            if !merged.is_empty() {
                merged.extend_from_slice(b", ");
            }
            merged.extend_from_slice(value);
        }
    }
    if merged.is_empty() {
        return Some(HeaderEdit::Set(VARY, Cow::Borrowed(b"Origin")));
    }
    merged.extend_from_slice(b", Origin");
    Some(HeaderEdit::Set(VARY, Cow::Owned(merged)))
}

/// Logs a counted decision at debug level, as both shims do: every decision of a policy with
/// `debug` on, and every denial (the line [`describe`] writes). Nothing is formatted unless the
/// debug level is enabled.
#[inline]
pub fn log_decision(config: &Config, request: &Request, outcome: &Outcome) {
    if outcome.counter.is_none() && !outcome.unknown_policy {
        return;
    }
    let debug = outcome
        .policy
        .and_then(|i| config.policy(i))
        .is_some_and(|p| p.debug);
    let denied = matches!(
        outcome.counter,
        Some(Counter::PreflightDenied(_) | Counter::ActualDenied)
    );
    if (debug || denied) && log::log_enabled!(log::Level::Debug) {
        log::debug!("{}", describe(config, request, outcome));
    }
}

/// The one-line description of a decision, for debug logs and the CLI.
pub fn describe(config: &Config, request: &Request, outcome: &Outcome) -> String {
    let policy = outcome
        .policy
        .and_then(|i| config.policy(i))
        .map_or("-", |p| p.name.as_str());
    let origin = request.origin.map_or_else(
        || "-".to_owned(),
        |o| String::from_utf8_lossy(o).into_owned(),
    );
    let kind = if request.is_preflight() {
        "preflight"
    } else if request.origin.is_some() {
        "actual"
    } else {
        "non-cors"
    };
    let verdict = match outcome.counter {
        Some(Counter::PreflightAllowed | Counter::ActualAllowed) => "allowed".to_owned(),
        Some(Counter::PreflightDenied(reason)) => format!("denied ({})", reason.as_str()),
        Some(Counter::ActualDenied) => "denied (origin)".to_owned(),
        None if outcome.unknown_policy => "denied (unknown policy)".to_owned(),
        None => "no decision".to_owned(),
    };
    format!("cors: policy={policy} {kind} origin={origin:?} {verdict}")
}
