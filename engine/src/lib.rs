//! cors-proxy-wasm: a CORS filter for Envoy and Istio, as a proxy-wasm HTTP filter.
//!
//! The policy engine ([`policy`], [`routing`], [`engine`]) is plain Rust with no proxy-wasm dependency: it is
//! tested natively and reused by the `cors-policy` CLI. So is [`header_map`], the parser and
//! writer of the host's serialised header maps. The proxy-wasm shim ([`filter`] over the
//! panic-free host layer [`host`]) exists only when compiling for `wasm32`.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod engine;
pub mod header_map;
pub mod lookup;
pub mod policy;
pub mod routing;

#[cfg(target_arch = "wasm32")]
mod abi;
#[cfg(target_arch = "wasm32")]
mod filter;
#[cfg(target_arch = "wasm32")]
mod host;
