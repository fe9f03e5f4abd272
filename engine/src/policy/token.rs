//! RFC 9110 tokens and the Fetch standard's lists of names a policy may not use.

/// `tchar` of RFC 9110 §5.6.2. A table lookup: it runs for every byte of every requested header
/// name.
#[inline]
pub fn is_tchar(b: u8) -> bool {
    TCHAR[usize::from(b)]
}

/// [`is_tchar`] for each byte value.
static TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

/// A non-empty run of `tchar`.
pub fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| is_tchar(b))
}

/// Methods a policy may never allow (Fetch's forbidden methods, plus `TRACK`); compared case-insensitively.
pub fn is_forbidden_method(method: &str) -> bool {
    ["CONNECT", "TRACE", "TRACK"]
        .iter()
        .any(|m| m.eq_ignore_ascii_case(method))
}

/// Fetch's forbidden request-header names (lower case), which a page can never set.
const FORBIDDEN_REQUEST_HEADERS: [&str; 21] = [
    "accept-charset",
    "accept-encoding",
    "access-control-request-headers",
    "access-control-request-method",
    "connection",
    "content-length",
    "cookie",
    "cookie2",
    "date",
    "dnt",
    "expect",
    "host",
    "keep-alive",
    "origin",
    "referer",
    "set-cookie",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "via",
];

/// Why a name cannot be in `allow_headers`, if it cannot (`name` in lower case).
pub fn disallowed_request_header(name: &str) -> Option<&'static str> {
    if name.starts_with("access-control-") {
        return Some(
            "Access-Control-* headers are part of the CORS protocol and cannot be allowed",
        );
    }
    if FORBIDDEN_REQUEST_HEADERS.contains(&name)
        || name.starts_with("proxy-")
        || name.starts_with("sec-")
    {
        return Some("a forbidden request header (Fetch): browsers never let a page set it");
    }
    None
}

/// Why a name cannot be in `expose_headers`, if it cannot (`name` in lower case).
pub fn disallowed_exposed_header(name: &str) -> Option<&'static str> {
    match name {
        "set-cookie" | "set-cookie2" => Some("browsers never expose Set-Cookie to a page"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tchar_is_exactly_the_rfc_9110_set() {
        let tchar: Vec<u8> = (0..=255u8).filter(|&b| is_tchar(b)).collect();
        let expected: Vec<u8> = {
            let mut set: Vec<u8> = b"!#$%&'*+-.^_`|~".to_vec();
            set.extend(b'0'..=b'9');
            set.extend(b'A'..=b'Z');
            set.extend(b'a'..=b'z');
            set.sort_unstable();
            set
        };
        assert_eq!(tchar, expected);
    }

    #[test]
    fn tokens() {
        assert!(is_token(b"X-Custom_Header.1"));
        assert!(is_token(b"*"));
        assert!(!is_token(b""));
        assert!(!is_token(b"x y"));
        assert!(!is_token(b"x:y"));
        assert!(!is_token(b"x\xff"));
        assert!(!is_token(b"(x)"));
    }

    #[test]
    fn forbidden_names() {
        assert!(is_forbidden_method("connect"));
        assert!(is_forbidden_method("Trace"));
        assert!(is_forbidden_method("TRACK"));
        assert!(!is_forbidden_method("PATCH"));
        assert!(disallowed_request_header("cookie").is_some());
        assert!(disallowed_request_header("sec-fetch-mode").is_some());
        assert!(disallowed_request_header("proxy-authorization").is_some());
        assert!(disallowed_request_header("access-control-allow-origin").is_some());
        assert!(disallowed_request_header("authorization").is_none());
        assert!(disallowed_request_header("x-requested-with").is_none());
        assert!(disallowed_exposed_header("set-cookie").is_some());
        assert!(disallowed_exposed_header("x-total-count").is_none());
    }
}
