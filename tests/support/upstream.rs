//! The upstream: an in-process HTTP/1.1 server that echoes what it received and answers with the
//! status and extra headers the request's query asks for.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// First line of every upstream body; [`Response::echo`] looks for it.
pub const ECHO_MARKER: &str = "upstream-echo";

/// A request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Lower-cased names, raw values, in arrival order.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<String> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

/// In-process HTTP/1.1 upstream: 200 (or `?status=N`) with extra headers from `?h=Name:Value`,
/// body = [`ECHO_MARKER`] line + the request head exactly as received. Lives until the process ends.
pub struct Upstream {
    pub port: u16,
    count: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Recorded>>>,
}

impl Upstream {
    pub fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let port = listener.local_addr().expect("local_addr").port();
        let count = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (c, s) = (count.clone(), seen.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (c, s) = (c.clone(), s.clone());
                thread::spawn(move || serve_connection(stream, &c, &s));
            }
        });
        Upstream { port, count, seen }
    }

    /// How many requests reached the upstream.
    pub fn requests(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Recorded> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

fn serve_connection(stream: TcpStream, count: &AtomicUsize, seen: &Mutex<Vec<Recorded>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let mut writer = match stream.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    loop {
        // Request head.
        let mut head = Vec::new();
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let end = line == b"\r\n" || line == b"\n";
            head.extend_from_slice(&line);
            if end {
                break;
            }
        }
        let text_lines: Vec<&[u8]> = head
            .split(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.is_empty())
            .collect();
        let Some(request_line) = text_lines.first() else {
            return;
        };
        let request_line = String::from_utf8_lossy(request_line).into_owned();
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let headers: Vec<(String, Vec<u8>)> = text_lines[1..]
            .iter()
            .filter_map(|l| {
                let colon = l.iter().position(|b| *b == b':')?;
                let name = String::from_utf8_lossy(&l[..colon]).to_ascii_lowercase();
                let value = trim_ows(&l[colon + 1..]).to_vec();
                Some((name, value))
            })
            .collect();
        let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());

        // Request body (content-length or chunked); discarded.
        if let Some(len) = find("content-length") {
            let len: usize = String::from_utf8_lossy(&len).trim().parse().unwrap_or(0);
            let mut body = vec![0; len];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        } else if find("transfer-encoding").is_some_and(|v| {
            String::from_utf8_lossy(&v)
                .to_ascii_lowercase()
                .contains("chunked")
        }) && read_chunked(&mut reader).is_none()
        {
            return;
        }

        count.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut s) = seen.lock() {
            s.push(Recorded {
                method: method.clone(),
                path: path.clone(),
                headers: headers.clone(),
            });
        }

        // Response.
        let mut status = 200u16;
        let mut extra: Vec<(String, String)> = Vec::new();
        if let Some((_, query)) = path.split_once('?') {
            for pair in query.split('&') {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let v = percent_decode(v);
                match k {
                    "status" => status = v.parse().unwrap_or(200),
                    "h" => {
                        if let Some((n, val)) = v.split_once(':') {
                            extra.push((n.trim().to_string(), val.trim().to_string()));
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut body = format!("{ECHO_MARKER}\n").into_bytes();
        body.extend_from_slice(&head);
        let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
        out.push_str("content-type: text/plain\r\n");
        for (n, v) in &extra {
            let _ = write!(out, "{n}: {v}\r\n");
        }
        let _ = write!(out, "content-length: {}\r\n\r\n", body.len());
        let mut bytes = out.into_bytes();
        if method != "HEAD" {
            bytes.extend_from_slice(&body);
        }
        if writer.write_all(&bytes).is_err() {
            return;
        }
        let close = find("connection")
            .is_some_and(|v| String::from_utf8_lossy(&v).eq_ignore_ascii_case("close"));
        if close {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
    }
}

pub(super) fn read_chunked(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let size = usize::from_str_radix(line.trim().split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            // Trailers until the empty line.
            loop {
                let mut t = String::new();
                if reader.read_line(&mut t).ok()? == 0 || t.trim().is_empty() {
                    return Some(body);
                }
            }
        }
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk).ok()?;
        body.extend_from_slice(&chunk[..size]);
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

/// Minimal `%XX` / `+` decoding for the upstream's query parameters.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Encodes a value for the upstream's `h=` query parameter.
pub fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' | b'/' => {
                (c as char).to_string()
            }
            _ => format!("%{c:02X}"),
        })
        .collect()
}

/// A path that makes the upstream answer with these extra headers: `up_path("/x", &[("Vary", "Accept-Encoding")])`.
pub fn up_path(path: &str, headers: &[(&str, &str)]) -> String {
    let mut p = path.to_string();
    for (i, (n, v)) in headers.iter().enumerate() {
        p.push(if i == 0 && !path.contains('?') {
            '?'
        } else {
            '&'
        });
        let _ = write!(p, "h={}", percent_encode(&format!("{n}:{v}")));
    }
    p
}

/// `Name: value` as (lower-case name, value without surrounding whitespace); `None` without a colon.
pub(super) fn header_line(line: &[u8]) -> Option<(String, Vec<u8>)> {
    let colon = line.iter().position(|b| *b == b':')?;
    Some((
        String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase(),
        trim_ows(&line[colon + 1..]).to_vec(),
    ))
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(start, |e| e + 1);
    &v[start..end.max(start)]
}
