//! Shared harness for the real-Envoy end-to-end tests.
//!
//! - [`Upstream`]: an in-process HTTP/1.1 server that echoes what it received and answers with the
//!   status and extra headers the request's query asks for (`?status=404&h=Vary:Accept-Encoding`).
//! - [`EnvoyBuilder`] / [`Envoy`]: writes a bootstrap (JSON) with our wasm filter, starts
//!   `ENVOY_BIN` on ports chosen by the kernel, waits for `/ready`, kills Envoy on drop.
//! - [`Req`] / [`Response`]: a raw HTTP/1.1 client that sends arbitrary header bytes.
//!
//! A test that cannot run must fail: missing `ENVOY_BIN` / `CORS_WASM` panic with a message
//! saying how to run the suite (`make test`).
#![allow(dead_code)]

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

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
             run them with `make test` (it exports ENVOY_BIN and CORS_WASM)"
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

/// The filter under test (`CORS_WASM`, normally `dist/cors_proxy_wasm.wasm`).
pub fn cors_wasm() -> PathBuf {
    required_file_from_env("CORS_WASM")
}

/// A port that was free a moment ago on 127.0.0.1 (bind port 0, read it, drop the socket).
/// Prefer letting the server bind port 0 itself; this is for configs whose ports are fixed text.
/// `envoy/envoy.yaml` (what `make run` starts) with the built `.wasm` and every port (admin 9901,
/// filter 10000, demo page 10001, example upstream 10002) moved to a free one: the config text and
/// the map from shipped port to the port used.
pub fn shipped_envoy_yaml_on_free_ports() -> (String, BTreeMap<u16, u16>) {
    let text = std::fs::read_to_string(repo_root().join("envoy/envoy.yaml")).expect("envoy.yaml");
    let mut config = text.replace(
        "filename: dist/cors_proxy_wasm.wasm",
        &format!("filename: {}", cors_wasm().display()),
    );
    let shipped = [9901u16, 10000, 10001, 10002];
    let mut ports = BTreeMap::new();
    for (port, new) in shipped.into_iter().zip(free_ports(shipped.len())) {
        let needle = format!("port_value: {port}");
        assert!(config.contains(&needle), "envoy.yaml has no {needle}");
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

// ---------------------------------------------------------------------------------------------
// Upstream
// ---------------------------------------------------------------------------------------------

/// First line of every upstream body; [`Response::echo`] looks for it.
pub const ECHO_MARKER: &str = "upstream-echo";

/// A request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Lower-cased names, raw values, in arrival order.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// In-process HTTP/1.1 upstream: 200 (or `?status=N`) with extra headers from `?h=Name:Value`,
/// body = [`ECHO_MARKER`] line + the request head exactly as received. Lives until the process ends.
pub struct Upstream {
    pub port: u16,
    count: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Recorded>>>,
}

impl Upstream {
    pub fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let port = listener.local_addr().expect("local_addr").port();
        let count = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (c, s) = (count.clone(), seen.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (c, s) = (c.clone(), s.clone());
                thread::spawn(move || serve_connection(stream, &c, &s));
            }
        });
        Upstream { port, count, seen }
    }

    /// How many requests reached the upstream.
    pub fn requests(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Recorded> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

fn serve_connection(stream: TcpStream, count: &AtomicUsize, seen: &Mutex<Vec<Recorded>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    loop {
        // Request head.
        let mut head = Vec::new();
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let end = line == b"\r\n" || line == b"\n";
            head.extend_from_slice(&line);
            if end {
                break;
            }
        }
        let text_lines: Vec<&[u8]> = head
            .split(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.is_empty())
            .collect();
        let Some(request_line) = text_lines.first() else {
            return;
        };
        let request_line = String::from_utf8_lossy(request_line).into_owned();
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let headers: Vec<(String, Vec<u8>)> = text_lines[1..]
            .iter()
            .filter_map(|l| {
                let colon = l.iter().position(|b| *b == b':')?;
                let name = String::from_utf8_lossy(&l[..colon]).to_ascii_lowercase();
                let value = trim_ows(&l[colon + 1..]).to_vec();
                Some((name, value))
            })
            .collect();
        let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());

        // Request body (content-length or chunked); discarded.
        if let Some(len) = find("content-length") {
            let len: usize = String::from_utf8_lossy(&len).trim().parse().unwrap_or(0);
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        } else if find("transfer-encoding").is_some_and(|v| {
            String::from_utf8_lossy(&v)
                .to_ascii_lowercase()
                .contains("chunked")
        }) && read_chunked(&mut reader).is_none()
        {
            return;
        }

        count.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut s) = seen.lock() {
            s.push(Recorded {
                method: method.clone(),
                path: path.clone(),
                headers: headers.clone(),
            });
        }

        // Response.
        let mut status = 200u16;
        let mut extra: Vec<(String, String)> = Vec::new();
        if let Some((_, query)) = path.split_once('?') {
            for pair in query.split('&') {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let v = percent_decode(v);
                match k {
                    "status" => status = v.parse().unwrap_or(200),
                    "h" => {
                        if let Some((n, val)) = v.split_once(':') {
                            extra.push((n.trim().to_string(), val.trim().to_string()));
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut body = format!("{ECHO_MARKER}\n").into_bytes();
        body.extend_from_slice(&head);
        let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
        out.push_str("content-type: text/plain\r\n");
        for (n, v) in &extra {
            let _ = write!(out, "{n}: {v}\r\n");
        }
        let _ = write!(out, "content-length: {}\r\n\r\n", body.len());
        let mut bytes = out.into_bytes();
        if method != "HEAD" {
            bytes.extend_from_slice(&body);
        }
        if writer.write_all(&bytes).is_err() {
            return;
        }
        let close = find("connection")
            .is_some_and(|v| String::from_utf8_lossy(&v).eq_ignore_ascii_case("close"));
        if close {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
    }
}

fn read_chunked(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let size = usize::from_str_radix(line.trim().split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            // Trailers until the empty line.
            loop {
                let mut t = String::new();
                if reader.read_line(&mut t).ok()? == 0 || t.trim().is_empty() {
                    return Some(body);
                }
            }
        }
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk).ok()?;
        body.extend_from_slice(&chunk[..size]);
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

/// Minimal `%XX` / `+` decoding for the upstream's query parameters.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes a value for the upstream's `h=` query parameter.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' | b'/' => {
                (c as char).to_string()
            }
            _ => format!("%{c:02X}"),
        })
        .collect()
}

/// A path that makes the upstream answer with these extra headers: `up_path("/x", &[("Vary", "Accept-Encoding")])`.
pub fn up_path(path: &str, headers: &[(&str, &str)]) -> String {
    let mut p = path.to_string();
    for (i, (n, v)) in headers.iter().enumerate() {
        p.push(if i == 0 && !path.contains('?') {
            '?'
        } else {
            '&'
        });
        let _ = write!(p, "h={}", percent_encode(&format!("{n}:{v}")));
    }
    p
}

/// `Name: value` as (lower-case name, value without surrounding whitespace); `None` without a colon.
fn header_line(line: &[u8]) -> Option<(String, Vec<u8>)> {
    let colon = line.iter().position(|b| *b == b':')?;
    Some((
        String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase(),
        trim_ows(&line[colon + 1..]).to_vec(),
    ))
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(start, |e| e + 1);
    &v[start..end.max(start)]
}

// ---------------------------------------------------------------------------------------------
// Envoy
// ---------------------------------------------------------------------------------------------

/// One route of the generated config.
#[derive(Clone, Debug)]
pub struct Route {
    pub name: String,
    pub prefix: String,
    /// `metadata.filter_metadata.cors.policy`.
    pub policy_meta: Option<String>,
    /// Deny everything with a per-route `envoy.filters.http.rbac` config (the rbac filter runs
    /// after ours): Envoy's own local 403.
    pub rbac_deny: bool,
    /// Route to a cluster with nothing listening: the router's local 503.
    pub dead_upstream: bool,
}

impl Route {
    pub fn new(name: &str, prefix: &str) -> Route {
        Route {
            name: name.into(),
            prefix: prefix.into(),
            policy_meta: None,
            rbac_deny: false,
            dead_upstream: false,
        }
    }
    pub fn policy(mut self, name: &str) -> Route {
        self.policy_meta = Some(name.into());
        self
    }
    pub fn rbac_deny(mut self) -> Route {
        self.rbac_deny = true;
        self
    }
    pub fn dead_upstream(mut self) -> Route {
        self.dead_upstream = true;
        self
    }

    fn to_json(&self) -> Value {
        let cluster = if self.dead_upstream {
            "dead"
        } else {
            "upstream"
        };
        let mut r = json!({
            "name": self.name,
            "match": { "prefix": self.prefix },
            "route": { "cluster": cluster, "timeout": "5s" },
        });
        if let Some(p) = &self.policy_meta {
            r["metadata"] = json!({ "filter_metadata": { "cors": { "policy": p } } });
        }
        if self.rbac_deny {
            r["typed_per_filter_config"] = json!({
                "envoy.filters.http.rbac": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBACPerRoute",
                    "rbac": { "rules": { "action": "DENY", "policies": { "deny-all": {
                        "permissions": [{ "any": true }],
                        "principals": [{ "any": true }]
                    } } } }
                }
            });
        }
        r
    }
}

/// One virtual host of the generated config.
#[derive(Clone, Debug)]
pub struct VHost {
    pub name: String,
    pub domains: Vec<String>,
    pub routes: Vec<Route>,
}

/// Builds the Envoy bootstrap around one policy document.
///
/// Default layout: virtual host `main` (domains `*`) with the routes added by [`route`](Self::route),
/// then a catch-all route `catchall` (prefix `/`); extra virtual hosts from [`vhost`](Self::vhost) come
/// first, so their domains win over `*`.
#[derive(Clone)]
pub struct EnvoyBuilder {
    policy: String,
    routes: Vec<Route>,
    vhosts: Vec<VHost>,
    extra_filters: Vec<Value>,
    wasm: Option<bool>,
    /// Extra fields of the HTTP connection manager config (e.g. `max_request_headers_kb`).
    hcm_options: Vec<(String, Value)>,
}

impl EnvoyBuilder {
    pub fn new(policy: impl Into<String>) -> EnvoyBuilder {
        EnvoyBuilder {
            policy: policy.into(),
            routes: Vec::new(),
            vhosts: Vec::new(),
            extra_filters: Vec::new(),
            wasm: None,
            hcm_options: Vec::new(),
        }
    }

    /// Sets a field of the HTTP connection manager config, e.g.
    /// `.hcm_option("max_request_headers_kb", json!(256))`.
    pub fn hcm_option(mut self, key: &str, value: Value) -> Self {
        self.hcm_options.push((key.to_string(), value));
        self
    }

    /// Adds a route to the `main` virtual host (before the catch-all).
    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// Adds a virtual host (before `main`).
    pub fn vhost(mut self, name: &str, domains: &[&str], routes: Vec<Route>) -> Self {
        self.vhosts.push(VHost {
            name: name.into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            routes,
        });
        self
    }

    /// Adds an HTTP filter after ours (before the router).
    pub fn filter_after(mut self, filter: Value) -> Self {
        self.extra_filters.push(filter);
        self
    }

    /// Leaves the wasm filter out (to check the harness itself).
    pub fn without_wasm(mut self) -> Self {
        self.wasm = Some(false);
        self
    }

    fn bootstrap(&self, upstream_port: u16, dead_port: u16) -> Value {
        json!({
            "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
            "static_resources": {
                "listeners": [self.listener(0)],
                "clusters": [cluster("upstream", upstream_port), cluster("dead", dead_port)]
            }
        })
    }

    /// The listener `main` with the HTTP connection manager, our filter, extra filters, router.
    fn listener(&self, port: u16) -> Value {
        let mut vhosts: Vec<Value> = self
            .vhosts
            .iter()
            .map(|v| {
                json!({
                    "name": v.name,
                    "domains": v.domains,
                    "routes": v.routes.iter().map(Route::to_json).collect::<Vec<_>>(),
                })
            })
            .collect();
        let mut main_routes: Vec<Value> = self.routes.iter().map(Route::to_json).collect();
        main_routes.push(Route::new("catchall", "/").to_json());
        vhosts.push(json!({ "name": "main", "domains": ["*"], "routes": main_routes }));

        let mut filters = Vec::new();
        if self.wasm != Some(false) {
            filters.push(wasm_filter(&cors_wasm(), &self.policy));
        }
        filters.extend(self.extra_filters.iter().cloned());
        let needs_rbac = self.all_routes().any(|r| r.rbac_deny);
        if needs_rbac
            && !self
                .extra_filters
                .iter()
                .any(|f| f["name"] == "envoy.filters.http.rbac")
        {
            // No rules: allows everything unless a route overrides it.
            filters.push(json!({
                "name": "envoy.filters.http.rbac",
                "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC" }
            }));
        }
        filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
        }));

        let mut hcm = json!({
            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": "ingress",
            "delayed_close_timeout": "0s",
            "route_config": { "name": "local", "virtual_hosts": vhosts },
            "http_filters": filters
        });
        for (key, value) in &self.hcm_options {
            hcm[key.as_str()] = value.clone();
        }
        json!({
            "name": "main",
            "address": { "socket_address": { "address": "127.0.0.1", "port_value": port } },
            "filter_chains": [{ "filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": hcm
            }] }]
        })
    }

    fn all_routes(&self) -> impl Iterator<Item = &Route> {
        self.routes
            .iter()
            .chain(self.vhosts.iter().flat_map(|v| v.routes.iter()))
    }

    /// Starts Envoy and waits until it is ready. Panics (with the log) if it does not start.
    pub fn start(self) -> Envoy {
        let upstream = Upstream::start();
        let config = self.bootstrap(upstream.port, free_port());
        let dir = scratch_dir("envoy");
        let config_path = write_config(&dir, &config);
        Envoy::start_config(&config_path, &dir, Some(upstream))
    }

    /// Starts Envoy with the listener delivered by LDS from a watched file, so the policy can be
    /// replaced at run time with [`Envoy::update_policy`] (a rejected update keeps the old one).
    pub fn start_dynamic(self) -> Envoy {
        let upstream = Upstream::start();
        let dir = scratch_dir("envoy-lds");
        let lds_path = dir.join("lds.json");
        let port = free_port();
        let dynamic = Dynamic {
            builder: self,
            lds_path: lds_path.clone(),
            port,
            version: Mutex::new(1),
        };
        dynamic.write_lds(1);
        let config = json!({
            "node": { "id": "cors-e2e", "cluster": "cors-e2e" },
            "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
            "dynamic_resources": { "lds_config": {
                "resource_api_version": "V3",
                "path_config_source": {
                    "path": lds_path.to_string_lossy(),
                    "watched_directory": { "path": dir.to_string_lossy() }
                }
            } },
            "static_resources": {
                "clusters": [cluster("upstream", upstream.port), cluster("dead", free_port())]
            }
        });
        let config_path = write_config(&dir, &config);
        let mut envoy = Envoy::start_config(&config_path, &dir, Some(upstream));
        envoy.dynamic = Some(dynamic);
        envoy
    }

    /// Starts Envoy expecting it to refuse the config: returns the exit status and the log.
    /// Panics if Envoy is still running after 30 s (the config was accepted).
    pub fn start_expect_failure(self) -> (ExitStatus, String) {
        let config = self.bootstrap(free_port(), free_port());
        let dir = scratch_dir("envoy-fail");
        let config_path = write_config(&dir, &config);
        run_expect_failure(&config_path, &dir)
    }

    /// The generated bootstrap, for debugging.
    pub fn config_text(&self) -> String {
        serde_json::to_string_pretty(&self.bootstrap(1, 2)).unwrap_or_default()
    }
}

/// The LDS file of an Envoy started with [`EnvoyBuilder::start_dynamic`].
pub struct Dynamic {
    builder: EnvoyBuilder,
    lds_path: PathBuf,
    port: u16,
    version: Mutex<u64>,
}

impl Dynamic {
    /// Writes the LDS response atomically (write + rename in the watched directory).
    fn write_lds(&self, version: u64) {
        let mut listener = self.builder.listener(self.port);
        listener["@type"] = json!("type.googleapis.com/envoy.config.listener.v3.Listener");
        let response = json!({ "version_info": version.to_string(), "resources": [listener] });
        let tmp = self.lds_path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&response).expect("json"))
            .expect("write lds");
        std::fs::rename(&tmp, &self.lds_path).expect("rename lds");
    }
}

/// The `envoy.filters.http.wasm` entry for our filter with this policy document.
pub fn wasm_filter(wasm: &Path, policy: &str) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": "cors",
                "root_id": "cors",
                "vm_config": {
                    "vm_id": "cors",
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": wasm.to_string_lossy() } }
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": policy
                }
            }
        }
    })
}

fn cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "connect_timeout": "1s",
        "type": "STATIC",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                "socket_address": { "address": "127.0.0.1", "port_value": port }
            } } }] }]
        }
    })
}

fn envoy_command(config: &Path, dir: &Path, mode_validate: bool) -> Command {
    let mut cmd = Command::new(envoy_bin());
    cmd.current_dir(repo_root())
        .arg("-c")
        .arg(config)
        .args(["--concurrency", "1", "--base-id"])
        .arg(unique_base_id().to_string())
        .args([
            "-l",
            "info",
            "--file-flush-interval-msec",
            "200",
            "--log-path",
        ])
        .arg(dir.join("envoy.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("stderr.log")).expect("create stderr.log"),
        ));
    if mode_validate {
        cmd.args(["--mode", "validate"]);
    } else {
        cmd.arg("--admin-address-path").arg(dir.join("admin.txt"));
    }
    kill_with_parent(&mut cmd);
    cmd
}

/// Envoy dies with the test thread that started it even if the test process is killed.
#[cfg(target_os = "linux")]
fn kill_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    extern "C" {
        fn prctl(option: i32, arg2: u64, arg3: u64, arg4: u64, arg5: u64) -> i32;
    }
    const PR_SET_PDEATHSIG: i32 = 1;
    const SIGKILL: u64 = 9;
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn kill_with_parent(_cmd: &mut Command) {}

fn read_logs(dir: &Path) -> String {
    let mut s = std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default();
    let err = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
    if !err.trim().is_empty() {
        s.push_str("\n--- stderr ---\n");
        s.push_str(&err);
    }
    s
}

fn run_expect_failure(config: &Path, dir: &Path) -> (ExitStatus, String) {
    let mut child = envoy_command(config, dir, false)
        .spawn()
        .expect("spawn envoy");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let logs = read_logs(dir);
            let _ = std::fs::remove_dir_all(dir);
            return (status, logs);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "Envoy accepted a config it should refuse; log:\n{}",
                read_logs(dir)
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `envoy --mode validate -c config` from the repo root; returns (success, output).
pub fn validate_config(config: &Path) -> (bool, String) {
    let dir = scratch_dir("validate");
    let status = envoy_command(config, &dir, true)
        .status()
        .expect("run envoy --mode validate");
    let logs = read_logs(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    (status.success(), logs)
}

/// A running Envoy; killed on drop (its log is printed if the test is failing).
pub struct Envoy {
    child: Child,
    /// The listener of the filter chain under test.
    pub port: u16,
    pub admin_port: u16,
    /// Every listener by name -> port.
    pub listeners: BTreeMap<String, u16>,
    pub upstream: Option<Upstream>,
    pub dir: PathBuf,
    /// Set by [`EnvoyBuilder::start_dynamic`].
    pub dynamic: Option<Dynamic>,
}

impl Envoy {
    /// Starts Envoy on an existing config file (cwd = repo root) and waits for `/ready`.
    /// The admin port is read from `--admin-address-path`, listener ports from `/listeners`.
    pub fn start_config(config: &Path, dir: &Path, upstream: Option<Upstream>) -> Envoy {
        let child = envoy_command(config, dir, false)
            .spawn()
            .expect("spawn envoy");
        let mut envoy = Envoy {
            child,
            port: 0,
            admin_port: 0,
            listeners: BTreeMap::new(),
            upstream,
            dir: dir.to_path_buf(),
            dynamic: None,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = envoy.child.try_wait().expect("try_wait") {
                panic!(
                    "Envoy exited at startup ({status}); log:\n{}",
                    read_logs(dir)
                );
            }
            if Instant::now() > deadline {
                panic!("Envoy not ready after 20 s; log:\n{}", read_logs(dir));
            }
            if envoy.admin_port == 0 {
                if let Ok(text) = std::fs::read_to_string(dir.join("admin.txt")) {
                    if let Some(port) = text.trim().rsplit(':').next().and_then(|p| p.parse().ok())
                    {
                        envoy.admin_port = port;
                    }
                }
            }
            if envoy.admin_port != 0 {
                if let Ok(r) = Req::get("/ready").try_send(envoy.admin_port) {
                    if r.status == 200 {
                        break;
                    }
                }
            }
            thread::sleep(Duration::from_millis(50));
        }
        let listeners = envoy.admin_json("/listeners?format=json");
        for l in listeners["listener_statuses"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let name = l["name"].as_str().unwrap_or("").to_string();
            if let Some(port) = l["local_address"]["socket_address"]["port_value"].as_u64() {
                envoy.listeners.insert(name, port as u16);
            }
        }
        envoy.port = envoy
            .listeners
            .get("main")
            .or_else(|| envoy.listeners.values().next())
            .copied()
            .unwrap_or_else(|| panic!("no listener reported by /listeners: {listeners}"));
        envoy
    }

    /// Pushes a new policy through LDS (only for [`EnvoyBuilder::start_dynamic`]) and waits until
    /// Envoy has accepted or rejected it; returns true if the update was accepted.
    pub fn update_policy(&self, policy: &str) -> bool {
        let dynamic = self
            .dynamic
            .as_ref()
            .expect("update_policy needs start_dynamic");
        let counters = |s: &BTreeMap<String, u64>| {
            (
                s.get("listener_manager.lds.update_success")
                    .copied()
                    .unwrap_or(0),
                s.get("listener_manager.lds.update_rejected")
                    .copied()
                    .unwrap_or(0),
            )
        };
        let before = counters(&self.stats(r"^listener_manager\.lds\.update_"));
        let version = {
            let mut v = dynamic.version.lock().expect("version lock");
            *v += 1;
            *v
        };
        let mut next = Dynamic {
            builder: dynamic.builder.clone(),
            lds_path: dynamic.lds_path.clone(),
            port: dynamic.port,
            version: Mutex::new(version),
        };
        next.builder.policy = policy.to_string();
        next.write_lds(version);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = counters(&self.stats(r"^listener_manager\.lds\.update_"));
            if now.0 > before.0 {
                // Accepted: wait until the new filter chain is serving.
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    let warming = self.stats(r"^listener_manager\.total_listeners_warming$");
                    if warming.values().all(|v| *v == 0) {
                        break;
                    }
                    thread::sleep(Duration::from_millis(20));
                }
                return true;
            }
            if now.1 > before.1 {
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "Envoy neither accepted nor rejected LDS version {version}; log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a request to the filter's listener.
    pub fn send(&self, req: &Req) -> Response {
        req.send(self.port)
    }

    /// GET on the admin interface, parsed as JSON.
    pub fn admin_json(&self, path: &str) -> Value {
        let r = Req::get(path).send(self.admin_port);
        assert_eq!(r.status, 200, "admin {path}: {}", r.text());
        serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("admin {path} is not JSON ({e}): {}", r.text()))
    }

    /// Counters whose name matches `filter` (an RE2 regex, e.g. `^wasmcustom\.cors\.`).
    pub fn stats(&self, filter: &str) -> BTreeMap<String, u64> {
        let v = self.admin_json(&format!(
            "/stats?format=json&filter={}",
            percent_encode(filter)
        ));
        let mut out = BTreeMap::new();
        for s in v["stats"].as_array().cloned().unwrap_or_default() {
            if let (Some(name), Some(value)) = (s["name"].as_str(), s["value"].as_u64()) {
                out.insert(name.to_string(), value);
            }
        }
        out
    }

    /// Our counters (`wasmcustom.cors.*`), names without the `wasmcustom.` prefix.
    pub fn cors_stats(&self) -> BTreeMap<String, u64> {
        self.stats(r"^wasmcustom\.cors\.")
            .into_iter()
            .map(|(k, v)| (k.trim_start_matches("wasmcustom.").to_string(), v))
            .collect()
    }

    /// Polls our counters until those named in `expected` have exactly these values, or until
    /// `within` has passed; returns the last reading (the caller asserts on it).
    pub fn wait_cors_stats(
        &self,
        expected: &[(&str, u64)],
        within: Duration,
    ) -> BTreeMap<String, u64> {
        let deadline = Instant::now() + within;
        loop {
            let stats = self.cors_stats();
            let ok = expected
                .iter()
                .all(|(n, v)| stats.get(*n).copied().unwrap_or(0) == *v);
            if ok || Instant::now() > deadline {
                return stats;
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Envoy's log so far.
    pub fn log(&self) -> String {
        read_logs(&self.dir)
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        if thread::panicking() {
            // Graceful stop so Envoy flushes its log, then show the tail.
            terminate(&mut self.child, Duration::from_secs(2));
            let log = read_logs(&self.dir);
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- Envoy log tail ({}) ---", self.dir.display());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        } else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// SIGTERM, then SIGKILL if the process is still running after `grace`.
fn terminate(child: &mut Child, grace: Duration) {
    #[cfg(unix)]
    {
        extern "C" {
            fn kill(pid: i32, sig: i32) -> i32;
        }
        const SIGTERM: i32 = 15;
        // SAFETY: signals our own child, which has not been reaped yet.
        unsafe {
            kill(child.id() as i32, SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

// ---------------------------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------------------------

/// A raw HTTP/1.1 request: header names and values are bytes, sent exactly as given.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub host: String,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn new(method: &str, path: &str) -> Req {
        Req {
            method: method.into(),
            path: path.into(),
            host: "localhost".into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    pub fn get(path: &str) -> Req {
        Req::new("GET", path)
    }
    /// `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
    pub fn preflight(path: &str, origin: &str, method: &str) -> Req {
        Req::new("OPTIONS", path)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", method)
    }
    pub fn host(mut self, host: &str) -> Req {
        self.host = host.into();
        self
    }
    pub fn origin(self, origin: &str) -> Req {
        self.header("Origin", origin)
    }
    /// `Access-Control-Request-Headers`.
    pub fn acrh(self, value: &str) -> Req {
        self.header("Access-Control-Request-Headers", value)
    }
    pub fn header(self, name: &str, value: &str) -> Req {
        self.raw_header(name.as_bytes(), value.as_bytes())
    }
    pub fn raw_header(mut self, name: &[u8], value: &[u8]) -> Req {
        self.headers.push((name.to_vec(), value.to_vec()));
        self
    }
    pub fn body(mut self, body: &[u8]) -> Req {
        self.body = body.to_vec();
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\n",
            self.method, self.path, self.host
        )
        .into_bytes();
        for (n, v) in &self.headers {
            out.extend_from_slice(n);
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        if !self.body.is_empty() || self.method == "POST" || self.method == "PUT" {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// Sends on a fresh connection to 127.0.0.1:port; panics on I/O or parse errors.
    pub fn send(&self, port: u16) -> Response {
        self.try_send(port)
            .unwrap_or_else(|e| panic!("{} {} to port {port}: {e}", self.method, self.path))
    }

    pub fn try_send(&self, port: u16) -> Result<Response, String> {
        send_raw(port, &self.to_bytes(), self.method == "HEAD")
    }
}

/// Sends these exact bytes (a whole request, e.g. with a non-UTF-8 request line or `Host`) on a
/// fresh connection to 127.0.0.1:port and reads the response until the server closes.
pub fn send_raw(port: u16, request: &[u8], head_request: bool) -> Result<Response, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(request).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("reading response: {e}"))?;
    Response::parse(&raw, head_request)
}

/// A parsed response: header names lower-cased, values as raw bytes, in order.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn parse(raw: &[u8], head_request: bool) -> Result<Response, String> {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("no end of headers in {:?}", String::from_utf8_lossy(raw)))?;
        let head = &raw[..split];
        let rest = &raw[split + 4..];
        let mut lines = head
            .split(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let status_line = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let headers: Vec<(String, Vec<u8>)> = lines.filter_map(header_line).collect();
        let mut r = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if head_request {
            return Ok(r);
        }
        let chunked = r
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        r.body = if chunked {
            read_chunked(&mut BufReader::new(rest)).ok_or("bad chunked body")?
        } else if let Some(len) = r
            .header("content-length")
            .and_then(|l| l.parse::<usize>().ok())
        {
            rest[..len.min(rest.len())].to_vec()
        } else {
            rest.to_vec()
        };
        Ok(r)
    }

    /// The first value of a header (lossy UTF-8).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers_all(name).into_iter().next()
    }

    /// Every value of a header, in order.
    pub fn headers_all(&self, name: &str) -> Vec<String> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// The header's single value; panics if it appears more than once.
    pub fn one(&self, name: &str) -> Option<String> {
        let all = self.headers_all(name);
        assert!(
            all.len() <= 1,
            "{name} appears {} times: {all:?}\n{self}",
            all.len()
        );
        all.into_iter().next()
    }

    /// Every `access-control-*` header (name, value).
    pub fn cors_headers(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter(|(n, _)| n.starts_with("access-control-"))
            .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect()
    }

    #[track_caller]
    pub fn assert_no_cors(&self) {
        assert!(
            self.cors_headers().is_empty(),
            "expected no access-control-* headers:\n{self}"
        );
    }

    #[track_caller]
    pub fn assert_no_allow(&self) {
        let allow: Vec<_> = self
            .cors_headers()
            .into_iter()
            .filter(|(n, _)| n.starts_with("access-control-allow-"))
            .collect();
        assert!(
            allow.is_empty(),
            "expected no access-control-allow-* headers:\n{self}"
        );
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) {
        assert_eq!(self.status, status, "unexpected status:\n{self}");
    }

    /// `Some(value)` assertion helper: the header is present exactly once with this value.
    #[track_caller]
    pub fn assert_header(&self, name: &str, value: &str) {
        assert_eq!(
            self.one(name).as_deref(),
            Some(value),
            "header {name}:\n{self}"
        );
    }

    #[track_caller]
    pub fn assert_absent(&self, name: &str) {
        assert!(
            self.header(name).is_none(),
            "header {name} should be absent:\n{self}"
        );
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Did the upstream answer (its echo body is present)?
    pub fn is_upstream_answer(&self) -> bool {
        self.body.starts_with(ECHO_MARKER.as_bytes())
    }

    /// The request as the upstream received it, parsed from the echo body.
    pub fn echo(&self) -> Option<Recorded> {
        let rest = self
            .body
            .strip_prefix(format!("{ECHO_MARKER}\n").as_bytes())?;
        let mut lines = rest
            .split(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.is_empty());
        let request_line = String::from_utf8_lossy(lines.next()?).into_owned();
        let mut parts = request_line.split(' ');
        let method = parts.next()?.to_string();
        let path = parts.next()?.to_string();
        let headers = lines.filter_map(header_line).collect();
        Some(Recorded {
            method,
            path,
            headers,
        })
    }
}

impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "HTTP {}", self.status)?;
        for (n, v) in &self.headers {
            writeln!(f, "{n}: {}", String::from_utf8_lossy(v))?;
        }
        let body = self.text();
        let body: String = body.chars().take(600).collect();
        write!(f, "\n{body}")
    }
}
