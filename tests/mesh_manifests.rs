//! The shipped mesh manifests (envoy/istio/, envoy/gateway-api/, envoy/envoy-gateway/;
//! docs/istio.md): every document parses and names what it refers to, every plugin config passes
//! `cors-policy check`, a placeholder image cannot deny a whole gateway, and every rule names a
//! route, virtual host or resource the shipped manifests make Istio generate, choosing the policy
//! the comments promise.

mod fixtures;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use cors_engine::routing::{RouteFact, RouteFacts, Selection};
use serde::Deserialize as _;
use serde_json::Value;

const CLI: &str = env!("CARGO_BIN_EXE_cors-policy");
const DIRS: [&str; 3] = ["envoy/istio", "envoy/gateway-api", "envoy/envoy-gateway"];
const PLACEHOLDER_REGISTRY: &str = "registry.example.com/";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository root")
        .to_path_buf()
}

/// `(file relative to the repo, document)` of every YAML document of the mesh directories.
fn documents() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for dir in DIRS {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        for path in files {
            let text = std::fs::read_to_string(&path).expect("read");
            let relative = path
                .strip_prefix(root())
                .expect("under the repo")
                .display()
                .to_string();
            for doc in serde_norway::Deserializer::from_str(&text) {
                let value =
                    Value::deserialize(doc).unwrap_or_else(|e| panic!("{relative}: YAML: {e}"));
                if !value.is_null() {
                    out.push((relative.clone(), value));
                }
            }
        }
    }
    out
}

fn key(doc: &Value) -> String {
    format!(
        "{}/{}",
        doc["metadata"]["namespace"].as_str().unwrap_or(""),
        doc["metadata"]["name"].as_str().unwrap_or("")
    )
}

fn of_kind<'a>(docs: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|(_, d)| d["kind"] == kind)
        .map(|(_, d)| d)
        .collect()
}

#[test]
fn every_manifest_parses_and_names_itself() {
    let docs = documents();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for (file, doc) in &docs {
        let kind = doc["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("{file}: no kind"));
        assert!(
            doc["apiVersion"].is_string(),
            "{file}: {kind} has no apiVersion"
        );
        assert!(
            doc["metadata"]["name"].is_string(),
            "{file}: {kind} has no metadata.name"
        );
        let cluster_scoped = matches!(kind, "Namespace" | "GatewayClass");
        assert_eq!(
            doc["metadata"]["namespace"].is_string(),
            !cluster_scoped,
            "{file}: {kind} {}: namespace",
            key(doc)
        );
        *kinds.entry(kind.to_owned()).or_default() += 1;
    }
    let kinds: Vec<(&str, usize)> = kinds.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    assert_eq!(
        kinds,
        [
            ("EnvoyExtensionPolicy", 2),
            ("EnvoyFilter", 1),
            ("EnvoyProxy", 1),
            ("Gateway", 4),
            ("GatewayClass", 1),
            ("HTTPRoute", 5),
            ("Namespace", 1),
            ("VirtualService", 1),
            ("WasmPlugin", 4),
        ]
    );
}

#[test]
fn every_plugin_config_passes_cors_policy_check() {
    let mut files: BTreeSet<String> = BTreeSet::new();
    for (file, doc) in documents() {
        if doc["kind"] == "WasmPlugin" || doc["kind"] == "EnvoyExtensionPolicy" {
            files.insert(file);
        }
    }
    let mut lines = Vec::new();
    for file in &files {
        let out = Command::new(CLI)
            .current_dir(root())
            .args(["check", file])
            .output()
            .expect("run cors-policy");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(0), "check {file}:\n{stdout}");
        lines.extend(stdout.lines().map(str::to_owned));
    }
    assert_eq!(
        lines,
        [
            "OK: envoy/envoy-gateway/envoyextensionpolicy.yaml: EnvoyExtensionPolicy shop/cors dynamicModule[0]: 1 policy (default), 0 rules",
            "OK: envoy/envoy-gateway/wasm-extension-policy.yaml: EnvoyExtensionPolicy shop/cors-wasm wasm[0]: 1 policy (default), 0 rules",
            "OK: envoy/gateway-api/wasmplugin.yaml: WasmPlugin shop/cors: 2 policies (checkout, storefront), 2 rules",
            "OK: envoy/istio/sidecar-inbound.yaml: WasmPlugin shop/cors-reviews: 1 policy (reviews-ui), 1 rule",
            "OK: envoy/istio/wasmplugin.yaml: WasmPlugin istio-system/cors: 3 policies (default, partner, public), 4 rules",
            "OK: envoy/istio/waypoint.yaml: WasmPlugin shop/cors-waypoint: 2 policies (default, reviews-ui), 1 rule",
        ]
    );
}

/// A placeholder image cannot be fetched. With FAIL_CLOSE or FAIL_RELOAD istio-agent then puts a
/// deny-all RBAC filter in the plugin's place (every request of the proxy gets 403); FAIL_OPEN
/// puts an allow-all one. So a manifest that ships the placeholder ships FAIL_OPEN.
#[test]
fn a_placeholder_image_cannot_deny_a_whole_gateway() {
    let docs = documents();
    let plugins = of_kind(&docs, "WasmPlugin");
    assert_eq!(plugins.len(), 4);
    for plugin in plugins {
        let url = plugin["spec"]["url"].as_str().expect("url");
        assert!(url.starts_with("oci://"), "{}: {url}", key(plugin));
        assert_eq!(plugin["apiVersion"], "extensions.istio.io/v1alpha1");
        assert_eq!(plugin["spec"]["phase"], "AUTHN", "{}", key(plugin));
        assert_eq!(plugin["spec"]["type"], "HTTP", "{}", key(plugin));
        if url.contains(PLACEHOLDER_REGISTRY) {
            assert_eq!(
                plugin["spec"]["failStrategy"],
                "FAIL_OPEN",
                "{}: a placeholder url with another failStrategy denies every request",
                key(plugin)
            );
        }
    }
    for policy in of_kind(&docs, "EnvoyExtensionPolicy") {
        for wasm in policy["spec"]["wasm"].as_array().into_iter().flatten() {
            let url = wasm["code"]["image"]["url"].as_str().expect("image url");
            if url.contains(PLACEHOLDER_REGISTRY) {
                assert_eq!(wasm["failOpen"], true, "{}", key(policy));
            }
        }
    }
}

/// Istio's Envoy route names for an HTTPRoute: the rule's name, else `<ns>.<name>.<index>`.
fn http_route_routes(route: &Value) -> Vec<String> {
    let ns = route["metadata"]["namespace"].as_str().expect("namespace");
    let name = route["metadata"]["name"].as_str().expect("name");
    route["spec"]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .enumerate()
        .map(|(i, rule)| match rule["name"].as_str() {
            Some(rule_name) => rule_name.to_owned(),
            None => format!("{ns}.{name}.{i}"),
        })
        .collect()
}

#[test]
fn references_name_shipped_resources() {
    let docs = documents();
    let gateways: BTreeSet<String> = of_kind(&docs, "Gateway").iter().map(|g| key(g)).collect();
    for vs in of_kind(&docs, "VirtualService") {
        for gateway in vs["spec"]["gateways"].as_array().expect("gateways") {
            let gateway = gateway.as_str().expect("gateway name");
            assert!(gateways.contains(gateway), "{}: gateway {gateway}", key(vs));
        }
    }
    let mut services: BTreeSet<String> = BTreeSet::new();
    let ns_of = |doc: &Value| {
        doc["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    for route in of_kind(&docs, "HTTPRoute") {
        for parent in route["spec"]["parentRefs"].as_array().expect("parentRefs") {
            let name = parent["name"].as_str().expect("parent name");
            if parent["kind"] == "Service" {
                services.insert(format!("{}/{name}", ns_of(route)));
            } else {
                assert!(
                    gateways.contains(&format!("{}/{name}", ns_of(route))),
                    "{}: parent {name}",
                    key(route)
                );
            }
        }
    }
    let routes: BTreeSet<String> = of_kind(&docs, "HTTPRoute").iter().map(|r| key(r)).collect();
    let classes: BTreeSet<&str> = of_kind(&docs, "GatewayClass")
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str())
        .collect();
    for gateway in of_kind(&docs, "Gateway") {
        if gateway["apiVersion"] == "gateway.networking.k8s.io/v1" {
            let class = gateway["spec"]["gatewayClassName"].as_str().expect("class");
            // istio and istio-waypoint come with Istio; others are shipped.
            assert!(
                matches!(class, "istio" | "istio-waypoint") || classes.contains(class),
                "{}: class {class}",
                key(gateway)
            );
        }
    }
    for doc in of_kind(&docs, "WasmPlugin")
        .into_iter()
        .chain(of_kind(&docs, "EnvoyExtensionPolicy"))
    {
        for target in doc["spec"]["targetRefs"].as_array().into_iter().flatten() {
            let name = format!("{}/{}", ns_of(doc), target["name"].as_str().expect("name"));
            let known = match target["kind"].as_str() {
                Some("Gateway") => gateways.contains(&name),
                Some("HTTPRoute") => routes.contains(&name),
                Some("Service") => services.contains(&name),
                other => panic!("{}: targetRef kind {other:?}", key(doc)),
            };
            assert!(known, "{}: targetRef {name} is not shipped", key(doc));
        }
    }
}

/// Route facts of one route Istio generates.
#[derive(Default, Clone)]
struct Facts {
    route: Option<String>,
    vhost: Option<String>,
    istio_config: Option<String>,
    metadata: Option<String>,
    path: Option<String>,
}

impl Facts {
    /// These facts as the engine reads them.
    fn known(&self) -> RouteFacts<'_, cors_engine::routing::Known<'_>> {
        fn given(value: &Option<String>) -> Option<&[u8]> {
            value.as_deref().map(str::as_bytes)
        }
        RouteFacts::known()
            .with_optional(RouteFact::MetadataPolicy, given(&self.metadata))
            .with_optional(RouteFact::RouteName, given(&self.route))
            .with_optional(RouteFact::VirtualHost, given(&self.vhost))
            .with_optional(RouteFact::IstioConfig, given(&self.istio_config))
            .with_optional(RouteFact::Path, given(&self.path))
    }
}

/// The `istio.config` of a route Istio generates from an HTTPRoute: it names the VirtualService
/// Istio generates for the host (its 1.28 name; `pilot/pkg/config/kube/gateway/route_collections.go`).
fn generated_config(host: &str) -> String {
    format!("/apis/networking.istio.io/v1/namespaces/shop/virtual-service/istio-system~gateway~istio-autogenerated-k8s-gateway~shop~{host}")
}

fn plugin_config(docs: &[(String, Value)], file: &str) -> cors_engine::policy::Config {
    let plugin = docs
        .iter()
        .find(|(f, d)| f == file && d["kind"] == "WasmPlugin")
        .map(|(_, d)| d)
        .unwrap_or_else(|| panic!("no WasmPlugin in {file}"));
    let text = serde_json::to_string(&plugin["spec"]["pluginConfig"]).expect("JSON");
    match cors_engine::policy::load(&text) {
        Ok(loaded) => loaded.config,
        Err(rejected) => panic!("{file}: {:?}", rejected.errors),
    }
}

fn chosen(config: &cors_engine::policy::Config, facts: &Facts) -> String {
    match config.select(&mut facts.known()).selection {
        Selection::Policy(i) => config.policy(i).map(|p| p.name.clone()).unwrap_or_default(),
        Selection::Untouched => "(none)".to_owned(),
        Selection::Unknown(name) => format!("unknown {}", String::from_utf8_lossy(&name)),
    }
}

/// Each shipped plugin, on the routes its companion manifests make Istio generate, picks the
/// policy its comments describe.
#[test]
fn every_rule_names_a_generated_route_and_picks_the_documented_policy() {
    let docs = documents();

    // Ingress gateway: VirtualService istio-system/shop on port 80 of public-gateway.
    let vs = of_kind(&docs, "VirtualService")[0];
    let vs_config = format!(
        "/apis/networking.istio.io/v1/namespaces/{}/virtual-service/{}",
        vs["metadata"]["namespace"].as_str().expect("ns"),
        vs["metadata"]["name"].as_str().expect("name")
    );
    let config = plugin_config(&docs, "envoy/istio/wasmplugin.yaml");
    let routes = fixtures::istio_route_names(vs);
    let rules: Vec<&str> = config
        .rules
        .iter()
        .filter_map(|r| r.route.as_deref())
        .collect();
    for route in &rules {
        assert!(
            routes.contains(*route),
            "rule route {route} not in {routes:?}"
        );
    }
    let expected = [
        ("partner-api.v1", "partner"),
        ("partner-api", "partner"),
        ("assets", "public"),
        ("internal", "(none)"),
        ("web", "default"),
    ];
    for (route, policy) in expected {
        let facts = Facts {
            route: Some(route.into()),
            vhost: Some("shop.example.com:80".into()),
            istio_config: Some(vs_config.clone()),
            ..Facts::default()
        };
        assert_eq!(chosen(&config, &facts), policy, "route {route}");
    }

    // The EnvoyFilter's metadata goes to a route of that VirtualService, on a virtual host Istio
    // names <host>:<Gateway port>, and names a policy of the gateway's WasmPlugin.
    let filter = of_kind(&docs, "EnvoyFilter")[0];
    let patch = &filter["spec"]["configPatches"][0];
    let vhost = patch["match"]["routeConfiguration"]["vhost"]["name"]
        .as_str()
        .expect("vhost name");
    let route = patch["match"]["routeConfiguration"]["vhost"]["route"]["name"]
        .as_str()
        .expect("route name");
    let gateway = of_kind(&docs, "Gateway")
        .into_iter()
        .find(|g| g["apiVersion"] == "networking.istio.io/v1")
        .expect("the Istio Gateway");
    let port = gateway["spec"]["servers"][0]["port"]["number"]
        .as_u64()
        .expect("port");
    let hosts: Vec<String> = vs["spec"]["hosts"]
        .as_array()
        .expect("hosts")
        .iter()
        .filter_map(Value::as_str)
        .map(|h| format!("{h}:{port}"))
        .collect();
    assert!(hosts.iter().any(|h| h == vhost), "{vhost} not in {hosts:?}");
    assert!(routes.contains(route), "{route} not in {routes:?}");
    let policy = patch["patch"]["value"]["metadata"]["filter_metadata"]["cors"]["policy"]
        .as_str()
        .expect("cors.policy");
    assert!(config.by_name.contains_key(policy), "{policy}");
    let facts = Facts {
        route: Some("internal".into()),
        metadata: Some(policy.into()),
        ..Facts::default()
    };
    assert_eq!(chosen(&config, &facts), policy, "metadata wins over rules");

    // Sidecar inbound: inbound|http|<the port the plugin matches>, route "default", no metadata.
    let config = plugin_config(&docs, "envoy/istio/sidecar-inbound.yaml");
    let plugin = docs
        .iter()
        .find(|(f, _)| f == "envoy/istio/sidecar-inbound.yaml")
        .map(|(_, d)| d)
        .expect("plugin");
    assert_eq!(plugin["spec"]["match"][0]["mode"], "SERVER");
    let port = plugin["spec"]["match"][0]["ports"][0]["number"]
        .as_u64()
        .expect("port");
    for (route, path, policy) in [
        (Some("default"), "/reviews/1", "reviews-ui"),
        (None, "/reviews/1", "reviews-ui"),
        (Some("default"), "/health", "(none)"),
    ] {
        let facts = Facts {
            route: route.map(str::to_owned),
            vhost: Some(format!("inbound|http|{port}")),
            path: Some(path.into()),
            ..Facts::default()
        };
        assert_eq!(chosen(&config, &facts), policy, "{route:?} {path}");
    }

    // Gateway API: the HTTPRoute's rules, named and unnamed.
    let config = plugin_config(&docs, "envoy/gateway-api/wasmplugin.yaml");
    let route = docs
        .iter()
        .find(|(f, d)| f == "envoy/gateway-api/httproute.yaml" && d["kind"] == "HTTPRoute")
        .map(|(_, d)| d)
        .expect("HTTPRoute");
    let generated = http_route_routes(route);
    assert_eq!(generated, ["checkout", "shop.storefront.1"]);
    for (route, policy) in [
        ("checkout", "checkout"),
        ("shop.storefront.1", "storefront"),
    ] {
        let facts = Facts {
            route: Some(route.into()),
            vhost: Some("shop.example.com:80".into()),
            istio_config: Some(generated_config("shop.example.com")),
            ..Facts::default()
        };
        assert_eq!(chosen(&config, &facts), policy, "route {route}");
    }

    // Ambient waypoint: the HTTPRoute whose parent is the Service; other traffic gets the default.
    let config = plugin_config(&docs, "envoy/istio/waypoint.yaml");
    let route = docs
        .iter()
        .find(|(f, d)| f == "envoy/istio/waypoint.yaml" && d["kind"] == "HTTPRoute")
        .map(|(_, d)| d)
        .expect("HTTPRoute");
    let generated = http_route_routes(route);
    assert_eq!(generated, ["shop.reviews.0"]);
    assert_eq!(
        chosen(
            &config,
            &Facts {
                route: Some(generated[0].clone()),
                istio_config: Some(generated_config("reviews.shop.svc.cluster.local")),
                ..Facts::default()
            }
        ),
        "reviews-ui"
    );
    assert_eq!(
        chosen(
            &config,
            &Facts {
                route: Some("default".into()),
                ..Facts::default()
            }
        ),
        "default"
    );
}

#[test]
fn the_docs_walkthrough_applies_the_shipped_files() {
    let guide = std::fs::read_to_string(root().join("docs/istio.md")).expect("docs/istio.md");
    for file in [
        "envoy/istio/gateway.yaml",
        "envoy/istio/virtualservice.yaml",
        "envoy/istio/wasmplugin.yaml",
    ] {
        assert!(Path::new(&root().join(file)).exists(), "{file}");
        assert!(
            guide.contains(&format!("-f {file}")),
            "docs/istio.md applies {file}"
        );
    }
}
