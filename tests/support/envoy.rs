//! The Envoy side: a bootstrap builder around our filter (the current [`Build`]), the Envoy process (start, wait for
//! `/ready`, reload through the dynamic config, kill on drop) and its admin interface.

use super::{
    envoy_bin, free_port, percent_encode, repo_root, scratch_dir, unique_base_id, write_config,
    Build, Req, Response, Upstream,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

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
    /// Our filter's build; `None`: left out.
    build: Option<Build>,
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
            build: Some(Build::current()),
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

    /// Leaves our filter out (to check the harness itself).
    pub fn without_wasm(mut self) -> Self {
        self.build = None;
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
        if let Some(build) = self.build {
            filters.push(build.filter(&self.policy));
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
        self.start_with_workers(1)
    }

    /// Starts Envoy with this many worker threads (`--concurrency`; 1 everywhere else).
    pub fn start_with_workers(self, workers: u32) -> Envoy {
        let upstream = Upstream::start();
        let config = self.bootstrap(upstream.port, free_port());
        let dir = scratch_dir("envoy");
        let config_path = write_config(&dir, &config);
        Envoy::start_process(&config_path, &dir, Some(upstream), workers)
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

/// A static cluster of one endpoint on 127.0.0.1.
pub fn cluster(name: &str, port: u16) -> Value {
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
        .arg("--base-id")
        .arg(unique_base_id().to_string())
        .args([
            "-l",
            "info",
            "--file-flush-interval-msec",
            "200",
            "--log-path",
        ])
        .arg(dir.join("envoy.log"))
        // Not cargo's library path (target/*/deps): Envoy 1.37, when a module it loads by name
        // refuses to initialise, tries the name again there, and would find a second copy of it.
        .env_remove("LD_LIBRARY_PATH")
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
        .args(["--concurrency", "1"])
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
        .args(["--concurrency", "1"])
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
    /// The build of our filter in it (its counters' prefix).
    pub build: Build,
}

impl Envoy {
    /// Starts Envoy on an existing config file (cwd = repo root) and waits for `/ready`.
    /// The admin port is read from `--admin-address-path`, listener ports from `/listeners`.
    pub fn start_config(config: &Path, dir: &Path, upstream: Option<Upstream>) -> Envoy {
        Envoy::start_process(config, dir, upstream, 1)
    }

    fn start_process(config: &Path, dir: &Path, upstream: Option<Upstream>, workers: u32) -> Envoy {
        let child = envoy_command(config, dir, false)
            .args(["--concurrency", &workers.to_string()])
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
            build: Build::current(),
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
        let mut builder = self
            .dynamic
            .as_ref()
            .expect("update_policy needs start_dynamic")
            .builder
            .clone();
        builder.policy = policy.to_string();
        self.update_listener(builder)
    }

    /// Pushes the listener of another builder through LDS (only for
    /// [`EnvoyBuilder::start_dynamic`]), as [`update_policy`](Self::update_policy) does.
    pub fn update_listener(&self, builder: EnvoyBuilder) -> bool {
        let dynamic = self
            .dynamic
            .as_ref()
            .expect("update_listener needs start_dynamic");
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
        let next = Dynamic {
            builder,
            lds_path: dynamic.lds_path.clone(),
            port: dynamic.port,
            version: Mutex::new(version),
        };
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

    /// Our counters (`cors.*` after the build's prefix: `wasmcustom.cors.*`,
    /// `dynamicmodulescustom.cors.*`), names without that prefix.
    pub fn cors_stats(&self) -> BTreeMap<String, u64> {
        let prefix = self.build.stat_prefix();
        self.stats(&format!("^{}cors\\.", prefix.replace('.', "\\.")))
            .into_iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_string(), v)))
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

    /// Envoy's log once it contains `needle` (Envoy writes it to the file every 200 ms), or as
    /// it is after `within` (the caller asserts on it).
    pub fn log_containing(&self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let log = self.log();
            if log.contains(needle) || Instant::now() > deadline {
                return log;
            }
            thread::sleep(Duration::from_millis(50));
        }
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
