//! The proxy-wasm shim: reads bytes from Envoy, hands them to the engine, applies the decision,
//! counts. All policy logic lives in [`crate::routing`], [`crate::engine`] and [`crate::policy`].

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

use crate::header_map::HeaderMap;
use crate::host;
use cors_engine::engine::{self, Counter, EditTarget, Outcome, Request, ResponsePlan};
use cors_engine::policy::{self, Config};
use cors_engine::routing::{FactSource, RouteFact, RouteFacts, Selection};

/// Counters are batched in the VM and flushed on this tick (visible in `/stats` within 1 s, docs/operations.md).
const FLUSH_PERIOD_MS: u32 = 500;
/// At most this many distinct unknown policy names are remembered for log-once.
const UNKNOWN_NAMES_LOGGED: usize = 64;

proxy_wasm::main! {{
    host::init_logging();
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(CorsRoot { state: None }) });
}}

/// A counter defined in Envoy, and the increments not yet flushed to it.
struct Metric {
    id: Option<u32>,
    pending: Cell<u64>,
}

impl Metric {
    fn define(name: &str) -> Self {
        let id = host::define_counter(name);
        if id.is_none() {
            log::warn!("cors-proxy-wasm: could not define metric {name}");
        }
        Metric {
            id,
            pending: Cell::new(0),
        }
    }

    fn bump(&self) {
        self.pending.set(self.pending.get().saturating_add(1));
    }

    fn flush(&self) {
        let pending = self.pending.take();
        if let (Some(id), true) = (self.id, pending > 0) {
            if !host::increment_counter(id, pending) {
                self.pending.set(pending);
            }
        }
    }
}

/// What every HTTP context of a plugin shares: the compiled policy and the counters.
struct State {
    config: Config,
    /// `Counter::PER_POLICY` metrics per policy, in policy order.
    metrics: Vec<Metric>,
    unknown_policy: Metric,
    unknown_names_logged: RefCell<HashSet<Vec<u8>>>,
}

impl State {
    fn new(config: Config) -> Self {
        let metrics = engine::counter_names(&config)
            .map(|name| Metric::define(&name))
            .collect();
        State {
            config,
            metrics,
            unknown_policy: Metric::define(engine::UNKNOWN_POLICY_COUNTER),
            unknown_names_logged: RefCell::new(HashSet::new()),
        }
    }

    fn count(&self, outcome: &Outcome) {
        if let (Some(policy), Some(counter)) = (outcome.policy, outcome.counter) {
            if let Some(metric) = self
                .metrics
                .get(policy * Counter::PER_POLICY + counter.index())
            {
                metric.bump();
            }
        }
        if outcome.unknown_policy {
            self.unknown_policy.bump();
        }
    }

    fn flush(&self) {
        self.metrics.iter().for_each(Metric::flush);
        self.unknown_policy.flush();
    }

    fn log_unknown_once(&self, name: &[u8]) {
        let mut logged = self.unknown_names_logged.borrow_mut();
        if logged.len() < UNKNOWN_NAMES_LOGGED && logged.insert(name.to_vec()) {
            log::error!(
                "cors-proxy-wasm: route metadata names unknown policy {:?}; failing closed (preflights 403, no CORS headers)",
                String::from_utf8_lossy(name)
            );
        }
    }
}

struct CorsRoot {
    state: Option<Rc<State>>,
}

impl Context for CorsRoot {}

impl RootContext for CorsRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        host::refresh_log_level();
        let document = host::plugin_configuration();
        let Some(config) = policy::load_logged(&document) else {
            return false;
        };
        if let Some(old) = self.state.take() {
            old.flush();
        }
        self.state = Some(Rc::new(State::new(config)));
        host::set_tick_period_ms(FLUSH_PERIOD_MS);
        true
    }

    fn on_tick(&mut self) {
        // Follow run-time log level changes (`POST /logging?wasm=debug`).
        host::refresh_log_level();
        if let Some(state) = &self.state {
            state.flush();
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(CorsHttp {
            state: self.state.clone(),
            plan: None,
            replied: false,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct CorsHttp {
    state: Option<Rc<State>>,
    /// What to do to the response, decided on the request.
    plan: Option<ResponsePlan>,
    /// We answered this request ourselves: our reply passes through our own response hook.
    replied: bool,
}

impl Context for CorsHttp {}

/// Where the filter's route facts come from: host properties, and the request's pseudo headers.
struct HostFacts<'h> {
    headers: &'h HeaderMap,
}

fn header<'h>(headers: &'h HeaderMap, name: &[u8]) -> Option<Cow<'h, [u8]>> {
    headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| Cow::Borrowed(v))
}

impl<'h> FactSource<'h> for HostFacts<'h> {
    fn read(&mut self, fact: RouteFact) -> Option<Cow<'h, [u8]>> {
        let property = |path| host::property(path).map(Cow::Owned);
        match fact {
            RouteFact::MetadataPolicy => property(host::ROUTE_METADATA_POLICY),
            RouteFact::RouteName => property(host::ROUTE_NAME),
            RouteFact::VirtualHost => property(host::VIRTUAL_HOST_NAME),
            RouteFact::IstioConfig => property(host::ROUTE_METADATA_ISTIO_CONFIG),
            RouteFact::Authority => header(self.headers, b":authority"),
            RouteFact::Path => header(self.headers, b":path"),
        }
    }
}

/// The response the filter edits through host calls.
struct HostResponse;

impl EditTarget for HostResponse {
    fn set(&mut self, name: &'static str, value: &[u8]) {
        host::set_response_header(name, value);
    }
    fn remove(&mut self, name: &[u8]) {
        host::remove_response_header(name);
    }
}

impl HttpContext for CorsHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(state) = self.state.clone() else {
            return Action::Continue;
        };
        let headers = host::request_headers();
        let mut facts = RouteFacts::new(HostFacts { headers: &headers });
        let selection = state.config.select(&mut facts).selection;
        if let Selection::Unknown(name) = &selection {
            state.log_unknown_once(name);
        }
        let [method, origin, acrm, acrh, acrpn] = headers.values([
            b":method",
            b"origin",
            b"access-control-request-method",
            b"access-control-request-headers",
            b"access-control-request-private-network",
        ]);
        let request = Request {
            method: method.as_deref().unwrap_or_default(),
            origin: origin.as_deref(),
            acrm: acrm.as_deref(),
            acrh: acrh.as_deref(),
            acrpn: acrpn.as_deref(),
        };
        let outcome = engine::decide(&state.config, &selection, &request);
        state.count(&outcome);
        engine::log_decision(&state.config, &request, &outcome);
        match outcome.action {
            engine::Action::Untouched => Action::Continue,
            engine::Action::Forward(plan) => {
                self.plan = Some(plan);
                Action::Continue
            }
            engine::Action::Reply(reply) => {
                let details = reply.details();
                if host::send_local_response(reply.status, &reply.headers, details) {
                    self.replied = true;
                    Action::Pause
                } else {
                    log::warn!("cors-proxy-wasm: could not send the preflight reply; forwarding");
                    Action::Continue
                }
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.replied {
            return Action::Continue;
        }
        let (Some(state), Some(plan)) = (&self.state, self.plan.take()) else {
            return Action::Continue;
        };
        let headers = host::response_headers();
        let pairs: Vec<(&[u8], &[u8])> = headers.iter().collect();
        let edits = engine::response_edits(&state.config, &plan, &pairs);
        engine::apply_edits(&edits, &mut HostResponse);
        Action::Continue
    }
}
