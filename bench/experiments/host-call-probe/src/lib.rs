//! Host-call probe: on every request's headers, makes one kind of host call K times.
//!
//! Plugin configuration: one letter for the call, then K (one digit, default 1):
//! - `0`: nothing (the floor: an empty filter);
//! - `v`: `proxy_get_header_map_value("origin")`, a header that is present (the host allocates
//!   the value in the VM: one more VM entry, `proxy_on_memory_allocate`);
//! - `m`: `proxy_get_header_map_value("x-missing")`, absent (no allocation);
//! - `p`: `proxy_get_header_map_pairs` of the request (one allocation);
//! - `r`: `proxy_get_property("xds.route_metadata.filter_metadata.cors.policy")`;
//! - `n`: `proxy_get_property("xds.route_name")`;
//! - `w`: `proxy_replace_header_map_value` on the request;
//! - `l`: `proxy_send_local_response` (204, no headers), once whatever K: the floor of a wasm
//!   filter that answers requests itself, like a preflight.
//!
//! `bench/experiments/ab.py` runs several probes side by side in one Envoy (see bench/experiments/README.md).

use std::cell::Cell;
use std::ptr::null_mut;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

use cors_proxy_wasm::abi::*;

const REQUEST_HEADERS: u32 = 0;
const PLUGIN_CONFIGURATION: u32 = 7;

thread_local! {
    static PROBE: Cell<(u8, usize)> = const { Cell::new((b'0', 1)) };
}

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(ProbeRoot) });
}}

/// Frees a buffer the host allocated in the VM.
fn release(data: *mut u8, size: usize) {
    if !data.is_null() {
        // SAFETY: the host allocated `size` bytes with this module's allocator.
        drop(unsafe { Vec::from_raw_parts(data, size, size) });
    }
}

struct ProbeRoot;

impl Context for ProbeRoot {}

impl RootContext for ProbeRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let (mut data, mut size) = (null_mut(), 0);
        // SAFETY: valid out-pointers.
        let status = unsafe {
            proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, usize::MAX, &mut data, &mut size)
        };
        if status == 0 && !data.is_null() {
            // SAFETY: as in `release`.
            let config = unsafe { Vec::from_raw_parts(data, size, size) };
            let call = config.first().copied().unwrap_or(b'0');
            let times = config
                .get(1)
                .map_or(1, |d| usize::from(d.wrapping_sub(b'0') % 10));
            PROBE.with(|p| p.set((call, times)));
        }
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(ProbeHttp))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct ProbeHttp;

impl Context for ProbeHttp {}

impl HttpContext for ProbeHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let (call, times) = PROBE.with(Cell::get);
        if call == b'l' {
            // An empty serialised header map: a u32 count of 0.
            let headers = 0u32.to_le_bytes();
            // SAFETY: pointers and lengths describe live slices.
            unsafe {
                proxy_send_local_response(
                    204,
                    b"probe".as_ptr(),
                    5,
                    null_mut(),
                    0,
                    headers.as_ptr(),
                    4,
                    -1,
                );
            }
            return Action::Pause;
        }
        for _ in 0..times {
            let (mut data, mut size) = (null_mut(), 0);
            // SAFETY: pointers and lengths describe live slices; out-pointers are valid.
            unsafe {
                match call {
                    b'v' => {
                        proxy_get_header_map_value(
                            REQUEST_HEADERS,
                            b"origin".as_ptr(),
                            6,
                            &mut data,
                            &mut size,
                        );
                    }
                    b'm' => {
                        proxy_get_header_map_value(
                            REQUEST_HEADERS,
                            b"x-missing".as_ptr(),
                            9,
                            &mut data,
                            &mut size,
                        );
                    }
                    b'p' => {
                        proxy_get_header_map_pairs(REQUEST_HEADERS, &mut data, &mut size);
                    }
                    b'r' => {
                        let path = b"xds\0route_metadata\0filter_metadata\0cors\0policy";
                        proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size);
                    }
                    b'n' => {
                        let path = b"xds\0route_name";
                        proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size);
                    }
                    b'w' => {
                        proxy_replace_header_map_value(
                            REQUEST_HEADERS,
                            b"x-probe".as_ptr(),
                            7,
                            b"1".as_ptr(),
                            1,
                        );
                    }
                    _ => {}
                }
            }
            release(data, size);
        }
        Action::Continue
    }
}
