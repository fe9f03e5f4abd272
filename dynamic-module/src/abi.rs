//! The part of Envoy's dynamic module ABI (v0.2.0, Envoy 1.40:
//! `source/extensions/dynamic_modules/abi/abi.h` in envoyproxy/envoy) that this module uses,
//! declared by hand: the types, and the callbacks Envoy exports.
//!
//! Envoy resolves a callback by name when it loads the module; a callback whose parameters
//! changed but whose name did not is not caught there. Every callback declared here is therefore
//! called by the end-to-end tests, which run against a real Envoy.

#![allow(non_camel_case_types)]

use std::ffi::c_void;

/// `envoy_dynamic_module_type_http_filter_config_envoy_ptr` and friends: opaque handles.
pub type EnvoyPtr = *mut c_void;
/// A pointer we hand to Envoy and get back in later hooks.
pub type ModulePtr = *const c_void;

/// `envoy_dynamic_module_type_envoy_buffer`: bytes owned by Envoy, valid during the hook.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl EnvoyBuffer {
    pub const EMPTY: EnvoyBuffer = EnvoyBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };

    /// The bytes, or `None` for a null pointer.
    ///
    /// # Safety
    /// `ptr` must be null or point to `length` readable bytes that outlive `'a`.
    pub unsafe fn as_bytes<'a>(self) -> Option<&'a [u8]> {
        if self.ptr.is_null() {
            return None;
        }
        Some(std::slice::from_raw_parts(self.ptr, self.length))
    }
}

/// `envoy_dynamic_module_type_module_buffer`: bytes owned by the module, read during the call.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl ModuleBuffer {
    /// A null buffer (for `set_header`: remove the header).
    pub const NULL: ModuleBuffer = ModuleBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };

    pub fn of(bytes: &[u8]) -> ModuleBuffer {
        ModuleBuffer {
            ptr: bytes.as_ptr(),
            length: bytes.len(),
        }
    }
}

/// `envoy_dynamic_module_type_module_http_header` (send a header) and
/// `envoy_dynamic_module_type_envoy_http_header` (read one): the same layout.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct HttpHeader {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

impl HttpHeader {
    pub const EMPTY: HttpHeader = HttpHeader {
        key_ptr: std::ptr::null(),
        key_length: 0,
        value_ptr: std::ptr::null(),
        value_length: 0,
    };
}

/// `envoy_dynamic_module_type_http_header_type`.
pub const REQUEST_HEADER: u32 = 0;
pub const RESPONSE_HEADER: u32 = 2;

/// `envoy_dynamic_module_type_metadata_source_Route`.
pub const METADATA_SOURCE_ROUTE: u32 = 1;

/// `envoy_dynamic_module_type_attribute_id`: `xds.route_name`, `xds.virtual_host_name`.
pub const ATTRIBUTE_XDS_ROUTE_NAME: u32 = 61;
pub const ATTRIBUTE_XDS_VIRTUAL_HOST_NAME: u32 = 63;

/// `envoy_dynamic_module_type_log_level`: Trace 0 … Critical 5, Off 6.
pub const LOG_TRACE: u32 = 0;
pub const LOG_DEBUG: u32 = 1;
pub const LOG_INFO: u32 = 2;
pub const LOG_WARN: u32 = 3;
pub const LOG_ERROR: u32 = 4;
pub const LOG_CRITICAL: u32 = 5;

/// `envoy_dynamic_module_type_metrics_result_Success`.
pub const METRICS_SUCCESS: u32 = 0;

/// `envoy_dynamic_module_type_on_http_filter_request_headers_status` (and the response, body
/// and trailers statuses, whose `Continue` is also 0).
pub const CONTINUE: u32 = 0;
pub const STOP_ITERATION: u32 = 1;

/// The version this module is built against, returned by `envoy_dynamic_module_on_program_init`.
pub const ABI_VERSION: &std::ffi::CStr = c"v0.2.0";

// Resolved at load, once the hosting Envoy is the one this module is built for (resolve.rs).
crate::envoy_callbacks! {
    pub fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    pub fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;

    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        filter_config_envoy_ptr: EnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_length: usize,
        counter_id_ptr: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_increment_counter(
        filter_envoy_ptr: EnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;

    pub fn envoy_dynamic_module_callback_http_get_headers_size(
        filter_envoy_ptr: EnvoyPtr,
        header_type: u32,
    ) -> usize;
    pub fn envoy_dynamic_module_callback_http_get_headers(
        filter_envoy_ptr: EnvoyPtr,
        header_type: u32,
        result_headers: *mut HttpHeader,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter_envoy_ptr: EnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_send_response_headers(
        filter_envoy_ptr: EnvoyPtr,
        headers_vector: *const HttpHeader,
        headers_vector_size: usize,
        end_stream: bool,
    );

    pub fn envoy_dynamic_module_callback_http_get_metadata_string(
        filter_envoy_ptr: EnvoyPtr,
        metadata_source: u32,
        namespace: ModuleBuffer,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter_envoy_ptr: EnvoyPtr,
        attribute_id: u32,
        result: *mut EnvoyBuffer,
    ) -> bool;
}
