//! cors-proxy-wasm's engine as an Envoy dynamic module: a native shared library loaded by
//! `envoy.filters.http.dynamic_modules` (docs/dynamic-module.md).
//!
//! - [`abi`]: the types and callbacks of Envoy's dynamic module ABI that this module uses.
//! - [`host`]: those callbacks behind the [`host::Host`] trait, so tests and the fuzz target can
//!   drive the filter through a mock.
//! - [`filter`]: the shim proper (policy load, request and response hooks), over `Host`.
//! - [`hosting`]: which Envoy is hosting the module; the module runs only in the one it is built
//!   for, and [`resolve`] binds Envoy's callbacks only then.
//! - [`mock`]: an in-memory `Host` for the tests and the fuzz target.
//! - `hooks` (feature `envoy`): the `envoy_dynamic_module_on_*` functions Envoy calls. Each one
//!   that runs code of ours catches a panic there: nothing unwinds into Envoy.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod abi;
pub mod filter;
pub mod host;
pub mod hosting;
pub mod mock;
pub mod resolve;

#[cfg(feature = "envoy")]
mod hooks;
#[cfg(feature = "envoy")]
mod load;
#[cfg(feature = "envoy")]
mod logger;
