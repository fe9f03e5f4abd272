//! The event hooks Envoy looks up by name when it loads the module. Envoy refuses a module that
//! lacks any of them, so the ones this filter has no use for (bodies, trailers, callouts,
//! streams, timers, watermarks) are here and do nothing.
//!
//! A native module has no sandbox: a panic unwinding into Envoy would take the proxy down. Every
//! hook that runs code of ours goes through [`guard`], which catches a panic (logged by the
//! panic hook in `logger`) and answers as if the filter were absent: the request continues.

use std::ffi::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

use cors_engine::filter::{Next, State, Stream};

use crate::abi::*;
use crate::host::Envoy;

/// A configuration: the engine's state with Envoy's counter ids.
type Config = State<usize>;

fn guard<R>(fallback: R, f: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// One stream: the engine's stream and the configuration it was created from (Envoy keeps the
/// configuration alive for as long as any of its filters).
struct Filter {
    config: *const Config,
    stream: Stream,
}

/// Shared references only: a hook Envoy runs while another of the same stream is in a call into
/// Envoy (a local reply) meets no unique borrow; the engine's stream keeps its state in cells.
///
/// # Safety
/// `filter_module_ptr` is null or a pointer returned by `envoy_dynamic_module_on_http_filter_new`
/// and not yet destroyed; Envoy calls a stream's hooks on one thread.
unsafe fn stream<'a>(filter_module_ptr: ModulePtr) -> Option<(&'a Config, &'a Stream)> {
    let filter = (filter_module_ptr as *const Filter).as_ref()?;
    let config = filter.config.as_ref()?;
    Some((config, &filter.stream))
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    guard(std::ptr::null(), || match crate::load::admit() {
        Ok(()) => ABI_VERSION.as_ptr(),
        // Envoy then refuses the configuration that asked for the module.
        Err(()) => std::ptr::null(),
    })
}

/// The policy document is the filter config (a `StringValue`'s bytes). A refused document makes
/// this return null: Envoy then refuses the configuration and keeps the one it had.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    filter_config_envoy_ptr: EnvoyPtr,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> ModulePtr {
    guard(std::ptr::null(), || {
        // SAFETY: Envoy's buffer, valid during this hook.
        let document = unsafe { config.as_bytes() }.unwrap_or_default();
        let define_counter = |name: &str| {
            let mut id = 0usize;
            // SAFETY: the config pointer of this hook; a valid out-pointer; no labels.
            let result = unsafe {
                envoy_dynamic_module_callback_http_filter_config_define_counter(
                    filter_config_envoy_ptr,
                    ModuleBuffer::of(name.as_bytes()),
                    std::ptr::null(),
                    0,
                    &mut id,
                )
            };
            (result == METRICS_SUCCESS).then_some(id)
        };
        match Config::load(document, define_counter) {
            Ok(config) => Box::into_raw(Box::new(config)) as ModulePtr,
            Err(_) => std::ptr::null(),
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(filter_config_ptr: ModulePtr) {
    guard((), || {
        if !filter_config_ptr.is_null() {
            // SAFETY: made by `Box::into_raw` in config_new; Envoy destroys it once.
            drop(unsafe { Box::from_raw(filter_config_ptr as *mut Config) });
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    filter_config_ptr: ModulePtr,
    _filter_envoy_ptr: EnvoyPtr,
) -> ModulePtr {
    guard(std::ptr::null(), || {
        let filter = Filter {
            config: filter_config_ptr as *const Config,
            stream: Stream::default(),
        };
        Box::into_raw(Box::new(filter)) as ModulePtr
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter_module_ptr: ModulePtr) {
    guard((), || {
        if !filter_module_ptr.is_null() {
            // SAFETY: made by `Box::into_raw` in filter_new; Envoy destroys it once.
            drop(unsafe { Box::from_raw(filter_module_ptr as *mut Filter) });
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    filter_envoy_ptr: EnvoyPtr,
    filter_module_ptr: ModulePtr,
    _end_of_stream: bool,
) -> u32 {
    if cfg!(feature = "floor") {
        return CONTINUE;
    }
    guard(CONTINUE, || {
        // SAFETY: the pointers of this hook (see `stream` and `Envoy::new`).
        let Some((config, stream)) = (unsafe { stream(filter_module_ptr) }) else {
            return CONTINUE;
        };
        let host = unsafe { Envoy::new(filter_envoy_ptr) };
        match stream.on_request_headers(config, &host) {
            Next::Continue => CONTINUE,
            Next::Stop => STOP_ITERATION,
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    filter_envoy_ptr: EnvoyPtr,
    filter_module_ptr: ModulePtr,
    _end_of_stream: bool,
) -> u32 {
    if cfg!(feature = "floor") {
        return CONTINUE;
    }
    guard(CONTINUE, || {
        // SAFETY: as above.
        if let Some((config, stream)) = unsafe { stream(filter_module_ptr) } {
            let host = unsafe { Envoy::new(filter_envoy_ptr) };
            stream.on_response_headers(config, &host);
        }
        CONTINUE
    })
}

// ----------------------------------------------------------------------------------------------
// Hooks Envoy requires and this filter does not use.
// ----------------------------------------------------------------------------------------------

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    _filter_envoy_ptr: EnvoyPtr,
    _filter_module_ptr: ModulePtr,
    _end_of_stream: bool,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    _filter_envoy_ptr: EnvoyPtr,
    _filter_module_ptr: ModulePtr,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    _filter_envoy_ptr: EnvoyPtr,
    _filter_module_ptr: ModulePtr,
    _end_of_stream: bool,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _filter_envoy_ptr: EnvoyPtr,
    _filter_module_ptr: ModulePtr,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    _filter_envoy_ptr: EnvoyPtr,
    _filter_module_ptr: ModulePtr,
) {
}

/// `envoy_dynamic_module_type_on_http_filter_local_reply_status_Continue`: a local reply (ours
/// or a later filter's) is sent as it is; its headers reach `response_headers` like any other.
#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_local_reply(
    _filter_envoy_ptr: EnvoyPtr,
    _filter_module_ptr: ModulePtr,
    _response_code: u32,
    _details: EnvoyBuffer,
    _reset_imminent: bool,
) -> u32 {
    CONTINUE
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _filter_envoy_ptr: EnvoyPtr,
    _filter_module_ptr: ModulePtr,
    _event_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _filter_envoy_ptr: EnvoyPtr,
    _filter_module_ptr: ModulePtr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _filter_envoy_ptr: EnvoyPtr,
    _filter_module_ptr: ModulePtr,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _filter_envoy_ptr: EnvoyPtr,
    _filter_module_ptr: ModulePtr,
    _callout_id: u64,
    _result: u32,
    _headers: *const HttpHeader,
    _headers_size: usize,
    _body_chunks: *const EnvoyBuffer,
    _body_chunks_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _filter_envoy_ptr: EnvoyPtr,
    _filter_module_ptr: ModulePtr,
    _stream_handle: u64,
    _headers: *const HttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _filter_envoy_ptr: EnvoyPtr,
    _filter_module_ptr: ModulePtr,
    _stream_handle: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _filter_envoy_ptr: EnvoyPtr,
    _filter_module_ptr: ModulePtr,
    _stream_handle: u64,
    _trailers: *const HttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _filter_envoy_ptr: EnvoyPtr,
    _filter_module_ptr: ModulePtr,
    _stream_handle: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _filter_envoy_ptr: EnvoyPtr,
    _filter_module_ptr: ModulePtr,
    _stream_handle: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _filter_config_envoy_ptr: EnvoyPtr,
    _filter_config_ptr: ModulePtr,
    _event_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _filter_config_envoy_ptr: EnvoyPtr,
    _filter_config_ptr: ModulePtr,
    _callout_id: u64,
    _result: u32,
    _headers: *const HttpHeader,
    _headers_size: usize,
    _body_chunks: *const EnvoyBuffer,
    _body_chunks_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_headers(
    _filter_config_envoy_ptr: EnvoyPtr,
    _filter_config_ptr: ModulePtr,
    _stream_id: u64,
    _headers: *const HttpHeader,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_data(
    _filter_config_envoy_ptr: EnvoyPtr,
    _filter_config_ptr: ModulePtr,
    _stream_id: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_trailers(
    _filter_config_envoy_ptr: EnvoyPtr,
    _filter_config_ptr: ModulePtr,
    _stream_id: u64,
    _trailers: *const HttpHeader,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_complete(
    _filter_config_envoy_ptr: EnvoyPtr,
    _filter_config_ptr: ModulePtr,
    _stream_id: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_stream_reset(
    _filter_config_envoy_ptr: EnvoyPtr,
    _filter_config_ptr: ModulePtr,
    _stream_id: u64,
    _reason: u32,
) {
}

#[cfg(test)]
mod tests {
    use super::guard;

    #[test]
    fn guard_turns_a_panic_into_the_fallback() {
        assert_eq!(guard(CONTINUE_FOR_TEST, || 7), 7);
        let caught = guard(CONTINUE_FOR_TEST, || -> u32 {
            let empty: Vec<u32> = Vec::new();
            empty[1]
        });
        assert_eq!(caught, CONTINUE_FOR_TEST);
    }

    const CONTINUE_FOR_TEST: u32 = crate::abi::CONTINUE;
}
