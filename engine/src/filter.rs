//! The request path both hosts run: read the request through [`Host`], choose the policy, decide,
//! count, log, then act; on the response, apply the plan. The proxy-wasm filter and the Envoy
//! dynamic module only implement [`Host`] and call [`Stream`]'s hooks from their entry points,
//! so this is the one place a request's steps are written, and the tests drive it through
//! [`crate::mock::MockHost`].

use std::borrow::Cow;
use std::cell::Cell;
use std::sync::Mutex;

use crate::engine::{self, EditTarget, Request, ResponsePlan};
use crate::host::{HeaderList, Headers, Host, RouteProperty};
use crate::policy::{self, Config};
use crate::routing::{FactSource, RouteFact, RouteFacts, Selection};

/// At most this many distinct unknown policy names are remembered for log-once.
const UNKNOWN_NAMES_LOGGED: usize = 64;

/// One loaded configuration: the compiled policy and its counters, shared by every stream of the
/// listeners that use it. `C` is the host's counter ([`Host::Counter`]).
pub struct State<C> {
    pub config: Config,
    /// Every counter in [`engine::counter_names`] order (`None`: the host refused it).
    counters: Vec<Option<C>>,
    /// The unknown policy names already logged (at most [`UNKNOWN_NAMES_LOGGED`]).
    unknown_names_logged: Mutex<Vec<Vec<u8>>>,
}

/// Why a configuration was refused (already logged).
#[derive(Debug)]
pub struct Refused;

impl<C> State<C> {
    /// Loads the policy document: logs its warnings and, on errors, each error with its path, and
    /// refuses it. `define_counter` defines one counter in the host (`None`: refused, logged).
    pub fn load(
        document: &[u8],
        mut define_counter: impl FnMut(&str) -> Option<C>,
    ) -> Result<State<C>, Refused> {
        let config = policy::load_logged(document).ok_or(Refused)?;
        let counters = engine::counter_names(&config)
            .map(|name| {
                let counter = define_counter(&name);
                if counter.is_none() {
                    log::warn!("cors-proxy-wasm: could not define metric {name}");
                }
                counter
            })
            .collect();
        Ok(State {
            config,
            counters,
            unknown_names_logged: Mutex::new(Vec::new()),
        })
    }

    /// Every counter the host defined, in [`engine::counter_names`] order.
    pub fn counters(&self) -> impl Iterator<Item = &C> {
        self.counters.iter().flatten()
    }

    fn log_unknown_once(&self, name: &[u8]) {
        // A poisoned lock only means another thread panicked while logging: the set is intact.
        let mut logged = match self.unknown_names_logged.lock() {
            Ok(logged) => logged,
            Err(poisoned) => poisoned.into_inner(),
        };
        if logged.len() < UNKNOWN_NAMES_LOGGED && !logged.iter().any(|known| known == name) {
            logged.push(name.to_vec());
            log::error!(
                "cors-proxy-wasm: route metadata names unknown policy {:?}; failing closed (preflights 403, no CORS headers)",
                String::from_utf8_lossy(name)
            );
        }
    }
}

/// One HTTP stream. Its state is in cells and its hooks take `&self`, so that a hook re-entered
/// by the proxy while it runs (as it may during [`Host::send_response`]) never meets a unique
/// borrow of the stream.
#[derive(Default)]
pub struct Stream {
    /// What to do to the response, decided on the request.
    plan: Cell<Option<ResponsePlan>>,
    /// We answered this request ourselves. A proxy-wasm local reply passes through this filter's
    /// own response hook, which must leave it as sent (Envoy 1.40 does not run the dynamic
    /// module's response hook for the module's own reply; the flag holds for both).
    replied: Cell<bool>,
}

/// What the request hook tells the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    /// A local reply was sent: stop the request here.
    Stop,
}

/// The request headers the filter reads, in [`RequestHeaders::NAMES`] order.
const METHOD: usize = 0;
const ORIGIN: usize = 1;
const ACRM: usize = 2;
const ACRH: usize = 3;
const ACRPN: usize = 4;
const AUTHORITY: usize = 5;
const PATH: usize = 6;

/// The request headers the filter reads, taken from one pass over the whole map. Names arrive
/// lower case; repeated headers are joined with `,` (as Envoy joins them for the proxy-wasm
/// host's single-value reads).
struct RequestHeaders<'h>([Option<Cow<'h, [u8]>>; RequestHeaders::NAMES.len()]);

impl<'h> RequestHeaders<'h> {
    const NAMES: [&'static [u8]; 7] = [
        b":method",
        b"origin",
        b"access-control-request-method",
        b"access-control-request-headers",
        b"access-control-request-private-network",
        b":authority",
        b":path",
    ];

    fn of(headers: impl Iterator<Item = (&'h [u8], &'h [u8])>) -> RequestHeaders<'h> {
        let mut found: [Option<Cow<'h, [u8]>>; 7] = Default::default();
        for (name, value) in headers {
            let Some(slot) = Self::NAMES
                .iter()
                .position(|&wanted| wanted == name)
                .and_then(|i| found.get_mut(i))
            else {
                continue;
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
        RequestHeaders(found)
    }

    fn get(&self, header: usize) -> Option<&[u8]> {
        self.0.get(header)?.as_deref()
    }
}

/// Where the route facts come from: the host's route attributes and metadata, and the request's
/// pseudo headers.
struct HostFacts<'h, 'r, H: Host> {
    host: &'h H,
    request: &'r RequestHeaders<'h>,
}

impl<'h, H: Host> FactSource<'h> for HostFacts<'h, '_, H> {
    fn read(&mut self, fact: RouteFact) -> Option<Cow<'h, [u8]>> {
        let property = match fact {
            RouteFact::MetadataPolicy => RouteProperty::MetadataPolicy,
            RouteFact::RouteName => RouteProperty::RouteName,
            RouteFact::VirtualHost => RouteProperty::VirtualHostName,
            RouteFact::IstioConfig => RouteProperty::IstioConfig,
            RouteFact::Authority => return self.request.0.get(AUTHORITY)?.clone(),
            RouteFact::Path => return self.request.0.get(PATH)?.clone(),
        };
        self.host.route(property)
    }
}

/// The response, edited through the host.
struct HostResponse<'h, H: Host>(&'h H);

impl<H: Host> EditTarget for HostResponse<'_, H> {
    fn set(&mut self, name: &'static str, value: &[u8]) {
        self.0.set_response_header(name, value);
    }
    fn remove(&mut self, name: &[u8]) {
        self.0.remove_response_header(name);
    }
}

impl Stream {
    /// The request headers: choose the policy, decide, count, log; answer a preflight locally.
    pub fn on_request_headers<H: Host>(&self, state: &State<H::Counter>, host: &H) -> Next {
        let all = host.headers(Headers::Request);
        let headers = RequestHeaders::of(all.pairs());
        let mut facts = RouteFacts::new(HostFacts {
            host,
            request: &headers,
        });
        let selection = state.config.select(&mut facts).selection;
        if let Selection::Unknown(name) = &selection {
            state.log_unknown_once(name);
        }
        let request = Request {
            method: headers.get(METHOD).unwrap_or_default(),
            origin: headers.get(ORIGIN),
            acrm: headers.get(ACRM),
            acrh: headers.get(ACRH),
            acrpn: headers.get(ACRPN),
        };
        let outcome = engine::decide(&state.config, &selection, &request);
        if let Some(Some(counter)) = engine::counter_id(&state.config, &selection, &outcome)
            .and_then(|id| state.counters.get(id))
        {
            host.increment(counter);
        }
        engine::log_decision(&state.config, &selection, &request, &outcome);
        match outcome.action {
            engine::Action::Untouched => Next::Continue,
            engine::Action::Forward(plan) => {
                self.plan.set(Some(plan));
                Next::Continue
            }
            engine::Action::Reply(reply) => {
                // Marked before the call, and nothing of the stream is touched after it: the proxy
                // may run this stream's response hook (or end the stream) before it returns.
                self.replied.set(true);
                if host.send_response(&reply) {
                    Next::Stop
                } else {
                    log::warn!("cors-proxy-wasm: could not send the preflight reply; forwarding");
                    Next::Continue
                }
            }
        }
    }

    /// The response headers: the plan's edits (none on our own replies, which already carry
    /// their headers; a later filter's local reply is decorated like an upstream answer).
    pub fn on_response_headers<H: Host>(&self, state: &State<H::Counter>, host: &H) {
        if self.replied.get() {
            return;
        }
        let Some(plan) = self.plan.take() else {
            return;
        };
        let all = host.headers(Headers::Response);
        let headers: Vec<(&[u8], &[u8])> = all.pairs().collect();
        let edits = engine::response_edits(&state.config, &plan, &headers);
        engine::apply_edits(&edits, &mut HostResponse(host));
    }
}

// Envoy shares one configuration between its worker threads: with a counter that can be shared
// (the dynamic module's is an id), the state is `Send + Sync`.
const _: fn() = || {
    fn shared_between_workers<T: Send + Sync>() {}
    shared_between_workers::<State<usize>>();
};
