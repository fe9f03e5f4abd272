//! The request path both hosts run (`cors_engine::filter`), driven through the in-memory host:
//! what reaches the proxy (local replies, header edits, counters) for each kind of request. The
//! same requests through a real Envoy are the end-to-end suites' (`tests/e2e_*.rs`, run once per
//! build).

use cors_engine::filter::{Next, State, Stream as Filter};
use cors_engine::mock::{MockHost, Record};

const POLICY: &str = r#"{
  "default": { "allow_origins": ["https://app.example"], "allow_methods": ["PUT"],
               "allow_headers": ["x-a"], "expose_headers": ["x-total"], "max_age": 60 },
  "policies": {
    "open": { "allow_origins": ["*"] },
    "partner": { "allow_origins": ["https://partner.example"], "allow_credentials": true }
  },
  "rules": [
    { "match": { "route": "partner-route" }, "policy": "partner" },
    { "match": { "virtual_host": "open-vh" }, "policy": "open" },
    { "match": { "virtual_service": "shop/storefront" }, "policy": "open" },
    { "match": { "path_prefix": "/off/" }, "policy": null }
  ]
}"#;

/// The state, and each counter's name by id (ids are handed out in definition order).
fn state() -> (State<usize>, Vec<String>) {
    let mut names = Vec::new();
    let state = State::load(POLICY.as_bytes(), |name| {
        names.push(name.to_owned());
        Some(names.len() - 1)
    })
    .expect("the policy loads");
    (state, names)
}

fn host(request: &[(&str, &str)]) -> MockHost {
    MockHost {
        request: request
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect(),
        response: vec![
            (b":status".to_vec(), b"200".to_vec()),
            (b"content-type".to_vec(), b"text/plain".to_vec()),
        ],
        ..MockHost::default()
    }
}

fn counted(record: &Record, names: &[String]) -> Vec<String> {
    record
        .increments
        .iter()
        .map(|&id| names[id].clone())
        .collect()
}

fn header<'a>(headers: &'a [(Vec<u8>, Vec<u8>)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name.as_bytes())
        .map(|(_, v)| std::str::from_utf8(v).expect("utf-8"))
}

#[test]
fn every_counter_is_defined_once_per_policy_and_the_unknown_policy_one() {
    let (_, names) = state();
    assert_eq!(names.len(), 3 * 7 + 1, "{names:?}");
    assert_eq!(names[0], "cors.default.preflight_allowed");
    assert_eq!(names[7], "cors.open.preflight_allowed");
    assert_eq!(names[20], "cors.partner.actual_denied");
    assert_eq!(names[21], "cors.unknown_policy");
}

#[test]
fn a_bad_policy_is_refused() {
    let mut defined = 0;
    let refused = State::load(br#"{ "allow_origins": ["https://*.com"] }"#, |_| {
        defined += 1;
        Some(defined)
    });
    assert!(refused.is_err());
    assert_eq!(defined, 0, "no counter is defined for a refused policy");
}

#[test]
fn allowed_preflight_is_answered_locally_and_its_response_left_alone() {
    let (state, names) = state();
    let host = host(&[
        (":method", "OPTIONS"),
        (":path", "/api"),
        (":authority", "api.example"),
        ("origin", "https://app.example"),
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", "X-A"),
    ]);
    let filter = Filter::default();
    assert_eq!(filter.on_request_headers(&state, &host), Next::Stop);
    // Our own reply passes through our response hook: nothing more is added.
    filter.on_response_headers(&state, &host);
    let record = host.record.borrow();
    assert_eq!(record.edits, vec![]);
    let [(status, headers, details)] = record.replies.as_slice() else {
        panic!("one reply expected: {record:?}");
    };
    assert_eq!((*status, details.as_str()), (204, "cors_preflight_allowed"));
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), std::str::from_utf8(v).expect("utf-8")))
        .collect();
    assert_eq!(
        headers,
        vec![
            ("access-control-allow-origin", "https://app.example"),
            ("access-control-allow-methods", "PUT"),
            ("access-control-allow-headers", "x-a"),
            ("access-control-max-age", "60"),
            (
                "vary",
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
            ),
        ]
    );
    assert_eq!(
        counted(&record, &names),
        vec!["cors.default.preflight_allowed"]
    );
}

#[test]
fn denied_preflight_gets_403_with_vary_only() {
    let (state, names) = state();
    let host = host(&[
        (":method", "OPTIONS"),
        ("origin", "https://evil.example"),
        ("access-control-request-method", "PUT"),
    ]);
    assert_eq!(
        Filter::default().on_request_headers(&state, &host),
        Next::Stop
    );
    let record = host.record.borrow();
    assert_eq!(record.replies.len(), 1);
    assert_eq!(record.replies[0].0, 403);
    assert_eq!(record.replies[0].2, "cors_preflight_denied");
    let names_sent: Vec<&str> = record.replies[0]
        .1
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(names_sent, vec!["vary"]);
    assert_eq!(
        counted(&record, &names),
        vec!["cors.default.preflight_denied.origin"]
    );
}

#[test]
fn actual_request_goes_upstream_and_its_response_is_decorated() {
    let (state, names) = state();
    let mut host = host(&[(":method", "GET"), ("origin", "https://app.example")]);
    host.response
        .push((b"access-control-allow-origin".to_vec(), b"*".to_vec()));
    host.response.push((b"vary".to_vec(), b"Accept".to_vec()));
    let filter = Filter::default();
    assert_eq!(filter.on_request_headers(&state, &host), Next::Continue);
    filter.on_response_headers(&state, &host);
    let response = host.edited_response();
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        header(&response, "access-control-expose-headers"),
        Some("x-total")
    );
    assert_eq!(header(&response, "vary"), Some("Accept, Origin"));
    assert_eq!(header(&response, "content-type"), Some("text/plain"));
    let record = host.record.borrow();
    assert_eq!(record.replies, vec![]);
    assert_eq!(
        counted(&record, &names),
        vec!["cors.default.actual_allowed"]
    );
}

#[test]
fn rules_read_route_name_virtual_host_and_istio_config() {
    let (state, names) = state();
    let mut partner = host(&[(":method", "GET"), ("origin", "https://partner.example")]);
    partner.route_name = Some(b"partner-route".to_vec());
    let filter = Filter::default();
    filter.on_request_headers(&state, &partner);
    filter.on_response_headers(&state, &partner);
    let response = partner.edited_response();
    assert_eq!(
        header(&response, "access-control-allow-credentials"),
        Some("true")
    );

    let mut open = host(&[(":method", "GET"), ("origin", "https://anyone.example")]);
    open.virtual_host = Some(b"open-vh".to_vec());
    let mut mesh = host(&[(":method", "GET"), ("origin", "https://anyone.example")]);
    mesh.route_metadata.push((
        "istio".into(),
        "config".into(),
        b"/apis/networking.istio.io/v1/namespaces/shop/virtual-service/storefront".to_vec(),
    ));
    for host in [&open, &mesh] {
        let filter = Filter::default();
        filter.on_request_headers(&state, host);
        filter.on_response_headers(&state, host);
        assert_eq!(
            header(&host.edited_response(), "access-control-allow-origin"),
            Some("*")
        );
        assert_eq!(
            counted(&host.record.borrow(), &names),
            vec!["cors.open.actual_allowed"]
        );
    }
}

#[test]
fn route_metadata_off_and_unknown_policy() {
    let (state, names) = state();
    let mut off = host(&[
        (":method", "OPTIONS"),
        ("origin", "https://app.example"),
        ("access-control-request-method", "PUT"),
    ]);
    off.route_metadata
        .push(("cors".into(), "policy".into(), b"off".to_vec()));
    let filter = Filter::default();
    assert_eq!(filter.on_request_headers(&state, &off), Next::Continue);
    filter.on_response_headers(&state, &off);
    assert_eq!(*off.record.borrow(), Record::default());

    let mut unknown = host(&[(":method", "GET"), ("origin", "https://app.example")]);
    unknown.response.push((
        b"access-control-allow-origin".to_vec(),
        b"https://app.example".to_vec(),
    ));
    unknown
        .route_metadata
        .push(("cors".into(), "policy".into(), b"ghost".to_vec()));
    let filter = Filter::default();
    assert_eq!(filter.on_request_headers(&state, &unknown), Next::Continue);
    filter.on_response_headers(&state, &unknown);
    assert_eq!(
        header(&unknown.edited_response(), "access-control-allow-origin"),
        None
    );
    assert_eq!(
        counted(&unknown.record.borrow(), &names),
        vec!["cors.unknown_policy"]
    );
}

#[test]
fn repeated_request_headers_are_joined_like_the_wasm_host_does() {
    let (state, _) = state();
    let host = host(&[
        (":method", "OPTIONS"),
        ("origin", "https://app.example"),
        ("access-control-request-method", "PUT"),
        ("access-control-request-headers", "x-a"),
        ("access-control-request-headers", "x-b"),
    ]);
    Filter::default().on_request_headers(&state, &host);
    let record = host.record.borrow();
    // x-b is not allowed: the joined list is checked as one.
    assert_eq!(record.replies[0].0, 403);
}
