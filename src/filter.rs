//! The proxy-wasm host of the engine's request path: the SDK's root and HTTP contexts, which call
//! [`Stream`]'s hooks with [`ProxyWasm`], the engine's [`Host`] over the panic-free host layer
//! [`crate::host`]. Counters are batched in the VM and flushed on a tick.

use std::borrow::Cow;
use std::cell::Cell;
use std::rc::Rc;

use cors_engine::engine::LocalReply;
use cors_engine::filter::{Next, State, Stream};
use cors_engine::host::{HeaderList, Headers, Host, RouteProperty};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

use crate::header_map::HeaderMap;
use crate::host;

/// Counters are batched in the VM and flushed on this tick (visible in `/stats` within 1 s, docs/operations.md).
const FLUSH_PERIOD_MS: u32 = 500;

proxy_wasm::main! {{
    host::init_logging();
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(CorsRoot { state: None }) });
}}

/// A counter defined in Envoy, and the increments not yet flushed to it.
struct Metric {
    id: u32,
    pending: Cell<u64>,
}

impl Metric {
    fn flush(&self) {
        let pending = self.pending.take();
        if pending > 0 && !host::increment_counter(self.id, pending) {
            self.pending.set(pending);
        }
    }
}

/// The engine's state, with counters batched in the VM.
type Config = State<Metric>;

fn flush(state: &Config) {
    state.counters().for_each(Metric::flush);
}

/// The engine's [`Host`] through the panic-free host layer (one value serves every hook: the
/// ABI acts on the stream the host is running).
struct ProxyWasm;

impl HeaderList for HeaderMap {
    fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.iter()
    }
}

impl Host for ProxyWasm {
    type Counter = Metric;
    type Headers<'a> = HeaderMap;

    fn headers(&self, map: Headers) -> HeaderMap {
        match map {
            Headers::Request => host::request_headers(),
            Headers::Response => host::response_headers(),
        }
    }

    fn route(&self, property: RouteProperty) -> Option<Cow<'_, [u8]>> {
        let path = match property {
            RouteProperty::MetadataPolicy => host::ROUTE_METADATA_POLICY,
            RouteProperty::IstioConfig => host::ROUTE_METADATA_ISTIO_CONFIG,
            RouteProperty::RouteName => host::ROUTE_NAME,
            RouteProperty::VirtualHostName => host::VIRTUAL_HOST_NAME,
        };
        host::property(path).map(Cow::Owned)
    }

    fn set_response_header(&self, name: &str, value: &[u8]) {
        host::set_response_header(name, value);
    }

    fn remove_response_header(&self, name: &[u8]) {
        host::remove_response_header(name);
    }

    fn send_response(&self, reply: &LocalReply<'_>) -> bool {
        host::send_local_response(reply.status, &reply.headers, reply.details)
    }

    fn increment(&self, counter: &Metric) {
        counter.pending.set(counter.pending.get().saturating_add(1));
    }
}

struct CorsRoot {
    state: Option<Rc<Config>>,
}

impl Context for CorsRoot {}

impl RootContext for CorsRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        host::refresh_log_level();
        log::info!(
            "cors-proxy-wasm {} (proxy-wasm build) loaded",
            env!("CARGO_PKG_VERSION")
        );
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        host::refresh_log_level();
        let document = host::plugin_configuration();
        let define = |name: &str| {
            host::define_counter(name).map(|id| Metric {
                id,
                pending: Cell::new(0),
            })
        };
        let Ok(state) = Config::load(&document, define) else {
            return false;
        };
        if let Some(old) = self.state.take() {
            flush(&old);
        }
        self.state = Some(Rc::new(state));
        host::set_tick_period_ms(FLUSH_PERIOD_MS);
        true
    }

    fn on_tick(&mut self) {
        // Follow run-time log level changes (`POST /logging?wasm=debug`).
        host::refresh_log_level();
        if let Some(state) = &self.state {
            flush(state);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(CorsHttp {
            state: self.state.clone(),
            stream: Stream::default(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct CorsHttp {
    state: Option<Rc<Config>>,
    stream: Stream,
}

impl Context for CorsHttp {}

impl HttpContext for CorsHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(state) = &self.state else {
            return Action::Continue;
        };
        match self.stream.on_request_headers(state, &ProxyWasm) {
            Next::Continue => Action::Continue,
            Next::Stop => Action::Pause,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(state) = &self.state {
            self.stream.on_response_headers(state, &ProxyWasm);
        }
        Action::Continue
    }
}
