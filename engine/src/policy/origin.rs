//! Origin patterns (docs/policy.md, *Origin patterns*): parsing and validating the patterns of a policy, and matching a
//! request's `Origin` bytes against them without scanning.
//!
//! Matching is byte-exact: nothing in the request is normalised. Exact origins live in a hash set,
//! subdomain wildcards are looked up by host suffix, port wildcards by `scheme://host`; only regexes
//! are tried one by one.

use crate::lookup::{KeyMap, KeySet};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Longest host name we try wildcard lookups for (DNS limit); longer hosts only match exactly.
const MAX_HOST_LEN: usize = 253;
/// Longest regex source accepted.
pub const MAX_REGEX_LEN: usize = 1000;

/// The port part of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PortSpec {
    /// No port in the pattern: the origin must carry none.
    Absent,
    /// A literal port, e.g. `8080`.
    Exact(String),
    /// `:*`: any explicit port, or none.
    Any,
}

/// One validated entry of `allow_origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// `*`
    Any,
    /// `null`, the opaque origin.
    Null,
    /// A serialised origin, compared byte-exact.
    Exact(String),
    /// `scheme://*.suffix[:port]`: one or more labels before `suffix`.
    Subdomain {
        scheme: String,
        suffix: String,
        port: PortSpec,
    },
    /// `scheme://host:*`.
    AnyPort { scheme: String, host: String },
}

impl OriginPattern {
    /// The scheme of a pattern that names one (`None` for `*` and `null`).
    pub fn scheme(&self) -> Option<&str> {
        match self {
            OriginPattern::Any | OriginPattern::Null => None,
            OriginPattern::Exact(origin) => origin.split("://").next(),
            OriginPattern::Subdomain { scheme, .. } | OriginPattern::AnyPort { scheme, .. } => {
                Some(scheme)
            }
        }
    }

    /// True for patterns whose host is a loopback host (`localhost`, `127.0.0.0/8`, `[::1]`).
    pub fn is_loopback(&self) -> bool {
        let host = match self {
            OriginPattern::Any | OriginPattern::Null | OriginPattern::Subdomain { .. } => {
                return false
            }
            OriginPattern::AnyPort { host, .. } => host.as_str(),
            OriginPattern::Exact(origin) => match split_authority(origin) {
                Some((_, host, _)) => host,
                None => return false,
            },
        };
        is_loopback_host(host)
    }
}

fn is_loopback_host(host: &str) -> bool {
    if host == "localhost" || host == "[::1]" {
        return true;
    }
    host.parse::<Ipv4Addr>()
        .is_ok_and(|ip| ip.octets()[0] == 127)
}

/// Splits a serialised origin into scheme, host and optional port text.
fn split_authority(origin: &str) -> Option<(&str, &str, Option<&str>)> {
    let (scheme, authority) = origin.split_once("://")?;
    let (host, port) = split_host_port(authority);
    Some((scheme, host, port))
}

/// Splits `host[:port]` (host may be a bracketed IPv6 literal).
fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    // `[…]` or, in a pattern, a wildcard over one (`*.[::1]`, refused later for what it is).
    if authority.starts_with('[') || authority.starts_with("*.[") {
        if let Some(end) = authority.find(']') {
            let (host, rest) = authority.split_at(end + 1);
            return match rest.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => (host, if rest.is_empty() { None } else { Some(rest) }),
            };
        }
        return (authority, None);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

fn default_port(scheme: &str) -> Option<&'static str> {
    match scheme {
        "http" | "ws" => Some("80"),
        "https" | "wss" => Some("443"),
        "ftp" => Some("21"),
        _ => None,
    }
}

/// Parses and validates one `allow_origins` entry (serialised form, RFC 6454). The error says what is wrong.
pub fn parse_pattern(text: &str) -> Result<OriginPattern, String> {
    match text {
        "*" => return Ok(OriginPattern::Any),
        "null" => return Ok(OriginPattern::Null),
        "" => return Err("an origin must not be empty".into()),
        _ => {}
    }
    if text
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err("an origin must not contain whitespace or control characters".into());
    }
    if !text.is_ascii() {
        return Err("an origin must be ASCII (use the punycode form of the host)".into());
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err("not a serialised origin: expected scheme://host[:port]".into());
    };
    check_scheme(scheme)?;
    if let Some(pos) = rest.find(['/', '?', '#']) {
        let what = match rest.as_bytes()[pos] {
            b'?' => "a query",
            b'#' => "a fragment",
            _ if pos + 1 == rest.len() => "a trailing slash",
            _ => "a path",
        };
        return Err(format!(
            "an origin has no path, query or fragment; this one has {what}"
        ));
    }
    if rest.contains('@') {
        return Err("an origin has no userinfo (user@ or user:password@)".into());
    }
    if rest.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("upper case is not allowed: browsers send the host in lower case and origins are compared byte-exact".into());
    }
    let (host, port_text) = split_host_port(rest);
    let port = match port_text {
        None => PortSpec::Absent,
        Some("*") => PortSpec::Any,
        Some(port) => PortSpec::Exact(check_port(scheme, port)?.to_owned()),
    };
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    if !host.contains('[') && host.contains(':') {
        return Err(
            "more than one ':': the port follows the host once (IPv6 hosts go in brackets)".into(),
        );
    }
    if let Some(suffix) = host.strip_prefix("*.") {
        if suffix.contains('*') {
            return Err(
                "a wildcard is only allowed as the whole leading label (https://*.example.com)"
                    .into(),
            );
        }
        match classify_host(suffix)? {
            HostKind::Domain { labels } if labels >= 2 => {}
            HostKind::Domain { .. } => {
                return Err("a wildcard must leave at least two labels".into());
            }
            HostKind::Ip => {
                return Err("subdomain wildcards never apply to IP addresses".into());
            }
        }
        return Ok(OriginPattern::Subdomain {
            scheme: scheme.to_owned(),
            suffix: suffix.to_owned(),
            port,
        });
    }
    if host.contains('*') {
        return Err(
            "a wildcard is only allowed as the whole leading label (https://*.example.com)".into(),
        );
    }
    classify_host(host)?;
    Ok(match port {
        PortSpec::Any => OriginPattern::AnyPort {
            scheme: scheme.to_owned(),
            host: host.to_owned(),
        },
        PortSpec::Absent | PortSpec::Exact(_) => OriginPattern::Exact(text.to_owned()),
    })
}

fn check_scheme(scheme: &str) -> Result<(), String> {
    let mut bytes = scheme.bytes();
    let valid_start = bytes.next().is_some_and(|b| b.is_ascii_alphabetic());
    let valid_rest = bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !valid_start || !valid_rest {
        return Err(format!("\"{scheme}\" is not a valid scheme"));
    }
    if scheme.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("upper case is not allowed: browsers send the scheme in lower case and origins are compared byte-exact".into());
    }
    Ok(())
}

fn check_port<'a>(scheme: &str, port: &'a str) -> Result<&'a str, String> {
    if port.is_empty() {
        return Err("the port is empty (drop the trailing ':')".into());
    }
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("\"{port}\" is not a port number"));
    }
    if port.starts_with('0') {
        return Err(if port.bytes().all(|b| b == b'0') {
            "port 0 is not a valid port".into()
        } else {
            "a port must not have leading zeros".into()
        });
    }
    if port.len() > 5 || port.parse::<u32>().map_or(true, |n| n > 65535) {
        return Err(format!("port {port} is out of range 1..=65535"));
    }
    if default_port(scheme) == Some(port) {
        return Err(format!(
            "the default port {port} of {scheme} is never sent by browsers; drop it"
        ));
    }
    Ok(port)
}

enum HostKind {
    Domain { labels: usize },
    Ip,
}

/// Validates a host in serialised form: a lower-case domain, a dotted-quad IPv4 address or a
/// bracketed RFC 5952 IPv6 address.
fn classify_host(host: &str) -> Result<HostKind, String> {
    if let Some(inner) = host.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return Err("an IPv6 address must be enclosed in [ ]".into());
        };
        let Ok(addr) = inner.parse::<Ipv6Addr>() else {
            return Err(format!("\"{inner}\" is not an IPv6 address"));
        };
        let canonical = ipv6_serialised(&addr);
        if canonical != inner {
            return Err(format!(
                "an IPv6 address must be in RFC 5952 form as browsers send it: [{canonical}]"
            ));
        }
        return Ok(HostKind::Ip);
    }
    if host.ends_with('.') {
        return Err("a host must not end with a dot".into());
    }
    if host.len() > MAX_HOST_LEN {
        return Err("a host must not be longer than 253 characters".into());
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.iter().any(|label| label.is_empty()) {
        return Err("a host must not have an empty label".into());
    }
    for label in &labels {
        if label.len() > 63 {
            return Err("a host label must not be longer than 63 characters".into());
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
        {
            return Err(format!("'{c}' is not allowed in a host name"));
        }
    }
    let last = labels.last().copied().unwrap_or_default();
    if last.bytes().all(|b| b.is_ascii_digit()) || last.starts_with("0x") {
        // WHATWG URL parsing treats such hosts as IPv4 and re-serialises them.
        return match host.parse::<Ipv4Addr>() {
            Ok(ip) if ip.to_string() == host => Ok(HostKind::Ip),
            _ => Err(format!(
                "\"{host}\" is not a dotted-quad IPv4 address in serialised form"
            )),
        };
    }
    Ok(HostKind::Domain {
        labels: labels.len(),
    })
}

/// Serialises an IPv6 address the way browsers do (WHATWG URL, RFC 5952): lower-case hex, no
/// leading zeros, the first longest run of two or more zero groups compressed, no dotted IPv4 tail.
pub fn ipv6_serialised(addr: &Ipv6Addr) -> String {
    let segments = addr.segments();
    let (mut best_start, mut best_len) = (usize::MAX, 1);
    let mut i = 0;
    while i < 8 {
        if segments[i] == 0 {
            let start = i;
            while i < 8 && segments[i] == 0 {
                i += 1;
            }
            if i - start > best_len {
                best_start = start;
                best_len = i - start;
            }
        } else {
            i += 1;
        }
    }
    let mut out = String::new();
    let mut i = 0;
    while i < 8 {
        if i == best_start {
            out.push_str(if i == 0 { "::" } else { ":" });
            i += best_len;
            continue;
        }
        out.push_str(&format!("{:x}", segments[i]));
        if i < 7 {
            out.push(':');
        }
        i += 1;
    }
    out
}

/// Parses a regex entry of `allow_origin_regexes` into its full-match form.
pub fn compile_regex(source: &str) -> Result<regex_lite::Regex, String> {
    if source.len() > MAX_REGEX_LEN {
        return Err(format!(
            "a regex must not be longer than {MAX_REGEX_LEN} bytes (this one has {})",
            source.len()
        ));
    }
    regex_lite::Regex::new(&format!("^(?:{source})$"))
        .map_err(|e| format!("the regex does not compile: {}", one_line(&e.to_string())))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// True when a regex has an unescaped `.` between two letters or digits outside a character
/// class — most likely an unescaped dot in a host name (`app.example.com`).
pub fn has_suspicious_dot(source: &str) -> bool {
    let bytes = source.as_bytes();
    let mut in_class = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                i += 2;
                continue;
            }
            b'[' if !in_class => {
                in_class = true;
                // A `]` right after `[` or `[^` is a literal, not the end of the class.
                i += 1;
                if bytes.get(i) == Some(&b'^') {
                    i += 1;
                }
                if bytes.get(i) == Some(&b']') {
                    i += 1;
                }
                continue;
            }
            b']' if in_class => in_class = false,
            // A letter or digit that is itself escaped (`\d.x`) is a class, not a host name.
            b'.' if !in_class
                && i > 0
                && i + 1 < bytes.len()
                && bytes[i - 1].is_ascii_alphanumeric()
                && bytes[i + 1].is_ascii_alphanumeric()
                && (i < 2 || bytes[i - 2] != b'\\') =>
            {
                return true;
            }
            _ => {}
        }
        i += 1;
    }
    false
}

/// A subdomain wildcard's scheme and port, stored under its host suffix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SchemePort {
    scheme: Box<[u8]>,
    port: PortSpec,
}

/// The compiled `allow_origins` + `allow_origin_regexes` of one policy.
#[derive(Debug, Default)]
pub struct OriginMatcher {
    any: bool,
    /// Exact origins (and `null`), byte-exact.
    exact: KeySet,
    /// `scheme://host` of port-wildcard patterns.
    any_port: KeySet,
    /// Subdomain wildcards by host suffix (`example.com`).
    subdomains: KeyMap<Vec<SchemePort>>,
    regexes: Vec<regex_lite::Regex>,
}

impl OriginMatcher {
    pub fn new(patterns: &[OriginPattern], regexes: Vec<regex_lite::Regex>) -> Self {
        let mut matcher = OriginMatcher {
            regexes,
            ..OriginMatcher::default()
        };
        for pattern in patterns {
            match pattern {
                OriginPattern::Any => matcher.any = true,
                OriginPattern::Null => {
                    matcher.exact.insert(b"null".as_slice().into());
                }
                OriginPattern::Exact(origin) => {
                    matcher.exact.insert(origin.as_bytes().into());
                }
                OriginPattern::AnyPort { scheme, host } => {
                    matcher
                        .any_port
                        .insert(format!("{scheme}://{host}").into_bytes().into());
                }
                OriginPattern::Subdomain {
                    scheme,
                    suffix,
                    port,
                } => {
                    let entries = matcher
                        .subdomains
                        .entry(suffix.as_bytes().into())
                        .or_default();
                    let entry = SchemePort {
                        scheme: scheme.as_bytes().into(),
                        port: port.clone(),
                    };
                    if !entries.contains(&entry) {
                        entries.push(entry);
                    }
                }
            }
        }
        matcher
    }

    /// True when every origin is allowed (`*`).
    pub fn allows_any(&self) -> bool {
        self.any
    }

    /// Does the request's `Origin` value match? Values with a comma or whitespace (several
    /// `Origin` headers joined, or garbage) never match, regexes included.
    pub fn matches(&self, origin: &[u8]) -> bool {
        // An exact entry passed `parse_pattern`, so it holds no comma, whitespace or control
        // byte: a value found here is clean, and the common case skips the scan below.
        if self.exact.contains(origin) {
            return true;
        }
        if origin.is_empty()
            || origin
                .iter()
                .any(|&b| b == b',' || b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return false;
        }
        if self.any {
            return true;
        }
        if (!self.any_port.is_empty() || !self.subdomains.is_empty())
            && self.matches_wildcard(origin)
        {
            return true;
        }
        if self.regexes.is_empty() {
            return false;
        }
        match std::str::from_utf8(origin) {
            Ok(text) => self.regexes.iter().any(|re| re.is_match(text)),
            Err(_) => false,
        }
    }

    fn matches_wildcard(&self, origin: &[u8]) -> bool {
        let Some(parts) = RequestOrigin::parse(origin) else {
            return false;
        };
        if !self.any_port.is_empty()
            && valid_port(parts.port)
            && self.any_port.contains(&origin[..parts.host_end])
        {
            return true;
        }
        if self.subdomains.is_empty() || parts.host.len() > MAX_HOST_LEN || parts.host[0] == b'[' {
            return false;
        }
        // Try every proper suffix that starts after a dot, as long as the labels before it are
        // well formed: at most ~127 lookups for the longest host name. Each label is checked once,
        // as the scan passes it.
        let host = parts.host;
        let mut label_start = 0;
        for (dot, _) in host.iter().enumerate().filter(|(_, &b)| b == b'.') {
            if !valid_labels(&host[label_start..dot]) {
                // A malformed label here is malformed for every longer prefix too.
                return false;
            }
            label_start = dot + 1;
            let Some(entries) = self.subdomains.get(&host[dot + 1..]) else {
                continue;
            };
            if entries.iter().any(|entry| {
                *entry.scheme == *parts.scheme
                    && match &entry.port {
                        PortSpec::Any => valid_port(parts.port),
                        PortSpec::Absent => parts.port.is_none(),
                        PortSpec::Exact(port) => parts.port == Some(port.as_bytes()),
                    }
            }) {
                return true;
            }
        }
        false
    }
}

/// The parts of a request's `Origin` needed for wildcard lookups.
struct RequestOrigin<'a> {
    scheme: &'a [u8],
    host: &'a [u8],
    /// Offset in the origin where the host ends (`scheme://host` is `origin[..host_end]`).
    host_end: usize,
    port: Option<&'a [u8]>,
}

impl<'a> RequestOrigin<'a> {
    fn parse(origin: &'a [u8]) -> Option<Self> {
        let sep = origin.windows(3).position(|w| w == b"://")?;
        let scheme = &origin[..sep];
        let authority_start = sep + 3;
        let authority = &origin[authority_start..];
        if authority.is_empty() {
            return None;
        }
        let host_len = if authority[0] == b'[' {
            authority.iter().position(|&b| b == b']')? + 1
        } else {
            authority
                .iter()
                .rposition(|&b| b == b':')
                .unwrap_or(authority.len())
        };
        let host = &authority[..host_len];
        if host.is_empty() {
            return None;
        }
        let port = match &authority[host_len..] {
            [] => None,
            [b':', port @ ..] => Some(port),
            _ => return None,
        };
        Some(RequestOrigin {
            scheme,
            host,
            host_end: authority_start + host_len,
            port,
        })
    }
}

/// A port as browsers serialise it: 1..=65535, no leading zero (absent is fine).
fn valid_port(port: Option<&[u8]>) -> bool {
    let Some(port) = port else { return true };
    !port.is_empty()
        && port.len() <= 5
        && port[0] != b'0'
        && port.iter().all(u8::is_ascii_digit)
        && port.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= 65535
}

/// One or more non-empty labels of `[a-z0-9_-]`, separated by dots.
fn valid_labels(prefix: &[u8]) -> bool {
    !prefix.is_empty()
        && prefix.split(|&b| b == b'.').all(|label| {
            !label.is_empty()
                && label.iter().all(|&b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(patterns: &[&str]) -> OriginMatcher {
        let parsed: Vec<OriginPattern> = patterns
            .iter()
            .map(|p| parse_pattern(p).unwrap_or_else(|e| panic!("{p}: {e}")))
            .collect();
        OriginMatcher::new(&parsed, Vec::new())
    }

    #[test]
    fn valid_patterns() {
        for p in [
            "https://app.example.com",
            "http://localhost:8080",
            "http://localhost:*",
            "http://127.0.0.1:*",
            "http://127.0.0.1",
            "https://[::1]",
            "https://[2001:db8::1]:8443",
            "https://*.example.com",
            "https://*.example.com:*",
            "https://*.a.example.com:8443",
            "chrome-extension://abcdef",
            "https://xn--bcher-kva.example",
            "null",
            "*",
        ] {
            assert!(
                parse_pattern(p).is_ok(),
                "{p} should be valid: {:?}",
                parse_pattern(p)
            );
        }
    }

    /// `matches` trusts a value found among the exact origins without scanning it: no exact
    /// pattern may hold a byte the scan would refuse.
    #[test]
    fn no_exact_pattern_holds_a_comma_whitespace_or_control_byte() {
        for bad in [
            b',', b' ', b'\t', b'\n', b'\r', 0x0b, 0x0c, 0x00, 0x1f, 0x7f,
        ] {
            for text in [
                format!("https://a{}b.example", bad as char),
                format!("https://a.example{}", bad as char),
                format!("https://a.example:80{}", bad as char),
                format!("{}https://a.example", bad as char),
                format!("ht{}tp://a.example", bad as char),
            ] {
                match parse_pattern(&text) {
                    Ok(OriginPattern::Exact(origin)) => {
                        panic!("{text:?} became the exact origin {origin:?}")
                    }
                    Ok(other) => panic!("{text:?} became {other:?}"),
                    Err(_) => {}
                }
            }
        }
        let m = matcher(&["https://a.example"]);
        assert!(m.matches(b"https://a.example"));
        assert!(!m.matches(b"https://a.example,https://a.example"));
        assert!(!m.matches(b"https://a.example "));
    }

    #[test]
    fn invalid_patterns_say_why() {
        let cases = [
            ("", "must not be empty"),
            ("app.example.com", "expected scheme://host[:port]"),
            ("https://app.example.com/", "a trailing slash"),
            ("https://app.example.com/x", "a path"),
            ("https://app.example.com?x", "a query"),
            ("https://app.example.com#x", "a fragment"),
            ("https://user@app.example.com", "userinfo"),
            ("https://App.example.com", "upper case"),
            ("HTTPS://app.example.com", "upper case"),
            ("https://app.example.com:443", "default port 443"),
            ("http://app.example.com:80", "default port 80"),
            ("https://app.example.com:0", "port 0"),
            ("https://app.example.com:65536", "out of range"),
            ("https://app.example.com:08080", "leading zeros"),
            ("https://app.example.com:", "the port is empty"),
            ("https://app..example.com", "empty label"),
            ("https://app.example.com.", "end with a dot"),
            ("https://*.com", "at least two labels"),
            ("https://a.*.example.com", "whole leading label"),
            ("https://*example.com", "whole leading label"),
            ("https://**.example.com", "whole leading label"),
            ("https://*.127.0.0.1", "IP addresses"),
            ("https://*.[::1]", "IP addresses"),
            ("https://*.[::1]:*", "IP addresses"),
            ("https://a.example.com:*:*", "more than one ':'"),
            ("https://a.example.com:1:2", "more than one ':'"),
            ("https://[::0001]", "RFC 5952"),
            ("https://[2001:DB8::1]", "upper case"),
            ("https://[2001:db8:0:0:0:0:0:1]", "RFC 5952"),
            ("https://1.2.3", "dotted-quad"),
            ("https://01.2.3.4", "dotted-quad"),
            ("https://app example.com", "whitespace"),
            ("https://", "the host is empty"),
        ];
        for (pattern, reason) in cases {
            match parse_pattern(pattern) {
                Ok(p) => panic!("{pattern:?} should be invalid, parsed as {p:?}"),
                Err(e) => assert!(e.contains(reason), "{pattern:?}: {e:?} lacks {reason:?}"),
            }
        }
    }

    #[test]
    fn exact_is_byte_exact() {
        let m = matcher(&["https://app.example.com"]);
        assert!(m.matches(b"https://app.example.com"));
        for o in [
            "https://APP.example.com",
            "https://app.example.com/",
            "https://app.example.com.",
            "https://app.example.com:443",
            " https://app.example.com",
            "https://app.example.com ",
            "http://app.example.com",
            "https://app.example.com.evil.com",
            "https://evilapp.example.com",
            "https://app.example.co",
            "null",
            "",
        ] {
            assert!(!m.matches(o.as_bytes()), "{o:?} must not match");
        }
    }

    #[test]
    fn subdomain_wildcard() {
        let m = matcher(&["https://*.example.com"]);
        for o in [
            "https://a.example.com",
            "https://a.b.example.com",
            "https://a-1_x.example.com",
        ] {
            assert!(m.matches(o.as_bytes()), "{o}");
        }
        for o in [
            "https://example.com",
            "https://.example.com",
            "https://a..example.com",
            "http://a.example.com",
            "https://a.example.com:8443",
            "https://a.example.com.evil",
            "https://aexample.com",
            "https://A.example.com",
            "https://a.example.com/",
            "https://a.example.com,https://b.example.com",
        ] {
            assert!(!m.matches(o.as_bytes()), "{o}");
        }
        let ported = matcher(&["https://*.example.com:8443", "https://*.example.org:*"]);
        assert!(ported.matches(b"https://a.example.com:8443"));
        assert!(!ported.matches(b"https://a.example.com"));
        assert!(!ported.matches(b"https://a.example.com:8444"));
        assert!(ported.matches(b"https://a.example.org"));
        assert!(ported.matches(b"https://a.example.org:1"));
        assert!(!ported.matches(b"https://a.example.org:0"));
        assert!(!ported.matches(b"https://a.example.org:"));
    }

    #[test]
    fn port_wildcard() {
        let m = matcher(&["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"]);
        for o in [
            "http://localhost",
            "http://localhost:1",
            "http://localhost:65535",
            "http://127.0.0.1:3000",
            "http://[::1]:8080",
            "http://[::1]",
        ] {
            assert!(m.matches(o.as_bytes()), "{o}");
        }
        for o in [
            "http://localhost:65536",
            "http://localhost:0",
            "http://localhost:080",
            "http://localhost:",
            "http://localhost:abc",
            "https://localhost:3000",
            "http://localhost.evil.com:3000",
            "http://evil-localhost:3000",
            "http://127.0.0.2:3000",
        ] {
            assert!(!m.matches(o.as_bytes()), "{o}");
        }
    }

    #[test]
    fn null_and_any() {
        let m = matcher(&["null"]);
        assert!(m.matches(b"null"));
        assert!(!m.matches(b"Null"));
        let any = matcher(&["*"]);
        assert!(any.matches(b"https://whatever.example"));
        assert!(any.matches(b"null"));
        assert!(!any.matches(b"a, b"));
        assert!(!any.matches(b""));
    }

    #[test]
    fn regexes_full_match_and_never_commas() {
        let re = compile_regex(r"https://[a-z]+\.example\.com").unwrap();
        let m = OriginMatcher::new(&[], vec![re]);
        assert!(m.matches(b"https://app.example.com"));
        assert!(!m.matches(b"https://app.example.com.evil.com"));
        assert!(!m.matches(b"xhttps://app.example.com"));
        assert!(!m.matches(b"https://app.example.com,https://x.example.com"));
        assert!(!m.matches(b"https://app.example.com\xff"));
        let any = OriginMatcher::new(&[], vec![compile_regex(".*").unwrap()]);
        assert!(!any.matches(b"https://a.example.com https://b"));
    }

    #[test]
    fn regex_checks() {
        assert!(compile_regex("(").is_err());
        assert!(compile_regex(&"a".repeat(1001))
            .unwrap_err()
            .contains("longer than 1000"));
        assert!(compile_regex(&"a".repeat(1000)).is_ok());
        assert!(has_suspicious_dot("https://app.example.com"));
        assert!(!has_suspicious_dot(r"https://app\.example\.com"));
        assert!(!has_suspicious_dot(r"https://[a.b]\.example\.com"));
        assert!(!has_suspicious_dot(r"https://[]a.b]\.example\.com"));
        assert!(!has_suspicious_dot(r"https://[^]a.b]\.example\.com"));
        assert!(has_suspicious_dot(r"https://[]x]a.example\.com"));
        assert!(!has_suspicious_dot(r"https://.*\.example\.com"));
    }

    #[test]
    fn ipv6_serialisation_follows_rfc5952() {
        for (input, out) in [
            ("::1", "::1"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
            ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
            ("::ffff:1.2.3.4", "::ffff:102:304"),
            ("0:0:0:0:0:0:0:0", "::"),
            ("1:0:0:0:0:0:0:0", "1::"),
        ] {
            assert_eq!(ipv6_serialised(&input.parse().unwrap()), out);
        }
    }

    #[test]
    fn loopback() {
        for p in [
            "http://localhost:3000",
            "http://127.0.0.1",
            "http://127.9.9.9:*",
            "http://[::1]:8080",
        ] {
            assert!(parse_pattern(p).unwrap().is_loopback(), "{p}");
        }
        for p in [
            "http://localhost.example.com",
            "http://128.0.0.1",
            "https://*.localhost.example",
        ] {
            assert!(!parse_pattern(p).unwrap().is_loopback(), "{p}");
        }
    }
}
