//! What the filter asks of Envoy during one HTTP stream, behind a trait: [`Envoy`] makes the real
//! callbacks, a mock (tests, the fuzz target) answers from memory. Every method takes `&self` and
//! returns bytes borrowed for the current hook (Envoy keeps them valid until the hook returns).

use std::borrow::Cow;

/// A route attribute read through Envoy's attribute callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribute {
    /// `xds.route_name`.
    RouteName,
    /// `xds.virtual_host_name`.
    VirtualHostName,
}

/// Which header map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Headers {
    Request,
    Response,
}

/// The callbacks one stream's hooks use.
pub trait Host {
    /// Every header of a map, in order (lower-case names).
    fn headers(&self, map: Headers) -> Vec<(&[u8], &[u8])>;
    /// Sets a response header (replacing every one of that name), or removes it (`None`).
    fn set_response_header(&self, name: &[u8], value: Option<&[u8]>) -> bool;
    /// Answers the request locally, empty body. `details` are the engine's response code details
    /// for it: the mock records them; Envoy's callback for a reply sent as its CORS filter sends
    /// one has no place for them (docs/dynamic-module.md, *The preflight reply*).
    fn send_response(&self, status: u16, headers: &[(&'static str, Cow<'_, [u8]>)], details: &str);
    /// A string in the route's `filter_metadata`: `namespace.key`.
    fn route_metadata(&self, namespace: &str, key: &str) -> Option<&[u8]>;
    fn attribute(&self, attribute: Attribute) -> Option<&[u8]>;
    /// Adds one to a counter defined when the configuration was created.
    fn increment(&self, counter: usize);
}

/// The real callbacks, for the stream Envoy handed to the hook.
#[cfg(feature = "envoy")]
pub struct Envoy {
    filter: crate::abi::EnvoyPtr,
}

#[cfg(feature = "envoy")]
impl Envoy {
    /// # Safety
    /// `filter` is the `filter_envoy_ptr` of the hook being run; the value lives only as long as
    /// that hook.
    pub unsafe fn new(filter: crate::abi::EnvoyPtr) -> Envoy {
        Envoy { filter }
    }

    fn header_type(map: Headers) -> u32 {
        match map {
            Headers::Request => crate::abi::REQUEST_HEADER,
            Headers::Response => crate::abi::RESPONSE_HEADER,
        }
    }
}

#[cfg(feature = "envoy")]
impl Host for Envoy {
    fn headers(&self, map: Headers) -> Vec<(&[u8], &[u8])> {
        use crate::abi::*;
        /// Maps this size or smaller (nearly all) are read into the stack, not the heap.
        const ON_STACK: usize = 32;
        let header_type = Envoy::header_type(map);
        // SAFETY: as above; the array has room for the size Envoy reported.
        let size = unsafe {
            envoy_dynamic_module_callback_http_get_headers_size(self.filter, header_type)
        };
        if size == 0 {
            return Vec::new();
        }
        let mut stack = [HttpHeader::EMPTY; ON_STACK];
        let mut heap = Vec::new();
        let raw: &mut [HttpHeader] = match stack.get_mut(..size) {
            Some(raw) => raw,
            None => {
                heap.resize(size, HttpHeader::EMPTY);
                &mut heap
            }
        };
        // SAFETY: as above; `raw` has room for `size` headers.
        if !unsafe {
            envoy_dynamic_module_callback_http_get_headers(
                self.filter,
                header_type,
                raw.as_mut_ptr(),
            )
        } {
            return Vec::new();
        }
        let mut headers = Vec::with_capacity(size);
        for h in raw.iter() {
            // SAFETY: Envoy's buffers, valid until the hook returns (no header of this map is
            // changed before the caller is done with them).
            let (name, value) = unsafe {
                let name = EnvoyBuffer {
                    ptr: h.key_ptr,
                    length: h.key_length,
                }
                .as_bytes();
                let value = EnvoyBuffer {
                    ptr: h.value_ptr,
                    length: h.value_length,
                }
                .as_bytes();
                (name, value)
            };
            if let Some(name) = name {
                headers.push((name, value.unwrap_or_default()));
            }
        }
        headers
    }

    fn set_response_header(&self, name: &[u8], value: Option<&[u8]>) -> bool {
        use crate::abi::*;
        let value = value.map_or(ModuleBuffer::NULL, ModuleBuffer::of);
        // SAFETY: live slices, read during the call.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.filter,
                RESPONSE_HEADER,
                ModuleBuffer::of(name),
                value,
            )
        }
    }

    fn send_response(
        &self,
        status: u16,
        headers: &[(&'static str, Cow<'_, [u8]>)],
        _details: &str,
    ) {
        use crate::abi::*;
        /// Replies with fewer headers (all of ours) are written out on the stack.
        const ON_STACK: usize = 16;
        let digits = status_digits(status);
        let all = std::iter::once((":status", &digits[..]))
            .chain(headers.iter().map(|(name, value)| (*name, value.as_ref())))
            .map(|(name, value)| HttpHeader {
                key_ptr: name.as_ptr(),
                key_length: name.len(),
                value_ptr: value.as_ptr(),
                value_length: value.len(),
            });
        let mut stack = [HttpHeader::EMPTY; ON_STACK];
        let heap: Vec<HttpHeader>;
        let raw: &[HttpHeader] = if headers.len() < ON_STACK {
            let mut n = 0;
            for (slot, header) in stack.iter_mut().zip(all) {
                *slot = header;
                n += 1;
            }
            &stack[..n]
        } else {
            heap = all.collect();
            &heap
        };
        // SAFETY: live slices, copied by Envoy during the call.
        unsafe {
            envoy_dynamic_module_callback_http_send_response_headers(
                self.filter,
                raw.as_ptr(),
                raw.len(),
                true,
            );
        }
    }

    fn route_metadata(&self, namespace: &str, key: &str) -> Option<&[u8]> {
        use crate::abi::*;
        let mut result = EnvoyBuffer::EMPTY;
        // SAFETY: as for `header`.
        unsafe {
            if !envoy_dynamic_module_callback_http_get_metadata_string(
                self.filter,
                METADATA_SOURCE_ROUTE,
                ModuleBuffer::of(namespace.as_bytes()),
                ModuleBuffer::of(key.as_bytes()),
                &mut result,
            ) {
                return None;
            }
            result.as_bytes()
        }
    }

    fn attribute(&self, attribute: Attribute) -> Option<&[u8]> {
        use crate::abi::*;
        let id = match attribute {
            Attribute::RouteName => ATTRIBUTE_XDS_ROUTE_NAME,
            Attribute::VirtualHostName => ATTRIBUTE_XDS_VIRTUAL_HOST_NAME,
        };
        let mut result = EnvoyBuffer::EMPTY;
        // SAFETY: as for `header`.
        unsafe {
            if !envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.filter,
                id,
                &mut result,
            ) {
                return None;
            }
            result.as_bytes()
        }
    }

    fn increment(&self, counter: usize) {
        // SAFETY: no labels; the id came from `define_counter` on this filter's configuration.
        unsafe {
            crate::abi::envoy_dynamic_module_callback_http_filter_increment_counter(
                self.filter,
                counter,
                std::ptr::null(),
                0,
                1,
            );
        }
    }
}

/// A status code (100..=999) as its three digits.
#[cfg(feature = "envoy")]
fn status_digits(status: u16) -> [u8; 3] {
    let status = status.clamp(100, 999);
    // Each digit is below 10: the casts cannot truncate.
    [
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ]
}
