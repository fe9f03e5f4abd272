//! `cors-policy`: check a policy document, and explain what the filter does with a request.
//!
//! The same engine as the filter ([`policy::load`], [`Config::select`] and its reason,
//! [`engine::decide`], [`engine::response_edits`] applied by [`engine::apply_edits`],
//! [`engine::describe`]); this file only reads files and arguments and prints.
//!
//! Exit status: 0 = OK, 1 = the policy document is invalid, 2 = usage or I/O error.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod import;

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use cors_engine::engine::{self, Action, Counter, HeaderEdit, Request, ResponsePlan};
use cors_engine::policy::{self, Config, HostPattern, Mode, Rule, UnmatchedPreflights};
use cors_engine::routing::{Choice, Known, Reason, RouteFact, RouteFacts, Selection};
use serde::Deserialize as _;
use serde_json::Value;

const USAGE: &str = "\
usage:
  cors-policy check FILE
  cors-policy schema [--markdown-table]
  cors-policy import FILE
  cors-policy explain FILE [--origin ORIGIN] [--method METHOD] [--header NAME]...
                      [--preflight] [--private-network]
                      [--route NAME] [--vhost NAME] [--host HOST[:PORT]] [--path PATH]
                      [--metadata-policy NAME] [--virtual-service NAMESPACE/NAME]
                      [--upstream-header 'Name: value']...

FILE is a JSON policy document, or (.yaml/.yml) an Istio WasmPlugin whose spec.pluginConfig is
the policy document (or an Envoy Gateway EnvoyExtensionPolicy: spec.wasm[].config).

check    prints every problem as `path: message` (warnings prefixed `warning: `);
         exit 0 = valid, 1 = invalid, 2 = usage or I/O error.
schema   prints the JSON Schema of the policy document (schema/policy.schema.json is its
         output), generated from the same field declarations as the validation;
         --markdown-table: the field table of docs/policy.md instead.
import   reads Istio VirtualServices (their http[].corsPolicy) or an Envoy route configuration
         (CorsPolicy per virtual host or route, in typed_per_filter_config) from a YAML or JSON
         file and prints an equivalent policy document, with rules keyed on where each came
         from. What has no exact equivalent is a warning on stderr, with its path and what was
         imported instead, never allowing more than the input did. Exit 0 = imported, 1 =
         nothing could be imported, 2 = usage or I/O error.
explain  prints the policy chosen for the request and why, the filter's decision, and the exact
         status and headers it produces: for a preflight (--preflight; --method is then the
         Access-Control-Request-Method and --header the Access-Control-Request-Headers names)
         the local reply, otherwise the edits made to the upstream response (--upstream-header)
         and the resulting response headers.
         --metadata-policy is the route's metadata filter_metadata.cors.policy (Envoy);
         --route / --vhost are the Envoy route and virtual host names (Istio: the
         VirtualService http[].name, plus .<match name>; a Gateway API HTTPRoute rule without
         a name: <namespace>.<route>.<rule index>); --host is the :authority.
         --virtual-service is the Istio VirtualService the route came from (the route's
         filter_metadata.istio.config, which rules with virtual_service match).
";

/// A problem that stops the command before it can judge the policy (exit 2): `usage_error` for bad
/// arguments (the usage text follows the message), `io_error` for unreadable or unusable files.
struct Failure {
    message: String,
    show_usage: bool,
}

fn usage_error(message: String) -> Failure {
    Failure {
        message,
        show_usage: true,
    }
}

fn io_error(message: String) -> Failure {
    Failure {
        message,
        show_usage: false,
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut out = String::new();
    let result = match args.first().map(String::as_str) {
        Some("check") => check(&args[1..], &mut out),
        Some("explain") => explain(&args[1..], &mut out),
        Some("schema") if args.len() == 1 => {
            out.push_str(&policy::schema::json_schema());
            Ok(true)
        }
        Some("schema") if args.len() == 2 && args[1] == "--markdown-table" => {
            out.push_str(&policy::schema::markdown_table());
            Ok(true)
        }
        Some("schema") => Err(usage_error(
            "schema takes no argument but --markdown-table".to_owned(),
        )),
        Some("import") => import_command(&args[1..], &mut out),
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(usage_error(format!("unknown command {other:?}"))),
        None => Err(usage_error("no command given".to_owned())),
    };
    print!("{out}");
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(Failure {
            message,
            show_usage,
        }) => {
            eprintln!("cors-policy: {message}");
            if show_usage {
                eprint!("{USAGE}");
            }
            ExitCode::from(2)
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Reading documents
// ------------------------------------------------------------------------------------------------

/// One policy document found in a file.
struct Document {
    /// How the summary names it: the file, or the file and the WasmPlugin.
    label: String,
    /// The JSON text, or what stands in its place when the source could not be read as one.
    source: Source,
}

enum Source {
    Json(String),
    /// A problem found before the policy could be loaded: `(path, message)`.
    Broken(String, String),
}

fn is_yaml(path: &str) -> bool {
    let ext = Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    matches!(ext.as_deref(), Some("yaml" | "yml"))
}

fn read_documents(path: &str) -> Result<Vec<Document>, Failure> {
    let text =
        std::fs::read_to_string(path).map_err(|e| io_error(format!("cannot read {path}: {e}")))?;
    if !is_yaml(path) {
        return Ok(vec![Document {
            label: path.to_owned(),
            source: Source::Json(text),
        }]);
    }
    wasm_plugins(path, &text)
}

/// Every `WasmPlugin` in a (multi-document) YAML file, with its `spec.pluginConfig` as JSON.
fn wasm_plugins(path: &str, text: &str) -> Result<Vec<Document>, Failure> {
    let mut found = Vec::new();
    for (index, yaml) in serde_norway::Deserializer::from_str(text).enumerate() {
        let value = match Value::deserialize(yaml) {
            Ok(value) => value,
            Err(e) => {
                found.push(Document {
                    label: format!("{path} (YAML document {})", index + 1),
                    source: Source::Broken("$".to_owned(), format!("invalid YAML: {e}")),
                });
                // The YAML stream cannot be resumed after a syntax error.
                break;
            }
        };
        if value.get("kind").and_then(Value::as_str) == Some("EnvoyExtensionPolicy") {
            found.extend(extension_policy_configs(path, &value));
            continue;
        }
        if value.get("kind").and_then(Value::as_str) != Some("WasmPlugin") {
            continue;
        }
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("(unnamed)");
        let label = match value.pointer("/metadata/namespace").and_then(Value::as_str) {
            Some(namespace) => format!("{path}: WasmPlugin {namespace}/{name}"),
            None => format!("{path}: WasmPlugin {name}"),
        };
        let source = match value.pointer("/spec/pluginConfig") {
            None | Some(Value::Null) => Source::Broken(
                "spec.pluginConfig".to_owned(),
                "missing: the filter needs its policy document here".to_owned(),
            ),
            Some(config) => match serde_json::to_string(config) {
                Ok(json) => Source::Json(json),
                Err(e) => Source::Broken("spec.pluginConfig".to_owned(), e.to_string()),
            },
        };
        found.push(Document { label, source });
    }
    if found.is_empty() {
        return Err(io_error(format!(
            "{path}: no Istio WasmPlugin found (a .yaml/.yml file must hold `kind: WasmPlugin` with spec.pluginConfig, or an Envoy Gateway EnvoyExtensionPolicy with spec.wasm[].config; policy documents are .json)"
        )));
    }
    Ok(found)
}

/// The policy documents of an Envoy Gateway `EnvoyExtensionPolicy`: `spec.wasm[].config` (the wasm
/// build) and `spec.dynamicModule[].config` (the dynamic module build).
fn extension_policy_configs(path: &str, value: &Value) -> Vec<Document> {
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)");
    let namespace = value
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map_or(String::new(), |ns| format!("{ns}/"));
    let mut found = Vec::new();
    for field in ["wasm", "dynamicModule"] {
        let extensions = value
            .pointer(&format!("/spec/{field}"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (i, extension) in extensions.iter().enumerate() {
            let label = format!("{path}: EnvoyExtensionPolicy {namespace}{name} {field}[{i}]");
            let at = format!("spec.{field}[{i}].config");
            let source = match extension.get("config") {
                None | Some(Value::Null) => Source::Broken(
                    at,
                    "missing: the filter needs its policy document here".to_owned(),
                ),
                Some(config) => match serde_json::to_string(config) {
                    Ok(json) => Source::Json(json),
                    Err(e) => Source::Broken(at, e.to_string()),
                },
            };
            found.push(Document { label, source });
        }
    }
    found
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Loads one document, printing its problems; the config when it is valid.
fn load(document: &Document, out: &mut String) -> Option<Config> {
    let text = match &document.source {
        Source::Json(text) => text,
        Source::Broken(path, message) => {
            let _ = writeln!(out, "{path}: {message}");
            let _ = writeln!(out, "FAILED: {}: 1 error", document.label);
            return None;
        }
    };
    match policy::load(text) {
        Ok(loaded) => {
            for warning in &loaded.warnings {
                let _ = writeln!(out, "warning: {warning}");
            }
            Some(loaded.config)
        }
        Err(rejected) => {
            for warning in &rejected.warnings {
                let _ = writeln!(out, "warning: {warning}");
            }
            for error in &rejected.errors {
                let _ = writeln!(out, "{error}");
            }
            let _ = writeln!(
                out,
                "FAILED: {}: {}",
                document.label,
                plural(rejected.errors.len(), "error", "errors")
            );
            None
        }
    }
}

// ------------------------------------------------------------------------------------------------
// check
// ------------------------------------------------------------------------------------------------

fn check(args: &[String], out: &mut String) -> Result<bool, Failure> {
    let [path] = args else {
        return Err(usage_error("check takes exactly one FILE".to_owned()));
    };
    let mut all_valid = true;
    for document in read_documents(path)? {
        match load(&document, out) {
            Some(config) => {
                let names: Vec<&str> = config.policies.iter().map(|p| p.name.as_str()).collect();
                let _ = writeln!(
                    out,
                    "OK: {}: {} ({}), {}",
                    document.label,
                    plural(names.len(), "policy", "policies"),
                    names.join(", "),
                    plural(config.rules.len(), "rule", "rules"),
                );
            }
            None => all_valid = false,
        }
    }
    Ok(all_valid)
}

// ------------------------------------------------------------------------------------------------
// import
// ------------------------------------------------------------------------------------------------

fn import_command(args: &[String], out: &mut String) -> Result<bool, Failure> {
    let [path] = args else {
        return Err(usage_error("import takes exactly one FILE".to_owned()));
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| io_error(format!("cannot read {path}: {e}")))?;
    let imported = import::import(&text).map_err(|e| io_error(format!("{path}: {e}")))?;
    for warning in &imported.warnings {
        eprintln!("warning: {}: {}", warning.path, warning.message);
    }
    match imported.document {
        Some(document) => {
            let text = serde_json::to_string_pretty(&document)
                .map_err(|e| io_error(format!("cannot print the policy: {e}")))?;
            let _ = writeln!(out, "{text}");
            Ok(true)
        }
        None => {
            eprintln!(
                "cors-policy: {path}: nothing imported ({} with CORS configuration found)",
                plural(imported.sources, "source", "sources")
            );
            Ok(false)
        }
    }
}

// ------------------------------------------------------------------------------------------------
// explain
// ------------------------------------------------------------------------------------------------

#[derive(Default)]
struct ExplainArgs {
    file: Option<String>,
    origin: Option<String>,
    method: Option<String>,
    headers: Vec<String>,
    preflight: bool,
    private_network: bool,
    facts: Facts,
    upstream_headers: Vec<(String, String)>,
}

/// The route facts given on the command line.
#[derive(Default)]
struct Facts {
    metadata_policy: Option<String>,
    route: Option<String>,
    vhost: Option<String>,
    authority: Option<String>,
    path: Option<String>,
    /// `filter_metadata.istio.config`, built from `--virtual-service` as Istio writes it.
    istio_config: Option<String>,
}

impl Facts {
    /// The route facts selection reads, as the filter would read them from Envoy.
    fn route_facts(&self) -> RouteFacts<'_, Known<'_>> {
        fn given(value: &Option<String>) -> Option<&[u8]> {
            value.as_deref().map(str::as_bytes)
        }
        RouteFacts::known()
            .with_optional(RouteFact::MetadataPolicy, given(&self.metadata_policy))
            .with_optional(RouteFact::RouteName, given(&self.route))
            .with_optional(RouteFact::VirtualHost, given(&self.vhost))
            .with_optional(RouteFact::IstioConfig, given(&self.istio_config))
            .with_optional(RouteFact::Authority, given(&self.authority))
            .with_optional(RouteFact::Path, given(&self.path))
    }
}

fn parse_explain(args: &[String]) -> Result<ExplainArgs, Failure> {
    let mut parsed = ExplainArgs::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let mut value = |name: &str| {
            iter.next()
                .cloned()
                .ok_or_else(|| usage_error(format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--preflight" => parsed.preflight = true,
            "--private-network" => parsed.private_network = true,
            "--origin" => parsed.origin = Some(value(arg)?),
            "--method" => parsed.method = Some(value(arg)?),
            "--header" => parsed.headers.push(value(arg)?),
            "--route" => parsed.facts.route = Some(value(arg)?),
            "--vhost" => parsed.facts.vhost = Some(value(arg)?),
            "--host" => parsed.facts.authority = Some(value(arg)?),
            "--path" => parsed.facts.path = Some(value(arg)?),
            "--metadata-policy" => parsed.facts.metadata_policy = Some(value(arg)?),
            "--virtual-service" => {
                let given = value(arg)?;
                let (namespace, name) = given
                    .split_once('/')
                    .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'))
                    .ok_or_else(|| {
                        usage_error(format!(
                            "--virtual-service {given:?}: expected NAMESPACE/NAME"
                        ))
                    })?;
                parsed.facts.istio_config = Some(format!(
                    "/apis/networking.istio.io/v1/namespaces/{namespace}/virtual-service/{name}"
                ));
            }
            "--upstream-header" => {
                let line = value(arg)?;
                let Some((name, value)) = line.split_once(':') else {
                    return Err(usage_error(format!(
                        "--upstream-header {line:?}: expected 'Name: value'"
                    )));
                };
                let name = name.trim();
                if name.is_empty() {
                    return Err(usage_error(format!(
                        "--upstream-header {line:?}: the header name is empty"
                    )));
                }
                // Envoy hands filters lower-case header names.
                parsed
                    .upstream_headers
                    .push((name.to_ascii_lowercase(), value.trim().to_owned()));
            }
            flag if flag.starts_with("--") => {
                return Err(usage_error(format!("unknown option {flag}")));
            }
            file => {
                if parsed.file.replace(file.to_owned()).is_some() {
                    return Err(usage_error("explain takes exactly one FILE".to_owned()));
                }
            }
        }
    }
    if parsed.file.is_none() {
        return Err(usage_error("explain needs a FILE".to_owned()));
    }
    if parsed.preflight && parsed.origin.is_none() {
        return Err(usage_error(
            "--preflight needs --origin (a preflight always carries an Origin)".to_owned(),
        ));
    }
    if !parsed.preflight && (!parsed.headers.is_empty() || parsed.private_network) {
        return Err(usage_error(
            "--header and --private-network describe a preflight: add --preflight".to_owned(),
        ));
    }
    Ok(parsed)
}

fn explain(args: &[String], out: &mut String) -> Result<bool, Failure> {
    let args = parse_explain(args)?;
    let file = args.file.clone().unwrap_or_default();
    let mut documents = read_documents(&file)?;
    if documents.len() > 1 {
        return Err(usage_error(format!(
            "{file} holds {} WasmPlugins; explain needs exactly one",
            documents.len()
        )));
    }
    let Some(document) = documents.pop() else {
        return Err(usage_error(format!("{file}: no policy document")));
    };
    let Some(config) = load(&document, out) else {
        return Ok(false);
    };

    // The request as the filter sees it.
    let method = args.method.clone().unwrap_or_else(|| "GET".to_owned());
    let acrh = args.headers.join(", ");
    let request = Request {
        method: if args.preflight {
            b"OPTIONS"
        } else {
            method.as_bytes()
        },
        origin: args.origin.as_deref().map(str::as_bytes),
        acrm: args.preflight.then_some(method.as_bytes()),
        acrh: (args.preflight && !args.headers.is_empty()).then_some(acrh.as_bytes()),
        acrpn: args.private_network.then_some(b"true".as_slice()),
    };

    let choice = config.select(&mut args.facts.route_facts());
    let selection = &choice.selection;
    let _ = writeln!(
        out,
        "{}",
        selection_line(&config, &choice, args.facts.metadata_policy.as_deref())
    );
    let policy = match selection {
        Selection::Policy(index) => config.policy(*index),
        _ => None,
    };
    if let Some(policy) = policy {
        let mode = match policy.mode {
            Mode::Enforce => "enforce",
            Mode::Report => "report (decide and count, change nothing)",
        };
        let _ = writeln!(out, "mode: {mode}");
    }
    let _ = writeln!(out, "request: {}", request_line(&request));

    let outcome = engine::decide(&config, selection, &request);
    let _ = writeln!(
        out,
        "decision: {}",
        engine::describe(&config, &request, &outcome)
    );
    let counter = match (
        outcome.counter,
        outcome.policy.and_then(|i| config.policy(i)),
    ) {
        (Some(counter), Some(policy)) => format!("cors.{}.{}", policy.name, counter.suffix()),
        _ if outcome.unknown_policy => "cors.unknown_policy".to_owned(),
        _ => "none".to_owned(),
    };
    let _ = writeln!(out, "counter: {counter}");

    let upstream: Vec<(&[u8], &[u8])> = args
        .upstream_headers
        .iter()
        .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
        .collect();
    match &outcome.action {
        Action::Reply(reply) => {
            let _ = writeln!(
                out,
                "response: {} local reply, empty body (not forwarded upstream)",
                reply.status
            );
            for (name, value) in &reply.headers {
                let _ = writeln!(out, "  {name}: {}", String::from_utf8_lossy(value));
            }
        }
        Action::Untouched => {
            let why = match policy {
                Some(policy) if policy.mode == Mode::Report => {
                    "mode report: the decision is only counted and logged"
                }
                _ => "no CORS handling on this request",
            };
            let _ = writeln!(out, "response: forwarded upstream, left untouched ({why})");
            print_headers(out, &upstream, &[]);
        }
        Action::Forward(plan) => {
            let why = match plan {
                ResponsePlan::VaryOnly { .. } => {
                    " (unmatched_preflights: forward; the upstream answers the preflight)"
                }
                ResponsePlan::StripCors => " (unknown policy: fail closed)",
                ResponsePlan::Cors { .. } => "",
            };
            let edits = engine::response_edits(&config, plan, &upstream);
            let _ = writeln!(
                out,
                "response: forwarded upstream{why}; the upstream's status, with {}",
                plural(edits.len(), "header edit", "header edits")
            );
            for edit in &edits {
                match edit {
                    HeaderEdit::Remove(name) => {
                        let _ = writeln!(out, "  remove {}", String::from_utf8_lossy(name));
                    }
                    HeaderEdit::Set(name, value) => {
                        let _ = writeln!(out, "  set {name}: {}", String::from_utf8_lossy(value));
                    }
                }
            }
            print_headers(out, &upstream, &edits);
        }
    }
    if matches!(selection, Selection::Unknown(_)) && matches!(outcome.action, Action::Reply(_)) {
        let _ = writeln!(out, "note: the route names a policy that does not exist");
    }
    if let (Some(policy), Some(Counter::PreflightDenied(_))) = (policy, outcome.counter) {
        match (&outcome.action, policy.unmatched_preflights) {
            (Action::Reply(_), _) if !policy.debug => {
                let _ = writeln!(
                    out,
                    "note: set \"debug\": true on policy {} to get cors-deny-reason on denied preflights",
                    policy.name
                );
            }
            (Action::Forward(_), UnmatchedPreflights::Forward) => {
                let _ = writeln!(
                    out,
                    "note: the preflight was denied; with unmatched_preflights: reject it would get a local 403"
                );
            }
            _ => {}
        }
    }
    Ok(true)
}

/// `policy: NAME (why)`, the reason as [`Config::select`] gives it.
fn selection_line(config: &Config, choice: &Choice, metadata_policy: Option<&str>) -> String {
    let why = match choice.reason {
        Reason::RouteMetadata => format!(
            "route metadata filter_metadata.cors.policy = {:?}",
            metadata_policy.unwrap_or_default()
        ),
        Reason::Rule(i) => match config.rules.get(i) {
            Some(rule) => format!("rules[{i}] {} matched", rule_text(rule)),
            None => format!("rules[{i}] matched"),
        },
        Reason::Default => "no route metadata, no rule matched: the default".to_owned(),
        Reason::Nothing => "no route metadata, no rule matched, no default".to_owned(),
    };
    match &choice.selection {
        Selection::Policy(index) => {
            let name = config.policy(*index).map_or("?", |p| p.name.as_str());
            format!("policy: {name} ({why})")
        }
        Selection::Untouched => format!("policy: none, no CORS handling ({why})"),
        Selection::Unknown(name) => format!(
            "policy: unknown {:?}, failing closed ({why}; no such policy)",
            String::from_utf8_lossy(name)
        ),
    }
}

fn rule_text(rule: &Rule) -> String {
    let mut fields = Vec::new();
    if let Some(route) = &rule.route {
        fields.push(format!("route={route:?}"));
    }
    if let Some(vhost) = &rule.virtual_host {
        fields.push(format!("virtual_host={vhost:?}"));
    }
    if let Some(resource) = &rule.virtual_service {
        fields.push(format!("virtual_service=\"{resource}\""));
    }
    if let Some(resource) = &rule.http_route {
        fields.push(format!("http_route=\"{resource}\""));
    }
    match &rule.host {
        Some(HostPattern::Exact(host)) => fields.push(format!("host={host:?}")),
        Some(HostPattern::Subdomain(suffix)) => fields.push(format!("host=\"*{suffix}\"")),
        None => {}
    }
    if let Some(prefix) = &rule.path_prefix {
        fields.push(format!("path_prefix={prefix:?}"));
    }
    format!("{{{}}}", fields.join(", "))
}

fn request_line(request: &Request) -> String {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut line = format!("{}", String::from_utf8_lossy(request.method));
    if request.is_preflight() {
        line.push_str(" (preflight)");
    }
    match request.origin {
        Some(origin) => {
            let _ = write!(line, ", origin: {}", text(origin));
        }
        None => line.push_str(", no Origin (not a CORS request)"),
    }
    if let Some(acrm) = request.acrm {
        let _ = write!(line, ", access-control-request-method: {}", text(acrm));
    }
    if let Some(acrh) = request.acrh {
        let _ = write!(line, ", access-control-request-headers: {}", text(acrh));
    }
    if let Some(acrpn) = request.acrpn {
        let _ = write!(
            line,
            ", access-control-request-private-network: {}",
            text(acrpn)
        );
    }
    line
}

/// The response headers after the edits, in order: upstream headers (edited in place), then
/// headers the filter added.
fn print_headers(out: &mut String, upstream: &[(&[u8], &[u8])], edits: &[HeaderEdit]) {
    let mut headers: Vec<(Vec<u8>, Vec<u8>)> = upstream
        .iter()
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect();
    engine::apply_edits(edits, &mut headers);
    let _ = writeln!(
        out,
        "response headers{}:",
        if upstream.is_empty() {
            " (no --upstream-header given)"
        } else {
            ""
        }
    );
    if headers.is_empty() {
        let _ = writeln!(out, "  (none)");
    }
    for (name, value) in &headers {
        let _ = writeln!(
            out,
            "  {}: {}",
            String::from_utf8_lossy(name),
            String::from_utf8_lossy(value)
        );
    }
}
