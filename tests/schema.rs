//! `schema/policy.schema.json` against every example policy document, and the engine against the
//! expected problems of each example.
//!
//! - `examples/policies/valid/*.json` (and `examples/policy.json`): the schema accepts them and the
//!   engine loads them, with exactly the warnings of a sibling `.warnings` file (none if absent).
//! - `examples/policies/invalid/*.json`: the engine rejects each with exactly the lines of its
//!   sibling `.errors` file; the schema rejects exactly those listed in [`SCHEMA_REJECTS`] and
//!   accepts the others (their problems are semantic: origin wildcards, regexes, policy
//!   references), so a schema change that starts or stops catching one shows up here.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Invalid examples the schema itself rejects (the rest need the engine).
const SCHEMA_REJECTS: &[&str] = &[
    "credentials-any-origin.json",
    "empty.json",
    "forbidden-methods-headers.json",
    "istio-resource-names.json",
    "not-an-object.json",
    "nothing-to-apply.json",
    "origin-not-serialised.json",
    "out-of-range.json",
    "reserved-names.json",
    "unknown-fields.json",
    "wrong-types.json",
];
/// Invalid examples that are not JSON at all (no schema verdict).
const NOT_JSON: &[&str] = &["syntax-error.json"];
/// Invalid examples the schema accepts and only the engine rejects.
const ENGINE_ONLY: &[&str] = &[
    "credentials-open-regex.json",
    "unknown-policy-in-rule.json",
    "wildcard-tld.json",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository root")
        .to_path_buf()
}

fn json_files(dir: &str) -> Vec<PathBuf> {
    let dir = root().join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn file_name(path: &Path) -> &str {
    path.file_name()
        .and_then(|n| n.to_str())
        .expect("file name")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Lines of a sibling file with this extension; empty when the file does not exist.
fn sibling_lines(path: &Path, ext: &str) -> Vec<String> {
    let sibling = path.with_extension(ext);
    if !sibling.exists() {
        return Vec::new();
    }
    read(&sibling).lines().map(str::to_owned).collect()
}

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&read(&root().join("schema/policy.schema.json")))
        .expect("the schema is JSON");
    jsonschema::draft202012::new(&schema).expect("the schema compiles")
}

fn schema_errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn the_schema_is_a_valid_draft_2020_12_schema() {
    let schema: Value = serde_json::from_str(&read(&root().join("schema/policy.schema.json")))
        .expect("the schema is JSON");
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    if let Err(e) = jsonschema::meta::validate(&schema) {
        panic!("the schema does not conform to its metaschema: {e}");
    }
}

#[test]
fn valid_examples_pass_the_schema_and_the_engine() {
    let validator = validator();
    let mut files = json_files("examples/policies/valid");
    assert!(
        files.len() >= 7,
        "expected the valid examples, found {files:?}"
    );
    files.push(root().join("examples/policy.json"));
    for path in &files {
        let text = read(path);
        let instance: Value = serde_json::from_str(&text).expect("valid example is JSON");
        let errors = schema_errors(&validator, &instance);
        assert!(
            errors.is_empty(),
            "{}: the schema rejects a valid example: {errors:#?}",
            path.display()
        );
        match cors_engine::policy::load(&text) {
            Ok(loaded) => {
                let warnings: Vec<String> =
                    loaded.warnings.iter().map(ToString::to_string).collect();
                assert_eq!(
                    warnings,
                    sibling_lines(path, "warnings"),
                    "{}: warnings",
                    path.display()
                );
            }
            Err(rejected) => panic!(
                "{}: the engine rejects a valid example: {:#?}",
                path.display(),
                rejected.errors
            ),
        }
    }
}

#[test]
fn invalid_examples_fail_with_exactly_their_errors() {
    let files = json_files("examples/policies/invalid");
    let names: Vec<&str> = files.iter().map(|p| file_name(p)).collect();
    let mut listed: Vec<&str> = SCHEMA_REJECTS
        .iter()
        .chain(NOT_JSON)
        .chain(ENGINE_ONLY)
        .copied()
        .collect();
    listed.sort_unstable();
    assert_eq!(
        names, listed,
        "every invalid example must be listed exactly once in SCHEMA_REJECTS, NOT_JSON or ENGINE_ONLY"
    );
    for path in &files {
        let expected = sibling_lines(path, "errors");
        assert!(
            !expected.is_empty(),
            "{}: missing or empty .errors file",
            path.display()
        );
        match cors_engine::policy::load(&read(path)) {
            Ok(_) => panic!("{}: the engine accepts an invalid example", path.display()),
            Err(rejected) => {
                let errors: Vec<String> = rejected.errors.iter().map(ToString::to_string).collect();
                assert_eq!(errors, expected, "{}: errors", path.display());
                assert!(
                    rejected.warnings.is_empty(),
                    "{}: unexpected warnings {:?}",
                    path.display(),
                    rejected.warnings
                );
            }
        }
    }
}

#[test]
fn the_schema_rejects_exactly_the_structurally_invalid_examples() {
    let validator = validator();
    let dir = root().join("examples/policies/invalid");
    for name in SCHEMA_REJECTS {
        let instance: Value = serde_json::from_str(&read(&dir.join(name))).expect("JSON");
        assert!(
            !validator.is_valid(&instance),
            "{name}: the schema accepts it, but it is listed in SCHEMA_REJECTS"
        );
    }
    for name in ENGINE_ONLY {
        let instance: Value = serde_json::from_str(&read(&dir.join(name))).expect("JSON");
        let errors = schema_errors(&validator, &instance);
        assert!(
            errors.is_empty(),
            "{name}: the schema rejects it ({errors:?}); move it to SCHEMA_REJECTS"
        );
    }
    for name in NOT_JSON {
        assert!(
            serde_json::from_str::<Value>(&read(&dir.join(name))).is_err(),
            "{name} is JSON"
        );
    }
}

/// Where the schema points at the problem: the instance paths it reports for a few examples.
#[test]
fn schema_errors_point_at_the_offending_values() {
    let validator = validator();
    let cases: &[(&str, &[&str])] = &[
        ("out-of-range.json", &["/max_age", "/preflight_status"]),
        (
            "wrong-types.json",
            &[
                "/allow_credentials",
                "/allow_methods/1",
                "/allow_origins",
                "/mode",
            ],
        ),
        (
            "forbidden-methods-headers.json",
            &[
                "/allow_headers/2",
                "/allow_methods/0",
                "/allow_methods/1",
                "/allow_methods/2",
            ],
        ),
    ];
    let dir = root().join("examples/policies/invalid");
    for (name, paths) in cases {
        let instance: Value = serde_json::from_str(&read(&dir.join(name))).expect("JSON");
        let mut got: Vec<String> = validator
            .iter_errors(&instance)
            .map(|e| e.instance_path().to_string())
            .collect();
        got.sort();
        got.dedup();
        assert_eq!(got, *paths, "{name}");
    }
}

/// Istio delivers numbers as floats with a zero fraction (`600.0`): both the schema and the engine
/// take them as integers; a real fraction is refused by both.
#[test]
fn zero_fraction_floats_are_integers_for_schema_and_engine() {
    let validator = validator();
    let whole = r#"{"allow_origins": ["https://a.example"], "max_age": 600.0}"#;
    let fraction = r#"{"allow_origins": ["https://a.example"], "max_age": 600.5}"#;
    assert!(validator.is_valid(&serde_json::from_str(whole).expect("JSON")));
    assert!(cors_engine::policy::load(whole).is_ok());
    assert!(!validator.is_valid(&serde_json::from_str(fraction).expect("JSON")));
    let errors: Vec<String> = match cors_engine::policy::load(fraction) {
        Ok(_) => panic!("600.5 accepted"),
        Err(rejected) => rejected.errors.iter().map(ToString::to_string).collect(),
    };
    assert_eq!(errors, ["max_age: expected an integer, got 600.5"]);
}

/// The committed schema is exactly what `cors-policy schema` prints (generated from the policy
/// field declarations): after changing a field, run
/// `cargo run --bin cors-policy -- schema > schema/policy.schema.json`.
#[test]
fn the_committed_schema_is_what_the_cli_prints() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cors-policy"))
        .arg("schema")
        .output()
        .expect("run cors-policy schema");
    assert_eq!(out.status.code(), Some(0));
    let printed = String::from_utf8(out.stdout).expect("UTF-8 schema");
    let committed = read(&root().join("schema/policy.schema.json"));
    assert!(
        printed == committed,
        "schema/policy.schema.json differs from `cors-policy schema`; regenerate it with \
         `cargo run --bin cors-policy -- schema > schema/policy.schema.json`"
    );
}

/// The field table of docs/policy.md is exactly what `cors-policy schema --markdown-table` prints
/// (generated from the policy field declarations): after changing a field, paste that output over
/// the table.
#[test]
fn the_docs_field_table_is_what_the_cli_prints() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cors-policy"))
        .args(["schema", "--markdown-table"])
        .output()
        .expect("run cors-policy schema --markdown-table");
    assert_eq!(out.status.code(), Some(0));
    let printed = String::from_utf8(out.stdout).expect("UTF-8 table");
    let docs = read(&root().join("docs/policy.md"));
    let table: String = docs
        .lines()
        .skip_while(|l| !l.starts_with("| field | type, default | meaning |"))
        .take_while(|l| l.starts_with('|'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        table, printed,
        "the field table of docs/policy.md differs from `cors-policy schema --markdown-table`"
    );
    use cors_engine::policy::fields::POLICY_FIELDS;
    assert_eq!(table.lines().count(), 2 + POLICY_FIELDS.len());
}
