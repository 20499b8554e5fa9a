//! Self-contained goose HTML reports.
//!
//! goose's HTML report loads its chart library, Apache ECharts, from a CDN,
//! so a report opened without internet (a CI artefact, a laptop on a plane)
//! shows blank charts. After a run, the reports goose wrote get the vendored
//! copy (`loadtest/vendor/echarts-5.2.2/`, licence and provenance beside it)
//! inlined in place of that `<script src>`. A report that loads any other
//! remote script fails the run instead of being published half-working: the
//! vendored copy has to follow goose's version.

use std::path::{Path, PathBuf};

use goose::config::{GooseConfiguration, RUN_FOLDER};

/// The tag goose 0.19 writes into every HTML report.
const ECHARTS_FROM_CDN: &str =
    r#"<script src="https://cdn.jsdelivr.net/npm/echarts@5.2.2/dist/echarts.min.js"></script>"#;

/// `dist/echarts.min.js` of the npm package echarts@5.2.2, unchanged.
const ECHARTS_MIN_JS: &str = include_str!("../vendor/echarts-5.2.2/echarts.min.js");

/// `html` with the CDN chart script replaced by the vendored one. Unchanged
/// when it has no CDN script (already inlined); an error when it still
/// loads a remote script this crate does not vendor.
pub fn inline_chart_script(html: &str) -> Result<String, String> {
    let inlined = html.replace(
        ECHARTS_FROM_CDN,
        &format!(
            "<script>/* Apache ECharts 5.2.2, Apache-2.0: see loadtest/vendor/echarts-5.2.2/ */\n\
             {ECHARTS_MIN_JS}\n</script>"
        ),
    );
    if let Some(remote) = remote_script(&inlined) {
        return Err(format!(
            "the report loads {remote}, which loadtest does not vendor \
             (see loadtest/vendor/echarts-5.2.2/README.md)"
        ));
    }
    Ok(inlined)
}

/// The first `<script src="http…">` URL in `html`, if any.
fn remote_script(html: &str) -> Option<&str> {
    let mut rest = html;
    while let Some(at) = rest.find("<script") {
        rest = &rest[at + "<script".len()..];
        let tag = &rest[..rest.find('>').unwrap_or(rest.len())];
        if let Some(src) = tag.split("src=").nth(1) {
            let src = src.trim_start_matches(['"', '\'']);
            let src = &src[..src.find(['"', '\'', ' ']).unwrap_or(src.len())];
            if src.starts_with("http:") || src.starts_with("https:") || src.starts_with("//") {
                return Some(src);
            }
        }
    }
    None
}

/// Makes every HTML report the run's configuration asked for self-contained;
/// answers the files it checked.
pub fn make_self_contained(config: &GooseConfiguration) -> Result<Vec<PathBuf>, String> {
    let mut checked = Vec::new();
    for path in report_files(config) {
        let html =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let inlined = inline_chart_script(&html).map_err(|e| format!("{}: {e}", path.display()))?;
        if inlined != html {
            std::fs::write(&path, inlined).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        checked.push(path);
    }
    Ok(checked)
}

/// The HTML reports goose may have written: each `--report-file` ending in
/// .html or .htm, and for a bare `--report-file` the `report.html` of the run
/// folder (`--output-dir DIR`, or `DIR-2`, `DIR-3`… when DIR was not empty;
/// without `--output-dir`, the folders under `goose-runs/`).
fn report_files(config: &GooseConfiguration) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = config
        .report_file
        .iter()
        .filter(|f| *f != RUN_FOLDER)
        .filter(|f| f.ends_with(".html") || f.ends_with(".htm"))
        .map(PathBuf::from)
        .collect();
    if config.report_file.iter().any(|f| f == RUN_FOLDER) {
        let folders = match config.output_dir.as_deref().filter(|d| !d.is_empty()) {
            Some(dir) => run_folders(Path::new(dir)),
            None => subfolders(Path::new("goose-runs")),
        };
        files.extend(
            folders
                .into_iter()
                .map(|d| d.join("report.html"))
                .filter(|f| f.is_file()),
        );
    }
    files.retain(|f| f.is_file());
    files
}

/// `dir` and its numbered siblings `dir-2`, `dir-3`….
fn run_folders(dir: &Path) -> Vec<PathBuf> {
    let (Some(parent), Some(name)) = (
        dir.parent(),
        dir.file_name().and_then(|n| n.to_str()).map(str::to_owned),
    ) else {
        return vec![dir.to_owned()];
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let mut out = vec![dir.to_owned()];
    out.extend(subfolders(parent).into_iter().filter(|d| {
        d.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(&name))
            .and_then(|n| n.strip_prefix('-'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }));
    out
}

fn subfolders(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(head: &str) -> String {
        format!("<html><head>{head}</head><body><div id=\"g\"></div></body></html>")
    }

    #[test]
    fn the_cdn_chart_script_is_replaced_by_the_vendored_one() {
        let html = inline_chart_script(&page(ECHARTS_FROM_CDN)).unwrap();
        assert!(!html.contains("cdn.jsdelivr.net"));
        assert!(html.contains(ECHARTS_MIN_JS));
        assert_eq!(remote_script(&html), None);
        // The vendored script cannot end its own <script> element early.
        assert!(!ECHARTS_MIN_JS.contains("</script"));
    }

    #[test]
    fn an_inlined_report_is_left_as_it_is() {
        let once = inline_chart_script(&page(ECHARTS_FROM_CDN)).unwrap();
        assert_eq!(inline_chart_script(&once).unwrap(), once);
    }

    #[test]
    fn a_remote_script_that_is_not_vendored_fails() {
        for tag in [
            r#"<script src="https://cdn.jsdelivr.net/npm/echarts@5.6.0/dist/echarts.min.js"></script>"#,
            r#"<script defer src='http://example.com/x.js'></script>"#,
            r#"<script src=//example.com/x.js></script>"#,
        ] {
            let err = inline_chart_script(&page(tag)).unwrap_err();
            assert!(
                err.contains("example.com") || err.contains("5.6.0"),
                "{err}"
            );
        }
    }

    #[test]
    fn local_and_inline_scripts_are_fine() {
        let html = page(r#"<script src="echarts.min.js"></script><script>var a = 1;</script>"#);
        assert_eq!(inline_chart_script(&html).unwrap(), html);
    }

    #[test]
    fn a_bare_report_file_is_found_in_the_run_folder_and_its_numbered_siblings() {
        let root = std::env::temp_dir().join(format!("loadtest-offline-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for dir in ["mixed", "mixed-2", "mixed-old", "other"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
            std::fs::write(root.join(dir).join("report.html"), page(ECHARTS_FROM_CDN)).unwrap();
        }
        let dir = root.join("mixed").display().to_string();
        let config =
            GooseConfiguration::parse_args_default(&["--output-dir", &dir, "--report-file"])
                .unwrap();
        assert_eq!(config.report_file, vec![RUN_FOLDER.to_owned()]);
        let mut checked = make_self_contained(&config).unwrap();
        checked.sort();
        assert_eq!(
            checked,
            vec![
                root.join("mixed/report.html"),
                root.join("mixed-2/report.html")
            ]
        );
        let untouched = std::fs::read_to_string(root.join("other/report.html")).unwrap();
        assert!(untouched.contains(ECHARTS_FROM_CDN));
        let done = std::fs::read_to_string(root.join("mixed-2/report.html")).unwrap();
        assert_eq!(remote_script(&done), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
