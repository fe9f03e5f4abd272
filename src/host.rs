//! A small, panic-free layer over the proxy-wasm host calls this filter uses.
//!
//! The SDK's `hostcalls` `panic!` on any status other than Ok/NotFound and its header getters
//! unwrap UTF-8: one odd byte or host status would abort the VM and fail every later request on
//! the worker. Here every call returns an `Option`/`bool` and every value is bytes. The serialised
//! header maps are parsed and written by [`crate::header_map`] (plain Rust, tested natively).

use std::ptr::null_mut;

use cors_engine::host::LogSink;
use cors_engine::logging::{self, Logger};

use crate::header_map::{self, HeaderMap};

/// `proxy_status_t::Ok`.
const OK: u32 = 0;
/// `proxy_map_type_t`.
const REQUEST_HEADERS: u32 = 0;
const RESPONSE_HEADERS: u32 = 2;
/// `proxy_buffer_type_t::PluginConfiguration`.
const PLUGIN_CONFIGURATION: u32 = 7;
/// `proxy_metric_type_t::Counter`.
const COUNTER: u32 = 0;

use crate::abi::*;

/// Takes ownership of a buffer the host allocated through `proxy_on_memory_allocate`.
///
/// # Safety
/// `data` must be null or a `size`-byte allocation made by this module's allocator.
unsafe fn take_buffer(data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if data.is_null() {
        return None;
    }
    Some(Vec::from_raw_parts(data, size, size))
}

/// The plugin configuration (the policy document), empty when none was given.
pub fn plugin_configuration() -> Vec<u8> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: out-pointers are valid; the returned buffer is ours (see `take_buffer`).
    unsafe {
        if proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, usize::MAX, &mut data, &mut size) != OK {
            return Vec::new();
        }
        take_buffer(data, size).unwrap_or_default()
    }
}

// Property paths as the ABI takes them: the segments joined with NUL bytes.
pub const ROUTE_METADATA_POLICY: &[u8] = b"xds\0route_metadata\0filter_metadata\0cors\0policy";
pub const ROUTE_NAME: &[u8] = b"xds\0route_name";
pub const VIRTUAL_HOST_NAME: &[u8] = b"xds\0virtual_host_name";
pub const ROUTE_METADATA_ISTIO_CONFIG: &[u8] =
    b"xds\0route_metadata\0filter_metadata\0istio\0config";

/// A property (`path` NUL-separated, see [`ROUTE_NAME`]) as raw bytes; `None` when absent or on
/// any error.
pub fn property(path: &[u8]) -> Option<Vec<u8>> {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: as above.
    unsafe {
        if proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size) != OK {
            return None;
        }
        take_buffer(data, size)
    }
}

fn host_header_map(map_type: u32) -> HeaderMap {
    let mut data = null_mut();
    let mut size = 0;
    // SAFETY: as above.
    unsafe {
        if proxy_get_header_map_pairs(map_type, &mut data, &mut size) != OK {
            return HeaderMap::default();
        }
        take_buffer(data, size)
            .map(HeaderMap::parse)
            .unwrap_or_default()
    }
}

pub fn request_headers() -> HeaderMap {
    host_header_map(REQUEST_HEADERS)
}

pub fn response_headers() -> HeaderMap {
    host_header_map(RESPONSE_HEADERS)
}

/// Sets a response header, replacing every header of that name.
pub fn set_response_header(name: &str, value: &[u8]) -> bool {
    // SAFETY: pointers and lengths describe live slices.
    unsafe {
        proxy_replace_header_map_value(
            RESPONSE_HEADERS,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        ) == OK
    }
}

pub fn remove_response_header(name: &[u8]) -> bool {
    // SAFETY: as above.
    unsafe { proxy_remove_header_map_value(RESPONSE_HEADERS, name.as_ptr(), name.len()) == OK }
}

/// Sends a local reply with an empty body. `details` shows in Envoy's access log
/// (`%RESPONSE_CODE_DETAILS%`).
pub fn send_local_response<V: AsRef<[u8]>>(
    status: u16,
    headers: &[(&str, V)],
    details: &str,
) -> bool {
    let serialized = header_map::serialize(headers);
    // SAFETY: as above.
    unsafe {
        proxy_send_local_response(
            u32::from(status),
            details.as_ptr(),
            details.len(),
            [].as_ptr(),
            0,
            serialized.as_ptr(),
            serialized.len(),
            -1,
        ) == OK
    }
}

/// Defines a counter; `None` if the host refuses.
pub fn define_counter(name: &str) -> Option<u32> {
    let mut id = 0;
    // SAFETY: as above.
    let status = unsafe { proxy_define_metric(COUNTER, name.as_ptr(), name.len(), &mut id) };
    (status == OK).then_some(id)
}

pub fn increment_counter(id: u32, by: u64) -> bool {
    // SAFETY: a plain call.
    unsafe { proxy_increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX)) == OK }
}

pub fn set_tick_period_ms(period: u32) -> bool {
    // SAFETY: a plain call.
    unsafe { proxy_set_tick_period_milliseconds(period) == OK }
}

fn host_log_level() -> Option<log::LevelFilter> {
    let mut level = 0;
    // SAFETY: a valid out-pointer.
    if unsafe { proxy_get_log_level(&mut level) } != OK {
        return None;
    }
    Some(match level {
        0 => log::LevelFilter::Trace,
        1 => log::LevelFilter::Debug,
        2 => log::LevelFilter::Info,
        3 => log::LevelFilter::Warn,
        4 | 5 => log::LevelFilter::Error,
        _ => log::LevelFilter::Off,
    })
}

fn write_log(level: u32, message: &str) {
    // SAFETY: a live slice. A failed log has nowhere to be reported.
    unsafe {
        proxy_log(level, message.as_ptr(), message.len());
    }
}

struct WasmLog;

impl LogSink for WasmLog {
    fn enabled(&self, level: log::Level) -> bool {
        level <= log::max_level()
    }

    fn write(&self, level: log::Level, message: &str) {
        let level = match level {
            log::Level::Trace => 0,
            log::Level::Debug => 1,
            log::Level::Info => 2,
            log::Level::Warn => 3,
            log::Level::Error => 4,
        };
        write_log(level, message);
    }

    fn critical(&self, message: &str) {
        write_log(5, message);
    }
}

static LOGGER: Logger<WasmLog> = Logger(WasmLog);

/// Routes the `log` crate to Envoy's wasm log at Envoy's current level, and logs panics (which
/// abort the VM) at critical level so they are never silent. Host calls are not allowed during
/// `_initialize`: the level is read in `on_configure`.
pub fn init_logging() {
    logging::init(&LOGGER, log::LevelFilter::Info);
}

/// Re-reads Envoy's log level (it can change at run time through the admin API).
pub fn refresh_log_level() {
    log::set_max_level(host_log_level().unwrap_or(log::LevelFilter::Info));
}
