//! The serialised header map (`src/header_map.rs`) on arbitrary bytes: the first bytes of a
//! request the filter reads, straight from the host.
//!
//! Input: the raw buffer. Oracles: no panic; the entries are those a straightforward reference
//! reader (checked arithmetic, stops at the first fault) finds; writing them back and reading
//! that again gives the same entries; `values` joins exactly the entries of each name with `,`.
#![no_main]

use cors_proxy_wasm::header_map::{serialize, HeaderMap};
use libfuzzer_sys::fuzz_target;

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

fn reference(buffer: &[u8]) -> Entries {
    let u32_at = |at: usize| -> Option<usize> {
        let bytes: [u8; 4] = buffer.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(u32::from_le_bytes(bytes) as usize)
    };
    let mut out = Vec::new();
    let Some(count) = u32_at(0) else {
        return out;
    };
    let Some(mut at) = count.checked_mul(8).and_then(|n| n.checked_add(4)) else {
        return out;
    };
    for i in 0..count {
        let (Some(name_len), Some(value_len)) = (u32_at(4 + 8 * i), u32_at(8 + 8 * i)) else {
            break;
        };
        let name_end = at.checked_add(name_len);
        let value_start = name_end.and_then(|n| n.checked_add(1));
        let value_end = value_start.and_then(|v| v.checked_add(value_len));
        let (Some(name_end), Some(value_start), Some(value_end)) =
            (name_end, value_start, value_end)
        else {
            break;
        };
        if value_end >= buffer.len() {
            break;
        }
        out.push((
            buffer[at..name_end].to_vec(),
            buffer[value_start..value_end].to_vec(),
        ));
        at = value_end + 1;
    }
    out
}

fn entries(map: &HeaderMap) -> Entries {
    map.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect()
}

fuzz_target!(|data: &[u8]| {
    let map = HeaderMap::parse(data.to_vec());
    let parsed = entries(&map);
    assert_eq!(parsed, reference(data));

    let written = serialize(&parsed);
    assert_eq!(entries(&HeaderMap::parse(written.clone())), parsed);
    let declared = data
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    if declared.is_some_and(|count| count as usize == parsed.len()) {
        // Every declared entry was read: a well-formed map, perhaps with trailing bytes and
        // other separators than NUL, which the rewrite drops.
        assert!(written.len() <= data.len());
    }

    // `values` on the first two names (and one that is never there). A name asked for twice is
    // answered in its first slot only.
    let first = parsed
        .first()
        .map(|(n, _)| n.to_ascii_lowercase())
        .unwrap_or_default();
    let second = parsed
        .get(1)
        .map(|(n, _)| n.to_ascii_lowercase())
        .unwrap_or_default();
    let absent = b"\xff never a header name".as_slice();
    let names = [first.as_slice(), second.as_slice(), absent];
    let found = map.values(names);
    for (i, (wanted, got)) in names.iter().zip(&found).enumerate() {
        let matching: Vec<&[u8]> = parsed
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(wanted))
            .map(|(_, v)| v.as_slice())
            .collect();
        let asked_before = names[..i].contains(wanted);
        let expected = (!matching.is_empty() && !asked_before).then(|| matching.join(&b","[..]));
        assert_eq!(got.as_deref(), expected.as_deref(), "{wanted:?}");
    }
});
