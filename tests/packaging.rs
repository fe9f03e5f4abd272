//! What ships under `envoy/` for operators, checked the way an operator would use it.
//!
//! - The per-route Envoy examples run in the real Envoy (ports rewritten to 0) and give each route
//!   the documented policy; `cors-policy explain` predicts exactly the same status and headers.
//! - Every policy embedded in an Envoy YAML under `envoy/`, and every Istio `pluginConfig`, passes
//!   the JSON Schema and the engine; the CLI's `check` accepts every `pluginConfig`.
//! - The Istio `WasmPlugin` runs in phase AUTHN and its `route` rules name routes the
//!   `VirtualService` defines (Istio route names: `http[].name` plus `.<match name>`).
//! - The Envoy Gateway example's `EnvoyExtensionPolicy` uses the module its `EnvoyProxy` registers.
//! - `docker-compose config` accepts `envoy/docker-compose.yaml`: official image, no host networking,
//!   read-only long-syntax mounts; its Envoy configs are `envoy/envoy.yaml` split into two services.
//!
//! `envoy --mode validate` of every Envoy config under `envoy/` (it runs the filter's
//! `on_configure`, so a bad embedded policy fails it) is `e2e_envoy::shipped_envoy_configs_validate`.
//! - The dynamic module imports exactly the callbacks the end-to-end suite exercises, all of which
//!   the Envoy binary exports, and exports exactly the hooks that Envoy looks up.
//!
//! Needs `ENVOY_BIN`, `CORS_WASM`, `CORS_NATIVE` and `CORS_POLICY` (`make e2e`); fails loudly without them.

mod fixtures;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize as _;
use serde_json::Value;
use support::*;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every YAML document of a file.
fn yaml_documents(path: &Path) -> Vec<Value> {
    serde_norway::Deserializer::from_str(&read(path))
        .map(|doc| {
            Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: YAML: {e}", path.display()))
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The policy documents embedded in an Envoy config: every `envoy.filters.http.wasm` filter's
/// `configuration.value`.
fn embedded_policies(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            // The proxy-wasm filter's plugin configuration, the dynamic module's filter config.
            let at = match map.get("name").and_then(Value::as_str) {
                Some("envoy.filters.http.wasm") => "/typed_config/config/configuration/value",
                Some("envoy.filters.http.dynamic_modules") => "/typed_config/filter_config/value",
                _ => "",
            };
            if let Some(policy) = value.pointer(at).filter(|_| !at.is_empty()) {
                if let Some(policy) = policy.as_str() {
                    out.push(policy.to_owned());
                }
            }
            map.values().for_each(|v| embedded_policies(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| embedded_policies(v, out)),
        _ => {}
    }
}

fn schema_validator() -> jsonschema::Validator {
    let schema: Value =
        serde_json::from_str(&read(&repo_root().join("schema/policy.schema.json"))).expect("JSON");
    jsonschema::draft202012::new(&schema).expect("the schema compiles")
}

fn assert_policy_valid(validator: &jsonschema::Validator, what: &str, policy: &Value) {
    let errors: Vec<String> = validator
        .iter_errors(policy)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what}: schema: {errors:#?}");
    let text = serde_json::to_string(policy).expect("serialise");
    if let Err(rejected) = cors_engine::policy::load(&text) {
        panic!("{what}: engine: {:#?}", rejected.errors);
    }
}

#[test]
fn every_shipped_policy_passes_the_schema_and_the_engine() {
    let validator = schema_validator();
    let mut envoy_policies = 0;
    let mut istio_policies = 0;
    let mut gateway_policies = 0;
    for path in yaml_files(&repo_root().join("envoy")) {
        for doc in yaml_documents(&path) {
            if doc.get("static_resources").is_some() {
                let mut found = Vec::new();
                embedded_policies(&doc, &mut found);
                for text in found {
                    let policy: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
                        panic!("{}: embedded policy is not JSON: {e}", path.display())
                    });
                    assert_policy_valid(&validator, &path.display().to_string(), &policy);
                    envoy_policies += 1;
                }
            }
            if doc["kind"] == "WasmPlugin" {
                assert_policy_valid(
                    &validator,
                    &path.display().to_string(),
                    &doc["spec"]["pluginConfig"],
                );
                istio_policies += 1;
            }
            if doc["kind"] == "EnvoyExtensionPolicy" {
                for module in doc["spec"]["dynamicModule"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    assert_policy_valid(&validator, &path.display().to_string(), &module["config"]);
                    gateway_policies += 1;
                }
            }
        }
    }
    // envoy.yaml, dynamic-module/envoy.yaml, per-route/route-metadata.yaml,
    // per-route/route-rules.yaml; istio/wasmplugin.yaml; envoy-gateway/envoyextensionpolicy.yaml.
    assert!(envoy_policies >= 4, "found {envoy_policies} Envoy policies");
    assert!(istio_policies >= 1, "found {istio_policies} WasmPlugins");
    assert!(
        gateway_policies >= 1,
        "found {gateway_policies} EnvoyExtensionPolicy modules"
    );
}

/// The Envoy Gateway example: every module an `EnvoyExtensionPolicy` names is registered by the
/// `EnvoyProxy` (which loads `libcors_proxy.so` by absolute path, on a pinned Envoy 1.40 image),
/// with the filter name the module answers to.
#[test]
fn envoy_gateway_policy_uses_the_module_the_proxy_registers() {
    let dir = repo_root().join("envoy/envoy-gateway");
    let docs: Vec<Value> = yaml_files(&dir)
        .iter()
        .flat_map(|p| yaml_documents(p))
        .collect();
    let proxy = docs
        .iter()
        .find(|d| d["kind"] == "EnvoyProxy")
        .expect("an EnvoyProxy");
    let image = proxy["spec"]["provider"]["kubernetes"]["envoyDeployment"]["container"]["image"]
        .as_str()
        .unwrap_or_default();
    assert!(image.ends_with("v1.40.0"), "proxy image {image:?}");
    let registered: Vec<&str> = proxy["spec"]["dynamicModules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| {
            m["source"]["local"]["path"]
                .as_str()
                .is_some_and(|p| p.starts_with('/') && p.ends_with("/libcors_proxy.so"))
        })
        .filter_map(|m| m["name"].as_str())
        .collect();
    let mut used = 0;
    for policy in docs.iter().filter(|d| d["kind"] == "EnvoyExtensionPolicy") {
        for module in policy["spec"]["dynamicModule"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let name = module["name"].as_str().unwrap_or_default();
            assert!(registered.contains(&name), "{name:?} not in {registered:?}");
            assert_eq!(module["filterName"], "cors");
            used += 1;
        }
    }
    assert!(used >= 1, "no EnvoyExtensionPolicy uses the module");
}

#[test]
fn cli_check_accepts_every_istio_plugin_config() {
    let mut checked = Vec::new();
    for path in yaml_files(&repo_root().join("envoy/istio")) {
        if !yaml_documents(&path)
            .iter()
            .any(|d| d["kind"] == "WasmPlugin")
        {
            continue;
        }
        let relative = path
            .strip_prefix(repo_root())
            .expect("under the repo")
            .to_path_buf();
        let out = Command::new(cors_policy())
            .current_dir(repo_root())
            .arg("check")
            .arg(&relative)
            .output()
            .expect("run cors-policy");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "cors-policy check {}:\n{stdout}{}",
            relative.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        checked.push(stdout.into_owned());
    }
    assert_eq!(
        checked,
        [
            "OK: envoy/istio/sidecar-inbound.yaml: WasmPlugin shop/cors-reviews: 1 policy (reviews-ui), 1 rule\n",
            "OK: envoy/istio/wasmplugin.yaml: WasmPlugin istio-system/cors: 3 policies (default, partner, public), 4 rules\n",
            "OK: envoy/istio/waypoint.yaml: WasmPlugin shop/cors-waypoint: 2 policies (default, reviews-ui), 1 rule\n",
        ]
    );
}

#[test]
fn istio_wasmplugin_runs_in_authn_and_names_virtualservice_routes() {
    let dir = repo_root().join("envoy/istio");
    let plugin = yaml_documents(&dir.join("wasmplugin.yaml"))
        .into_iter()
        .find(|d| d["kind"] == "WasmPlugin")
        .expect("a WasmPlugin");
    let service = yaml_documents(&dir.join("virtualservice.yaml"))
        .into_iter()
        .find(|d| d["kind"] == "VirtualService")
        .expect("a VirtualService");
    assert_eq!(plugin["apiVersion"], "extensions.istio.io/v1alpha1");
    assert_eq!(plugin["spec"]["phase"], "AUTHN");
    assert_eq!(plugin["spec"]["type"], "HTTP");
    assert!(
        plugin["spec"]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("oci://")),
        "url: {}",
        plugin["spec"]["url"]
    );
    let routes = fixtures::istio_route_names(&service);
    assert_eq!(
        routes.iter().map(String::as_str).collect::<Vec<_>>(),
        ["assets", "internal", "partner-api", "partner-api.v1", "web"]
    );
    let named: Vec<&str> = plugin["spec"]["pluginConfig"]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["match"]["route"].as_str())
        .collect();
    assert_eq!(
        named,
        ["partner-api.v1", "partner-api", "assets", "internal"]
    );
    for name in named {
        assert!(
            routes.contains(name),
            "rule names route {name:?}, not in {routes:?}"
        );
    }
}

/// `config` of envoy/docker-compose.yaml by the Compose tool installed (docker-compose v1, else the
/// `docker compose` plugin), with none of the file's variables set.
fn compose_config() -> Value {
    let file = "envoy/docker-compose.yaml";
    let run = |program: &str, args: &[&str]| {
        let mut cmd = Command::new(program);
        cmd.current_dir(repo_root()).args(args);
        cmd.args(["-f", file, "--profile", "test", "config"]);
        for var in [
            "ENVOY_IMAGE",
            "RUNNER_IMAGE",
            "CORS_API_PORT",
            "CORS_DEMO_PORT",
            "CORS_ADMIN_PORT",
        ] {
            cmd.env_remove(var);
        }
        cmd.output()
    };
    let out = match run("docker-compose", &[]) {
        Ok(out) => out,
        Err(e) => run("docker", &["compose"]).unwrap_or_else(|_| {
            panic!(
                "docker-compose is not installed ({e}): this test checks {file} with \
                 `docker-compose config`; install it (Debian: apt-get install docker-compose)"
            )
        }),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "compose config failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_norway::from_str(&stdout).expect("compose config is YAML")
}

/// A published port as `host_ip:published:target` (v1 prints strings, v2 objects).
fn published_port(port: &Value) -> String {
    match port.as_str() {
        Some(s) => s.trim_end_matches("/tcp").to_owned(),
        None => format!(
            "{}:{}:{}",
            port["host_ip"].as_str().unwrap_or(""),
            port["published"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| port["published"].to_string()),
            port["target"]
        ),
    }
}

/// The compose file a user runs: the official Envoy 1.40 image for the filter and the upstream,
/// a bridge network (no host networking), every file mounted read-only with the long syntax at its
/// repository path under /cors (the configs name files relative to /cors), envoy's three ports
/// published on the host's 127.0.0.1, and the runner only in the "test" profile.
#[test]
fn docker_compose_file_runs_the_compose_configs_on_the_official_image() {
    let raw = yaml_documents(&repo_root().join("envoy/docker-compose.yaml"));
    assert_eq!(raw.len(), 1);
    assert!(
        raw[0].get("version").is_none(),
        "`version:` is obsolete in Compose v2"
    );
    let config = compose_config();
    let services = config["services"].as_object().expect("services");
    assert_eq!(
        services.keys().map(String::as_str).collect::<Vec<_>>(),
        ["envoy", "runner", "upstream"]
    );
    let root = repo_root();
    let mut mounted = BTreeSet::new();
    for (name, service) in services {
        assert!(service.get("network_mode").is_none(), "{name}: {service}");
        let volumes = service["volumes"].as_array().expect("volumes");
        for v in volumes {
            assert_eq!(
                v["type"], "bind",
                "{name}: long syntax bind mounts only: {v}"
            );
            assert_eq!(v["read_only"], true, "{name}: {v}");
            let source = PathBuf::from(v["source"].as_str().expect("source"));
            let relative = source.strip_prefix(&root).unwrap_or_else(|_| {
                panic!("{name}: {} is outside the repository", source.display())
            });
            assert_eq!(
                v["target"].as_str().expect("target"),
                format!("/cors/{}", relative.display()),
                "{name}"
            );
            mounted.insert((name.clone(), relative.display().to_string()));
        }
    }
    let expected: BTreeSet<(String, String)> = [
        ("envoy", "envoy/compose/envoy.yaml"),
        ("envoy", "dist/cors_proxy_wasm.wasm"),
        ("envoy", "examples/demo.html"),
        ("upstream", "envoy/compose/upstream.yaml"),
        ("upstream", "envoy/echo.lua"),
        ("runner", "envoy/compose/runner.py"),
    ]
    .into_iter()
    .map(|(s, p)| (s.to_owned(), p.to_owned()))
    .collect();
    assert_eq!(mounted, expected);

    for name in ["envoy", "upstream"] {
        let service = &services[name];
        assert_eq!(service["image"], "envoyproxy/envoy:v1.40-latest", "{name}");
        assert_eq!(service["working_dir"], "/cors", "{name}");
        assert_eq!(service["command"][0], "envoy", "{name}");
        assert_eq!(
            service["command"][2],
            format!("/cors/envoy/compose/{}.yaml", name),
            "{name}"
        );
    }
    let ports: Vec<String> = services["envoy"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(published_port)
        .collect();
    assert_eq!(
        ports,
        [
            "127.0.0.1:10000:10000",
            "127.0.0.1:10001:10001",
            "127.0.0.1:9901:9901"
        ]
    );
    assert_eq!(services["runner"]["profiles"], serde_json::json!(["test"]));
    assert_eq!(
        services["runner"]["command"][1],
        "/cors/envoy/compose/runner.py"
    );
}

fn listener<'a>(config: &'a Value, name: &str) -> &'a Value {
    config["static_resources"]["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .find(|l| l["name"] == name)
        .unwrap_or_else(|| panic!("no listener {name}"))
}

/// The compose configs are `make run`'s envoy/envoy.yaml split in two: the `envoy` service has the
/// same filter and demo listeners (so the same policy, routes and filters) on 0.0.0.0, and reaches
/// the upstream by its service name; the `upstream` service runs the same example upstream.
#[test]
fn compose_envoy_configs_match_make_run() {
    let dir = repo_root().join("envoy");
    let run = &yaml_documents(&dir.join("envoy.yaml"))[0];
    let envoy = &yaml_documents(&dir.join("compose/envoy.yaml"))[0];
    let upstream = &yaml_documents(&dir.join("compose/upstream.yaml"))[0];
    let address = |v: &Value| {
        let a = &v["address"]["socket_address"];
        format!(
            "{}:{}",
            a["address"].as_str().unwrap_or(""),
            a["port_value"]
        )
    };
    for name in ["cors", "demo"] {
        assert_eq!(
            listener(envoy, name)["filter_chains"],
            listener(run, name)["filter_chains"],
            "listener {name}"
        );
        assert_eq!(
            address(listener(envoy, name)),
            address(listener(run, name)).replace("127.0.0.1", "0.0.0.0")
        );
    }
    assert_eq!(address(&envoy["admin"]), "0.0.0.0:9901");
    assert_eq!(
        envoy["static_resources"]["listeners"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    let cluster = &envoy["static_resources"]["clusters"][0];
    assert_eq!(cluster["name"], "example_upstream");
    assert_eq!(cluster["type"], "STRICT_DNS");
    assert_eq!(
        address(&cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]),
        "upstream:8080"
    );
    assert_eq!(
        listener(upstream, "example_upstream")["filter_chains"],
        listener(run, "example_upstream")["filter_chains"]
    );
    assert_eq!(
        address(listener(upstream, "example_upstream")),
        "0.0.0.0:8080"
    );
}

// ------------------------------------------------------------------------------------------------
// Per-route examples in the real Envoy, against `cors-policy explain`
// ------------------------------------------------------------------------------------------------

/// One request to a per-route example, the route facts `explain` needs, and the exact status and
/// CORS headers (`access-control-*`, `vary`, `cors-deny-reason`) expected.
struct Case {
    req: Req,
    /// `explain` arguments describing the route (as Envoy sees it).
    facts: &'static [&'static str],
    status: u16,
    headers: &'static [(&'static str, &'static str)],
}

const PREFLIGHT_VARY: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

fn cors_view(r: &Response) -> Vec<(String, String)> {
    r.headers
        .iter()
        .filter(|(n, _)| n.starts_with("access-control-") || n == "vary" || n == "cors-deny-reason")
        .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect()
}

/// `cors-policy explain` for this request: (status, CORS headers) it predicts.
fn explain(policy_file: &Path, case: &Case) -> (Option<u16>, Vec<(String, String)>) {
    let req = &case.req;
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let mut cmd = Command::new(cors_policy());
    cmd.arg("explain").arg(policy_file);
    if let Some(origin) = header("origin") {
        cmd.args(["--origin", &origin]);
    }
    let preflight = req.method == "OPTIONS" && header("access-control-request-method").is_some();
    if preflight {
        cmd.arg("--preflight");
        cmd.args([
            "--method",
            &header("access-control-request-method").unwrap_or_default(),
        ]);
        if let Some(acrh) = header("access-control-request-headers") {
            for name in acrh.split(',') {
                cmd.args(["--header", name.trim()]);
            }
        }
    } else {
        cmd.args(["--method", &req.method]);
    }
    cmd.args(["--host", &req.host, "--path", &req.path]);
    cmd.args(case.facts);
    let out = cmd.output().expect("run cors-policy explain");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "explain: {stdout}");
    let mut status = None;
    let mut headers = Vec::new();
    let mut in_headers = false;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("response: ") {
            status = rest.split(' ').next().and_then(|s| s.parse().ok());
            in_headers = status.is_some();
        } else if line.starts_with("response headers") {
            in_headers = true;
        } else if let Some(header) = line.strip_prefix("  ").filter(|_| in_headers) {
            if let Some((name, value)) = header.split_once(": ") {
                if name.starts_with("access-control-")
                    || name == "vary"
                    || name == "cors-deny-reason"
                {
                    headers.push((name.to_owned(), value.to_owned()));
                }
            }
        } else {
            in_headers = false;
        }
    }
    (status, headers)
}

/// The Envoy binary, the built filter, and the filter where the shipped configs name it
/// (`dist/`, relative to the repo root): fails loudly when any is missing.
fn require_shipped_wasm() {
    let _ = envoy_bin();
    let _ = cors_wasm();
    let dist = repo_root().join("dist/cors_proxy_wasm.wasm");
    assert!(
        dist.is_file(),
        "{} is missing: run `make build`",
        dist.display()
    );
}

fn run_per_route_example(file: &str, cases: &[Case]) {
    require_shipped_wasm();

    let text = read(&repo_root().join(file));
    assert!(text.contains("port_value: 10000") && text.contains("port_value: 9901"));
    let dir = scratch_dir("per-route");
    let config = dir.join("envoy.yaml");
    std::fs::write(
        &config,
        text.replace("port_value: 10000", "port_value: 0")
            .replace("port_value: 9901", "port_value: 0"),
    )
    .expect("write config");
    let mut policies = Vec::new();
    for doc in yaml_documents(&repo_root().join(file)) {
        embedded_policies(&doc, &mut policies);
    }
    let [policy] = policies.as_slice() else {
        panic!(
            "{file}: expected one embedded policy, found {}",
            policies.len()
        );
    };
    let policy_file = dir.join("policy.json");
    std::fs::write(&policy_file, policy).expect("write policy");

    let envoy = Envoy::start_config(&config, &dir, None);
    let port = envoy.listeners["cors"];
    for case in cases {
        let what = format!(
            "{file}: {} {} (host {})",
            case.req.method, case.req.path, case.req.host
        );
        let response = case.req.send(port);
        let expected: Vec<(String, String)> = case
            .headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(response.status, case.status, "{what}: status\n{response}");
        assert_eq!(
            cors_view(&response),
            expected,
            "{what}: headers\n{response}"
        );
        let (status, headers) = explain(&policy_file, case);
        // A preflight gets a local reply whose status explain prints; an actual request keeps
        // the upstream's status ("response: forwarded upstream ...").
        let local_reply = case.req.method == "OPTIONS";
        assert_eq!(
            status,
            local_reply.then_some(case.status),
            "{what}: explain status"
        );
        assert_eq!(headers, expected, "{what}: explain headers");
    }
}

#[test]
fn per_route_example_route_metadata() {
    run_per_route_example(
        "envoy/per-route/route-metadata.yaml",
        &[
            Case {
                req: Req::preflight("/partner/orders", "https://shop.partner.example", "PUT"),
                facts: &["--route", "partner-api", "--metadata-policy", "partner"],
                status: 204,
                headers: &[
                    (
                        "access-control-allow-origin",
                        "https://shop.partner.example",
                    ),
                    ("access-control-allow-credentials", "true"),
                    ("access-control-allow-methods", "GET, PUT"),
                    ("vary", PREFLIGHT_VARY),
                ],
            },
            Case {
                req: Req::preflight("/partner/orders", "https://evil.example", "PUT"),
                facts: &["--route", "partner-api", "--metadata-policy", "partner"],
                status: 403,
                headers: &[("vary", PREFLIGHT_VARY), ("cors-deny-reason", "origin")],
            },
            Case {
                req: Req::get("/assets/logo.svg").origin("https://anyone.example"),
                facts: &["--route", "assets", "--metadata-policy", "public"],
                status: 200,
                headers: &[("access-control-allow-origin", "*")],
            },
            Case {
                req: Req::get("/healthz").origin("https://app.example.com"),
                facts: &["--route", "health", "--metadata-policy", "off"],
                status: 200,
                headers: &[],
            },
            Case {
                req: Req::get("/api/items").origin("https://app.example.com"),
                facts: &["--route", "api"],
                status: 200,
                headers: &[
                    ("access-control-allow-origin", "https://app.example.com"),
                    ("access-control-allow-credentials", "true"),
                    ("vary", "Origin"),
                ],
            },
            Case {
                req: Req::preflight("/api/items", "https://app.example.com", "DELETE")
                    .acrh("Content-Type"),
                facts: &["--route", "api"],
                status: 204,
                headers: &[
                    ("access-control-allow-origin", "https://app.example.com"),
                    ("access-control-allow-credentials", "true"),
                    ("access-control-allow-methods", "GET, PUT, DELETE"),
                    ("access-control-allow-headers", "content-type"),
                    ("access-control-max-age", "600"),
                    ("vary", PREFLIGHT_VARY),
                ],
            },
        ],
    );
}

#[test]
fn per_route_example_route_rules() {
    run_per_route_example(
        "envoy/per-route/route-rules.yaml",
        &[
            Case {
                req: Req::get("/v1/orders")
                    .host("api.example.com")
                    .origin("https://shop.partner.example"),
                facts: &["--route", "partner-api", "--vhost", "api"],
                status: 200,
                headers: &[
                    (
                        "access-control-allow-origin",
                        "https://shop.partner.example",
                    ),
                    ("access-control-allow-credentials", "true"),
                    ("vary", "Origin"),
                ],
            },
            Case {
                req: Req::preflight("/v1/orders", "https://shop.partner.example", "POST")
                    .host("api.example.com")
                    .acrh("authorization, content-type"),
                facts: &["--route", "partner-api", "--vhost", "api"],
                status: 204,
                headers: &[
                    (
                        "access-control-allow-origin",
                        "https://shop.partner.example",
                    ),
                    ("access-control-allow-credentials", "true"),
                    ("access-control-allow-methods", "GET, POST, PUT"),
                    (
                        "access-control-allow-headers",
                        "content-type, authorization",
                    ),
                    ("access-control-max-age", "600"),
                    ("vary", PREFLIGHT_VARY),
                ],
            },
            Case {
                req: Req::get("/logo.svg")
                    .host("static.example.com")
                    .origin("https://anyone.example"),
                facts: &["--route", "static-files", "--vhost", "static"],
                status: 200,
                headers: &[("access-control-allow-origin", "*")],
            },
            Case {
                req: Req::get("/internal/metrics")
                    .host("admin.corp.example")
                    .origin("https://app.example.com"),
                facts: &["--route", "internal", "--vhost", "api"],
                status: 200,
                headers: &[],
            },
            Case {
                req: Req::get("/internal/metrics")
                    .host("www.example.com")
                    .origin("https://app.example.com"),
                facts: &["--route", "internal", "--vhost", "api"],
                status: 200,
                headers: &[
                    ("access-control-allow-origin", "https://app.example.com"),
                    ("vary", "Origin"),
                ],
            },
            Case {
                req: Req::preflight("/", "https://shop.partner.example", "GET")
                    .host("www.example.com"),
                facts: &["--route", "web", "--vhost", "api"],
                status: 403,
                headers: &[("vary", PREFLIGHT_VARY)],
            },
        ],
    );
}

// ------------------------------------------------------------------------------------------------
// OCI image (`make oci`)
// ------------------------------------------------------------------------------------------------

fn sha256_hex(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum (coreutils) is required");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split(' ')
        .next()
        .expect("digest")
        .to_owned()
}

/// Checks one descriptor against its blob; returns the blob's path.
fn check_descriptor(layout: &Path, descriptor: &Value, media_type: &str) -> PathBuf {
    assert_eq!(descriptor["mediaType"], media_type, "{descriptor}");
    let digest = descriptor["digest"].as_str().expect("digest");
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let blob = layout.join("blobs/sha256").join(hex);
    assert!(blob.is_file(), "missing blob {}", blob.display());
    assert_eq!(sha256_hex(&blob), hex, "digest of {}", blob.display());
    let size = std::fs::metadata(&blob).expect("blob").len();
    assert_eq!(descriptor["size"].as_u64(), Some(size), "size of {digest}");
    blob
}

fn json_file(path: &Path) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn run_oci_script(wasm: &Path, out: &Path, tag: &str) -> String {
    let run = Command::new("sh")
        .current_dir(repo_root())
        .arg("scripts/oci.sh")
        .arg(wasm)
        .arg(out)
        .arg(tag)
        .output()
        .expect("run scripts/oci.sh");
    assert!(
        run.status.success(),
        "scripts/oci.sh failed:\n{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    String::from_utf8_lossy(&run.stdout).into_owned()
}

/// The layout Istio pulls: compat variant (one tar+gzip layer holding plugin.wasm), every
/// descriptor's digest and size matching its blob, plugin.wasm identical to the input, and the
/// whole layout reproducible byte for byte.
#[test]
fn oci_layout_has_matching_digests_sizes_and_the_module() {
    let dir = scratch_dir("oci");
    // A stand-in module: the script needs only the wasm magic; its bytes must round-trip exactly.
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    module.extend((0..70_000u32).map(|i| (i * 7 % 251) as u8));
    let wasm = dir.join("filter.wasm");
    std::fs::write(&wasm, &module).expect("write module");
    let layout = dir.join("oci");
    let printed = run_oci_script(&wasm, &layout, "1.2.3");

    assert_eq!(
        read(&layout.join("oci-layout")),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    let index = json_file(&layout.join("index.json"));
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 1);
    assert_eq!(
        manifests[0]["annotations"]["org.opencontainers.image.ref.name"],
        "1.2.3"
    );
    let manifest_blob = check_descriptor(
        &layout,
        &manifests[0],
        "application/vnd.oci.image.manifest.v1+json",
    );
    let manifest = json_file(&manifest_blob);
    assert_eq!(manifest["schemaVersion"], 2);
    // The Wasm image variant, and the standard annotations: what the image is, its version, where
    // its source is, under which licence.
    let annotations = &manifest["annotations"];
    let expected = serde_json::json!({
        "module.wasm.image/variant": "compat",
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.source": "https://github.com/cors-proxy-wasm/cors-proxy-wasm",
        "org.opencontainers.image.title": "cors-proxy-wasm",
        "org.opencontainers.image.version": "1.2.3",
    });
    assert_eq!(annotations, &expected);
    let config_blob = check_descriptor(
        &layout,
        &manifest["config"],
        "application/vnd.oci.image.config.v1+json",
    );
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "the compat variant has exactly one layer");
    let layer_blob = check_descriptor(
        &layout,
        &layers[0],
        "application/vnd.oci.image.layer.v1.tar+gzip",
    );
    // Exactly three blobs: manifest, config, layer.
    assert_eq!(
        std::fs::read_dir(layout.join("blobs/sha256"))
            .expect("blobs")
            .count(),
        3
    );

    // The layer unpacks with plain tar to exactly plugin.wasm, identical to the module.
    let listing = Command::new("tar")
        .arg("-tzf")
        .arg(&layer_blob)
        .output()
        .expect("tar");
    assert_eq!(String::from_utf8_lossy(&listing.stdout), "plugin.wasm\n");
    let unpacked = dir.join("unpacked");
    std::fs::create_dir_all(&unpacked).expect("mkdir");
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&layer_blob)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .expect("tar");
    assert!(status.success());
    assert!(std::fs::read(unpacked.join("plugin.wasm")).expect("plugin.wasm") == module);

    // The config's diff_id is the digest of the uncompressed tar.
    let tar = dir.join("layer.tar");
    let gunzip = Command::new("gzip")
        .arg("-dc")
        .arg(&layer_blob)
        .output()
        .expect("gzip");
    std::fs::write(&tar, &gunzip.stdout).expect("write tar");
    let config = json_file(&config_blob);
    assert_eq!(config["os"], "wasip1");
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!([format!("sha256:{}", sha256_hex(&tar))])
    );

    let manifest_digest = manifests[0]["digest"].as_str().expect("digest");
    assert_eq!(
        printed.lines().next(),
        Some(
            format!(
                "{}: OCI image layout, tag 1.2.3, manifest {manifest_digest}",
                layout.display()
            )
            .as_str()
        )
    );

    // Reproducible: a second run gives the same manifest digest.
    let again = dir.join("oci-again");
    run_oci_script(&wasm, &again, "1.2.3");
    assert_eq!(
        read(&again.join("index.json")),
        read(&layout.join("index.json"))
    );

    // Not a module: refused.
    let not_wasm = dir.join("not.wasm");
    std::fs::write(&not_wasm, b"hello").expect("write");
    let refused = Command::new("sh")
        .current_dir(repo_root())
        .arg("scripts/oci.sh")
        .arg(&not_wasm)
        .arg(dir.join("oci-refused"))
        .output()
        .expect("run scripts/oci.sh");
    assert_eq!(refused.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&refused.stderr),
        format!(
            "oci.sh: {} is not a WebAssembly module\n",
            not_wasm.display()
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ------------------------------------------------------------------------------------------------
// Metrics: envoy/stats-tags.yaml on the real Envoy
// ------------------------------------------------------------------------------------------------

/// The documented `stats_tags` (envoy/stats-tags.yaml, merged into a bootstrap) turn the policy
/// name and the deny reason into Prometheus labels, with exactly these metric names.
#[test]
fn stats_tags_label_the_policy_and_the_deny_reason_in_prometheus() {
    require_shipped_wasm();
    let dir = scratch_dir("stats-tags");
    let config = dir.join("envoy.yaml");
    let text = read(&repo_root().join("envoy/per-route/route-metadata.yaml"))
        .replace("port_value: 10000", "port_value: 0")
        .replace("port_value: 9901", "port_value: 0");
    let tags = read(&repo_root().join("envoy/stats-tags.yaml"));
    std::fs::write(&config, format!("{text}\n{tags}")).expect("write config");
    let envoy = Envoy::start_config(&config, &dir, None);
    let port = envoy.listeners["cors"];

    let partner = "https://shop.partner.example";
    Req::preflight("/partner/x", partner, "PUT")
        .send(port)
        .assert_status(204);
    Req::preflight("/partner/x", "https://evil.example", "PUT")
        .send(port)
        .assert_status(403);
    Req::preflight("/partner/x", partner, "DELETE")
        .send(port)
        .assert_status(403);
    Req::get("/assets/a.svg")
        .origin("https://x.example")
        .send(port)
        .assert_status(200);
    Req::get("/api/items")
        .origin("https://app.example.com")
        .send(port)
        .assert_status(200);
    Req::get("/api/items")
        .origin("https://evil.example")
        .send(port)
        .assert_status(200);

    let expected_raw = [
        ("cors.partner.preflight_allowed", 1),
        ("cors.partner.preflight_denied.origin", 1),
        ("cors.partner.preflight_denied.method", 1),
        ("cors.public.actual_allowed", 1),
        ("cors.default.actual_allowed", 1),
        ("cors.default.actual_denied", 1),
    ];
    let stats = envoy.wait_cors_stats(&expected_raw, std::time::Duration::from_secs(3));
    for (name, value) in expected_raw {
        assert_eq!(stats.get(name), Some(&value), "{name} in {stats:?}");
    }

    let prometheus = Req::get("/stats/prometheus").send(envoy.admin_port);
    assert_eq!(prometheus.status, 200);
    let mut got: Vec<String> = prometheus
        .text()
        .lines()
        .filter(|l| l.starts_with("cors_") || l.starts_with("# TYPE cors_"))
        .map(str::to_owned)
        .collect();
    got.sort();
    let mut expected: Vec<String> = Vec::new();
    let policies = ["default", "partner", "public"];
    for (family, counts) in [
        ("cors_actual_allowed", [1, 0, 1]),
        ("cors_actual_denied", [1, 0, 0]),
        ("cors_preflight_allowed", [0, 1, 0]),
    ] {
        expected.push(format!("# TYPE {family} counter"));
        for (policy, count) in policies.iter().zip(counts) {
            expected.push(format!("{family}{{cors_policy=\"{policy}\"}} {count}"));
        }
    }
    expected.push("# TYPE cors_preflight_denied counter".to_owned());
    for policy in policies {
        for reason in ["headers", "method", "origin", "private_network"] {
            let count = u8::from(policy == "partner" && (reason == "origin" || reason == "method"));
            expected.push(format!(
                "cors_preflight_denied{{cors_policy=\"{policy}\",cors_deny_reason=\"{reason}\"}} {count}"
            ));
        }
    }
    expected.push("# TYPE cors_unknown_policy counter".to_owned());
    expected.push("cors_unknown_policy{} 0".to_owned());
    expected.sort();
    assert_eq!(got, expected);
}

/// The docs' WasmPlugin example pins the manifest digest that their `make oci` example prints
/// (both change with every new module, and the pin was once left behind). The output is shown once
/// (docs/operations.md, "The OCI image"); every `sha256:` pin in README.md and docs/ must be it.
#[test]
fn docs_oci_example_pins_the_manifest_it_prints() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|entry| entry.expect("docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    let mut printed: Vec<(String, String)> = Vec::new();
    let mut pinned: Vec<(String, String)> = Vec::new();
    for page in &pages {
        let name = page
            .strip_prefix(root)
            .unwrap_or(page)
            .display()
            .to_string();
        let text = read(page);
        for line in text.lines() {
            if let Some((_, hex)) = line.split_once(", manifest sha256:") {
                printed.push((name.clone(), hex.trim().to_owned()));
            }
            if let Some(hex) = line.trim().strip_prefix("sha256: ") {
                pinned.push((name.clone(), hex.trim().to_owned()));
            }
        }
    }
    assert_eq!(
        printed.len(),
        1,
        "one `make oci` example output in README.md and docs/: {printed:?}"
    );
    assert_eq!(
        printed[0].0, "docs/operations.md",
        "the `make oci` example output lives in docs/operations.md"
    );
    assert!(
        pinned.iter().any(|(page, _)| page == "docs/operations.md"),
        "a WasmPlugin sha256 pin in docs/operations.md: {pinned:?}"
    );
    let manifest = &printed[0].1;
    assert_eq!(manifest.len(), 64, "a sha256 hex digest: {manifest}");
    for (page, pin) in &pinned {
        assert_eq!(
            pin, manifest,
            "{page}: the WasmPlugin pin is not the printed manifest"
        );
    }
}

/// Dynamic symbols of an ELF file (`nm -D`): `defined` or undefined ones, those starting with
/// `prefix`.
fn dynamic_symbols(file: &Path, defined: bool, prefix: &str) -> BTreeSet<String> {
    let which = if defined {
        "--defined-only"
    } else {
        "--undefined-only"
    };
    let out = Command::new("nm")
        .args(["-D", which])
        .arg(file)
        .output()
        .expect("run nm (binutils)");
    assert!(out.status.success(), "nm -D {}: {out:?}", file.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|s| s.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// The dynamic module against the Envoy binary it is built for. Envoy resolves names only, so:
/// - the module links against none of Envoy's callbacks (it looks them up with `dlsym` once it
///   has checked which Envoy it is in: `dynamic-module/src/hosting.rs`);
/// - every callback it declares (`dynamic-module/src/abi.rs`) is one Envoy exports, and the list
///   is exactly the one below, each exercised end to end by the named real-Envoy tests
///   (`native::`), since a changed signature would not be caught at load;
/// - the module exports every HTTP filter hook this Envoy looks up (`strings` of the binary),
///   except the per-route config pair it does not use, and nothing else.
#[test]
fn dynamic_module_symbols_match_the_envoy_it_is_built_for() {
    let module = support::cors_native();
    let envoy = support::envoy_bin();
    let exercised: BTreeMap<&str, &str> = BTreeMap::from([
        (
            "envoy_dynamic_module_callback_log",
            "policy loaded / invalid policy lines in e2e_envoy, e2e_hostile, e2e_reload",
        ),
        (
            "envoy_dynamic_module_callback_log_enabled",
            "before every logged line (policy loaded, invalid policy)",
        ),
        (
            "envoy_dynamic_module_callback_http_filter_config_define_counter",
            "metrics_exact_names_and_counts",
        ),
        (
            "envoy_dynamic_module_callback_http_filter_increment_counter",
            "metrics_exact_names_and_counts",
        ),
        (
            "envoy_dynamic_module_callback_http_get_headers_size",
            "every request test (request headers), vary_merged_with_upstream_vary (response)",
        ),
        (
            "envoy_dynamic_module_callback_http_get_headers",
            "repeated_headers (request), vary_merged_across_repeated_upstream_vary_lines (response)",
        ),
        (
            "envoy_dynamic_module_callback_http_set_header",
            "upstream_cors_headers_replaced (sets and removes)",
        ),
        (
            "envoy_dynamic_module_callback_http_send_response_headers",
            "preflight_allowed_sends_every_header",
        ),
        (
            "envoy_dynamic_module_callback_http_get_metadata_string",
            "route_metadata_selects_policy",
        ),
        (
            "envoy_dynamic_module_callback_http_filter_get_attribute_string",
            "rules_select_policy (route and virtual host)",
        ),
    ]);
    assert_eq!(
        dynamic_symbols(&module, false, "envoy_"),
        BTreeSet::new(),
        "the module links against Envoy's symbols instead of resolving them at load"
    );
    let abi = read(&support::repo_root().join("dynamic-module/src/abi.rs"));
    let imported: BTreeSet<String> = abi
        .split("pub fn ")
        .skip(1)
        .filter_map(|rest| rest.split('(').next())
        .filter(|name| name.starts_with("envoy_dynamic_module_callback_"))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        imported,
        exercised
            .keys()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>(),
        "the module's callbacks changed: name the end-to-end test that exercises each new one"
    );
    let provided = dynamic_symbols(&envoy, true, "envoy_dynamic_module_callback_");
    let missing: Vec<&String> = imported.difference(&provided).collect();
    assert!(missing.is_empty(), "Envoy does not export {missing:?}");

    let out = Command::new("strings")
        .arg("-a")
        .arg(&envoy)
        .output()
        .expect("run strings (binutils)");
    let looked_up: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            l.starts_with("envoy_dynamic_module_on_http_filter")
                && l.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        })
        .filter(|l| !l.starts_with("envoy_dynamic_module_on_http_filter_per_route_config_"))
        .chain(["envoy_dynamic_module_on_program_init"])
        .map(str::to_owned)
        .collect();
    assert!(looked_up.len() > 20, "{looked_up:?}");
    let exported = dynamic_symbols(&module, true, "envoy_dynamic_module_on_");
    assert_eq!(
        exported, looked_up,
        "hooks exported vs hooks Envoy looks up"
    );
}

/// The newest glibc symbol version the dynamic module needs is the one its docs (and the README)
/// state, so the stated requirement cannot go stale with a toolchain change.
#[test]
fn dynamic_module_needs_the_glibc_its_docs_state() {
    let out = Command::new("objdump")
        .arg("-T")
        .arg(support::cors_native())
        .output()
        .expect("run objdump (binutils)");
    assert!(out.status.success(), "objdump -T: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let newest = text
        .split("GLIBC_")
        .skip(1)
        .filter_map(|rest| {
            let version: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next().flatten().unwrap_or(0)))
        })
        .max()
        .expect("the module links against glibc");
    let stated = format!("glibc **{}.{}", newest.0, newest.1);
    for doc in ["docs/dynamic-module.md", "README.md"] {
        let text = read(&repo_root().join(doc));
        assert!(
            text.contains(&stated),
            "{doc} does not state {stated:?} (the module's newest GLIBC_ symbol version)"
        );
    }
}
