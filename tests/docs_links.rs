//! Every link of the documentation leads somewhere: README.md and each
//! `docs/*.md` are scanned for markdown links and images (`[text](target)`,
//! `![alt](target)`), and each relative target must name a file or directory
//! of the repository (relative to the file that links to it) and, when it
//! carries a `#anchor`, a heading of that markdown file whose GitHub slug is
//! the anchor. The documentation was split from one long README into
//! `docs/`, so a moved section breaks links silently unless something checks
//! them; this test is that check.
//!
//! `http(s)` links are listed (run with `--nocapture` to see them) but not
//! fetched: the test runs without a network. Plain string scanning, no
//! markdown crate: the docs use inline links only, and fenced code blocks are
//! skipped so that code examples are never read as links.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The repository's root, where README.md lives.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every `docs/*.md`, sorted so that failures read in a
/// stable order.
fn documentation_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = fs::read_dir(root().join("docs"))
        .expect("docs/ is readable")
        .map(|entry| entry.expect("a docs/ entry is readable").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// The lines of a markdown file outside fenced code blocks, with their
/// 1-based numbers; the lines of a fence are replaced by empty ones so that
/// a link spanning lines never joins text across a code block.
fn prose_lines(text: &str) -> Vec<(usize, String)> {
    let mut in_fence = false;
    text.lines()
        .enumerate()
        .map(|(index, line)| {
            let fence = line.trim_start().starts_with("```");
            if fence {
                in_fence = !in_fence;
            }
            let prose = if fence || in_fence { "" } else { line };
            (index + 1, prose.to_string())
        })
        .collect()
}

/// GitHub's anchor for a heading: lowercase, spaces to `-`, every other
/// character that is not a letter, a digit, `-` or `_` dropped (backticks,
/// colons, commas, parentheses...).
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            '-' | '_' => Some(c),
            c if c.is_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a markdown file's headings, with GitHub's `-1`, `-2`...
/// suffixes on repeated ones.
fn anchors(text: &str) -> Vec<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = Vec::new();
    for (_, line) in prose_lines(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes..]);
        let count = seen.entry(base.clone()).or_insert(0);
        anchors.push(if *count == 0 {
            base.clone()
        } else {
            format!("{base}-{count}")
        });
        *count += 1;
    }
    anchors
}

/// One link found in a file: the line it ends on and its target.
struct Link {
    line: usize,
    target: String,
}

/// Every inline link target of a markdown file: what follows `](` up to the
/// closing `)`, without an optional `"title"`. The link text may span lines,
/// the target may not.
fn links(text: &str) -> Vec<Link> {
    let mut found = Vec::new();
    for (line_number, line) in prose_lines(text) {
        let mut rest = line.as_str();
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let Some(end) = after.find(')') else { break };
            let inside = after[..end].trim();
            let target = inside.split_whitespace().next().unwrap_or("");
            if !target.is_empty() {
                found.push(Link {
                    line: line_number,
                    target: target.to_string(),
                });
            }
            rest = &after[end..];
        }
    }
    found
}

/// What is wrong with one relative link of `file`, if anything.
fn check(file: &Path, target: &str) -> Option<String> {
    let (path_part, anchor) = match target.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (target, None),
    };
    let linked = if path_part.is_empty() {
        file.to_path_buf()
    } else {
        file.parent()
            .expect("a documentation file has a directory")
            .join(path_part)
    };
    if !linked.exists() {
        return Some(format!("no file {}", linked.display()));
    }
    let anchor = anchor?;
    if linked.extension().is_none_or(|ext| ext != "md") {
        return Some(format!(
            "an anchor #{anchor} into {}, which is not markdown",
            linked.display()
        ));
    }
    let text = fs::read_to_string(&linked).expect("a linked markdown file is readable");
    let known = anchors(&text);
    if known.iter().any(|known| known == anchor) {
        return None;
    }
    Some(format!(
        "no heading with the anchor #{anchor} in {} (its anchors: {})",
        linked.display(),
        known.join(", ")
    ))
}

#[test]
fn every_link_of_the_documentation_leads_somewhere() {
    let mut broken = Vec::new();
    let mut external = Vec::new();
    let mut checked = 0;
    for file in documentation_files() {
        let text = fs::read_to_string(&file).expect("a documentation file is readable");
        let shown = file
            .strip_prefix(root())
            .unwrap_or(&file)
            .display()
            .to_string();
        for link in links(&text) {
            if link.target.starts_with("http://") || link.target.starts_with("https://") {
                external.push(format!("{shown}:{}: {}", link.line, link.target));
                continue;
            }
            if link.target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            if let Some(problem) = check(&file, &link.target) {
                broken.push(format!(
                    "{shown}:{}: ({}): {problem}",
                    link.line, link.target
                ));
            }
        }
    }
    println!("{checked} relative links checked; external links, not fetched:");
    for link in &external {
        println!("  {link}");
    }
    assert!(
        checked > 0,
        "no relative link found: is the scanner broken?"
    );
    assert!(
        broken.is_empty(),
        "{} broken documentation links:\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn slugs_follow_github() {
    assert_eq!(
        slug("The cache epoch: Redis as production runs it"),
        "the-cache-epoch-redis-as-production-runs-it"
    );
    assert_eq!(
        slug("The public profile page: `GET /@{username}`"),
        "the-public-profile-page-get-username"
    );
    assert_eq!(
        slug("Operating it: metrics access, JSON logs, traces, dashboards, alerts"),
        "operating-it-metrics-access-json-logs-traces-dashboards-alerts"
    );
    assert_eq!(
        slug("1. Profile reads: cached, cache off, `/healthz`, and their floors"),
        "1-profile-reads-cached-cache-off-healthz-and-their-floors"
    );
    assert_eq!(
        anchors("# A\n## A\n```\n# not a heading\n```\n"),
        ["a", "a-1"]
    );
}

#[test]
fn links_are_found_across_lines_and_outside_code_only() {
    let text = "see [changes made outside the\nAPI](CACHE.md#changes) and ![x](a.png \"title\")\n\
                ```sh\n[not](a-link)\n```\n";
    let targets: Vec<String> = links(text).into_iter().map(|l| l.target).collect();
    assert_eq!(targets, ["CACHE.md#changes", "a.png"]);
}
