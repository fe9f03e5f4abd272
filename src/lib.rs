//! cors-proxy-wasm: a CORS filter for Envoy and Istio, as a proxy-wasm HTTP filter.
//!
//! This crate is the proxy-wasm host of the engine (`cors-engine`, in `engine/`): [`filter`] is
//! the filter over the panic-free host layer `host`, which moves bytes through the ABI ([`abi`]);
//! [`header_map`] parses and writes the host's serialised header maps.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod abi;
#[cfg(feature = "filter")]
mod filter;
pub mod header_map;
#[cfg(feature = "filter")]
mod host;
