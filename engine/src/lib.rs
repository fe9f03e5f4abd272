//! cors-engine: the CORS engine of cors-proxy-wasm, a CORS filter for Envoy and Istio.
//!
//! Plain Rust with no host dependency: the policy document ([`policy`]), the choice of a policy for
//! a request ([`routing`]) and the decision for it ([`engine`]). Both hosts (the proxy-wasm
//! filter at the repository root and the Envoy dynamic module in `dynamic-module/`) and the
//! `cors-policy` CLI build on it.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod engine;
pub mod lookup;
pub mod policy;
pub mod routing;
