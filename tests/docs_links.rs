//! Every relative link in the documentation resolves.
//!
//! Starting from README.md and every `docs/*.md`, and following every Markdown file they link to
//! (transitively), each relative link must name a file or directory of this repository, and each
//! `#anchor` into a Markdown file must be the anchor of one of its headings, as GitHub renders
//! them. Links with a scheme (`https:`, `mailto:`) are not fetched. Code blocks and code spans are
//! not links.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

/// One link as written: the file it is in, its line, and its target.
#[derive(Debug)]
struct Link {
    line: usize,
    target: String,
}

/// The Markdown of a page with fenced code blocks blanked out (line numbers kept).
fn without_code_blocks(text: &str) -> Vec<String> {
    let mut fence: Option<(char, usize)> = None;
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            let marker = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
            let run = marker.map_or(0, |c| trimmed.chars().take_while(|x| *x == c).count());
            match (fence, marker) {
                (None, Some(c)) if run >= 3 => {
                    fence = Some((c, run));
                    String::new()
                }
                (Some((c, n)), Some(m))
                    if m == c && run >= n && trimmed[run..].trim().is_empty() =>
                {
                    fence = None;
                    String::new()
                }
                (Some(_), _) => String::new(),
                _ => line.to_owned(),
            }
        })
        .collect()
}

/// A line with its code spans removed (`` `[a](b)` `` is not a link).
fn without_code_spans(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].chars().take_while(|c| *c == '`').count();
        let after = &rest[start + ticks..];
        let closing = "`".repeat(ticks);
        match after.find(&closing) {
            Some(end) => rest = &after[end + ticks..],
            None => {
                out.push_str(&rest[start..start + ticks]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The targets of inline links and images (`[text](target "title")`, `![alt](<target>)`),
/// reference definitions (`[name]: target`) and HTML `href`/`src` attributes.
fn links(text: &str) -> Vec<Link> {
    let mut out = Vec::new();
    for (i, raw) in without_code_blocks(text).iter().enumerate() {
        let line = without_code_spans(raw);
        let mut push = |target: &str| {
            let target = target.trim();
            let target = target
                .strip_prefix('<')
                .and_then(|t| t.strip_suffix('>'))
                .unwrap_or(target);
            if !target.is_empty() {
                out.push(Link {
                    line: i + 1,
                    target: target.to_owned(),
                });
            }
        };
        // Inline links: `](` then the destination up to the matching `)`, without a title.
        let mut rest = line.as_str();
        while let Some(pos) = rest.find("](") {
            let after = &rest[pos + 2..];
            let mut depth = 0usize;
            let mut end = after.len();
            for (j, c) in after.char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' if depth == 0 => {
                        end = j;
                        break;
                    }
                    ')' => depth -= 1,
                    _ => {}
                }
            }
            let inside = after[..end].trim();
            let destination = if inside.starts_with('<') {
                inside.find('>').map_or(inside, |k| &inside[..=k])
            } else {
                inside.split_whitespace().next().unwrap_or("")
            };
            push(destination);
            rest = &after[end.min(after.len())..];
        }
        // Reference definitions: `[name]: target` at the start of a line.
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') && !trimmed.starts_with("[^") {
            if let Some(k) = trimmed.find("]:") {
                if let Some(target) = trimmed[k + 2..].split_whitespace().next() {
                    push(target);
                }
            }
        }
        // HTML attributes.
        for attribute in ["href=\"", "src=\""] {
            let mut rest = line.as_str();
            while let Some(pos) = rest.find(attribute) {
                let after = &rest[pos + attribute.len()..];
                let end = after.find('"').unwrap_or(after.len());
                push(&after[..end]);
                rest = &after[end..];
            }
        }
    }
    out
}

/// A heading's anchor as GitHub makes it: the rendered text in lower case, every character that is
/// not a letter, a digit, `-`, `_` or a space dropped, spaces turned into `-`.
fn github_slug(heading: &str) -> String {
    // Render the inline Markdown that changes the text: links keep their text, code spans their
    // content (the backticks are punctuation and go anyway).
    let mut text = String::with_capacity(heading.len());
    let mut rest = heading;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](").map(|k| open + k) else {
            break;
        };
        let Some(end) = rest[close..].find(')').map(|k| close + k) else {
            break;
        };
        text.push_str(&rest[..open]);
        text.push_str(&rest[open + 1..close]);
        rest = &rest[end + 1..];
    }
    text.push_str(rest);
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Every anchor a page offers: its headings (ATX `#` and setext), duplicates numbered `-1`, `-2`
/// as GitHub does, plus explicit HTML `id="…"` / `name="…"` anchors.
fn anchors(text: &str) -> BTreeSet<String> {
    let lines = without_code_blocks(text);
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = BTreeSet::new();
    let mut add = |slug: String, out: &mut BTreeSet<String>| {
        let n = seen.entry(slug.clone()).or_insert(0);
        out.insert(if *n == 0 {
            slug.clone()
        } else {
            format!("{slug}-{n}")
        });
        *n += 1;
    };
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let hashes = trimmed.chars().take_while(|c| *c == '#').count();
        if (1..=6).contains(&hashes)
            && line.len() - trimmed.len() < 4
            && (trimmed.len() == hashes || trimmed[hashes..].starts_with(' '))
        {
            let title = trimmed[hashes..].trim();
            let title = title.trim_end_matches('#').trim_end();
            add(github_slug(title), &mut out);
        } else if i > 0
            && !line.is_empty()
            && (line.chars().all(|c| c == '=')
                || (line.len() > 1 && line.chars().all(|c| c == '-')))
            && !lines[i - 1].trim().is_empty()
            && !lines[i - 1].trim_start().starts_with('#')
            && !lines[i - 1].trim_start().starts_with('|')
            && !lines[i - 1].trim_start().starts_with('-')
        {
            add(github_slug(&lines[i - 1]), &mut out);
        }
        for attribute in ["id=\"", "name=\""] {
            let mut rest = line.as_str();
            while let Some(pos) = rest.find(attribute) {
                let after = &rest[pos + attribute.len()..];
                let end = after.find('"').unwrap_or(after.len());
                out.insert(after[..end].to_owned());
                rest = &after[end..];
            }
        }
    }
    out
}

/// `path` with `.` and `..` resolved lexically; `None` when it climbs out of the root.
fn normalise(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::Normal(part) => out.push(part),
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// `%20` and friends in a link target.
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Every broken link reachable from `start` (paths relative to `root`), one message each.
fn broken_links(root: &Path, start: &[PathBuf]) -> (Vec<String>, BTreeSet<PathBuf>) {
    let mut problems = Vec::new();
    let mut visited: BTreeSet<PathBuf> = BTreeSet::new();
    let mut queue: Vec<PathBuf> = start.to_vec();
    let mut anchor_cache: BTreeMap<PathBuf, BTreeSet<String>> = BTreeMap::new();
    let mut anchors_of = |page: &Path| -> BTreeSet<String> {
        anchor_cache
            .entry(page.to_path_buf())
            .or_insert_with(|| {
                anchors(&std::fs::read_to_string(root.join(page)).unwrap_or_default())
            })
            .clone()
    };
    while let Some(page) = queue.pop() {
        if !visited.insert(page.clone()) {
            continue;
        }
        let text = match std::fs::read_to_string(root.join(&page)) {
            Ok(text) => text,
            Err(e) => {
                problems.push(format!("{}: cannot read: {e}", page.display()));
                continue;
            }
        };
        for link in links(&text) {
            let at = format!("{}:{}: ({})", page.display(), link.line, link.target);
            let target = link.target.as_str();
            let has_scheme = target.split_once(':').is_some_and(|(scheme, _)| {
                !scheme.is_empty()
                    && scheme
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            });
            if has_scheme || target.starts_with("//") {
                continue;
            }
            let (path_part, fragment) = match target.split_once('#') {
                Some((p, f)) => (p, Some(f)),
                None => (target, None),
            };
            let path_part = path_part.split('?').next().unwrap_or("");
            let resolved = if path_part.is_empty() {
                Some(page.clone())
            } else if path_part.starts_with('/') {
                problems.push(format!("{at}: an absolute path; link relative to the page"));
                continue;
            } else {
                let base = page.parent().unwrap_or(Path::new(""));
                normalise(&base.join(percent_decoded(path_part)))
            };
            let Some(resolved) = resolved else {
                problems.push(format!("{at}: points outside the repository"));
                continue;
            };
            let on_disk = root.join(&resolved);
            if !on_disk.exists() {
                problems.push(format!("{at}: {} does not exist", resolved.display()));
                continue;
            }
            let is_markdown = on_disk.is_file()
                && resolved
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("md"));
            if is_markdown {
                queue.push(resolved.clone());
            }
            if let Some(fragment) = fragment {
                if !is_markdown {
                    continue; // anchors into other files (line numbers of source) are not checked
                }
                let wanted = percent_decoded(fragment);
                let offered = anchors_of(&resolved);
                if !offered.contains(&wanted) {
                    problems.push(format!(
                        "{at}: no heading of {} has the anchor #{wanted} (its anchors: {})",
                        resolved.display(),
                        offered.into_iter().collect::<Vec<_>>().join(", ")
                    ));
                }
            }
        }
    }
    (problems, visited)
}

fn repository_pages(root: &Path) -> Vec<PathBuf> {
    let mut pages = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.expect("docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "md"))
        .map(|path| PathBuf::from("docs").join(path.file_name().expect("a file name")))
        .collect();
    docs.sort();
    assert!(!docs.is_empty(), "docs/ holds the reference pages");
    pages.extend(docs);
    pages
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository root");
    let start = repository_pages(root);
    let (problems, visited) = broken_links(root, &start);
    assert!(
        problems.is_empty(),
        "broken links in the documentation:\n{}",
        problems.join("\n")
    );
    // The walk reached every start page and followed links out of them (README links docs/).
    for page in &start {
        assert!(visited.contains(page), "{} was not checked", page.display());
    }
    let readme_links = links(&std::fs::read_to_string(root.join("README.md")).expect("README.md"));
    assert!(
        readme_links
            .iter()
            .any(|l| l.target.starts_with("docs/") && l.target.contains(".md")),
        "README.md links into docs/"
    );
}

/// The checker itself: a page with a missing file, a missing anchor, a link out of the tree and a
/// good link of each kind reports exactly the three bad ones.
#[test]
fn the_checker_reports_missing_files_and_anchors() {
    let dir = std::env::temp_dir().join(format!("cors-docs-links-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("docs")).expect("temp dir");
    std::fs::write(
        dir.join("README.md"),
        "# Title\n\nSee [the policy](docs/policy.md#the-fields), [gone](docs/gone.md),\n\
         [bad anchor](docs/policy.md#no-such-heading), [out](../../etc/passwd) and [web](https://example.com/x.md).\n\
         ```\n[not a link](docs/nowhere.md)\n```\nAnd `[code](docs/nowhere.md)`; [self](#title).\n",
    )
    .expect("write README");
    std::fs::write(
        dir.join("docs/policy.md"),
        "# The policy\n\n## The fields\n\nBack to [the top](../README.md#title) and [a field](#the-fields).\n",
    )
    .expect("write policy");
    let (problems, visited) = broken_links(&dir, &[PathBuf::from("README.md")]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems[0].starts_with("README.md:3: (docs/gone.md): docs/gone.md does not exist"),
        "{problems:#?}"
    );
    assert!(
        problems[1].starts_with(
            "README.md:4: (docs/policy.md#no-such-heading): no heading of docs/policy.md has the anchor #no-such-heading"
        ),
        "{problems:#?}"
    );
    assert_eq!(
        problems[2],
        "README.md:4: (../../etc/passwd): points outside the repository"
    );
    assert!(
        visited.contains(Path::new("docs/policy.md")),
        "followed into docs/"
    );
}

#[test]
fn anchors_follow_github_rules() {
    let page = "# cors-proxy-wasm\n\
                ## When the VM crashes: `failure_policy` / `fail_open`\n\
                ### Compared with Envoy's own `envoy.filters.http.cors`\n\
                ## The OCI image (`make oci`)\n\
                ## Examples\n\
                ## Examples\n\
                ## See [policy.md](policy.md), and more!\n\
                Setext heading\n\
                --------------\n\
                ```\n## not a heading\n```\n\
                <a id=\"custom\"></a>\n";
    let got: Vec<String> = anchors(page).into_iter().collect();
    assert_eq!(
        got,
        [
            "compared-with-envoys-own-envoyfiltershttpcors",
            "cors-proxy-wasm",
            "custom",
            "examples",
            "examples-1",
            "see-policymd-and-more",
            "setext-heading",
            "the-oci-image-make-oci",
            "when-the-vm-crashes-failure_policy--fail_open",
        ]
    );
}
