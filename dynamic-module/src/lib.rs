//! cors-proxy-wasm's engine as an Envoy dynamic module: a native shared library loaded by
//! `envoy.filters.http.dynamic_modules` (docs/dynamic-module.md).
//!
//! The request path is the engine's (`cors_engine::filter`); this crate is the host it runs on:
//!
//! - [`abi`]: the types and callbacks of Envoy's dynamic module ABI that this module uses.
//! - `host`: the engine's `Host` over those callbacks.
//! - `logger`: the engine's log sink over Envoy's log callbacks.
//! - `hosting`: which Envoy is hosting the module; the module runs only in the one it is built
//!   for, and `resolve` binds Envoy's callbacks (`load`) only then.
//! - `hooks`: the `envoy_dynamic_module_on_*` functions Envoy calls. Each one that runs code of
//!   ours catches a panic there: nothing unwinds into Envoy.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod abi;
mod hooks;
mod host;
pub mod hosting;
mod load;
mod logger;
pub mod resolve;
