//! Which build of the filter a test runs against: the proxy-wasm module (`CORS_WASM`) or the
//! Envoy dynamic module (`CORS_NATIVE`). The real-Envoy suites run every test once per build:
//! their test bodies are plain functions, and [`for_each_build!`] makes `wasm::NAME` and
//! `native::NAME` tests of them. Everything that differs between the builds (the filter's entry
//! in the config, the prefix Envoy gives our counters) comes from here.

use serde_json::{json, Value};
use std::cell::Cell;
use std::path::PathBuf;

/// A build of the filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Build {
    /// `envoy.filters.http.wasm` running `dist/cors_proxy_wasm.wasm` in V8.
    Wasm,
    /// `envoy.filters.http.dynamic_modules` loading `dist/libcors_proxy.so`.
    Native,
}

thread_local! {
    static CURRENT: Cell<Build> = const { Cell::new(Build::Wasm) };
}

impl Build {
    pub const ALL: [Build; 2] = [Build::Wasm, Build::Native];

    /// The build of the test running on this thread (set by [`Build::run`]; `Wasm` otherwise).
    pub fn current() -> Build {
        CURRENT.with(Cell::get)
    }

    /// Runs a test body (or a part of one, on a thread of its own) with this build as the current
    /// one.
    pub fn run<T>(self, test: impl FnOnce() -> T) -> T {
        CURRENT.with(|c| c.set(self));
        test()
    }

    pub fn name(self) -> &'static str {
        match self {
            Build::Wasm => "wasm",
            Build::Native => "native",
        }
    }

    /// The built artefact (`CORS_WASM` or `CORS_NATIVE`).
    pub fn artefact(self) -> PathBuf {
        match self {
            Build::Wasm => super::cors_wasm(),
            Build::Native => super::cors_native(),
        }
    }

    /// The prefix Envoy puts before our counter names: `wasmcustom.` for a wasm filter, the
    /// dynamic module config's `metrics_namespace` (default `dynamicmodulescustom`) plus `.`.
    pub fn stat_prefix(self) -> &'static str {
        match self {
            Build::Wasm => "wasmcustom.",
            Build::Native => "dynamicmodulescustom.",
        }
    }

    /// Envoy's logger that our log lines go to (`POST /logging?<logger>=debug` raises it).
    pub fn logger(self) -> &'static str {
        match self {
            Build::Wasm => "wasm",
            Build::Native => "dynamic_modules",
        }
    }

    /// Our HTTP filter's entry in `http_filters`, with this policy document.
    pub fn filter(self, policy: &str) -> Value {
        match self {
            Build::Wasm => super::wasm_filter(&self.artefact(), policy),
            Build::Native => native_filter(&self.artefact(), policy),
        }
    }

    /// The shipped example config of this build (relative to the repository root) and the path
    /// of the artefact as written in it.
    pub fn shipped_config(self) -> (&'static str, &'static str) {
        match self {
            Build::Wasm => ("envoy/envoy.yaml", "dist/cors_proxy_wasm.wasm"),
            Build::Native => ("envoy/dynamic-module/envoy.yaml", "dist/libcors_proxy.so"),
        }
    }
}

/// The `envoy.filters.http.dynamic_modules` entry for our module with this policy document.
pub fn native_filter(module: &std::path::Path, policy: &str) -> Value {
    json!({
        "name": "envoy.filters.http.dynamic_modules",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter",
            "dynamic_module_config": {
                "module": { "local": { "filename": module.to_string_lossy() } }
            },
            "filter_name": "cors",
            "filter_config": {
                "@type": "type.googleapis.com/google.protobuf.StringValue",
                "value": policy
            }
        }
    })
}

/// Makes each listed test body (a `fn()` of the suite) a test per build, `wasm::NAME` and
/// `native::NAME`: one set of tests, run against both.
#[allow(unused_macros)]
macro_rules! for_each_build {
    ($($test:ident),* $(,)?) => {
        mod wasm {
            $(
                #[test]
                fn $test() {
                    crate::support::Build::Wasm.run(super::$test)
                }
            )*
        }
        mod native {
            $(
                #[test]
                fn $test() {
                    crate::support::Build::Native.run(super::$test)
                }
            )*
        }
    };
}
