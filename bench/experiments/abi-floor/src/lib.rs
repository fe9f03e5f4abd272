//! The ABI floor: a proxy-wasm HTTP filter with no SDK that continues on every request and
//! response. Envoy skips every callback a module does not export, so the default build is
//! entered twice per request (request headers, response headers); with the `contexts` feature
//! also on context create and delete, as the shipped filter (which keeps per-stream state) is.

/// The ABI version this module speaks.
#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// The host writes returned data (configuration, headers) into memory it gets from here.
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    let mut buffer = std::mem::ManuallyDrop::new(Vec::<u8>::with_capacity(size));
    buffer.as_mut_ptr()
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root_context_id: u32, _configuration_size: usize) -> bool {
    true
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(_root_context_id: u32, _configuration_size: usize) -> bool {
    true
}

#[cfg(feature = "contexts")]
#[no_mangle]
pub extern "C" fn proxy_on_context_create(_context_id: u32, _parent_context_id: u32) {}

#[cfg(feature = "contexts")]
#[no_mangle]
pub extern "C" fn proxy_on_delete(_context_id: u32) {}

/// `Continue`.
#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_context_id: u32, _headers: usize, _eos: u32) -> u32 {
    0
}

/// `Continue`.
#[no_mangle]
pub extern "C" fn proxy_on_response_headers(_context_id: u32, _headers: usize, _eos: u32) -> u32 {
    0
}
