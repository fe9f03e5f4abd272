//! The proxy-wasm serialised header map: parsed from the bytes the host hands over, written for
//! the host to read.
//!
//! Layout (ABI 0.2.1, little-endian): `u32 count`, then `count × (u32 name len, u32 value len)`,
//! then each entry as `name\0value\0`. These are the first bytes of a request the filter reads,
//! so parsing trusts nothing in them: every size and offset is bounds-checked, and a malformed
//! buffer yields the entries read before the fault. Plain Rust with no host calls: unit-tested
//! natively below and fuzzed (`fuzz/fuzz_targets/header_map.rs`); `host.rs` only moves the bytes.

use std::borrow::Cow;

/// A serialised header map, read without copying its values.
#[derive(Default)]
pub struct HeaderMap {
    buffer: Vec<u8>,
    /// `(name start, name len, value start, value len)` into `buffer`.
    entries: Vec<(usize, usize, usize, usize)>,
}

impl HeaderMap {
    /// Parses a serialised map (see the module documentation). A malformed buffer (too short
    /// for its count, or a size past the end) yields the entries read before the fault.
    pub fn parse(buffer: Vec<u8>) -> Self {
        let read_u32 = |at: usize| -> Option<usize> {
            let bytes = buffer.get(at..at.checked_add(4)?)?;
            Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize)
        };
        let count = read_u32(0).unwrap_or(0);
        // Each entry takes at least 10 bytes (two sizes, two NULs): no reallocation, and no
        // trusting a count the buffer cannot hold.
        let mut entries = Vec::with_capacity(count.min(buffer.len() / 10));
        let mut data = 4usize.saturating_add(count.saturating_mul(8));
        for i in 0..count {
            let (Some(name_len), Some(value_len)) = (read_u32(4 + i * 8), read_u32(8 + i * 8))
            else {
                break;
            };
            let name_start = data;
            let value_start = name_start.saturating_add(name_len).saturating_add(1);
            let end = value_start.saturating_add(value_len).saturating_add(1);
            if end > buffer.len() {
                break;
            }
            entries.push((name_start, name_len, value_start, value_len));
            data = end;
        }
        HeaderMap { buffer, entries }
    }

    /// The entries as `(name, value)`, in the map's order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries.iter().map(|&(ns, nl, vs, vl)| {
            (
                self.buffer.get(ns..ns + nl).unwrap_or_default(),
                self.buffer.get(vs..vs + vl).unwrap_or_default(),
            )
        })
    }

    /// The values of several (lower-case) headers, read in one pass over the map: entry `i` is
    /// the value of `names[i]`, several headers of that name joined with `,`.
    pub fn values<const N: usize>(&self, names: [&[u8]; N]) -> [Option<Cow<'_, [u8]>>; N] {
        let mut found: [Option<Cow<'_, [u8]>>; N] = std::array::from_fn(|_| None);
        for (name, value) in self.iter() {
            let Some(slot) = names
                .iter()
                .position(|&wanted| {
                    // Envoy hands names over in lower case: the byte comparison decides.
                    wanted.len() == name.len()
                        && (wanted == name || wanted.eq_ignore_ascii_case(name))
                })
                .and_then(|i| found.get_mut(i))
            else {
                continue;
            };
            *slot = Some(match slot.take() {
                None => Cow::Borrowed(value),
                Some(first) => {
                    let mut joined = first.into_owned();
                    joined.push(b',');
                    joined.extend_from_slice(value);
                    Cow::Owned(joined)
                }
            });
        }
        found
    }
}

/// Serialises `(name, value)` pairs in the layout [`HeaderMap::parse`] reads (the form
/// `proxy_send_local_response` takes its headers in), in one allocation of the exact size.
pub fn serialize<N: AsRef<[u8]>, V: AsRef<[u8]>>(headers: &[(N, V)]) -> Vec<u8> {
    let size = 4 + headers
        .iter()
        .map(|(n, v)| 10 + n.as_ref().len() + v.as_ref().len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(headers.len() as u32).to_le_bytes());
    for (name, value) in headers {
        out.extend_from_slice(&(name.as_ref().len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.as_ref().len() as u32).to_le_bytes());
    }
    for (name, value) in headers {
        out.extend_from_slice(name.as_ref());
        out.push(0);
        out.extend_from_slice(value.as_ref());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(buffer: Vec<u8>) -> Vec<(Vec<u8>, Vec<u8>)> {
        HeaderMap::parse(buffer)
            .iter()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        list.iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    /// A map whose header block (count and sizes) is given as is, followed by `data`.
    fn raw(count: u32, sizes: &[(u32, u32)], data: &[u8]) -> Vec<u8> {
        let mut out = count.to_le_bytes().to_vec();
        for (n, v) in sizes {
            out.extend_from_slice(&n.to_le_bytes());
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn serialize_writes_the_documented_layout() {
        let bytes = serialize(&[(":status", "204"), ("vary", "")]);
        let mut expected = vec![2, 0, 0, 0, 7, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0];
        expected.extend_from_slice(b":status\x00204\x00vary\x00\x00");
        assert_eq!(bytes, expected);
        assert_eq!(
            bytes.capacity(),
            bytes.len(),
            "one allocation of the exact size"
        );
        assert_eq!(serialize::<&str, &str>(&[]), vec![0, 0, 0, 0]);
    }

    #[test]
    fn parse_reads_back_what_serialize_writes() {
        let list = [
            (":method", "OPTIONS"),
            ("origin", "https://app.example.com"),
            ("x-empty", ""),
            ("origin", "https://second.example"),
        ];
        assert_eq!(entries(serialize(&list)), pairs(&list));
        let bytes: [(&[u8], &[u8]); 1] = [(b"x-bin", b"\xff\xfe\x01")];
        assert_eq!(
            entries(serialize(&bytes)),
            vec![(b"x-bin".to_vec(), b"\xff\xfe\x01".to_vec())]
        );
    }

    #[test]
    fn empty_and_short_buffers_have_no_entries() {
        for buffer in [vec![], vec![1], vec![1, 0, 0], vec![0, 0, 0, 0]] {
            assert_eq!(entries(buffer.clone()), vec![], "{buffer:?}");
        }
    }

    #[test]
    fn a_count_larger_than_the_sizes_present_keeps_the_complete_entries() {
        // Says 3 entries, holds the sizes of one: the second size pair is missing.
        let buffer = raw(3, &[(1, 1)], b"a\0b\0");
        assert_eq!(entries(buffer), vec![]);
        // Sizes for three, data for the first only.
        let buffer = raw(3, &[(1, 1), (1, 1), (1, 1)], b"a\0b\0c\0");
        assert_eq!(entries(buffer), pairs(&[("a", "b")]));
    }

    #[test]
    fn a_huge_count_reserves_nothing_the_buffer_cannot_hold() {
        for count in [u32::MAX, u32::MAX / 8, 1 << 29, 1 << 28] {
            let buffer = raw(count, &[(1, 1)], b"a\0b\0");
            let map = HeaderMap::parse(buffer.clone());
            assert!(
                map.entries.capacity() <= buffer.len() / 10,
                "{count}: {}",
                map.entries.capacity()
            );
            // The data would start past the end: nothing is read.
            assert_eq!(map.iter().count(), 0, "{count}");
        }
    }

    #[test]
    fn sizes_that_overflow_or_point_past_the_end_stop_the_parse() {
        for (name_len, value_len) in [
            (u32::MAX, 0),
            (0, u32::MAX),
            (u32::MAX, u32::MAX),
            (2, 2),
            (5, 0),
            (0, 5),
        ] {
            let buffer = raw(2, &[(1, 1), (name_len, value_len)], b"a\0b\0c\0d\0");
            assert_eq!(
                entries(buffer),
                pairs(&[("a", "b")]),
                "{name_len} {value_len}"
            );
        }
    }

    #[test]
    fn a_truncated_last_entry_is_dropped() {
        let full = serialize(&[("origin", "https://a.example"), ("vary", "origin")]);
        for cut in 0..full.len() {
            let got = entries(full[..cut].to_vec());
            let expected = if cut >= full.len() - "vary\0origin\0".len() {
                pairs(&[("origin", "https://a.example")])
            } else {
                vec![]
            };
            assert_eq!(got, expected, "cut at {cut}");
        }
        assert_eq!(entries(full).len(), 2);
    }

    #[test]
    fn empty_names_and_values_are_entries() {
        assert_eq!(
            entries(serialize(&[("", ""), ("", "v"), ("n", "")])),
            pairs(&[("", ""), ("", "v"), ("n", "")])
        );
    }

    #[test]
    fn separators_are_not_checked_and_nul_bytes_stay_inside_values() {
        // The sizes decide; the separator bytes are skipped whatever they hold.
        let buffer = raw(2, &[(1, 3), (1, 0)], b"aXb\0cYdZ!");
        assert_eq!(
            entries(buffer),
            vec![
                (b"a".to_vec(), b"b\0c".to_vec()),
                (b"d".to_vec(), b"".to_vec())
            ]
        );
    }

    #[test]
    fn trailing_bytes_after_the_last_entry_are_ignored() {
        let mut buffer = serialize(&[("a", "b")]);
        buffer.extend_from_slice(b"garbage\0\0\0");
        assert_eq!(entries(buffer), pairs(&[("a", "b")]));
    }

    #[test]
    fn values_joins_repeated_headers_and_matches_names_caselessly() {
        let map = HeaderMap::parse(serialize(&[
            ("origin", "https://a.example"),
            ("Access-Control-Request-Headers", "x-a"),
            ("access-control-request-headers", "x-b"),
            ("vary", ""),
            ("access-control-request-headers", ""),
        ]));
        let [origin, acrh, vary, missing] = map.values([
            b"origin",
            b"access-control-request-headers",
            b"vary",
            b"access-control-request-method",
        ]);
        assert_eq!(origin.as_deref(), Some(b"https://a.example".as_slice()));
        assert_eq!(acrh.as_deref(), Some(b"x-a,x-b,".as_slice()));
        assert_eq!(vary.as_deref(), Some(b"".as_slice()));
        assert_eq!(missing, None);
        assert!(
            matches!(origin, Some(Cow::Borrowed(_))),
            "one value is not copied"
        );
    }

    #[test]
    fn values_of_a_malformed_map_come_from_the_entries_read() {
        let buffer = raw(2, &[(6, 1), (u32::MAX, 1)], b"origin\0x\0");
        let map = HeaderMap::parse(buffer);
        let [origin, other] = map.values([b"origin", b"x"]);
        assert_eq!(origin.as_deref(), Some(b"x".as_slice()));
        assert_eq!(other, None);
    }
}
