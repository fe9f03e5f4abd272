//! The host calls of a CORS filter that does everything this one does, and nothing else (see Cargo.toml).
//!
//! Plugin configuration: the one allowed origin. Per request, exactly the calls
//! `cors-proxy-wasm` makes for the benchmark policy (BENCHMARKS.md, "Host calls per request"):
//! - request: `proxy_get_header_map_pairs` (request), `proxy_get_property` (route metadata);
//! - preflight (`OPTIONS` with `Origin`): `proxy_send_local_response`, 204 with the five headers
//!   of the policy's allowed preflight, or 403 with `Vary`;
//! - other requests, on the response: `proxy_get_header_map_pairs` (response), then
//!   `proxy_replace_header_map_value` for `Access-Control-Allow-Origin` (allowed origin only) and
//!   `Vary`.
//!
//! The answers are fixed; there is no policy engine and no `Vary` merge. Benchmark use only.

use std::ptr::null_mut;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

use cors_proxy_wasm::abi::*;
// The filter's own parser and writer of serialised header maps (no host calls).
use cors_proxy_wasm::header_map::{self, HeaderMap};

const REQUEST_HEADERS: u32 = 0;
const RESPONSE_HEADERS: u32 = 2;
const PLUGIN_CONFIGURATION: u32 = 7;
const ROUTE_METADATA_POLICY: &[u8] = b"xds\0route_metadata\0filter_metadata\0cors\0policy";
const PREFLIGHT_VARY: &[u8] =
    b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(SpecRoot { allowed: Rc::from([].as_slice()) })
    });
}}

/// Takes a buffer the host allocated in the VM (empty when none).
fn take(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        return Vec::new();
    }
    // SAFETY: the host allocated `size` bytes with this module's allocator.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

fn header_pairs(map_type: u32) -> Vec<u8> {
    let (mut data, mut size) = (null_mut(), 0);
    // SAFETY: valid out-pointers.
    unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) };
    take(data, size)
}

/// Header (name, value) pairs.
type Headers<'a> = Vec<(&'a [u8], &'a [u8])>;

fn set_response_header(name: &[u8], value: &[u8]) {
    // SAFETY: live slices.
    unsafe {
        proxy_replace_header_map_value(
            RESPONSE_HEADERS,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    };
}

struct SpecRoot {
    allowed: Rc<[u8]>,
}

impl Context for SpecRoot {}

impl RootContext for SpecRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let (mut data, mut size) = (null_mut(), 0);
        // SAFETY: valid out-pointers.
        unsafe {
            proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, usize::MAX, &mut data, &mut size)
        };
        self.allowed = Rc::from(take(data, size));
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(SpecHttp {
            allowed: self.allowed.clone(),
            respond: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct SpecHttp {
    allowed: Rc<[u8]>,
    /// On the response: `Some(true)` write ACAO and Vary, `Some(false)` Vary only.
    respond: Option<bool>,
}

impl Context for SpecHttp {}

impl HttpContext for SpecHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let request = HeaderMap::parse(header_pairs(REQUEST_HEADERS));
        let (mut data, mut size) = (null_mut(), 0);
        // SAFETY: live slice, valid out-pointers.
        unsafe {
            proxy_get_property(
                ROUTE_METADATA_POLICY.as_ptr(),
                ROUTE_METADATA_POLICY.len(),
                &mut data,
                &mut size,
            )
        };
        drop(take(data, size));
        let [origin, method] = request.values([b"origin", b":method"]);
        let allowed = origin.as_deref() == Some(&*self.allowed);
        if origin.is_some() && method.as_deref() == Some(b"OPTIONS".as_slice()) {
            let (status, headers): (u32, Headers) = if allowed {
                (
                    204,
                    vec![
                        (b"access-control-allow-origin", &self.allowed),
                        (b"access-control-allow-methods", b"GET, PUT, POST"),
                        (b"access-control-allow-headers", b"content-type"),
                        (b"access-control-max-age", b"600"),
                        (b"vary", PREFLIGHT_VARY),
                    ],
                )
            } else {
                (403, vec![(b"vary", PREFLIGHT_VARY)])
            };
            let map = header_map::serialize(&headers);
            let details = b"spec_calls";
            // SAFETY: live slices.
            unsafe {
                proxy_send_local_response(
                    status,
                    details.as_ptr(),
                    details.len(),
                    null_mut(),
                    0,
                    map.as_ptr(),
                    map.len(),
                    -1,
                )
            };
            return Action::Pause;
        }
        self.respond = Some(allowed);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(allowed) = self.respond.take() else {
            return Action::Continue;
        };
        drop(header_pairs(RESPONSE_HEADERS));
        if allowed {
            set_response_header(b"access-control-allow-origin", &self.allowed);
        }
        set_response_header(b"vary", b"Origin");
        Action::Continue
    }
}
