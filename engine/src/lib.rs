//! cors-engine: the CORS engine of cors-proxy-wasm, a CORS filter for Envoy and Istio.
//!
//! Plain Rust with no host dependency: the policy document ([`policy`]), the choice of a policy for
//! a request ([`routing`]), the decision for it ([`engine`]), and the request path that runs them
//! ([`filter`]) over what it asks of the proxy ([`host`]). Both hosts (the proxy-wasm filter at
//! the repository root and the Envoy dynamic module in `dynamic-module/`) implement [`host::Host`]
//! and call [`filter::Stream`]'s hooks; [`mock`] is the in-memory host of the tests and fuzz
//! targets. The `cors-policy` CLI builds on the same definitions.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod engine;
pub mod filter;
pub mod host;
pub mod logging;
pub mod lookup;
pub mod mock;
pub mod policy;
pub mod routing;
