//! The filter as Istio runs it, against the real Envoy (docs/istio.md).
//!
//! Istio delivers a `WasmPlugin` to the proxy by extension config discovery (ECDS): the listener's
//! HTTP filter is only a name, `<namespace>.<plugin>`, with a `config_discovery` source, and the
//! filter's config arrives as a `TypedExtensionConfig` of that name. istio-agent fetches the module
//! and rewrites the config to a local file before Envoy sees it. Here the config source is a
//! watched file instead of istiod's ADS stream, with the config exactly as istio-agent hands it on:
//! `pluginConfig` turned into a JSON string (numbers as `600.0`), `failure_policy` from
//! `failStrategy`, `root_id` from `pluginName` (unset), the module a local file.
//!
//! The routes and virtual hosts are named, and carry the `istio.config` metadata, exactly as Istio
//! generates them for each place a route comes from:
//! - a VirtualService bound to a gateway: route `http[].name` (`.<match name>` appended when the
//!   match has a name), virtual host `<host>:<port>`;
//! - the same `http[].name` in a second VirtualService;
//! - sidecar outbound: a VirtualService for a mesh service (virtual host `<service fqdn>:<port>`),
//!   and a service with none (route `default`, no metadata);
//! - sidecar inbound: virtual host `inbound|http|<port>`, route `default` (no name before Istio
//!   1.24: both are here), no metadata;
//! - a Gateway API HTTPRoute: route `<ns>.<name>.<rule index>` for a rule without a name, the
//!   rule's name otherwise; its `istio.config` names the VirtualService Istio generates.
//!
//! Also: an ECDS update with a bad policy is refused and the previous filter keeps serving; what a
//! request gets when the module cannot be loaded (fail open and fail closed); and CUSTOM
//! authorization (ext_authz), which Istio places before AUTHN-phase plugins.
//!
//! Needs `ENVOY_BIN` and `CORS_WASM` (`make test` exports both).

mod support;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};
use support::*;

/// `<namespace>.<name>` of the WasmPlugin: the HTTP filter's name and its ECDS resource name.
const FILTER: &str = "istio-system.cors";
const WASM_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const DYNAMIC_MODULE_TYPE: &str =
    "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter";
const RBAC_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
const PREFLIGHT_VARY: &str =
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

/// The WasmPlugin's `pluginConfig`, as its YAML is written (envoy/istio/ has the shipped ones).
const PLUGIN_CONFIG: &str = r#"
default:
  allow_origins: ["https://shop.example.com"]
  allow_methods: ["GET", "POST"]
  max_age: 600
policies:
  partner:
    allow_origins: ["https://app.partner.example"]
    allow_methods: ["GET", "PUT"]
    max_age: 600
  catalog:
    allow_origins: ["https://catalog.example.com"]
    allow_methods: ["GET", "DELETE"]
    max_age: 300
  mesh:
    allow_origins: ["https://reviews-ui.example.com"]
    allow_methods: ["GET", "PATCH"]
  inbound:
    allow_origins: ["https://inbound.example.com"]
    allow_methods: ["GET", "PUT"]
  gateway-api:
    allow_origins: ["https://api-ui.example.com"]
    allow_methods: ["GET", "POST", "PUT"]
    max_age: 60
rules:
- match: { route: partner-api.v1 }
  policy: partner
- match: { virtual_service: shop/catalog }
  policy: catalog
- match: { virtual_service: shop/reviews }
  policy: mesh
- match: { virtual_host: "inbound|http|8080" }
  policy: inbound
- match: { virtual_host: "inbound|http|9080" }
  policy: inbound
- match: { http_route: shop/catalog-api }
  policy: gateway-api
- match: { route: checkout }
  policy: partner
"#;

/// `pluginConfig` as the filter receives it: JSON, with every number a float (`600.0`).
fn plugin_config_json(yaml: &str) -> String {
    fn floats(value: &Value) -> String {
        match value {
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.fract() == 0.0 => format!("{f:.1}"),
                _ => n.to_string(),
            },
            Value::Array(items) => {
                let items: Vec<String> = items.iter().map(floats).collect();
                format!("[{}]", items.join(","))
            }
            Value::Object(map) => {
                let fields: Vec<String> = map
                    .iter()
                    .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), floats(v)))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }
            other => other.to_string(),
        }
    }
    let value: Value = serde_norway::from_str(yaml).expect("pluginConfig YAML");
    floats(&value)
}

/// `/apis/networking.istio.io/v1/namespaces/<ns>/virtual-service/<name>`: what Istio writes into
/// every route it generates from a VirtualService (`filter_metadata.istio.config`).
fn istio_config(namespace: &str, name: &str) -> String {
    format!("/apis/networking.istio.io/v1/namespaces/{namespace}/virtual-service/{name}")
}

fn route(name: Option<&str>, prefix: &str, config: Option<&str>) -> Value {
    let mut r = json!({
        "match": { "prefix": prefix },
        "route": { "cluster": "upstream", "timeout": "5s" },
    });
    if let Some(name) = name {
        r["name"] = json!(name);
    }
    if let Some(config) = config {
        r["metadata"] = json!({ "filter_metadata": { "istio": { "config": config } } });
    }
    r
}

fn vhost(name: &str, domains: &[&str], routes: Vec<Value>) -> Value {
    json!({ "name": name, "domains": domains, "routes": routes })
}

/// The route configuration: one virtual host per place Istio puts a route.
fn mesh_routes() -> Value {
    let storefront = istio_config("shop", "storefront");
    let catalog = istio_config("shop", "catalog");
    let reviews = istio_config("shop", "reviews");
    // What Istio generates from the HTTPRoute shop/catalog-api attached to listener `http` of
    // Gateway istio-system/public (one VirtualService per gateway listener and host).
    let generated = istio_config(
        "shop",
        "istio-system~public~istio-autogenerated-k8s-gateway~http~api.example.com",
    );
    json!({
        "name": "http.80",
        "virtual_hosts": [
            // VirtualService shop/storefront on the gateway: http[0] `partner-api` with a named
            // match `v1` and an unnamed one, http[1] `web` without matches.
            vhost("shop.example.com:80", &["shop.example.com", "shop.example.com:*"], vec![
                route(Some("partner-api.v1"), "/partner/v1/", Some(&storefront)),
                route(Some("partner-api"), "/partner/", Some(&storefront)),
                route(Some("web"), "/", Some(&storefront)),
            ]),
            // VirtualService shop/catalog: the same http[].name, partner-api, in another resource.
            vhost("catalog.example.com:80", &["catalog.example.com", "catalog.example.com:*"], vec![
                route(Some("partner-api"), "/partner/", Some(&catalog)),
                route(None, "/", Some(&catalog)),
            ]),
            // Sidecar outbound: VirtualService shop/reviews for the mesh service reviews, and the
            // service ratings with no VirtualService (Istio's default route).
            vhost(
                "reviews.shop.svc.cluster.local:8080",
                &[
                    "reviews.shop.svc.cluster.local",
                    "reviews.shop.svc.cluster.local:8080",
                    "reviews",
                    "reviews:8080",
                ],
                vec![route(Some("reviews-v2"), "/", Some(&reviews))],
            ),
            vhost(
                "ratings.shop.svc.cluster.local:8080",
                &["ratings.shop.svc.cluster.local", "ratings"],
                vec![route(Some("default"), "/", None)],
            ),
            // Gateway API HTTPRoute shop/catalog-api: rule 0 without a name, rule 1 named checkout.
            vhost("api.example.com:80", &["api.example.com", "api.example.com:*"], vec![
                route(Some("checkout"), "/checkout/", Some(&generated)),
                route(Some("shop.catalog-api.0"), "/", Some(&generated)),
            ]),
            // Sidecar inbound before Istio 1.24: the route has no name. (Istio gives each inbound
            // port its own listener with a wildcard virtual host; here all shapes share one
            // listener, so this one answers a host of its own. The filter sees only the names.)
            vhost(
                "inbound|http|9080",
                &["reviews.inbound.test"],
                vec![route(None, "/", None)],
            ),
            // Sidecar inbound: one wildcard virtual host per port, route `default`, no metadata.
            vhost("inbound|http|8080", &["*"], vec![route(Some("default"), "/", None)]),
        ]
    })
}

/// The ECDS resource istio-agent hands Envoy for the WasmPlugin: a local module, the policy as a
/// JSON string, the failure policy Istio derives from `failStrategy`.
fn wasm_extension(module: &Path, policy_json: &str, failure_policy: &str) -> Value {
    json!({
        "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
        "name": FILTER,
        "typed_config": {
            "@type": WASM_TYPE,
            "config": {
                "name": FILTER,
                "root_id": "",
                "vm_config": {
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": module.to_string_lossy() } }
                },
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": policy_json
                },
                "failure_policy": failure_policy
            }
        }
    })
}

/// An Envoy whose CORS filter is delivered by ECDS from a watched file, as Istio delivers it.
struct Mesh {
    envoy: Envoy,
    ecds_path: PathBuf,
    version: u64,
}

impl Mesh {
    /// `before`: HTTP filters Istio would place ahead of an AUTHN-phase plugin (CUSTOM ext_authz).
    fn start(extension: Value, before: Vec<Value>, extra_clusters: Vec<Value>) -> Mesh {
        Mesh::start_with_routes(extension, before, extra_clusters, mesh_routes())
    }

    fn start_with_routes(
        extension: Value,
        before: Vec<Value>,
        extra_clusters: Vec<Value>,
        routes: Value,
    ) -> Mesh {
        let upstream = Upstream::start();
        let dir = scratch_dir("mesh");
        let ecds_path = dir.join("ecds.json");
        write_ecds(&ecds_path, 1, &extension);
        let mut filters = before;
        filters.push(json!({
            "name": FILTER,
            "config_discovery": {
                "config_source": {
                    "path_config_source": {
                        "path": ecds_path.to_string_lossy(),
                        "watched_directory": { "path": dir.to_string_lossy() }
                    },
                    "resource_api_version": "V3",
                    "initial_fetch_timeout": "0s"
                },
                "type_urls": [WASM_TYPE, RBAC_TYPE, DYNAMIC_MODULE_TYPE]
            }
        }));
        filters.push(json!({
            "name": "envoy.filters.http.router",
            "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
        }));
        let mut clusters = vec![cluster("upstream", upstream.port)];
        clusters.extend(extra_clusters);
        let config = json!({
            "node": { "id": "router~10.0.0.1~istio-ingressgateway.istio-system~istio-system.svc.cluster.local", "cluster": "istio-ingressgateway" },
            "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } } },
            "static_resources": {
                "listeners": [{
                    "name": "main",
                    "address": { "socket_address": { "address": "127.0.0.1", "port_value": 0 } },
                    "filter_chains": [{ "filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "outbound_0.0.0.0_80",
                            "delayed_close_timeout": "0s",
                            "route_config": routes,
                            "http_filters": filters
                        }
                    }] }]
                }],
                "clusters": clusters
            }
        });
        let config_path = dir.join("envoy.json");
        std::fs::write(
            &config_path,
            serde_json::to_vec_pretty(&config).expect("json"),
        )
        .expect("write config");
        let envoy = Envoy::start_config(&config_path, &dir, Some(upstream));
        Mesh {
            envoy,
            ecds_path,
            version: 1,
        }
    }

    fn ecds_counter(&self, name: &str) -> u64 {
        let key = format!("extension_config_discovery.http_filter.{FILTER}.{name}");
        self.envoy
            .stats(&format!("^{}$", key.replace('.', r"\.")))
            .get(&key)
            .copied()
            .unwrap_or(0)
    }

    /// Writes a new ECDS version; waits until Envoy has taken it (config_reload) or refused it
    /// (config_fail), and says which.
    fn update(&mut self, extension: &Value) -> Update {
        let (reload, fail) = (
            self.ecds_counter("config_reload"),
            self.ecds_counter("config_fail"),
        );
        self.version += 1;
        write_ecds(&self.ecds_path, self.version, extension);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let now = (
                self.ecds_counter("config_reload"),
                self.ecds_counter("config_fail"),
            );
            if now.1 > fail {
                return Update::Refused {
                    config_reload_rose: now.0 > reload,
                };
            }
            if now.0 > reload {
                // config_reload also counts a refused update; config_fail settles it.
                thread::sleep(Duration::from_millis(300));
                if self.ecds_counter("config_fail") > fail {
                    return Update::Refused {
                        config_reload_rose: true,
                    };
                }
                return Update::Taken;
            }
            assert!(
                Instant::now() < deadline,
                "Envoy neither took nor refused ECDS version {}; log:\n{}",
                self.version,
                self.envoy.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn send(&self, req: &Req) -> Response {
        self.envoy.send(req)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Update {
    Taken,
    Refused { config_reload_rose: bool },
}

fn write_ecds(path: &Path, version: u64, extension: &Value) {
    let response = json!({ "version_info": version.to_string(), "resources": [extension] });
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&response).expect("json")).expect("write ecds");
    std::fs::rename(&tmp, path).expect("rename ecds");
}

fn start_default() -> Mesh {
    let policy = plugin_config_json(PLUGIN_CONFIG);
    Mesh::start(
        wasm_extension(&cors_wasm(), &policy, "FAIL_CLOSED"),
        Vec::new(),
        Vec::new(),
    )
}

/// An allowed preflight: exactly the headers of the policy that allows `origin`.
#[track_caller]
fn assert_allowed_preflight(r: &Response, origin: &str, methods: &str, max_age: Option<&str>) {
    r.assert_status(204);
    let mut expected = vec![
        (
            "access-control-allow-origin".to_string(),
            origin.to_string(),
        ),
        (
            "access-control-allow-methods".to_string(),
            methods.to_string(),
        ),
    ];
    if let Some(max_age) = max_age {
        expected.push(("access-control-max-age".to_string(), max_age.to_string()));
    }
    let mut got = r.cors_headers();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "{r}");
    r.assert_header("vary", PREFLIGHT_VARY);
    assert!(!r.is_upstream_answer(), "{r}");
}

#[track_caller]
fn assert_denied_preflight(r: &Response) {
    r.assert_status(403);
    r.assert_no_cors();
    r.assert_header("vary", PREFLIGHT_VARY);
    assert!(!r.is_upstream_answer(), "{r}");
}

/// Each shape of route picks its policy: an allowed origin gets exactly that policy's answer, the
/// origin of the policy one would get by mistake is refused.
#[test]
fn each_route_shape_istio_generates_picks_its_policy() {
    let mesh = start_default();
    // (host, path, allowed origin, methods, max age, an origin another shape allows)
    type Case<'a> = (&'a str, &'a str, &'a str, &'a str, Option<&'a str>, &'a str);
    let cases: &[Case] = &[
        // Gateway VirtualService, named match: route partner-api.v1.
        (
            "shop.example.com",
            "/partner/v1/items",
            "https://app.partner.example",
            "GET, PUT",
            Some("600"),
            "https://shop.example.com",
        ),
        // Unnamed match of the same http entry: route partner-api, no rule -> the default.
        (
            "shop.example.com",
            "/partner/other",
            "https://shop.example.com",
            "GET, POST",
            Some("600"),
            "https://app.partner.example",
        ),
        (
            "shop.example.com",
            "/",
            "https://shop.example.com",
            "GET, POST",
            Some("600"),
            "https://catalog.example.com",
        ),
        // The same http[].name (partner-api) in VirtualService shop/catalog: chosen by resource.
        (
            "catalog.example.com",
            "/partner/x",
            "https://catalog.example.com",
            "GET, DELETE",
            Some("300"),
            "https://app.partner.example",
        ),
        (
            "catalog.example.com:80",
            "/",
            "https://catalog.example.com",
            "GET, DELETE",
            Some("300"),
            "https://shop.example.com",
        ),
        // Sidecar outbound, VirtualService shop/reviews.
        (
            "reviews.shop.svc.cluster.local:8080",
            "/reviews/1",
            "https://reviews-ui.example.com",
            "GET, PATCH",
            None,
            "https://shop.example.com",
        ),
        (
            "reviews",
            "/reviews/1",
            "https://reviews-ui.example.com",
            "GET, PATCH",
            None,
            "https://inbound.example.com",
        ),
        // Sidecar outbound, a service without a VirtualService: route `default`, no metadata.
        (
            "ratings",
            "/",
            "https://shop.example.com",
            "GET, POST",
            Some("600"),
            "https://reviews-ui.example.com",
        ),
        // Gateway API HTTPRoute shop/catalog-api: unnamed rule 0, and rule `checkout`.
        (
            "api.example.com",
            "/products",
            "https://api-ui.example.com",
            "GET, POST, PUT",
            Some("60"),
            "https://shop.example.com",
        ),
        (
            "api.example.com",
            "/checkout/cart",
            "https://app.partner.example",
            "GET, PUT",
            Some("600"),
            "https://api-ui.example.com",
        ),
        // Sidecar inbound: any host reaches inbound|http|8080.
        (
            "10.0.0.7:8080",
            "/",
            "https://inbound.example.com",
            "GET, PUT",
            None,
            "https://shop.example.com",
        ),
        // Sidecar inbound, the route without a name of Istio before 1.24.
        (
            "reviews.inbound.test",
            "/reviews/1",
            "https://inbound.example.com",
            "GET, PUT",
            None,
            "https://reviews-ui.example.com",
        ),
    ];
    for (host, path, origin, methods, max_age, other) in cases {
        let r = mesh.send(&Req::preflight(path, origin, "GET").host(host));
        assert_allowed_preflight(&r, origin, methods, *max_age);
        let r = mesh.send(&Req::preflight(path, other, "GET").host(host));
        assert_denied_preflight(&r);
        // An actual request reaches the upstream and gets this policy's origin back.
        let r = mesh.send(&Req::get(path).host(host).origin(origin));
        r.assert_status(200);
        assert!(r.is_upstream_answer(), "{host}{path}: {r}");
        assert_eq!(
            r.cors_headers(),
            vec![(
                "access-control-allow-origin".to_string(),
                origin.to_string()
            )],
            "{host}{path}: {r}"
        );
        r.assert_header("vary", "Origin");
    }
    // The counters are per policy, by the names Istio users chose.
    let stats = mesh.envoy.wait_cors_stats(
        &[
            ("cors.partner.preflight_allowed", 2),
            ("cors.catalog.preflight_allowed", 2),
            ("cors.mesh.preflight_allowed", 2),
            ("cors.inbound.preflight_allowed", 2),
            ("cors.gateway-api.preflight_allowed", 1),
            ("cors.default.preflight_allowed", 3),
        ],
        Duration::from_secs(3),
    );
    for (name, value) in [
        ("cors.partner.preflight_allowed", 2),
        ("cors.catalog.preflight_allowed", 2),
        ("cors.mesh.preflight_allowed", 2),
        ("cors.inbound.preflight_allowed", 2),
        ("cors.gateway-api.preflight_allowed", 1),
        ("cors.default.preflight_allowed", 3),
    ] {
        assert_eq!(stats.get(name).copied(), Some(value), "{name}: {stats:?}");
    }
}

/// The partner route's preflight, as the default plugin config allows it.
#[track_caller]
fn assert_partner_allowed(mesh: &Mesh) {
    let r = mesh.send(
        &Req::preflight("/partner/v1/a", "https://app.partner.example", "PUT")
            .host("shop.example.com"),
    );
    assert_allowed_preflight(&r, "https://app.partner.example", "GET, PUT", Some("600"));
}

/// A refused ECDS update leaves the running filter in place, and only `config_fail` says so.
#[test]
fn an_ecds_update_with_a_bad_policy_is_refused_and_the_old_filter_keeps_serving() {
    let mut mesh = start_default();
    assert_partner_allowed(&mesh);

    // A policy the filter refuses: a wildcard over a whole top-level domain, and an unknown
    // VirtualService name form.
    let bad = PLUGIN_CONFIG
        .replace("https://app.partner.example", "https://*.example")
        .replace("virtual_service: shop/catalog", "virtual_service: catalog");
    let update = mesh.update(&wasm_extension(
        &cors_wasm(),
        &plugin_config_json(&bad),
        "FAIL_CLOSED",
    ));
    assert_eq!(
        update,
        Update::Refused {
            config_reload_rose: true
        },
        "log:\n{}",
        mesh.envoy.log()
    );
    let log = mesh.envoy.log();
    assert!(
        log.contains(r#"policies.partner.allow_origins[0]: "https://*.example": "#)
            && log
                .contains(r#"rules[1].match.virtual_service: "catalog": expected namespace/name"#),
        "the filter logs each error with its path; log:\n{log}"
    );
    // The previous policy still answers, on every shape.
    assert_partner_allowed(&mesh);
    let r = mesh.send(
        &Req::preflight("/x", "https://catalog.example.com", "DELETE").host("catalog.example.com"),
    );
    assert_allowed_preflight(
        &r,
        "https://catalog.example.com",
        "GET, DELETE",
        Some("300"),
    );

    // A good update is taken and serves.
    let good = PLUGIN_CONFIG.replace("max_age: 300", "max_age: 120");
    let update = mesh.update(&wasm_extension(
        &cors_wasm(),
        &plugin_config_json(&good),
        "FAIL_CLOSED",
    ));
    assert_eq!(update, Update::Taken, "log:\n{}", mesh.envoy.log());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = mesh.send(
            &Req::preflight("/x", "https://catalog.example.com", "DELETE")
                .host("catalog.example.com"),
        );
        if r.header("access-control-max-age").as_deref() == Some("120") {
            assert_allowed_preflight(
                &r,
                "https://catalog.example.com",
                "GET, DELETE",
                Some("120"),
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new policy never served: {r}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// The dynamic module delivered by ECDS in place of the running wasm filter: refused by any Envoy
/// but the one it is built for (docs/dynamic-module.md, *Which Envoy*), and the wasm filter keeps
/// serving; taken by Envoy 1.40, where the module then answers with the same policy.
#[test]
fn an_ecds_update_to_a_dynamic_module_built_for_another_envoy_is_refused() {
    // Before Envoy 1.38 a module is found by name only, in this directory (read by Envoy at start).
    let by_name = envoy_release() < (1, 38, 0);
    if by_name {
        let dir = cors_native().parent().expect("module dir").to_path_buf();
        std::env::set_var("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", dir);
    }
    let mut mesh = start_default();
    assert_partner_allowed(&mesh);

    let mut module = native_filter(&cors_native(), &plugin_config_json(PLUGIN_CONFIG));
    if by_name {
        module["typed_config"]["dynamic_module_config"] = json!({ "name": "cors_proxy" });
    }
    let extension = json!({
        "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
        "name": FILTER,
        "typed_config": module["typed_config"],
    });
    let update = mesh.update(&extension);
    let log = mesh.envoy.log();
    if envoy_runs_the_dynamic_module() {
        assert_eq!(update, Update::Taken, "log:\n{log}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while mesh
            .envoy
            .stats(r"^dynamicmodulescustom\.cors\.")
            .is_empty()
        {
            // The module's counters appear once its configuration is in place.
            assert!(
                Instant::now() < deadline,
                "the module never took over:\n{log}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    } else {
        assert_eq!(
            update,
            Update::Refused {
                config_reload_rose: true
            },
            "log:\n{log}"
        );
        let log = mesh
            .envoy
            .log_containing("refused to load", Duration::from_secs(5));
        let refusals = log
            .lines()
            .filter(|l| l.contains("(dynamic module) refused to load: it is built for Envoy 1.40"))
            .count();
        assert_eq!(refusals, 1, "one refusal line:\n{log}");
        assert_eq!(
            mesh.envoy.stats(r"^dynamicmodulescustom\."),
            Default::default(),
            "a mismatched module defined counters"
        );
    }
    // Either way the preflight gets the same answer: from the wasm filter it had, or from the
    // module that replaced it.
    assert_partner_allowed(&mesh);
}

/// A file that passes istio-agent's check (it starts with the wasm magic number and version) but
/// is not a module Envoy can load.
fn broken_module(dir: &Path) -> PathBuf {
    let path = dir.join("broken.wasm");
    let mut bytes = b"\0asm\x01\0\0\0".to_vec();
    bytes.extend_from_slice(b"\x01\xff\xff\xff\xff\x0fnot a module");
    std::fs::write(&path, bytes).expect("write broken module");
    path
}

/// When the module cannot be loaded, Envoy has no config for the filter: every request on the
/// listener gets a local 500, whatever the failure policy says.
#[test]
fn a_module_that_cannot_load_answers_500_under_fail_open_and_fail_closed() {
    let dir = scratch_dir("broken-module");
    let module = broken_module(&dir);
    let policy = plugin_config_json(PLUGIN_CONFIG);
    for failure_policy in ["FAIL_OPEN", "FAIL_CLOSED", "FAIL_RELOAD"] {
        let mesh = Mesh::start(
            wasm_extension(&module, &policy, failure_policy),
            Vec::new(),
            Vec::new(),
        );
        for req in [
            Req::preflight("/partner/v1/a", "https://app.partner.example", "PUT")
                .host("shop.example.com"),
            Req::get("/")
                .host("shop.example.com")
                .origin("https://shop.example.com"),
            Req::get("/").host("ratings"),
        ] {
            let r = mesh.send(&req);
            r.assert_status(500);
            r.assert_no_cors();
            assert!(!r.is_upstream_answer(), "{failure_policy}: {r}");
        }
        assert_eq!(
            mesh.envoy.upstream.as_ref().map(Upstream::requests),
            Some(0),
            "{failure_policy}: nothing reaches the upstream"
        );
        assert!(
            mesh.ecds_counter("config_fail") >= 1,
            "{failure_policy}: the module was refused; log:\n{}",
            mesh.envoy.log()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// What istio-agent puts in place of the plugin when it cannot fetch the module: an RBAC filter
/// under the plugin's name that allows everything (fail open) or denies everything (fail closed).
fn agent_fallback(fail_open: bool) -> Value {
    let mut rbac = json!({ "@type": RBAC_TYPE });
    if fail_open {
        rbac["rules_stat_prefix"] = json!("wasm-default-allow");
    } else {
        rbac["rules"] = json!({});
        rbac["rules_stat_prefix"] = json!("wasm-default-deny");
    }
    json!({
        "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
        "name": FILTER,
        "typed_config": rbac
    })
}

/// A failed fetch: fail open passes every request with no CORS handling at all; fail closed
/// (also FAIL_RELOAD, which istio-agent treats as not fail-open) answers 403 to every request of
/// every host on the gateway.
#[test]
fn a_failed_fetch_is_allow_all_when_fail_open_and_deny_all_otherwise() {
    let open = Mesh::start(agent_fallback(true), Vec::new(), Vec::new());
    let r = open.send(
        &Req::preflight("/partner/v1/a", "https://app.partner.example", "PUT")
            .host("shop.example.com"),
    );
    r.assert_status(200);
    assert!(r.is_upstream_answer(), "the preflight goes upstream: {r}");
    r.assert_no_cors();
    let r = open.send(
        &Req::get("/")
            .host("api.example.com")
            .origin("https://api-ui.example.com"),
    );
    r.assert_status(200);
    r.assert_no_cors();
    r.assert_absent("vary");

    let closed = Mesh::start(agent_fallback(false), Vec::new(), Vec::new());
    for host in [
        "shop.example.com",
        "api.example.com",
        "ratings",
        "10.0.0.7:8080",
    ] {
        let r = closed.send(&Req::get("/").host(host).origin("https://shop.example.com"));
        r.assert_status(403);
        r.assert_no_cors();
        assert!(!r.is_upstream_answer(), "{host}: {r}");
        let r = closed.send(&Req::preflight("/", "https://shop.example.com", "GET").host(host));
        r.assert_status(403);
        r.assert_no_cors();
    }
    assert_eq!(
        closed.envoy.upstream.as_ref().map(Upstream::requests),
        Some(0)
    );
}

// ------------------------------------------------------------------------------------------------
// CUSTOM authorization (ext_authz) before the filter
// ------------------------------------------------------------------------------------------------

/// An HTTP authorization service that denies every check (403), counting the checks and
/// recording their methods.
struct DenyingAuthz {
    port: u16,
    checks: Arc<AtomicUsize>,
}

impl DenyingAuthz {
    fn start() -> DenyingAuthz {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind authz");
        let port = listener.local_addr().expect("local_addr").port();
        let checks = Arc::new(AtomicUsize::new(0));
        let counter = checks.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let counter = counter.clone();
                thread::spawn(move || serve_denials(stream, &counter));
            }
        });
        DenyingAuthz { port, checks }
    }

    fn checks(&self) -> usize {
        self.checks.load(Ordering::SeqCst)
    }
}

fn serve_denials(stream: TcpStream, checks: &AtomicUsize) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut writer = stream;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        // Request line and headers; a check request carries no body unless configured to.
        let mut first = true;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            if !first {
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
            first = false;
        }
        let mut body = vec![0u8; length];
        if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
            return;
        }
        checks.fetch_add(1, Ordering::SeqCst);
        let reply = "HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 6\r\nx-authz: denied\r\n\r\ndenied";
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// The ext_authz filter of an `AuthorizationPolicy` with `action: CUSTOM`, as Istio builds it: an
/// RBAC filter in shadow mode marks the requests the policy's rules select, and ext_authz runs
/// only on those (`filter_enabled_metadata`). `not_methods` is the rule's `notMethods`.
fn custom_authz_filters(not_methods: &[&str]) -> Vec<Value> {
    let permission = if not_methods.is_empty() {
        json!({ "any": true })
    } else {
        json!({ "and_rules": { "rules": [{ "not_rule": { "or_rules": { "rules":
            not_methods.iter().map(|m| json!({ "header": { "name": ":method", "string_match": { "exact": m } } })).collect::<Vec<_>>()
        } } }] } })
    };
    vec![
        json!({
            "name": "envoy.filters.http.rbac",
            "typed_config": {
                "@type": RBAC_TYPE,
                "shadow_rules": { "action": "DENY", "policies": {
                    "istio-ext-authz-ns[istio-system]-policy[ext-authz]-rule[0]": {
                        "permissions": [permission],
                        "principals": [{ "any": true }]
                    }
                } },
                "shadow_rules_stat_prefix": "istio_ext_authz_"
            }
        }),
        json!({
            "name": "envoy.filters.http.ext_authz",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
                "transport_api_version": "V3",
                "http_service": {
                    "server_uri": { "uri": "http://127.0.0.1", "cluster": "ext-authz", "timeout": "2s" }
                },
                "filter_enabled_metadata": {
                    "filter": "envoy.filters.http.rbac",
                    "path": [{ "key": "istio_ext_authz_shadow_effective_policy_id" }],
                    "value": { "string_match": { "prefix": "istio-ext-authz" } }
                }
            }
        }),
    ]
}

fn start_with_custom_authz(authz: &DenyingAuthz, not_methods: &[&str]) -> Mesh {
    let policy = plugin_config_json(PLUGIN_CONFIG);
    Mesh::start(
        wasm_extension(&cors_wasm(), &policy, "FAIL_CLOSED"),
        custom_authz_filters(not_methods),
        vec![cluster("ext-authz", authz.port)],
    )
}

/// CUSTOM authorization runs before AUTHN-phase plugins: its denial of a preflight carries no CORS
/// headers, and the browser reports a CORS error instead of the 403. Excluding OPTIONS from the
/// policy (`notMethods: ["OPTIONS"]`) lets preflights reach the filter, while every other request
/// is still checked (and its denial, made before the filter, still carries no CORS headers).
#[test]
fn custom_authorization_before_the_filter_denies_preflights_unless_options_is_excluded() {
    let authz = DenyingAuthz::start();

    let mesh = start_with_custom_authz(&authz, &[]);
    let r = mesh.send(
        &Req::preflight("/partner/v1/a", "https://app.partner.example", "PUT")
            .host("shop.example.com"),
    );
    r.assert_status(403);
    r.assert_no_cors();
    r.assert_absent("vary");
    assert_eq!(
        authz.checks(),
        1,
        "the preflight was sent to the authorization service"
    );
    let stats = mesh.envoy.cors_stats();
    assert_eq!(
        stats
            .get("cors.partner.preflight_allowed")
            .copied()
            .unwrap_or(0),
        0,
        "the filter never saw the preflight: {stats:?}"
    );
    drop(mesh);

    let mesh = start_with_custom_authz(&authz, &["OPTIONS"]);
    let before = authz.checks();
    let r = mesh.send(
        &Req::preflight("/partner/v1/a", "https://app.partner.example", "PUT")
            .host("shop.example.com"),
    );
    assert_allowed_preflight(&r, "https://app.partner.example", "GET, PUT", Some("600"));
    assert_eq!(
        authz.checks(),
        before,
        "preflights skip the authorization service"
    );
    // Every other request is still checked, and still denied, before the filter.
    let r = mesh.send(
        &Req::new("PUT", "/partner/v1/a")
            .host("shop.example.com")
            .origin("https://app.partner.example"),
    );
    r.assert_status(403);
    r.assert_no_cors();
    assert_eq!(authz.checks(), before + 1);
    assert_eq!(
        mesh.envoy.upstream.as_ref().map(Upstream::requests),
        Some(0)
    );
}

// ------------------------------------------------------------------------------------------------
// The shipped ingress example (envoy/istio/), as Istio would configure the gateway from it
// ------------------------------------------------------------------------------------------------

fn shipped(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo_root().join(file)).expect("shipped manifest");
    serde_norway::Deserializer::from_str(&text)
        .map(|doc| <Value as serde::Deserialize>::deserialize(doc).expect("YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// The gateway's routes for the shipped VirtualService, named as Istio names them, with the
/// shipped EnvoyFilter's metadata merged into the route it names.
fn shipped_gateway_routes() -> Value {
    let vs = shipped("envoy/istio/virtualservice.yaml")
        .into_iter()
        .find(|d| d["kind"] == "VirtualService")
        .expect("VirtualService");
    let gateway = shipped("envoy/istio/gateway.yaml")
        .into_iter()
        .find(|d| d["kind"] == "Gateway")
        .expect("Gateway");
    let filter = shipped("envoy/istio/envoyfilter-route-metadata.yaml")
        .into_iter()
        .find(|d| d["kind"] == "EnvoyFilter")
        .expect("EnvoyFilter");
    let port = gateway["spec"]["servers"][0]["port"]["number"]
        .as_u64()
        .expect("port");
    let config = istio_config(
        vs["metadata"]["namespace"].as_str().expect("ns"),
        vs["metadata"]["name"].as_str().expect("name"),
    );
    let patch = &filter["spec"]["configPatches"][0];
    let patched_vhost = patch["match"]["routeConfiguration"]["vhost"]["name"].as_str();
    let patched_route = patch["match"]["routeConfiguration"]["vhost"]["route"]["name"].as_str();
    let merged = &patch["patch"]["value"]["metadata"]["filter_metadata"];
    let mut vhosts = Vec::new();
    for host in vs["spec"]["hosts"].as_array().expect("hosts") {
        let host = host.as_str().expect("host");
        let vhost_name = format!("{host}:{port}");
        let mut routes = Vec::new();
        for http in vs["spec"]["http"].as_array().expect("http") {
            let name = http["name"].as_str();
            let matches = http["match"].as_array().cloned().unwrap_or_default();
            let entries: Vec<(Option<String>, String)> = if matches.is_empty() {
                vec![(name.map(str::to_owned), "/".to_owned())]
            } else {
                matches
                    .iter()
                    .map(|m| {
                        let route_name = match (name, m["name"].as_str()) {
                            (Some(n), Some(m)) => Some(format!("{n}.{m}")),
                            (n, _) => n.map(str::to_owned),
                        };
                        let prefix = m["uri"]["prefix"].as_str().expect("uri prefix");
                        (route_name, prefix.to_owned())
                    })
                    .collect()
            };
            for (route_name, prefix) in entries {
                let mut r = route(route_name.as_deref(), &prefix, Some(&config));
                if patched_vhost == Some(vhost_name.as_str())
                    && route_name.is_some()
                    && patched_route == route_name.as_deref()
                {
                    // MERGE: the EnvoyFilter's filter_metadata beside Istio's.
                    for (key, value) in merged.as_object().expect("filter_metadata") {
                        r["metadata"]["filter_metadata"][key] = value.clone();
                    }
                }
                routes.push(r);
            }
        }
        let domains = [host.to_owned(), format!("{host}:*")];
        vhosts.push(json!({ "name": vhost_name, "domains": domains, "routes": routes }));
    }
    json!({ "name": format!("http.{port}"), "virtual_hosts": vhosts })
}

/// The walkthrough's last step (docs/istio.md) against the shipped files: the preflight's exact
/// answer is the one the guide prints, and each route of the example gets its documented policy.
#[test]
fn the_shipped_ingress_example_answers_as_the_guide_says() {
    let plugin = shipped("envoy/istio/wasmplugin.yaml")
        .into_iter()
        .find(|d| d["kind"] == "WasmPlugin")
        .expect("WasmPlugin");
    let yaml = serde_norway::to_string(&plugin["spec"]["pluginConfig"]).expect("YAML");
    let name = format!(
        "{}.{}",
        plugin["metadata"]["namespace"].as_str().expect("ns"),
        plugin["metadata"]["name"].as_str().expect("name")
    );
    assert_eq!(name, FILTER, "the filter is named <namespace>.<plugin>");
    let failure_policy = match plugin["spec"]["failStrategy"].as_str() {
        Some("FAIL_OPEN") => "FAIL_OPEN",
        Some("FAIL_RELOAD") => "FAIL_RELOAD",
        _ => "FAIL_CLOSED",
    };
    let mesh = Mesh::start_with_routes(
        wasm_extension(&cors_wasm(), &plugin_config_json(&yaml), failure_policy),
        Vec::new(),
        Vec::new(),
        shipped_gateway_routes(),
    );

    // Step 8 of the guide, and the answer it prints.
    let r = mesh.send(
        &Req::preflight("/partner/v1/items", "https://app.partner.example", "PUT")
            .host("shop.example.com")
            .acrh("content-type"),
    );
    let guide = std::fs::read_to_string(repo_root().join("docs/istio.md")).expect("docs/istio.md");
    let printed: Vec<&str> = guide
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "HTTP/1.1 204 No Content")
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .collect();
    assert!(
        printed.len() >= 5,
        "the guide prints the answer: {printed:?}"
    );
    r.assert_status(204);
    let mut got: Vec<String> = r
        .cors_headers()
        .into_iter()
        .map(|(n, v)| format!("{n}: {v}"))
        .collect();
    got.extend(
        r.headers_all("vary")
            .into_iter()
            .map(|v| format!("vary: {v}")),
    );
    assert_eq!(got, printed, "{r}");
    let r = mesh.send(
        &Req::preflight("/partner/v1/items", "https://evil.example", "PUT")
            .host("shop.example.com"),
    );
    assert_denied_preflight(&r);

    // assets: the EnvoyFilter's route metadata picks the public policy.
    let r = mesh.send(
        &Req::get("/assets/logo.svg")
            .host("shop.example.com")
            .origin("https://anyone.example"),
    );
    r.assert_status(200);
    assert_eq!(
        r.cors_headers(),
        vec![("access-control-allow-origin".to_string(), "*".to_string())],
        "{r}"
    );
    // internal: policy null, untouched; web: the default.
    let r = mesh.send(
        &Req::get("/internal/x")
            .host("shop.example.com")
            .origin("https://shop.example.com"),
    );
    r.assert_status(200);
    r.assert_no_cors();
    r.assert_absent("vary");
    let r = mesh.send(
        &Req::get("/")
            .host("static.shop.example.com")
            .origin("https://shop.example.com"),
    );
    r.assert_status(200);
    assert_eq!(
        r.cors_headers(),
        vec![
            (
                "access-control-allow-origin".to_string(),
                "https://shop.example.com".to_string()
            ),
            (
                "access-control-allow-credentials".to_string(),
                "true".to_string()
            ),
        ],
        "{r}"
    );
    r.assert_header("vary", "Origin");
}
