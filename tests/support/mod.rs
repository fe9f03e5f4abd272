//! Shared harness for the real-Envoy end-to-end tests.
//!
//! One file per role; this one holds what they share (environment, ports, scratch directories).
//!
//! - `upstream.rs`, [`Upstream`]: an in-process HTTP/1.1 server that echoes what it received and
//!   answers with the status and extra headers the request's query asks for
//!   (`?status=404&h=Vary:Accept-Encoding`).
//! - `build.rs`, [`Build`]: the build under test (proxy-wasm or dynamic module), and
//!   `for_each_build!`, which runs a suite's tests once per build.
//! - `envoy.rs`, [`EnvoyBuilder`] / [`Envoy`]: writes a bootstrap (JSON) with our filter,
//!   starts `ENVOY_BIN` on ports chosen by the kernel, waits for `/ready`, kills Envoy on drop.
//! - `client.rs`, [`Req`] / [`Response`]: a raw HTTP/1.1 client that sends arbitrary header bytes.
//!
//! A test that cannot run must fail: missing `ENVOY_BIN` / `CORS_WASM` / `CORS_NATIVE` / `CORS_POLICY` panic with a message
//! saying how to run the suite (`make test`).
#![allow(dead_code)]

#[macro_use]
mod build;
mod client;
mod envoy;
mod upstream;

pub use build::*;
pub use client::*;
pub use envoy::*;
pub use upstream::*;

use serde_json::Value;
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

// ---------------------------------------------------------------------------------------------
// Environment
// ---------------------------------------------------------------------------------------------

/// Root of the repository (Envoy is started from here so relative paths in shipped configs work).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn required_file_from_env(var: &str) -> PathBuf {
    let value = std::env::var_os(var).unwrap_or_else(|| {
        panic!(
            "{var} is not set: the end-to-end tests need the real Envoy and the built filter; \
             run them with `make e2e` or `make test` (they export ENVOY_BIN, CORS_WASM, CORS_NATIVE and CORS_POLICY)"
        )
    });
    let path = PathBuf::from(value);
    let path = if path.is_relative() {
        repo_root().join(path)
    } else {
        path
    };
    assert!(
        path.is_file(),
        "{var}={} does not exist (run `make build venv`)",
        path.display()
    );
    path
}

/// The Envoy binary (`ENVOY_BIN`).
pub fn envoy_bin() -> PathBuf {
    required_file_from_env("ENVOY_BIN")
}

/// The release of `ENVOY_BIN` (major, minor, patch), from `envoy --version`
/// (`envoy  version: <commit>/1.40.0/Clean/RELEASE/BoringSSL`).
pub fn envoy_release() -> (u32, u32, u32) {
    let out = std::process::Command::new(envoy_bin())
        .arg("--version")
        .output()
        .expect("run envoy --version");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let version = text
        .split("version: ")
        .nth(1)
        .and_then(|v| v.split('/').nth(1))
        .unwrap_or_else(|| panic!("no version in `envoy --version`: {text}"));
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().expect("version number"));
    let mut next = || {
        parts
            .next()
            .unwrap_or_else(|| panic!("bad version {version}"))
    };
    (next(), next(), next())
}

/// The Envoy release the dynamic module is built for (`dynamic-module/src/hosting.rs`).
pub const NATIVE_BUILT_FOR: (u32, u32) = (1, 40);

/// Whether `ENVOY_BIN` is the release the dynamic module is built for.
pub fn envoy_runs_the_dynamic_module() -> bool {
    let (major, minor, _) = envoy_release();
    (major, minor) == NATIVE_BUILT_FOR
}

/// The filter under test (`CORS_WASM`, normally `dist/cors_proxy_wasm.wasm`).
pub fn cors_wasm() -> PathBuf {
    required_file_from_env("CORS_WASM")
}

/// The dynamic module under test (`CORS_NATIVE`, normally `dist/libcors_proxy.so`).
pub fn cors_native() -> PathBuf {
    required_file_from_env("CORS_NATIVE")
}

/// The policy CLI (`CORS_POLICY`, normally `target/debug/cors-policy`).
pub fn cors_policy() -> PathBuf {
    required_file_from_env("CORS_POLICY")
}

/// A port that was free a moment ago on 127.0.0.1 (bind port 0, read it, drop the socket).
/// Prefer letting the server bind port 0 itself; this is for configs whose ports are fixed text.
/// The shipped example config of the current build (`envoy/envoy.yaml`, what `make run` starts,
/// or `envoy/dynamic-module/envoy.yaml`) with the built artefact and every port (admin 9901,
/// filter 10000, demo page 10001, example upstream 10002) moved to a free one: the config text and
/// the map from shipped port to the port used.
pub fn shipped_envoy_yaml_on_free_ports() -> (String, BTreeMap<u16, u16>) {
    let build = Build::current();
    let (path, artefact) = build.shipped_config();
    let text = std::fs::read_to_string(repo_root().join(path)).expect("shipped envoy config");
    let needle = format!("filename: {artefact}");
    assert!(text.contains(&needle), "{path} has no {needle}");
    let mut config = text.replace(
        &needle,
        &format!("filename: {}", build.artefact().display()),
    );
    let shipped = [9901u16, 10000, 10001, 10002];
    let mut ports = BTreeMap::new();
    for (port, new) in shipped.into_iter().zip(free_ports(shipped.len())) {
        let needle = format!("port_value: {port}");
        assert!(config.contains(&needle), "{path} has no {needle}");
        config = config.replace(&needle, &format!("port_value: {new}"));
        ports.insert(port, new);
    }
    (config, ports)
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// `n` distinct free ports: all are bound at once, so the kernel cannot hand out one twice (it
/// may, and did, when ports are taken one after the other with `free_port`).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local_addr").port())
        .collect()
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A base-id unique to this process and call, so many Envoys can run side by side.
pub fn unique_base_id() -> u32 {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    (std::process::id() % 4_000_000).wrapping_mul(1000) + 100 + (n % 900)
}

/// A fresh scratch directory for one Envoy (config, log, admin address file).
pub fn scratch_dir(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("cors-e2e-{}-{n}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Writes an Envoy bootstrap as `envoy.json` in `dir` and returns its path.
fn write_config(dir: &Path, config: &Value) -> PathBuf {
    let path = dir.join("envoy.json");
    std::fs::write(&path, serde_json::to_vec_pretty(config).expect("json")).expect("write config");
    path
}
