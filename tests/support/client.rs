//! The client: a raw HTTP/1.1 request sent with arbitrary header bytes, and the parsed response.

use super::upstream::{header_line, read_chunked};
use super::{Recorded, ECHO_MARKER};
use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A raw HTTP/1.1 request: header names and values are bytes, sent exactly as given.
#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub host: String,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Req {
    pub fn new(method: &str, path: &str) -> Req {
        Req {
            method: method.into(),
            path: path.into(),
            host: "localhost".into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
    pub fn get(path: &str) -> Req {
        Req::new("GET", path)
    }
    /// `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
    pub fn preflight(path: &str, origin: &str, method: &str) -> Req {
        Req::new("OPTIONS", path)
            .header("Origin", origin)
            .header("Access-Control-Request-Method", method)
    }
    pub fn host(mut self, host: &str) -> Req {
        self.host = host.into();
        self
    }
    pub fn origin(self, origin: &str) -> Req {
        self.header("Origin", origin)
    }
    /// `Access-Control-Request-Headers`.
    pub fn acrh(self, value: &str) -> Req {
        self.header("Access-Control-Request-Headers", value)
    }
    pub fn header(self, name: &str, value: &str) -> Req {
        self.raw_header(name.as_bytes(), value.as_bytes())
    }
    pub fn raw_header(mut self, name: &[u8], value: &[u8]) -> Req {
        self.headers.push((name.to_vec(), value.to_vec()));
        self
    }
    pub fn body(mut self, body: &[u8]) -> Req {
        self.body = body.to_vec();
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\n",
            self.method, self.path, self.host
        )
        .into_bytes();
        for (n, v) in &self.headers {
            out.extend_from_slice(n);
            out.extend_from_slice(b": ");
            out.extend_from_slice(v);
            out.extend_from_slice(b"\r\n");
        }
        if !self.body.is_empty() || self.method == "POST" || self.method == "PUT" {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"Connection: close\r\n\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// Sends on a fresh connection to 127.0.0.1:port; panics on I/O or parse errors.
    pub fn send(&self, port: u16) -> Response {
        self.try_send(port)
            .unwrap_or_else(|e| panic!("{} {} to port {port}: {e}", self.method, self.path))
    }

    pub fn try_send(&self, port: u16) -> Result<Response, String> {
        send_raw(port, &self.to_bytes(), self.method == "HEAD")
    }
}

/// Sends these exact bytes (a whole request, e.g. with a non-UTF-8 request line or `Host`) on a
/// fresh connection to 127.0.0.1:port and reads the response until the server closes.
pub fn send_raw(port: u16, request: &[u8], head_request: bool) -> Result<Response, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(request).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("reading response: {e}"))?;
    Response::parse(&raw, head_request)
}

/// A parsed response: header names lower-cased, values as raw bytes, in order.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn parse(raw: &[u8], head_request: bool) -> Result<Response, String> {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("no end of headers in {:?}", String::from_utf8_lossy(raw)))?;
        let head = &raw[..split];
        let rest = &raw[split + 4..];
        let mut lines = head
            .split(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let status_line = String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let headers: Vec<(String, Vec<u8>)> = lines.filter_map(header_line).collect();
        let mut r = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if head_request {
            return Ok(r);
        }
        let chunked = r
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        r.body = if chunked {
            read_chunked(&mut BufReader::new(rest)).ok_or("bad chunked body")?
        } else if let Some(len) = r
            .header("content-length")
            .and_then(|l| l.parse::<usize>().ok())
        {
            rest[..len.min(rest.len())].to_vec()
        } else {
            rest.to_vec()
        };
        Ok(r)
    }

    /// The first value of a header (lossy UTF-8).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers_all(name).into_iter().next()
    }

    /// Every value of a header, in order.
    pub fn headers_all(&self, name: &str) -> Vec<String> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    /// The header's single value; panics if it appears more than once.
    pub fn one(&self, name: &str) -> Option<String> {
        let all = self.headers_all(name);
        assert!(
            all.len() <= 1,
            "{name} appears {} times: {all:?}\n{self}",
            all.len()
        );
        all.into_iter().next()
    }

    /// Every `access-control-*` header (name, value).
    pub fn cors_headers(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter(|(n, _)| n.starts_with("access-control-"))
            .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect()
    }

    #[track_caller]
    pub fn assert_no_cors(&self) {
        assert!(
            self.cors_headers().is_empty(),
            "expected no access-control-* headers:\n{self}"
        );
    }

    #[track_caller]
    pub fn assert_no_allow(&self) {
        let allow: Vec<_> = self
            .cors_headers()
            .into_iter()
            .filter(|(n, _)| n.starts_with("access-control-allow-"))
            .collect();
        assert!(
            allow.is_empty(),
            "expected no access-control-allow-* headers:\n{self}"
        );
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) {
        assert_eq!(self.status, status, "unexpected status:\n{self}");
    }

    /// `Some(value)` assertion helper: the header is present exactly once with this value.
    #[track_caller]
    pub fn assert_header(&self, name: &str, value: &str) {
        assert_eq!(
            self.one(name).as_deref(),
            Some(value),
            "header {name}:\n{self}"
        );
    }

    #[track_caller]
    pub fn assert_absent(&self, name: &str) {
        assert!(
            self.header(name).is_none(),
            "header {name} should be absent:\n{self}"
        );
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Did the upstream answer (its echo body is present)?
    pub fn is_upstream_answer(&self) -> bool {
        self.body.starts_with(ECHO_MARKER.as_bytes())
    }

    /// The request as the upstream received it, parsed from the echo body.
    pub fn echo(&self) -> Option<Recorded> {
        let rest = self
            .body
            .strip_prefix(format!("{ECHO_MARKER}\n").as_bytes())?;
        let mut lines = rest
            .split(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.is_empty());
        let request_line = String::from_utf8_lossy(lines.next()?).into_owned();
        let mut parts = request_line.split(' ');
        let method = parts.next()?.to_string();
        let path = parts.next()?.to_string();
        let headers = lines.filter_map(header_line).collect();
        Some(Recorded {
            method,
            path,
            headers,
        })
    }
}

impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "HTTP {}", self.status)?;
        for (n, v) in &self.headers {
            writeln!(f, "{n}: {}", String::from_utf8_lossy(v))?;
        }
        let body = self.text();
        let body: String = body.chars().take(600).collect();
        write!(f, "\n{body}")
    }
}
