//! The engine's [`Host`] over Envoy's dynamic-module callbacks, for the stream Envoy handed to a
//! hook. Every method returns bytes borrowed for the current hook (Envoy keeps them valid until
//! the hook returns).

use std::borrow::Cow;

use cors_engine::engine::LocalReply;
use cors_engine::host::{Headers, Host, RouteProperty};

use crate::abi::*;

/// The real callbacks, for the stream Envoy handed to the hook.
pub struct Envoy {
    filter: EnvoyPtr,
}

impl Envoy {
    /// # Safety
    /// `filter` is the `filter_envoy_ptr` of the hook being run; the value lives only as long as
    /// that hook.
    pub unsafe fn new(filter: EnvoyPtr) -> Envoy {
        Envoy { filter }
    }

    fn header_type(map: Headers) -> u32 {
        match map {
            Headers::Request => REQUEST_HEADER,
            Headers::Response => RESPONSE_HEADER,
        }
    }

    /// Every header of a map, in order; read into the stack when the map is small.
    fn header_list(&self, map: Headers) -> Vec<(&[u8], &[u8])> {
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

    fn set_header(&self, name: &[u8], value: ModuleBuffer) {
        // SAFETY: live slices, read during the call.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.filter,
                RESPONSE_HEADER,
                ModuleBuffer::of(name),
                value,
            );
        }
    }
}

impl Host for Envoy {
    /// The id Envoy gave the counter when the configuration defined it.
    type Counter = usize;
    type Headers<'a> = Vec<(&'a [u8], &'a [u8])>;

    fn headers(&self, map: Headers) -> Self::Headers<'_> {
        self.header_list(map)
    }

    fn set_response_header(&self, name: &str, value: &[u8]) {
        self.set_header(name.as_bytes(), ModuleBuffer::of(value));
    }

    fn remove_response_header(&self, name: &[u8]) {
        self.set_header(name, ModuleBuffer::NULL);
    }

    /// Envoy's callback for a module's reply has no place for the reply's details
    /// (docs/dynamic-module.md, *The preflight reply*).
    fn send_response(&self, reply: &LocalReply<'_>) -> bool {
        let (status, headers) = (reply.status, &reply.headers);
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
        true
    }

    fn route(&self, property: RouteProperty) -> Option<Cow<'_, [u8]>> {
        let mut result = EnvoyBuffer::EMPTY;
        // SAFETY: the pointer of this hook, a valid out-pointer; live slices read during the call.
        let found = unsafe {
            match property {
                RouteProperty::MetadataPolicy | RouteProperty::IstioConfig => {
                    let (namespace, key): (&[u8], &[u8]) = match property {
                        RouteProperty::MetadataPolicy => (b"cors", b"policy"),
                        _ => (b"istio", b"config"),
                    };
                    envoy_dynamic_module_callback_http_get_metadata_string(
                        self.filter,
                        METADATA_SOURCE_ROUTE,
                        ModuleBuffer::of(namespace),
                        ModuleBuffer::of(key),
                        &mut result,
                    )
                }
                RouteProperty::RouteName | RouteProperty::VirtualHostName => {
                    let id = match property {
                        RouteProperty::RouteName => ATTRIBUTE_XDS_ROUTE_NAME,
                        _ => ATTRIBUTE_XDS_VIRTUAL_HOST_NAME,
                    };
                    envoy_dynamic_module_callback_http_filter_get_attribute_string(
                        self.filter,
                        id,
                        &mut result,
                    )
                }
            }
        };
        if !found {
            return None;
        }
        // SAFETY: Envoy's buffer, valid until the hook returns.
        unsafe { result.as_bytes() }.map(Cow::Borrowed)
    }

    fn increment(&self, counter: &usize) {
        // SAFETY: no labels; the id came from `define_counter` on this filter's configuration.
        unsafe {
            envoy_dynamic_module_callback_http_filter_increment_counter(
                self.filter,
                *counter,
                std::ptr::null(),
                0,
                1,
            );
        }
    }
}

/// A status code (100..=999) as its three digits.
fn status_digits(status: u16) -> [u8; 3] {
    let status = status.clamp(100, 999);
    // Each digit is below 10: the casts cannot truncate.
    [
        b'0' + (status / 100) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
    ]
}
