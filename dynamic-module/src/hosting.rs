//! Which Envoy is hosting the module, decided before any of Envoy's callbacks is called.
//!
//! Envoy resolves a module's hooks and callbacks by name only: a callback whose parameters
//! changed between releases is called with the wrong ones, and a native module has no sandbox.
//! So the module runs only in the Envoy release it is built for. At load
//! (`envoy_dynamic_module_on_program_init`) it reads the names of the dynamic-module callbacks the
//! hosting Envoy exports (the `.dynsym` table of `/proc/self/exe`) and compares them with those of
//! the release it is built for ([`BUILT_FOR`], `envoy-abi/<release>.txt`, taken from the official
//! build). Any difference refuses the load with one message that names both releases, or what
//! differs when the hosting release is not one the module knows. Only then are the callbacks
//! resolved (`dlsym`), so an Envoy that lacks one refuses the module with that message instead of
//! a loader error (docs/dynamic-module.md, *Which Envoy*).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// The Envoy release this module is built for: its callbacks are declared (`abi.rs`) from this
/// release's `abi.h`.
pub const BUILT_FOR: &str = "1.40";
/// The official build whose callback names `envoy-abi/1.40.0.txt` lists.
pub const BUILT_FOR_BUILD: &str = "1.40.0";
/// This module's own version.
pub const MODULE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The dynamic-module callbacks Envoy 1.40.0 exports, one per line, sorted (bytewise).
const CALLBACKS_BUILT_FOR: &str = include_str!("../envoy-abi/1.40.0.txt");

/// Official builds the module recognises by their exported callbacks, for the message: the
/// release and [`fingerprint`] of its `envoy-abi/<release>.txt` (a test recomputes each).
/// 1.38.3 exports exactly 1.38.2's.
pub const KNOWN_RELEASES: &[(&str, u64)] = &[
    ("1.36.4", 0xa183_628d_0d06_e7b0),
    ("1.37.0", 0xe127_bdc8_1b18_6b33),
    ("1.38.2", 0xbfe2_b9db_72bd_9c00),
    ("1.39.3", 0x9fee_21f4_ee63_6de1),
    ("1.40.0", 0xe1d2_10ed_e6cb_4982),
];

const CALLBACK_PREFIX: &str = "envoy_dynamic_module_callback_";

/// FNV-1a (64 bit) of the sorted names joined by `\n`: which known build a set of callbacks is.
pub fn fingerprint<S: AsRef<str>>(sorted: &[S]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, name) in sorted.iter().enumerate() {
        if i > 0 {
            hash = (hash ^ u64::from(b'\n')).wrapping_mul(0x0100_0000_01b3);
        }
        for b in name.as_ref().bytes() {
            hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// The callbacks of the release the module is built for.
pub fn built_for_callbacks() -> Vec<&'static str> {
    CALLBACKS_BUILT_FOR
        .lines()
        .filter(|l| !l.is_empty())
        .collect()
}

/// Checks the callbacks an Envoy exports (`exported`: any order) against the release the module
/// is built for. `uses`: the callbacks the module calls. `Err`: why it must not run, one line.
pub fn check(exported: &[String], uses: &[&str]) -> Result<(), String> {
    let mut exported: Vec<&str> = exported.iter().map(String::as_str).collect();
    exported.sort_unstable();
    exported.dedup();
    let expected = built_for_callbacks();
    if exported == expected {
        return Ok(());
    }
    let missing: Vec<&str> = expected
        .iter()
        .filter(|n| exported.binary_search(n).is_err())
        .copied()
        .collect();
    let extra: Vec<&str> = exported
        .iter()
        .filter(|n| expected.binary_search(n).is_err())
        .copied()
        .collect();
    let met = match KNOWN_RELEASES
        .iter()
        .find(|(_, f)| *f == fingerprint(&exported))
    {
        Some((release, _)) => format!(
            "this Envoy exports exactly the dynamic-module callbacks of Envoy {release}, not those of {BUILT_FOR}"
        ),
        None => "this Envoy's dynamic-module callbacks are those of no release the module knows \
                 (newer, older or patched)"
            .to_string(),
    };
    let first = |names: &[&str]| {
        names
            .first()
            .map(|n| format!(" (first {n})"))
            .unwrap_or_default()
    };
    let needed: Vec<&str> = uses
        .iter()
        .filter(|n| exported.binary_search(n).is_err())
        .copied()
        .collect();
    let needed = if needed.is_empty() {
        String::new()
    } else {
        format!("; it lacks {}, which this module calls", needed.join(", "))
    };
    Err(format!(
        "{met}: {} of {BUILT_FOR}'s {} callbacks are missing{} and {} are not in {BUILT_FOR}{}{needed}",
        missing.len(),
        expected.len(),
        first(&missing),
        extra.len(),
        first(&extra),
    ))
}

/// The whole refusal, as the module prints it (one line).
pub fn refusal(reason: &str) -> String {
    format!(
        "cors-proxy-wasm {MODULE_VERSION} (dynamic module) refused to load: it is built for Envoy \
         {BUILT_FOR} (dynamic-module ABI {}) and runs in no other Envoy, since Envoy cannot check a \
         callback's parameters; {reason}. Use the wasm build on this Envoy (docs/dynamic-module.md)",
        crate::abi::ABI_VERSION.to_string_lossy()
    )
}

/// The defined dynamic-module callbacks (`envoy_dynamic_module_callback_*`) in the `.dynsym`
/// table of the ELF file at `path` (64-bit, little-endian).
pub fn exported_callbacks(path: &Path) -> io::Result<Vec<String>> {
    let mut file = File::open(path)?;
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let header = read_at(&mut file, 0, 64)?;
    if header.get(0..4) != Some(b"\x7fELF".as_slice()) || header[4] != 2 || header[5] != 1 {
        return Err(invalid("not a 64-bit little-endian ELF file"));
    }
    let section_offset = u64_at(&header, 0x28);
    let entry_size = u64::from(u16_at(&header, 0x3a));
    let count = u64::from(u16_at(&header, 0x3c));
    if entry_size < 64 || count == 0 {
        return Err(invalid("no section headers"));
    }
    let sections = read_at(&mut file, section_offset, usize_of(entry_size * count)?)?;
    let section = |i: u64| -> Option<&[u8]> {
        let start = usize::try_from(i.checked_mul(entry_size)?).ok()?;
        sections.get(start..start.checked_add(64)?)
    };
    const SHT_DYNSYM: u32 = 11;
    let dynsym = (0..count)
        .filter_map(section)
        .find(|s| u32_at(s, 4) == SHT_DYNSYM)
        .ok_or_else(|| invalid("no .dynsym section"))?;
    let strtab = section(u64::from(u32_at(dynsym, 40))).ok_or_else(|| invalid("no .dynstr"))?;
    let symbols = read_at(&mut file, u64_at(dynsym, 24), usize_of(u64_at(dynsym, 32))?)?;
    let strings = read_at(&mut file, u64_at(strtab, 24), usize_of(u64_at(strtab, 32))?)?;
    let mut names = Vec::new();
    for symbol in symbols.chunks_exact(24) {
        let defined = u16_at(symbol, 6) != 0;
        let Some(name) = usize::try_from(u32_at(symbol, 0))
            .ok()
            .and_then(|start| strings.get(start..))
            .and_then(|rest| rest.split(|b| *b == 0).next())
        else {
            continue;
        };
        if defined && name.starts_with(CALLBACK_PREFIX.as_bytes()) {
            names.push(String::from_utf8_lossy(name).into_owned());
        }
    }
    Ok(names)
}

/// Sections larger than this are not a dynamic symbol table (keeps a bad file from allocating).
const MAX_SECTION: u64 = 64 << 20;

fn usize_of(n: u64) -> io::Result<usize> {
    if n > MAX_SECTION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "section too large",
        ));
    }
    usize::try_from(n).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "section too large"))
}

fn read_at(file: &mut File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0; len];
    file.read_exact(&mut buf)?;
    Ok(buf)
}

fn bytes<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    if let Some(src) = b.get(at..at + N) {
        out.copy_from_slice(src);
    }
    out
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes(b, at))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes(b, at))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes(b, at))
}

/// The hosting process's callbacks (`/proc/self/exe`), checked: `Err` is the whole refusal line.
pub fn admit(uses: &[&str]) -> Result<(), String> {
    let exported = exported_callbacks(Path::new("/proc/self/exe")).map_err(|e| {
        refusal(&format!(
            "it cannot read which callbacks this Envoy exports from /proc/self/exe ({e}), so it \
             cannot tell that this is Envoy {BUILT_FOR}"
        ))
    })?;
    check(&exported, uses).map_err(|reason| refusal(&reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(release: &str) -> Vec<String> {
        let path = format!("{}/envoy-abi/{release}.txt", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn each_known_fingerprint_is_its_list() {
        for (release, expected) in KNOWN_RELEASES {
            let names = list(release);
            let mut sorted = names.clone();
            sorted.sort();
            assert_eq!(names, sorted, "{release}.txt is not sorted");
            assert_eq!(fingerprint(&names), *expected, "{release}");
        }
        assert_eq!(list(BUILT_FOR_BUILD), built_for_callbacks());
    }

    #[test]
    fn the_built_for_release_is_admitted_in_any_order() {
        let mut names = list(BUILT_FOR_BUILD);
        names.reverse();
        assert_eq!(
            check(&names, &["envoy_dynamic_module_callback_log"]),
            Ok(())
        );
    }

    #[test]
    fn an_older_release_is_named_with_what_it_lacks() {
        let reason = check(
            &list("1.36.4"),
            &["envoy_dynamic_module_callback_http_set_header"],
        )
        .unwrap_err();
        assert!(reason.starts_with(
            "this Envoy exports exactly the dynamic-module callbacks of Envoy 1.36.4, not those of 1.40: "
        ), "{reason}");
        assert!(
            reason.ends_with(
                "; it lacks envoy_dynamic_module_callback_http_set_header, which this module calls"
            ),
            "{reason}"
        );
        let reason = check(&list("1.39.3"), &[]).unwrap_err();
        assert!(
            reason.ends_with("Envoy 1.39.3, not those of 1.40: 174 of 1.40's 781 callbacks are missing (first envoy_dynamic_module_callback_access_logger_get_downstream_wire_bytes) and 0 are not in 1.40"),
            "{reason}"
        );
    }

    #[test]
    fn an_unknown_release_is_refused_with_what_differs() {
        let mut names = list(BUILT_FOR_BUILD);
        names.push("envoy_dynamic_module_callback_from_the_future".into());
        let reason = check(&names, &[]).unwrap_err();
        assert_eq!(
            reason,
            "this Envoy's dynamic-module callbacks are those of no release the module knows \
             (newer, older or patched): 0 of 1.40's 781 callbacks are missing and 1 are not in \
             1.40 (first envoy_dynamic_module_callback_from_the_future)"
        );
        let line = refusal(&reason);
        assert!(line.starts_with(&format!(
            "cors-proxy-wasm {MODULE_VERSION} (dynamic module) refused to load: it is built for Envoy 1.40 (dynamic-module ABI v0.2.0)"
        )));
        assert!(!line.contains('\n'));
    }

    #[test]
    fn reads_the_callbacks_of_an_elf_file_and_refuses_other_files() {
        // The test binary exports no callback, but is a valid ELF file with a .dynsym.
        let me = std::env::current_exe().unwrap();
        assert_eq!(exported_callbacks(&me).unwrap(), Vec::<String>::new());
        let not_elf = std::env::temp_dir().join(format!("hosting-not-elf-{}", std::process::id()));
        std::fs::write(&not_elf, b"#!/bin/sh\n").unwrap();
        let err = exported_callbacks(&not_elf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        std::fs::write(&not_elf, [b'x'; 64]).unwrap();
        let err = exported_callbacks(&not_elf).unwrap_err();
        assert_eq!(err.to_string(), "not a 64-bit little-endian ELF file");
        std::fs::remove_file(&not_elf).unwrap();
    }
}
