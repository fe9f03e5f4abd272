//! The dynamic-module shim: reads the request through [`Host`], hands it to the engine, applies
//! the decision, counts. The same steps, log lines and metric names as the proxy-wasm shim
//! (`src/filter.rs`); all policy logic lives in the engine.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Mutex;

use cors_engine::engine::{self, Counter, EditTarget, Outcome, Request, ResponsePlan};
use cors_engine::policy::{self, Config};
use cors_engine::routing::{FactSource, RouteFact, RouteFacts, Selection};

use crate::host::{Attribute, Headers, Host};

/// At most this many distinct unknown policy names are remembered for log-once.
const UNKNOWN_NAMES_LOGGED: usize = 64;

/// One filter configuration: the compiled policy and its counters. Shared by every stream (and
/// every worker thread) of the listeners that use it.
pub struct State {
    pub config: Config,
    /// `Counter::PER_POLICY` counter ids per policy, in policy order (`None`: Envoy refused it).
    counters: Vec<Option<usize>>,
    unknown_policy: Option<usize>,
    unknown_names_logged: Mutex<HashSet<Vec<u8>>>,
}

/// Why a configuration was refused (already logged).
#[derive(Debug)]
pub struct Refused;

impl State {
    /// Loads the policy document: logs its warnings and, on errors, each error with its path,
    /// exactly as the proxy-wasm build does. `define_counter` defines one counter in Envoy.
    pub fn load(
        document: &[u8],
        mut define_counter: impl FnMut(&str) -> Option<usize>,
    ) -> Result<State, Refused> {
        let config = policy::load_logged(document).ok_or(Refused)?;
        let mut define = |name: &str| {
            let id = define_counter(name);
            if id.is_none() {
                log::warn!("cors-proxy-wasm: could not define metric {name}");
            }
            id
        };
        let counters = engine::counter_names(&config)
            .map(|name| define(&name))
            .collect();
        let unknown_policy = define(engine::UNKNOWN_POLICY_COUNTER);
        Ok(State {
            config,
            counters,
            unknown_policy,
            unknown_names_logged: Mutex::new(HashSet::new()),
        })
    }

    fn count(&self, host: &impl Host, outcome: &Outcome) {
        if let (Some(policy), Some(counter)) = (outcome.policy, outcome.counter) {
            let index = policy * Counter::PER_POLICY + counter.index();
            if let Some(Some(id)) = self.counters.get(index) {
                host.increment(*id);
            }
        }
        if let (true, Some(id)) = (outcome.unknown_policy, self.unknown_policy) {
            host.increment(id);
        }
    }

    fn log_unknown_once(&self, name: &[u8]) {
        // A poisoned lock only means another thread panicked while logging: the set is intact.
        let mut logged = match self.unknown_names_logged.lock() {
            Ok(logged) => logged,
            Err(poisoned) => poisoned.into_inner(),
        };
        if logged.len() < UNKNOWN_NAMES_LOGGED && logged.insert(name.to_vec()) {
            log::error!(
                "cors-proxy-wasm: route metadata names unknown policy {:?}; failing closed (preflights 403, no CORS headers)",
                String::from_utf8_lossy(name)
            );
        }
    }
}

/// One HTTP stream.
#[derive(Default)]
pub struct Filter {
    /// What to do to the response, decided on the request.
    plan: Option<ResponsePlan>,
    /// We answered this request ourselves: our reply passes through our own response hook.
    replied: bool,
}

/// What the request hook tells Envoy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// A local reply was sent: stop the request here.
    Stop,
}

/// The request headers the filter reads, taken from one read of the whole map (one callback into
/// Envoy instead of one per name). Names arrive lower case; repeated headers are joined with `,`
/// as the proxy-wasm host joins them.
#[derive(Default)]
struct RequestHeaders<'h> {
    method: Option<Cow<'h, [u8]>>,
    origin: Option<Cow<'h, [u8]>>,
    acrm: Option<Cow<'h, [u8]>>,
    acrh: Option<Cow<'h, [u8]>>,
    acrpn: Option<Cow<'h, [u8]>>,
    authority: Option<Cow<'h, [u8]>>,
    path: Option<Cow<'h, [u8]>>,
}

impl<'h> RequestHeaders<'h> {
    fn of(headers: &[(&'h [u8], &'h [u8])]) -> RequestHeaders<'h> {
        let mut out = RequestHeaders::default();
        for &(name, value) in headers {
            let slot = match name {
                b":method" => &mut out.method,
                b"origin" => &mut out.origin,
                b"access-control-request-method" => &mut out.acrm,
                b"access-control-request-headers" => &mut out.acrh,
                b"access-control-request-private-network" => &mut out.acrpn,
                b":authority" => &mut out.authority,
                b":path" => &mut out.path,
                _ => continue,
            };
            match slot {
                None => *slot = Some(Cow::Borrowed(value)),
                Some(joined) => {
                    let joined = joined.to_mut();
                    joined.push(b',');
                    joined.extend_from_slice(value);
                }
            }
        }
        out
    }
}

/// Where the module's route facts come from: route attributes and metadata, and the request's
/// pseudo headers.
struct HostFacts<'h, 'r, H: Host> {
    host: &'h H,
    request: &'r RequestHeaders<'h>,
}

impl<'h, H: Host> FactSource<'h> for HostFacts<'h, '_, H> {
    fn read(&mut self, fact: RouteFact) -> Option<Cow<'h, [u8]>> {
        let host = self.host;
        match fact {
            RouteFact::MetadataPolicy => host.route_metadata("cors", "policy").map(Cow::Borrowed),
            RouteFact::RouteName => host.attribute(Attribute::RouteName).map(Cow::Borrowed),
            RouteFact::VirtualHost => host
                .attribute(Attribute::VirtualHostName)
                .map(Cow::Borrowed),
            RouteFact::IstioConfig => host.route_metadata("istio", "config").map(Cow::Borrowed),
            RouteFact::Authority => self.request.authority.clone(),
            RouteFact::Path => self.request.path.clone(),
        }
    }
}

/// The response the module edits through Envoy's callbacks.
struct HostResponse<'h, H: Host>(&'h H);

impl<H: Host> EditTarget for HostResponse<'_, H> {
    fn set(&mut self, name: &'static str, value: &[u8]) {
        self.0.set_response_header(name.as_bytes(), Some(value));
    }
    fn remove(&mut self, name: &[u8]) {
        self.0.set_response_header(name, None);
    }
}

impl Filter {
    /// The request headers: choose the policy, decide, count, log; answer a preflight locally.
    pub fn on_request_headers(&mut self, state: &State, host: &impl Host) -> Next {
        let all = host.headers(Headers::Request);
        let headers = RequestHeaders::of(&all);
        let mut facts = RouteFacts::new(HostFacts {
            host,
            request: &headers,
        });
        let selection = state.config.select(&mut facts).selection;
        if let Selection::Unknown(name) = &selection {
            state.log_unknown_once(name);
        }
        let request = Request {
            method: headers.method.as_deref().unwrap_or_default(),
            origin: headers.origin.as_deref(),
            acrm: headers.acrm.as_deref(),
            acrh: headers.acrh.as_deref(),
            acrpn: headers.acrpn.as_deref(),
        };
        let outcome = engine::decide(&state.config, &selection, &request);
        state.count(host, &outcome);
        engine::log_decision(&state.config, &request, &outcome);
        match outcome.action {
            engine::Action::Untouched => Next::Continue,
            engine::Action::Forward(plan) => {
                self.plan = Some(plan);
                Next::Continue
            }
            engine::Action::Reply(reply) => {
                host.send_response(reply.status, &reply.headers, reply.details());
                self.replied = true;
                Next::Stop
            }
        }
    }

    /// The response headers: the plan's edits (none on our own replies, which already carry
    /// their headers; a later filter's local reply is decorated like an upstream answer).
    pub fn on_response_headers(&mut self, state: &State, host: &impl Host) {
        if self.replied {
            return;
        }
        let Some(plan) = self.plan.take() else {
            return;
        };
        let edits = {
            let headers = host.headers(Headers::Response);
            engine::response_edits(&state.config, &plan, &headers)
        };
        engine::apply_edits(&edits, &mut HostResponse(host));
    }
}

// Envoy shares one configuration between its worker threads: the state must be `Send + Sync`
// (the hooks hand it over as a raw pointer, which the compiler cannot check there).
const _: fn() = || {
    fn shared_between_workers<T: Send + Sync>() {}
    shared_between_workers::<State>();
};
