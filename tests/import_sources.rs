//! `cors-policy import` on the documented examples of each source it reads (the files under
//! `examples/import/`, each citing where its examples come from), and what a browser then gets
//! from the imported policy, through `cors-policy explain`, set against what the source's own
//! documentation says it answers. Where the two differ, the import's warning that says why is
//! asserted too, as is the list of what to remove.

use std::path::PathBuf;
use std::process::Command;

const CLI: &str = env!("CARGO_BIN_EXE_cors-policy");

/// `(exit code, stdout, stderr)` of the CLI run from the repository root.
fn cli(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(CLI)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("run cors-policy");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// Imports `args` (FILE and options); the policy written to a scratch file, which `check`
/// accepts, and the import's stderr.
#[track_caller]
fn import(name: &str, args: &[&str]) -> (PathBuf, String) {
    let mut all = vec!["import"];
    all.extend_from_slice(args);
    let (code, policy, stderr) = cli(&all);
    assert_eq!(code, Some(0), "{stderr}");
    let dir = std::env::temp_dir().join(format!("cors-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, &policy).expect("write the policy");
    let (code, checked, _) = cli(&["check", &path.to_string_lossy()]);
    assert_eq!(code, Some(0), "check: {checked}");
    (path, stderr)
}

/// What the filter answers (`explain`'s response lines, notes left out).
#[track_caller]
fn answer(policy: &PathBuf, request: &[&str]) -> String {
    let path = policy.to_string_lossy();
    let mut args = vec!["explain", path.as_ref()];
    args.extend_from_slice(request);
    let (code, out, err) = cli(&args);
    assert_eq!(code, Some(0), "{err}");
    out.lines()
        .skip_while(|l| !l.starts_with("response"))
        .filter(|l| !l.starts_with("note:"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The first line of `explain`: the policy chosen and why.
fn chosen(policy: &PathBuf, request: &[&str]) -> String {
    let path = policy.to_string_lossy();
    let mut args = vec!["explain", path.as_ref()];
    args.extend_from_slice(request);
    cli(&args).1.lines().next().unwrap_or_default().to_owned()
}

fn lines(items: &[&str]) -> String {
    items.iter().map(|l| format!("{l}\n")).collect()
}

const PREFLIGHT_VARY: &str =
    "  vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers";
const REPLY_204: &str = "response: 204 local reply, empty body (not forwarded upstream)";
const REPLY_403: &str = "response: 403 local reply, empty body (not forwarded upstream)";

/// The stderr lines that say what to remove.
fn remove(items: &[&str]) -> Vec<String> {
    let mut out = vec!["remove once the filter serves these routes (else two CORS implementations act on one request):".to_owned()];
    out.extend(items.iter().map(|i| format!("  {i}")));
    out
}

// ------------------------------------------------------------------------------------------------
// ingress-nginx
// ------------------------------------------------------------------------------------------------

/// The annotation docs' examples: `cors-allow-origin` with single-label wildcards and a port,
/// `cors-allow-methods: "PUT, GET, POST, OPTIONS"`, `cors-allow-headers: "X-Forwarded-For,
/// X-app123-XPTO"`, `cors-expose-headers: "*, X-CustomResponseHeader"`, `cors-max-age: 600`,
/// `cors-allow-credentials: "false"`. nginx echoes a matching origin and sends the lists as
/// they are on a 204; the browser then checks the method and headers.
#[test]
fn ingress_nginx_annotation_examples_give_a_browser_what_nginx_gave() {
    let (policy, _) = import("ingress-nginx", &["examples/import/ingress-nginx.yaml"]);
    let api = ["--host", "api.shop.example", "--path", "/v1/items"];
    let preflight = |origin: &str, header: &str| {
        let mut r = api.to_vec();
        r.extend_from_slice(&["--origin", origin, "--preflight", "--method", "PUT"]);
        r.extend_from_slice(&["--header", header]);
        answer(&policy, &r)
    };
    // One label in place of `*.`, with the port: nginx's regex matches, and so does ours.
    assert_eq!(
        preflight("https://app.origin-site.com:4443", "x-app123-xpto"),
        lines(&[
            REPLY_204,
            "  access-control-allow-origin: https://app.origin-site.com:4443",
            "  access-control-allow-methods: PUT, GET, POST, OPTIONS",
            "  access-control-allow-headers: x-forwarded-for, x-app123-xpto",
            "  access-control-max-age: 600",
            PREFLIGHT_VARY,
        ])
    );
    // Two labels: nginx's `[A-Za-z0-9\-]+` does not match, so nginx passes the preflight to
    // the backend without CORS headers; so does the import (unmatched_preflights: forward).
    let forwarded = lines(&[
        "response: forwarded upstream (unmatched_preflights: forward; the upstream answers the preflight); the upstream's status, with 1 header edit",
        "  set vary: Origin",
        "response headers (no --upstream-header given):",
        "  vary: Origin",
    ]);
    assert_eq!(
        preflight("https://a.b.origin-site.com:4443", "x-app123-xpto"),
        forwarded
    );
    // A header outside the list: nginx answers 204 with its list and the browser refuses; the
    // import forwards it (the warning on unmatched preflights says so), and the browser refuses.
    assert_eq!(
        preflight("https://app.origin-site.com:4443", "content-type"),
        forwarded
    );
    // An actual request from the exact origin: echoed, with the exposed headers.
    let mut get = api.to_vec();
    get.extend_from_slice(&["--origin", "https://example.org:1199", "--method", "GET"]);
    assert!(answer(&policy, &get).ends_with(&lines(&[
        "response headers (no --upstream-header given):",
        "  access-control-allow-origin: https://example.org:1199",
        "  access-control-expose-headers: *, X-CustomResponseHeader",
        "  vary: Origin",
    ])));
    // A longer path of another Ingress without CORS on the same host keeps no CORS handling.
    assert_eq!(
        chosen(
            &policy,
            &["--host", "api.shop.example", "--path", "/v1/internal/x", "--origin", "https://example.org:1199"]
        ),
        "policy: none, no CORS handling (rules[0] {host=\"api.shop.example\", path_prefix=\"/v1/internal/\"} matched)"
    );
    // `enable-cors` alone: nginx answers `Access-Control-Allow-Origin: *` with credentials
    // allowed, which a browser accepts for uncredentialed requests only: the same here.
    assert_eq!(
        answer(
            &policy,
            &["--host", "www.shop.example", "--path", "/", "--origin", "https://any.example", "--preflight", "--method", "DELETE", "--header", "content-type"]
        ),
        lines(&[
            REPLY_204,
            "  access-control-allow-origin: *",
            "  access-control-allow-methods: GET, PUT, POST, DELETE, PATCH, OPTIONS",
            "  access-control-allow-headers: user-agent, x-requested-with, if-modified-since, cache-control, content-type, range, authorization",
            "  access-control-max-age: 86400",
            PREFLIGHT_VARY,
        ])
    );
    // Credentials by default with an exact list: kept for https, refused for http:// (warned).
    let partner = |origin: &str| {
        answer(
            &policy,
            &[
                "--host",
                "partner.shop.example",
                "--path",
                "/status",
                "--origin",
                origin,
                "--method",
                "GET",
            ],
        )
    };
    assert!(partner("https://origin-site.com:4443").ends_with(&lines(&[
        "  access-control-allow-origin: https://origin-site.com:4443",
        "  access-control-allow-credentials: true",
        "  vary: Origin",
    ])));
    assert!(
        partner("http://origin-site.com")
            .ends_with("response headers (no --upstream-header given):\n  vary: Origin\n"),
        "{}",
        partner("http://origin-site.com")
    );
}

#[test]
fn ingress_nginx_import_warns_where_a_browser_would_notice_and_lists_the_annotations() {
    let (_, stderr) = import(
        "ingress-nginx-warnings",
        &["examples/import/ingress-nginx.yaml"],
    );
    let at = |n: usize, name: &str, rest: &str| {
        format!("warning: document 1, items[{n}] (Ingress shop/{name}): {rest}")
    };
    let forward = "ingress-nginx answers every preflight from an allowed origin itself (204, whatever method or headers it asks for: the browser checks them) and passes the others to the backend; imported as unmatched_preflights: forward, which passes every preflight that fails any check (origin, method or headers) to the backend: the browser's outcome differs only where the backend answers such a preflight with CORS headers of its own";
    let a = |a: &str| format!("metadata.annotations[\"nginx.ingress.kubernetes.io/{a}\"]");
    let forbidden = |h: &str| {
        format!("metadata.annotations (allow_headers: \"{h}\"): \"{h}\": a forbidden request header (Fetch): browsers never let a page set it: not imported")
    };
    let mut expected = vec![
        at(0, "api", &format!("{}[0]: \"https://*.origin-site.com:4443\": ingress-nginx matches exactly one label in place of *; imported as the regex \"https://[a-z0-9-]+\\\\.origin-site\\\\.com:4443\" (a pattern https://*.… would match deeper subdomains too)", a("cors-allow-origin"))),
        at(0, "api", &format!("{}[1]: \"http://*.origin-site.com\": ingress-nginx matches exactly one label in place of *; imported as the regex \"http://[a-z0-9-]+\\\\.origin-site\\\\.com\" (a pattern https://*.… would match deeper subdomains too)", a("cors-allow-origin"))),
        at(0, "api", &format!("metadata.annotations: {forward}")),
        at(0, "api", "spec.rules[0].http.paths[1].path: Prefix \"/orders\" matches /orders and /orders/…, never /ordersmore: imported as path_prefix \"/orders/\", since path_prefix \"/orders\" would also match /ordersmore; requests for /orders itself get what a shorter path prefix of the host gives them, or no CORS handling"),
        // ingress-nginx's risky defaults, each named.
        at(2, "web", &format!("{}: absent: ingress-nginx's default is every origin (*)", a("cors-allow-origin"))),
        at(2, "web", &format!("{}: absent: ingress-nginx's default is 1728000 seconds", a("cors-max-age"))),
        at(2, "web", &format!("metadata.annotations: {forward}")),
        at(2, "web", &format!("{}: any origin with credentials: ingress-nginx answered Access-Control-Allow-Origin: * with Access-Control-Allow-Credentials: true, which browsers refuse for credentialed requests; imported as any origin without credentials (Access-Control-Allow-Origin: *): a browser still sends uncredentialed requests from any origin, and refuses credentialed ones; list the origins that need credentials instead", a("cors-allow-credentials"))),
        at(2, "web", &format!("{}: \"1728000s\": imported as 86400 seconds (whole seconds, at most 86400) (no browser caches a preflight longer: Firefox stops at 86400, Chromium at 7200; nothing changes for a browser)", a("cors-max-age"))),
        at(2, "web", &forbidden("keep-alive")),
        at(2, "web", &forbidden("dnt")),
        at(3, "partner", &format!("{}: absent: ingress-nginx's default allows credentials; imported as allow_credentials: true, so the listed origins may still send cookies (set the annotation to \"false\" in the source first if no page needs them)", a("cors-allow-credentials"))),
        at(3, "partner", &format!("metadata.annotations: {forward}")),
        at(3, "partner", &format!("{}[1]: \"http://origin-site.com\": an insecure http:// origin with allow_credentials: true (anyone on the network can act as it); use https://, or set dangerously_allow_insecure_origins: not imported", a("cors-allow-origin"))),
        at(3, "partner", &forbidden("keep-alive")),
        at(3, "partner", &forbidden("dnt")),
        at(3, "partner", "spec.rules[0].http.paths[1].pathType: Exact \"/status\": no rule key matches one path alone (path_prefix also matches longer paths): no rule for it (requests for /status get what a shorter path prefix of the host gives them, or no CORS handling)"),
    ];
    let mut removed: Vec<String> = [
        "enable-cors",
        "cors-allow-origin",
        "cors-allow-methods",
        "cors-allow-headers",
        "cors-expose-headers",
        "cors-allow-credentials",
        "cors-max-age",
    ]
    .iter()
    .map(|x| format!("Ingress shop/api: {}", a(x)))
    .collect();
    removed.push(format!("Ingress shop/web: {}", a("enable-cors")));
    for x in ["enable-cors", "cors-allow-origin", "cors-max-age"] {
        removed.push(format!("Ingress shop/partner: {}", a(x)));
    }
    let removed: Vec<&str> = removed.iter().map(String::as_str).collect();
    expected.extend(remove(&removed));
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(stderr, lines(&expected));
}

// ------------------------------------------------------------------------------------------------
// Gateway API
// ------------------------------------------------------------------------------------------------

/// Gateway API's CORS examples, keyed on the route names Istio gives their rules.
#[test]
fn gateway_api_cors_examples_give_a_browser_what_the_api_says() {
    let ns = "gateway-conformance-infra";
    let (policy, stderr) = import(
        "gateway-api",
        &["examples/import/gateway-api.yaml", "--namespace", ns],
    );
    let route = |name: &str| format!("{ns}.{name}.0");
    let preflight = |name: &str, origin: &str, extra: &[&str]| {
        let route = route(name);
        let mut r = vec![
            "--route",
            route.as_str(),
            "--origin",
            origin,
            "--preflight",
            "--method",
            "GET",
        ];
        r.extend_from_slice(extra);
        answer(&policy, &r)
    };
    let allowed = |origin: &str, max_age: &str| {
        lines(&[
            REPLY_204,
            &format!("  access-control-allow-origin: {origin}"),
            "  access-control-allow-methods: GET, HEAD, POST",
            &format!("  access-control-max-age: {max_age}"),
            PREFLIGHT_VARY,
        ])
    };
    let refused = lines(&[REPLY_403, PREFLIGHT_VARY]);
    // "allows requests from https://app.example"; another origin gets no CORS headers (the
    // API allows 200/204 or 403); maxAge defaults to 5.
    let specific = "cors-specific-origin";
    assert_eq!(
        preflight(specific, "https://app.example", &[]),
        allowed("https://app.example", "5")
    );
    assert_eq!(preflight(specific, "https://evil.example", &[]), refused);
    // "a single wildcard (\"*\"), which will allow any origin".
    assert_eq!(
        preflight("cors-all-origins", "https://anything.example", &[]),
        allowed("*", "5")
    );
    // "https://*.bar.com": any number of labels in place of `*`, never the domain itself.
    let wildcards = "cors-wildcards";
    assert_eq!(
        preflight(wildcards, "https://a.b.foo.com", &[]),
        allowed("https://a.b.foo.com", "5")
    );
    assert_eq!(
        preflight(wildcards, "https://www.baz.com", &[]),
        allowed("https://www.baz.com", "5")
    );
    assert_eq!(preflight(wildcards, "https://bar.com", &[]), refused);
    // allowCredentials: true: the actual response carries Access-Control-Allow-Credentials.
    let creds = route("cors-credentials");
    assert!(answer(
        &policy,
        &[
            "--route",
            &creds,
            "--origin",
            "https://app.example",
            "--method",
            "GET"
        ]
    )
    .ends_with(&lines(&[
        "  access-control-allow-origin: https://app.example",
        "  access-control-allow-credentials: true",
        "  vary: Origin",
    ])));
    // The comprehensive example: allowHeaders "*" with credentials; the requested headers are
    // echoed, except Authorization (warned below).
    let all_fields = "cors-all-fields";
    assert_eq!(
        preflight(all_fields, "https://www.foo.com", &["--header", "x-custom"]),
        lines(&[
            REPLY_204,
            "  access-control-allow-origin: https://www.foo.com",
            "  access-control-allow-credentials: true",
            "  access-control-allow-methods: GET, OPTIONS",
            "  access-control-allow-headers: x-custom",
            "  access-control-max-age: 3600",
            PREFLIGHT_VARY,
        ])
    );
    assert_eq!(
        preflight(
            all_fields,
            "https://www.foo.com",
            &["--header", "authorization"]
        ),
        refused
    );
    // "*" with credentials: the API would echo any origin with credentials; imported without
    // credentials (warned below).
    assert_eq!(
        answer(
            &policy,
            &[
                "--route",
                "public",
                "--origin",
                "https://anything.example",
                "--method",
                "GET"
            ]
        ),
        lines(&[
            "response: forwarded upstream; the upstream's status, with 1 header edit",
            "  set access-control-allow-origin: *",
            "response headers (no --upstream-header given):",
            "  access-control-allow-origin: *",
        ])
    );
    // The rule without a CORS filter keeps no CORS handling.
    assert_eq!(
        chosen(
            &policy,
            &[
                "--route",
                &route("cors-any-with-credentials").replace(".0", ".1")
            ]
        ),
        "policy: none, no CORS handling (no route metadata, no rule matched, no default)"
    );

    let doc = |n: usize, name: &str| {
        format!("warning: document {n} (HTTPRoute {ns}/{name}): spec.rules[0]")
    };
    let unmatched = "a preflight that does not match gets 200/204 without CORS headers (or 403) from the gateway; imported as unmatched_preflights: reject, a 403 without CORS headers: the browser refuses both alike";
    let names = [
        specific,
        "cors-all-origins",
        wildcards,
        "cors-credentials",
        all_fields,
        "cors-any-with-credentials",
    ];
    let mut expected: Vec<String> = Vec::new();
    for (n, name) in names.iter().enumerate() {
        if *name == all_fields {
            expected.push(format!("{}.filters[0].cors.allowHeaders: \"*\": a gateway that echoes the requested headers (as the API requires with credentials) also allows Authorization; imported as \"*\", which, as the Fetch standard reads it, does not: a preflight asking for authorization is now refused (add \"authorization\" to allow_headers if pages send it)", doc(n + 1, name)));
        }
        expected.push(format!("{}.filters[0].cors: {unmatched}", doc(n + 1, name)));
    }
    let last = doc(6, "cors-any-with-credentials");
    expected.push(format!("{last}.filters[0].cors.allowCredentials: any origin with credentials: every site could read responses to credentialed requests (cookies, HTTP authentication): the origin was echoed with Access-Control-Allow-Credentials: true; imported as any origin without credentials (Access-Control-Allow-Origin: *): a browser still sends uncredentialed requests from any origin, and refuses credentialed ones; list the origins that need credentials instead"));
    expected.push(format!("{last}.name: Istio names the route of this rule \"public\", which nothing ties to this HTTPRoute: a route of the same name from another HTTPRoute or VirtualService on the proxy gets this policy too"));
    let removed: Vec<String> = names
        .iter()
        .map(|n| format!("HTTPRoute {ns}/{n}: spec.rules[0].filters[0] (type: CORS)"))
        .collect();
    let removed: Vec<&str> = removed.iter().map(String::as_str).collect();
    expected.extend(remove(&removed));
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(stderr, lines(&expected));
}

#[test]
fn a_resource_without_a_namespace_is_an_error_unless_given() {
    let (code, out, err) = cli(&["import", "examples/import/gateway-api.yaml"]);
    assert_eq!((code, out.as_str()), (Some(1), ""));
    let mut expected: Vec<String> = ["cors-specific-origin", "cors-all-origins", "cors-wildcards", "cors-credentials", "cors-all-fields", "cors-any-with-credentials"]
        .iter()
        .enumerate()
        .map(|(i, name)| format!("document {} (HTTPRoute {name}): metadata.namespace: missing: rules name resources by namespace; export with the namespace (kubectl get -o yaml prints it) or give --namespace NS for the resources that have none", i + 1))
        .collect();
    expected.push(
        "cors-policy: examples/import/gateway-api.yaml: nothing imported (6 errors)".to_owned(),
    );
    // Warnings come first; the errors and the summary close the output.
    let tail: Vec<&str> = err.lines().rev().take(expected.len()).collect();
    let tail: Vec<String> = tail.into_iter().rev().map(str::to_owned).collect();
    assert_eq!(tail, expected);
}

// ------------------------------------------------------------------------------------------------
// Envoy Gateway
// ------------------------------------------------------------------------------------------------

/// Envoy Gateway's CORS task: the three requests it sends and the answers it shows.
#[test]
fn envoy_gateway_cors_task_gives_a_browser_what_the_task_shows() {
    let (policy, stderr) = import("envoy-gateway", &["examples/import/envoy-gateway.yaml"]);
    let preflight = |origin: &str, extra: &[&str]| {
        let mut r = vec![
            "--host",
            "www.example.com",
            "--path",
            "/",
            "--origin",
            origin,
            "--preflight",
            "--method",
            "GET",
        ];
        r.extend_from_slice(extra);
        answer(&policy, &r)
    };
    // The task shows allow-origin http://www.foo.com, allow-methods "GET, POST", max-age 86400
    // (and the allow-headers and expose-headers lists, which a browser reads only when the
    // preflight asks for headers, and on the actual response).
    assert_eq!(
        preflight("http://www.foo.com", &[]),
        lines(&[
            REPLY_204,
            "  access-control-allow-origin: http://www.foo.com",
            "  access-control-allow-methods: GET, POST",
            "  access-control-max-age: 86400",
            PREFLIGHT_VARY,
        ])
    );
    assert_eq!(
        preflight("http://www.foo.com", &["--header", "x-header-1"]),
        lines(&[
            REPLY_204,
            "  access-control-allow-origin: http://www.foo.com",
            "  access-control-allow-methods: GET, POST",
            "  access-control-allow-headers: x-header-1, x-header-2",
            "  access-control-max-age: 86400",
            PREFLIGHT_VARY,
        ])
    );
    // "You won't see any CORS headers in the response": http://www.bar.com, and
    // http://www.foo.com:8080 ("the port number 8080 is not included in the allowed origins").
    let refused = lines(&[REPLY_403, PREFLIGHT_VARY]);
    assert_eq!(preflight("http://www.bar.com", &[]), refused);
    assert_eq!(preflight("http://www.foo.com:8080", &[]), refused);
    assert!(answer(
        &policy,
        &[
            "--host",
            "www.example.com",
            "--path",
            "/get",
            "--origin",
            "http://www.foo.com",
            "--method",
            "GET"
        ]
    )
    .ends_with(&lines(&[
        "  access-control-allow-origin: http://www.foo.com",
        "  access-control-expose-headers: x-header-3, x-header-4",
        "  vary: Origin",
    ])));
    // Another host is not the HTTPRoute's.
    assert_eq!(
        chosen(&policy, &["--host", "other.example.com", "--path", "/"]),
        "policy: none, no CORS handling (no route metadata, no rule matched, no default)"
    );
    let at = "warning: document 1 (SecurityPolicy default/cors-example): spec.cors";
    let mut expected = vec![format!("{at}: a preflight that does not match gets 200/204 without CORS headers (or 403) from the gateway; imported as unmatched_preflights: reject, a 403 without CORS headers: the browser refuses both alike")];
    expected.extend(remove(&["SecurityPolicy default/cors-example: spec.cors"]));
    let expected: Vec<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(stderr, lines(&expected));
}

#[test]
fn envoy_gateway_targets_that_are_not_in_the_input_are_said_so() {
    let dir = std::env::temp_dir().join(format!("cors-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let file = dir.join("eg-alone.yaml");
    let text = std::fs::read_to_string("examples/import/envoy-gateway.yaml").expect("example");
    let alone = text.split("\n---\n").next().expect("the SecurityPolicy");
    std::fs::write(&file, alone).expect("write");
    let (code, out, err) = cli(&["import", &file.to_string_lossy()]);
    assert_eq!(code, Some(0), "{err}");
    // The policy is there, with no rule selecting it.
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(doc["rules"], serde_json::json!([]));
    assert!(err.contains("warning: document 1 (SecurityPolicy default/cors-example): spec.targetRefs[0]: HTTPRoute default/backend is not in the input: the hosts and paths it routes are what rules select it by: not imported for it (those requests get no CORS handling; import it together with this SecurityPolicy)\n"), "{err}");
}

// ------------------------------------------------------------------------------------------------
// Istio delegates
// ------------------------------------------------------------------------------------------------

/// A delegate's routes are the root's: keyed on the root VirtualService and the merged route
/// name; an entry without a corsPolicy of its own takes the root's.
#[test]
fn istio_delegates_are_keyed_on_their_root() {
    let (policy, stderr) = import("delegates", &["examples/import/delegates.yaml"]);
    let at = |route: &str| {
        chosen(
            &policy,
            &["--virtual-service", "istio-system/shop", "--route", route],
        )
    };
    assert_eq!(
        at("catalog-items"),
        "policy: istio-system-shop-catalog-items (rules[0] {route=\"catalog-items\", virtual_service=\"istio-system/shop\"} matched)"
    );
    assert_eq!(
        at("catalog-search"),
        "policy: istio-system-shop-catalog-search (rules[1] {route=\"catalog-search\", virtual_service=\"istio-system/shop\"} matched)"
    );
    // The delegate's own name never reaches a route's istio.config.
    assert_eq!(
        chosen(
            &policy,
            &["--virtual-service", "catalog/catalog", "--route", "items"]
        ),
        "policy: none, no CORS handling (no route metadata, no rule matched, no default)"
    );
    assert!(stderr.ends_with(&lines(&[
        "remove once the filter serves these routes (else two CORS implementations act on one request):",
        "  VirtualService istio-system/shop: spec.http[0].corsPolicy",
        "  VirtualService catalog/catalog: spec.http[0].corsPolicy",
    ])), "{stderr}");

    // Without its root, a delegate's routes cannot be selected: said, not guessed.
    let text = std::fs::read_to_string("examples/import/delegates.yaml").expect("example");
    let delegate_only = text.split("\n---\n").nth(1).expect("the delegate");
    let dir = std::env::temp_dir().join(format!("cors-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let file = dir.join("delegate-only.yaml");
    std::fs::write(&file, delegate_only).expect("write");
    let (code, _, err) = cli(&["import", &file.to_string_lossy()]);
    assert_eq!(code, Some(1));
    assert!(err.starts_with("warning: document 1 (VirtualService catalog/catalog): spec.hosts: a delegate VirtualService (no hosts): Istio names its routes <root route>-<route> and gives them the root VirtualService's istio.config (mergeHTTPRoute), so no rule naming this VirtualService can select them; its root is not in the input: not imported (these routes get no CORS handling; import it together with its root)\n"), "{err}");
}

/// `check` on a WasmPlugin file that holds the VirtualServices too: a `virtual_service` rule
/// naming a delegate never matches.
#[test]
fn check_warns_about_a_rule_naming_a_delegate() {
    let dir = std::env::temp_dir().join(format!("cors-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let file = dir.join("wasmplugin-with-delegate.yaml");
    let vs = std::fs::read_to_string("examples/import/delegates.yaml").expect("example");
    let plugin = "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: { name: cors, namespace: istio-system }\nspec:\n  pluginConfig:\n    policies:\n      catalog: { allow_origins: [\"https://partner.example\"] }\n    rules:\n    - match: { virtual_service: catalog/catalog }\n      policy: catalog\n    - match: { virtual_service: istio-system/shop, route: catalog-items }\n      policy: catalog\n";
    std::fs::write(&file, format!("{vs}\n---\n{plugin}")).expect("write");
    let (code, out, _) = cli(&["check", &file.to_string_lossy()]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        out,
        lines(&[
            "warning: rules[0].match.virtual_service: catalog/catalog is a delegate VirtualService (it has no hosts): Istio generates its routes as routes of the root VirtualService, with the root's istio.config (mergeHTTPRoute), so this rule never matches; name its root istio-system/shop (routes named catalog-<route>)",
            &format!("OK: {}: WasmPlugin istio-system/cors: 1 policy (catalog), 2 rules", file.to_string_lossy()),
        ])
    );
}

// ------------------------------------------------------------------------------------------------
// Every source at once
// ------------------------------------------------------------------------------------------------

/// One file with every source (a `kind: List` among them): one policy document, the rules of
/// each source as when imported alone.
#[test]
fn every_source_in_one_file_gives_one_document() {
    let files = [
        "examples/import/ingress-nginx.yaml",
        "examples/import/gateway-api.yaml",
        "examples/import/envoy-gateway.yaml",
        "examples/import/delegates.yaml",
        "examples/import/virtualservices.yaml",
        "examples/import/envoy-routes.yaml",
    ];
    let text: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("example"))
        .collect();
    let dir = std::env::temp_dir().join(format!("cors-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let file = dir.join("everything.yaml");
    std::fs::write(&file, text.join("\n---\n")).expect("write");
    let path = file.to_string_lossy().into_owned();
    let (policy, _) = import(
        "everything",
        &[&path, "--namespace", "gateway-conformance-infra"],
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&policy).expect("policy")).expect("JSON");
    let rules = doc["rules"].as_array().expect("rules");
    let keys: Vec<String> = rules
        .iter()
        .map(|r| {
            let mut k: Vec<&str> = r["match"]
                .as_object()
                .expect("match")
                .keys()
                .map(String::as_str)
                .collect();
            k.sort_unstable();
            k.join("+")
        })
        .collect();
    for key in [
        "http_route",
        "route",
        "route+virtual_service",
        "virtual_service",
        "host+path_prefix",
        "route+virtual_host",
    ] {
        assert!(keys.iter().any(|k| k == key), "no {key} rule: {keys:?}");
    }
    // Each source's answer is the same as when imported alone.
    assert_eq!(
        chosen(&policy, &["--host", "www.example.com", "--path", "/"])
            .split(" (")
            .next(),
        Some("policy: default-cors-example")
    );
    assert_eq!(
        chosen(
            &policy,
            &["--route", "gateway-conformance-infra.cors-wildcards.0"]
        )
        .split(" (")
        .next(),
        Some("policy: gateway-conformance-infra-cors-wildcards")
    );
}
