//! The `cors-policy` binary: exact output and exit status of `check` and `explain`.

use std::path::{Path, PathBuf};
use std::process::Command;

const CLI: &str = env!("CARGO_BIN_EXE_cors-policy");

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository root")
        .to_path_buf()
}

/// Runs the CLI from the repository root (paths in the output are as given).
fn run(args: &[&str]) -> Run {
    let out = Command::new(CLI)
        .current_dir(root())
        .args(args)
        .output()
        .expect("run cors-policy");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A scratch file for this test process.
fn scratch(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cors-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write scratch file");
    path
}

fn lines(text: &[&str]) -> String {
    text.iter().map(|l| format!("{l}\n")).collect()
}

#[track_caller]
fn assert_run(run: &Run, code: i32, stdout: &[&str]) {
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (Some(code), lines(stdout).as_str()),
        "stderr: {}",
        run.stderr
    );
}

// ------------------------------------------------------------------------------------------------
// check
// ------------------------------------------------------------------------------------------------

#[test]
fn check_valid_documents() {
    assert_run(
        &run(&["check", "examples/policy.json"]),
        0,
        &["OK: examples/policy.json: 2 policies (default, public), 0 rules"],
    );
    assert_run(
        &run(&["check", "examples/policies/valid/full-form.json"]),
        0,
        &["OK: examples/policies/valid/full-form.json: 3 policies (default, partner, public), 3 rules"],
    );
    assert_run(
        &run(&["check", "examples/policies/valid/short-form.json"]),
        0,
        &["OK: examples/policies/valid/short-form.json: 1 policy (default), 0 rules"],
    );
}

#[test]
fn check_prints_warnings_and_still_succeeds() {
    assert_run(
        &run(&["check", "examples/policies/valid/regex-warning.json"]),
        0,
        &[
            r#"warning: allow_origin_regexes[0]: "https://[a-z]+.example.com": unescaped '.' between two letters or digits matches any character; write \. for a literal dot"#,
            "OK: examples/policies/valid/regex-warning.json: 1 policy (default), 0 rules",
        ],
    );
}

/// Every known-bad example: its `.errors` lines, then the summary, exit 1.
#[test]
fn check_invalid_examples_prints_every_error_with_its_path() {
    let dir = root().join("examples/policies/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read examples/policies/invalid")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 14, "{files:?}");
    for path in files {
        let relative = path.strip_prefix(root()).expect("under root");
        let relative = relative.to_str().expect("utf-8 path");
        let errors = std::fs::read_to_string(path.with_extension("errors")).expect(".errors");
        let count = errors.lines().count();
        let expected = format!(
            "{errors}FAILED: {relative}: {count} error{}\n",
            if count == 1 { "" } else { "s" }
        );
        let run = run(&["check", relative]);
        assert_eq!(
            (run.code, run.stdout.as_str()),
            (Some(1), expected.as_str()),
            "{relative}"
        );
    }
}

#[test]
fn check_the_known_example_errors_exactly() {
    assert_run(
        &run(&["check", "examples/policies/invalid/wildcard-tld.json"]),
        1,
        &[
            r#"policies.partner.allow_origins[1]: "https://*.com": a wildcard must leave at least two labels"#,
            "FAILED: examples/policies/invalid/wildcard-tld.json: 1 error",
        ],
    );
}

const WASMPLUGIN_FLOATS: &str = r#"# Istio may hand numbers over as floats
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata:
  name: cors
  namespace: shop
spec:
  url: oci://registry.example.com/cors:1
  phase: AUTHN
  pluginConfig:
    default:
      allow_origins: ["https://app.example.com"]
      max_age: 600.0
      preflight_status: 204.0
    rules:
    - match: { route: "web" }
      policy: null
"#;

#[test]
fn check_reads_the_plugin_config_of_an_istio_wasmplugin() {
    let path = scratch("floats.yaml", WASMPLUGIN_FLOATS);
    let run = run(&["check", path.to_str().expect("path")]);
    assert_run(
        &run,
        0,
        &[&format!(
            "OK: {}: WasmPlugin shop/cors: 1 policy (default), 1 rule",
            path.display()
        )],
    );
}

#[test]
fn check_reports_each_wasmplugin_of_a_multi_document_yaml() {
    let text = format!(
        "{WASMPLUGIN_FLOATS}---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{ name: web }}\nspec: {{ hosts: [a] }}\n---\n{}\n---\n{}",
        "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: { name: broken }\nspec:\n  pluginConfig:\n    allow_origins: [\"https://*.com\", \"https://ok.example.com\"]\n    allow_methods: [TRACE]\n    max_age: 600.5\n",
        "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: { name: empty, namespace: shop }\nspec:\n  url: oci://x/y:1\n",
    );
    let path = scratch("multi.yaml", &text);
    let p = path.display();
    assert_run(
        &run(&["check", path.to_str().expect("path")]),
        1,
        &[
            &format!("OK: {p}: WasmPlugin shop/cors: 1 policy (default), 1 rule"),
            r#"allow_origins[0]: "https://*.com": a wildcard must leave at least two labels"#,
            r#"allow_methods[0]: "TRACE": CONNECT, TRACE and TRACK can never be allowed"#,
            "max_age: expected an integer, got 600.5",
            &format!("FAILED: {p}: WasmPlugin broken: 3 errors"),
            "spec.pluginConfig: missing: the filter needs its policy document here",
            &format!("FAILED: {p}: WasmPlugin shop/empty: 1 error"),
        ],
    );
}

#[test]
fn check_usage_and_io_errors_exit_2() {
    let missing = run(&["check", "examples/policies/does-not-exist.json"]);
    assert_eq!(missing.code, Some(2));
    assert_eq!(missing.stdout, "");
    assert!(
        missing
            .stderr
            .starts_with("cors-policy: cannot read examples/policies/does-not-exist.json: "),
        "{}",
        missing.stderr
    );

    let no_plugin = run(&["check", "envoy/istio/virtualservice.yaml"]);
    assert_eq!(no_plugin.code, Some(2));
    assert_eq!(
        no_plugin.stderr,
        "cors-policy: envoy/istio/virtualservice.yaml: no Istio WasmPlugin found (a .yaml/.yml file must hold `kind: WasmPlugin` with spec.pluginConfig, or an Envoy Gateway EnvoyExtensionPolicy with spec.wasm[].config; policy documents are .json)\n"
    );

    for args in [
        &[][..],
        &["check"][..],
        &["check", "a", "b"][..],
        &["frobnicate"][..],
    ] {
        let r = run(args);
        assert_eq!(r.code, Some(2), "{args:?}");
        assert_eq!(r.stdout, "", "{args:?}");
        assert!(r.stderr.contains("\nusage:\n"), "{args:?}: {}", r.stderr);
    }
}

#[test]
fn check_broken_yaml_is_an_error_with_a_path() {
    let path = scratch("broken.yaml", "kind: WasmPlugin\nspec: [unclosed\n");
    let r = run(&["check", path.to_str().expect("path")]);
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    let out: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(out.len(), 2, "{}", r.stdout);
    assert!(out[0].starts_with("$: invalid YAML: "), "{}", out[0]);
    assert_eq!(
        out[1],
        format!("FAILED: {} (YAML document 1): 1 error", path.display())
    );
}

// ------------------------------------------------------------------------------------------------
// explain
// ------------------------------------------------------------------------------------------------

const VARY3: &str = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";

#[test]
fn explain_allowed_preflight() {
    let r = run(&[
        "explain",
        "examples/policy.json",
        "--origin",
        "http://127.0.0.1:10001",
        "--preflight",
        "--method",
        "PUT",
        "--header",
        "Content-Type",
        "--header",
        "x-requested-with",
    ]);
    assert_run(
        &r,
        0,
        &[
            "policy: default (no route metadata, no rule matched: the default)",
            "mode: enforce",
            "request: OPTIONS (preflight), origin: http://127.0.0.1:10001, access-control-request-method: PUT, access-control-request-headers: Content-Type, x-requested-with",
            r#"decision: cors: policy=default preflight origin="http://127.0.0.1:10001" allowed"#,
            "counter: cors.default.preflight_allowed",
            "response: 204 local reply, empty body (not forwarded upstream)",
            "  access-control-allow-origin: http://127.0.0.1:10001",
            "  access-control-allow-credentials: true",
            "  access-control-allow-methods: GET, PUT, DELETE, POST",
            "  access-control-allow-headers: content-type, x-requested-with",
            "  access-control-max-age: 600",
            &format!("  vary: {VARY3}"),
        ],
    );
}

#[test]
fn explain_denied_preflight_says_why_and_how_to_see_it() {
    assert_run(
        &run(&[
            "explain",
            "examples/policy.json",
            "--origin",
            "http://127.0.0.1:10001",
            "--preflight",
            "--method",
            "PATCH",
        ]),
        0,
        &[
            "policy: default (no route metadata, no rule matched: the default)",
            "mode: enforce",
            "request: OPTIONS (preflight), origin: http://127.0.0.1:10001, access-control-request-method: PATCH",
            r#"decision: cors: policy=default preflight origin="http://127.0.0.1:10001" denied (method)"#,
            "counter: cors.default.preflight_denied.method",
            "response: 403 local reply, empty body (not forwarded upstream)",
            &format!("  vary: {VARY3}"),
            r#"note: set "debug": true on policy default to get cors-deny-reason on denied preflights"#,
        ],
    );
}

#[test]
fn explain_actual_request_edits_the_upstream_headers() {
    assert_run(
        &run(&[
            "explain",
            "examples/policy.json",
            "--origin",
            "http://localhost:10001",
            "--method",
            "DELETE",
            "--upstream-header",
            "Content-Type: application/json",
            "--upstream-header",
            "Access-Control-Allow-Origin: *",
            "--upstream-header",
            "Access-Control-Max-Age: 5",
            "--upstream-header",
            "Vary: Accept-Encoding",
        ]),
        0,
        &[
            "policy: default (no route metadata, no rule matched: the default)",
            "mode: enforce",
            "request: DELETE, origin: http://localhost:10001",
            r#"decision: cors: policy=default actual origin="http://localhost:10001" allowed"#,
            "counter: cors.default.actual_allowed",
            "response: forwarded upstream; the upstream's status, with 6 header edits",
            "  remove access-control-allow-origin",
            "  remove access-control-max-age",
            "  set access-control-allow-origin: http://localhost:10001",
            "  set access-control-allow-credentials: true",
            "  set access-control-expose-headers: x-exposed",
            "  set vary: Accept-Encoding, Origin",
            "response headers:",
            "  content-type: application/json",
            "  vary: Accept-Encoding, Origin",
            "  access-control-allow-origin: http://localhost:10001",
            "  access-control-allow-credentials: true",
            "  access-control-expose-headers: x-exposed",
        ],
    );
}

#[test]
fn explain_disallowed_origin_on_an_actual_request() {
    assert_run(
        &run(&[
            "explain",
            "examples/policy.json",
            "--origin",
            "https://evil.example",
        ]),
        0,
        &[
            "policy: default (no route metadata, no rule matched: the default)",
            "mode: enforce",
            "request: GET, origin: https://evil.example",
            r#"decision: cors: policy=default actual origin="https://evil.example" denied (origin)"#,
            "counter: cors.default.actual_denied",
            "response: forwarded upstream; the upstream's status, with 1 header edit",
            "  set vary: Origin",
            "response headers (no --upstream-header given):",
            "  vary: Origin",
        ],
    );
}

#[test]
fn explain_names_the_rule_or_metadata_that_chose_the_policy() {
    let full = "examples/policies/valid/full-form.json";
    let first_line = |args: &[&str]| {
        let mut all = vec!["explain", full, "--origin", "https://a.partner.example"];
        all.extend_from_slice(args);
        let r = run(&all);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        r.stdout.lines().next().unwrap_or_default().to_owned()
    };
    assert_eq!(
        first_line(&["--route", "partner-api"]),
        r#"policy: partner (rules[0] {route="partner-api"} matched)"#
    );
    assert_eq!(
        first_line(&["--host", "static.example.com:8443"]),
        r#"policy: public (rules[1] {host="static.example.com"} matched)"#
    );
    assert_eq!(
        first_line(&["--host", "a.b.example.com", "--path", "/internal/x"]),
        r#"policy: none, no CORS handling (rules[2] {host="*.example.com", path_prefix="/internal/"} matched)"#
    );
    assert_eq!(
        first_line(&["--host", "example.com", "--path", "/internal/x"]),
        "policy: default (no route metadata, no rule matched: the default)"
    );
    assert_eq!(
        first_line(&["--route", "partner-api", "--metadata-policy", "public"]),
        r#"policy: public (route metadata filter_metadata.cors.policy = "public")"#
    );
    assert_eq!(
        first_line(&["--metadata-policy", "off"]),
        r#"policy: none, no CORS handling (route metadata filter_metadata.cors.policy = "off")"#
    );
    assert_eq!(
        first_line(&["--metadata-policy", "nope"]),
        r#"policy: unknown "nope", failing closed (route metadata filter_metadata.cors.policy = "nope"; no such policy)"#
    );
}

#[test]
fn explain_takes_the_istio_resource_a_route_came_from() {
    let file = "examples/policies/valid/istio-resources.json";
    let first_line = |args: &[&str]| {
        let mut all = vec!["explain", file, "--origin", "https://a.partner.example"];
        all.extend_from_slice(args);
        let r = run(&all);
        assert_eq!(r.code, Some(0), "{}", r.stderr);
        r.stdout.lines().next().unwrap_or_default().to_owned()
    };
    assert_eq!(
        first_line(&["--virtual-service", "shop/storefront"]),
        r#"policy: partner (rules[0] {virtual_service="shop/storefront"} matched)"#
    );
    assert_eq!(
        first_line(&["--virtual-service", "shop/other"]),
        "policy: default (no route metadata, no rule matched: the default)"
    );
    let generated =
        "istio-system/istio-system~gateway~istio-autogenerated-k8s-gateway~shop~shop.example.com";
    assert_eq!(
        first_line(&[
            "--route",
            "shop.catalog.v2.3",
            "--virtual-service",
            generated
        ]),
        r#"policy: public (rules[1] {http_route="shop/catalog.v2"} matched)"#
    );
    // The same route name on a hand-written VirtualService is not the HTTPRoute's.
    assert_eq!(
        first_line(&[
            "--route",
            "shop.catalog.v2.3",
            "--virtual-service",
            "web/rewrites"
        ]),
        "policy: default (no route metadata, no rule matched: the default)"
    );
    let r = run(&["explain", file, "--virtual-service", "storefront"]);
    assert_eq!(r.code, Some(2));
    assert!(
        r.stderr.starts_with(
            "cors-policy: --virtual-service \"storefront\": expected NAMESPACE/NAME\n"
        ),
        "{}",
        r.stderr
    );
}

#[test]
fn explain_unknown_policy_fails_closed() {
    assert_run(
        &run(&[
            "explain",
            "examples/policy.json",
            "--metadata-policy",
            "partner",
            "--origin",
            "http://127.0.0.1:10001",
            "--preflight",
        ]),
        0,
        &[
            r#"policy: unknown "partner", failing closed (route metadata filter_metadata.cors.policy = "partner"; no such policy)"#,
            "request: OPTIONS (preflight), origin: http://127.0.0.1:10001, access-control-request-method: GET",
            r#"decision: cors: policy=- preflight origin="http://127.0.0.1:10001" denied (unknown policy)"#,
            "counter: cors.unknown_policy",
            "response: 403 local reply, empty body (not forwarded upstream)",
            &format!("  vary: {VARY3}"),
            "note: the route names a policy that does not exist",
        ],
    );
}

#[test]
fn explain_report_mode_changes_nothing() {
    assert_run(
        &run(&[
            "explain",
            "examples/policies/valid/report-mode.json",
            "--origin",
            "https://other.example",
            "--preflight",
            "--method",
            "DELETE",
        ]),
        0,
        &[
            "policy: default (no route metadata, no rule matched: the default)",
            "mode: report (decide and count, change nothing)",
            "request: OPTIONS (preflight), origin: https://other.example, access-control-request-method: DELETE",
            r#"decision: cors: policy=default preflight origin="https://other.example" denied (origin)"#,
            "counter: cors.default.preflight_denied.origin",
            "response: forwarded upstream, left untouched (mode report: the decision is only counted and logged)",
            "response headers (no --upstream-header given):",
            "  (none)",
        ],
    );
}

#[test]
fn explain_forwarded_denied_preflight() {
    let path = scratch(
        "forward.json",
        r#"{"allow_origins": ["https://app.example.com"], "unmatched_preflights": "forward"}"#,
    );
    assert_run(
        &run(&[
            "explain",
            path.to_str().expect("path"),
            "--origin",
            "https://app.example.com",
            "--preflight",
            "--method",
            "PUT",
            "--upstream-header",
            "allow: GET, PUT",
        ]),
        0,
        &[
            "policy: default (no route metadata, no rule matched: the default)",
            "mode: enforce",
            "request: OPTIONS (preflight), origin: https://app.example.com, access-control-request-method: PUT",
            r#"decision: cors: policy=default preflight origin="https://app.example.com" denied (method)"#,
            "counter: cors.default.preflight_denied.method",
            "response: forwarded upstream (unmatched_preflights: forward; the upstream answers the preflight); the upstream's status, with 1 header edit",
            "  set vary: Origin",
            "response headers:",
            "  allow: GET, PUT",
            "  vary: Origin",
            "note: the preflight was denied; with unmatched_preflights: reject it would get a local 403",
        ],
    );
}

#[test]
fn explain_an_istio_wasmplugin_by_route_name() {
    assert_run(
        &run(&[
            "explain",
            "envoy/istio/wasmplugin.yaml",
            "--route",
            "partner-api.v1",
            "--origin",
            "https://shop.partner.example",
            "--preflight",
            "--method",
            "PUT",
            "--header",
            "authorization",
            "--private-network",
        ]),
        0,
        &[
            r#"policy: partner (rules[0] {route="partner-api.v1"} matched)"#,
            "mode: enforce",
            "request: OPTIONS (preflight), origin: https://shop.partner.example, access-control-request-method: PUT, access-control-request-headers: authorization, access-control-request-private-network: true",
            r#"decision: cors: policy=partner preflight origin="https://shop.partner.example" denied (private-network)"#,
            "counter: cors.partner.preflight_denied.private_network",
            "response: 403 local reply, empty body (not forwarded upstream)",
            &format!("  vary: {VARY3}"),
            "  cors-deny-reason: private-network",
        ],
    );
}

#[test]
fn explain_invalid_document_prints_its_errors() {
    assert_run(
        &run(&[
            "explain",
            "examples/policies/invalid/out-of-range.json",
            "--origin",
            "https://a.example",
        ]),
        1,
        &[
            "max_age: 100000 is out of range 0..=86400",
            "preflight_status: 403 is out of range 200..=299",
            "FAILED: examples/policies/invalid/out-of-range.json: 2 errors",
        ],
    );
}

#[test]
fn explain_usage_errors_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["explain"], "cors-policy: explain needs a FILE\n"),
        (
            &["explain", "examples/policy.json", "--preflight"],
            "cors-policy: --preflight needs --origin (a preflight always carries an Origin)\n",
        ),
        (
            &[
                "explain",
                "examples/policy.json",
                "--origin",
                "https://a.example",
                "--header",
                "x",
            ],
            "cors-policy: --header and --private-network describe a preflight: add --preflight\n",
        ),
        (
            &["explain", "examples/policy.json", "--origin"],
            "cors-policy: --origin needs a value\n",
        ),
        (
            &[
                "explain",
                "examples/policy.json",
                "--upstream-header",
                "novalue",
            ],
            "cors-policy: --upstream-header \"novalue\": expected 'Name: value'\n",
        ),
        (
            &["explain", "examples/policy.json", "--colour"],
            "cors-policy: unknown option --colour\n",
        ),
    ];
    for (args, first_line) in cases {
        let r = run(args);
        assert_eq!(r.code, Some(2), "{args:?}");
        assert_eq!(r.stdout, "", "{args:?}");
        assert!(
            r.stderr.starts_with(first_line) && r.stderr.contains("\nusage:\n"),
            "{args:?}: {}",
            r.stderr
        );
    }
}

#[test]
fn help_prints_usage_and_succeeds() {
    let r = run(&["--help"]);
    assert_eq!(r.code, Some(0));
    assert!(
        r.stdout
            .starts_with("usage:\n  cors-policy --version\n  cors-policy check FILE\n"),
        "{}",
        r.stdout
    );
    assert!(Path::new(CLI).is_file());
}

#[test]
fn version_prints_the_crate_version() {
    for flag in ["--version", "-V", "version"] {
        let r = run(&[flag]);
        assert_run(
            &r,
            0,
            &[&format!("cors-policy {}", env!("CARGO_PKG_VERSION"))],
        );
    }
    let r = run(&["--version", "extra"]);
    assert_eq!(r.code, Some(2), "{}", r.stderr);
}

// ------------------------------------------------------------------------------------------------
// import
// ------------------------------------------------------------------------------------------------

/// The `FORWARD` warning of an Istio corsPolicy without `unmatchedPreflights`.
fn istio_forward(at: &str) -> String {
    format!("warning: {at}.unmatchedPreflights: absent (FORWARD): Envoy forwards a preflight upstream only when its origin does not match, and answers every preflight from an allowed origin itself (one asking for a method or header outside the lists gets 200 without the grant, which the browser refuses); imported as unmatched_preflights: forward, which forwards every preflight that fails any check (origin, method or headers): the browser's outcome differs only where the upstream answers such a preflight with CORS headers of its own")
}

/// What `import` prints on stderr: the warnings, then what to remove.
fn import_stderr(warnings: &[&str], remove: &[&str]) -> String {
    let mut out = lines(warnings);
    if !remove.is_empty() {
        out.push_str("remove once the filter serves these routes (else two CORS implementations act on one request):\n");
        for item in remove {
            out.push_str(&format!("  {item}\n"));
        }
    }
    out
}

/// Imports FILE; the output must be exactly `expected`, and `cors-policy check` must accept it.
#[track_caller]
fn assert_import(file: &str, expected: serde_json::Value, warnings: &[&str], remove: &[&str]) {
    let r = run(&["import", file]);
    assert_eq!(r.code, Some(0), "stderr: {}", r.stderr);
    let got: serde_json::Value = serde_json::from_str(&r.stdout).expect("import prints JSON");
    assert_eq!(got, expected, "{}", r.stdout);
    assert_eq!(r.stderr, import_stderr(warnings, remove), "warnings");
    let output = scratch(
        &format!("imported-{}.json", file.replace('/', "-")),
        &r.stdout,
    );
    let check = run(&["check", &output.to_string_lossy()]);
    assert_eq!(check.code, Some(0), "check of the import: {}", check.stdout);
    assert!(check.stdout.starts_with("OK: "), "{}", check.stdout);
}

#[test]
fn import_istio_virtual_services_keyed_on_the_resource_and_route() {
    let storefront = "document 2 (VirtualService shop/storefront): spec.http";
    assert_import(
        "examples/import/virtualservices.yaml",
        serde_json::json!({
            "policies": {
                "shop-catalog": {
                    "allow_origins": ["*"],
                    "allow_methods": ["GET"],
                    "max_age": 90,
                    "unmatched_preflights": "forward"
                },
                "shop-storefront-partner-api": {
                    "allow_origins": ["https://app.partner.example", "https://portal.partner.example"],
                    "allow_origin_regexes": ["https://[a-z0-9-]+\\.partner\\.example"],
                    "allow_methods": ["GET", "PUT", "DELETE"],
                    "allow_headers": ["content-type", "authorization", "x-request-id"],
                    "expose_headers": ["X-Request-Id"],
                    "max_age": 86400,
                    "allow_credentials": true,
                    "unmatched_preflights": "forward"
                },
                "shop-storefront-web": {
                    "allow_origins": ["https://shop.example.com", "http://shop.example.com"],
                    "allow_methods": ["GET", "POST"],
                    "max_age": 600,
                    "unmatched_preflights": "reject"
                }
            },
            "rules": [
                { "match": { "virtual_service": "shop/storefront", "route": "partner-api.v1" }, "policy": "shop-storefront-partner-api" },
                { "match": { "virtual_service": "shop/storefront", "route": "partner-api" }, "policy": "shop-storefront-partner-api" },
                { "match": { "virtual_service": "shop/storefront", "route": "web" }, "policy": "shop-storefront-web" },
                { "match": { "virtual_service": "shop/catalog" }, "policy": "shop-catalog" }
            ]
        }),
        &[
            &istio_forward(&format!("{storefront}[0].corsPolicy")),
            &format!("warning: {storefront}[0].corsPolicy.allowOrigins[1].prefix: prefix \"https://portal.partner.example\" also matches https://portal.partner.example.evil.example and any port; imported as the exact origin \"https://portal.partner.example\" (add \"https://portal.partner.example:*\" or a subdomain pattern if you meant those)"),
            &format!("warning: {storefront}[0].corsPolicy.maxAge: \"48h\": imported as 86400 seconds (whole seconds, at most 86400) (no browser caches a preflight longer: Firefox stops at 86400, Chromium at 7200; nothing changes for a browser)"),
            &format!("warning: {storefront}[1].corsPolicy.unmatchedPreflights: IGNORE: Envoy answers a preflight that does not match itself with 200 and no CORS headers; imported as unmatched_preflights: reject, which answers 403 and no CORS headers (the browser refuses both alike)"),
            &istio_forward("document 3 (VirtualService shop/catalog): spec.http[0].corsPolicy"),
            &istio_forward("document 3 (VirtualService shop/catalog): spec.http[1].corsPolicy"),
            &istio_forward("document 4 (VirtualService shop/reviews): spec.http[0].corsPolicy"),
            "warning: document 4 (VirtualService shop/reviews): spec.http[0].corsPolicy.allowOrigins[0].prefix: prefix \"https://\" has no safe pattern (it matches origins of hosts no one listed): not imported",
            "warning: document 4 (VirtualService shop/reviews): spec.http[0].corsPolicy: no origin could be imported: the routes get no CORS handling (policy null)",
            "warning: document 4 (VirtualService shop/reviews): spec.http[0]: an http entry without a name shares its routes' names with the VirtualService's other entries, which have another CORS policy: not imported (its routes get no CORS handling; give the entry a name and import again)",
        ],
        &[
            "VirtualService shop/storefront: spec.http[0].corsPolicy",
            "VirtualService shop/storefront: spec.http[1].corsPolicy",
            "VirtualService shop/catalog: spec.http[0].corsPolicy",
            "VirtualService shop/catalog: spec.http[1].corsPolicy",
            "VirtualService shop/reviews: spec.http[0].corsPolicy",
        ],
    );
}

#[test]
fn import_envoy_cors_per_virtual_host_and_route() {
    let vhost = "document 1: virtual_hosts[0]";
    let cors = "typed_per_filter_config[\"envoy.filters.http.cors\"]";
    assert_import(
        "examples/import/envoy-routes.yaml",
        serde_json::json!({
            "policies": {
                "api": {
                    "allow_origins": ["https://app.example.com", "https://*.example.com", "http://*.example.com"],
                    "allow_origin_regexes": ["https://[a-z]+-preview\\.example\\.dev"],
                    "allow_methods": ["GET", "POST", "PUT"],
                    "allow_headers": ["content-type", "x-api-key"],
                    "expose_headers": ["x-request-id"],
                    "max_age": 600,
                    "unmatched_preflights": "forward"
                },
                "partner": {
                    "allow_origins": ["https://app.partner.example", "https://portal.partner.example"],
                    "allow_methods": ["GET", "PUT"],
                    "allow_credentials": true,
                    "unmatched_preflights": "reject"
                }
            },
            "rules": [
                { "match": { "virtual_host": "api", "route": "partner" }, "policy": "partner" },
                { "match": { "virtual_host": "api", "route": "rest" }, "policy": "api" }
            ]
        }),
        &[
            &format!("warning: {vhost}.{cors}.allow_origin_string_match[1].suffix: suffix \".example.com\": imported as https://*.example.com, http://*.example.com"),
            &format!("warning: {vhost}.routes[0].{cors}.forward_not_matching_preflights: false: Envoy answers a preflight that does not match itself with 200 and no CORS headers; imported as unmatched_preflights: reject, which answers 403 and no CORS headers (the browser refuses both alike)"),
            &format!("warning: {vhost}.routes[0].{cors}.allow_origin_string_match[1].prefix: prefix \"https://portal.partner.example\" also matches https://portal.partner.example.evil.example and any port; imported as the exact origin \"https://portal.partner.example\" (add \"https://portal.partner.example:*\" or a subdomain pattern if you meant those)"),
            &format!("warning: {vhost}.routes[0].{cors}.allow_origin_string_match[2].contains: contains \"partner\" has no safe pattern: not imported"),
            &format!("warning: {vhost}.routes[1]: a route without a name cannot be chosen by a rule: not imported (it gets no CORS handling; give the route a name and import again)"),
        ],
        &[
            &format!("{vhost}.{cors}"),
            &format!("{vhost}.routes[0].{cors}"),
            &format!("{vhost}.routes[1].{cors}"),
            "document 1: virtual_hosts: the envoy.filters.http.cors HTTP filter of this route configuration's listener, once no route needs it",
        ],
    );
}

#[test]
fn import_leaves_out_what_the_policy_refuses_and_says_why() {
    let file = scratch(
        "credentials.yaml",
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: api, namespace: prod }
spec:
  hosts: ["api.example.com"]
  http:
  - name: api
    corsPolicy:
      allowOrigins:
      - exact: "*"
      - exact: http://app.example.com
      - exact: https://app.example.com/
      - exact: https://app.example.com
      - regex: ".*"
      allowHeaders: ["Content-Type", "Cookie"]
      allowCredentials: true
    route:
    - destination: { host: api.prod.svc.cluster.local }
"#,
    );
    let path = file.to_string_lossy().into_owned();
    let r = run(&["import", &path]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let got: serde_json::Value = serde_json::from_str(&r.stdout).expect("JSON");
    assert_eq!(
        got,
        serde_json::json!({
            "policies": { "prod-api": {
                "allow_origins": ["https://app.example.com"],
                "allow_headers": ["content-type"],
                "allow_credentials": true,
                "unmatched_preflights": "forward"
            } },
            "rules": [{ "match": { "virtual_service": "prod/api" }, "policy": "prod-api" }]
        })
    );
    let at = "document 1 (VirtualService prod/api): spec.http[0].corsPolicy";
    let any = "any origin with credentials: every site could read responses to credentialed requests (cookies, HTTP authentication): the origin was echoed with Access-Control-Allow-Credentials: true; not imported: the listed origins keep credentialed access, and a browser now refuses every other origin";
    assert_eq!(
        r.stderr,
        import_stderr(
            &[
                &istio_forward(at),
                &format!("warning: {at}.allowOrigins[0].exact: {any}"),
                &format!("warning: {at}.allowOrigins[4].regex: {any}"),
                &format!("warning: {at}.allowOrigins[2].exact: \"https://app.example.com/\": an origin has no path, query or fragment; this one has a trailing slash: not imported"),
                &format!("warning: {at}.allowOrigins[1].exact: \"http://app.example.com\": an insecure http:// origin with allow_credentials: true (anyone on the network can act as it); use https://, or set dangerously_allow_insecure_origins: not imported"),
                &format!("warning: {at} (allow_headers: \"cookie\"): \"cookie\": a forbidden request header (Fetch): browsers never let a page set it: not imported"),
            ],
            &["VirtualService prod/api: spec.http[0].corsPolicy"],
        )
    );
    let check = run(&[
        "check",
        &scratch("credentials.json", &r.stdout).to_string_lossy(),
    ]);
    assert_eq!(check.code, Some(0), "{}", check.stdout);
}

#[test]
fn import_with_nothing_to_import_exits_1() {
    let none = scratch(
        "no-cors.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: { name: web, namespace: shop }\nspec:\n  hosts: [\"web\"]\n  http:\n  - route:\n    - destination: { host: web }\n",
    );
    let r = run(&["import", &none.to_string_lossy()]);
    assert_eq!((r.code, r.stdout.as_str()), (Some(1), ""));
    assert!(
        r.stderr
            .ends_with("nothing imported (0 sources with CORS configuration found)\n"),
        "{}",
        r.stderr
    );
    let only_prefix = scratch(
        "only-prefix.yaml",
        "kind: VirtualService\nmetadata: { name: web, namespace: shop }\nspec:\n  hosts: [web]\n  http:\n  - corsPolicy:\n      allowOrigins: [{ prefix: \"http\" }]\n",
    );
    let r = run(&["import", &only_prefix.to_string_lossy()]);
    assert_eq!((r.code, r.stdout.as_str()), (Some(1), ""));
    assert_eq!(
        r.stderr,
        lines(&[
            &istio_forward("document 1 (VirtualService shop/web): spec.http[0].corsPolicy"),
            "warning: document 1 (VirtualService shop/web): spec.http[0].corsPolicy.allowOrigins[0].prefix: prefix \"http\" has no safe pattern (it matches origins of hosts no one listed): not imported",
            "warning: document 1 (VirtualService shop/web): spec.http[0].corsPolicy: no origin could be imported: the routes get no CORS handling (policy null)",
            &format!("cors-policy: {}: nothing imported (1 source with CORS configuration found)", only_prefix.to_string_lossy()),
        ])
    );
    let r = run(&["import"]);
    assert_eq!(r.code, Some(2));
    assert!(
        r.stderr
            .starts_with("cors-policy: import takes exactly one FILE\n"),
        "{}",
        r.stderr
    );
}
