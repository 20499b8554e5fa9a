//! The processes a benchmark starts (linkhub instances, the floor; its
//! private redis-server and free ports come from `linkhub-harness`), readiness
//! waits, `/metrics` and `/proc` readings.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process that is killed when dropped, so a failed benchmark leaves
/// nothing running.
pub struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    /// Starts `cmd` with its stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Self, String> {
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot start {name} ({cmd:?}): {e}"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the process has already exited.
    pub fn check_running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{} exited early: {status}", self.name)),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now ([`linkhub_harness::try_free_port`],
/// its error as the bench's).
pub fn free_port() -> Result<u16, String> {
    linkhub_harness::try_free_port().map_err(|e| format!("cannot find a free port: {e}"))
}

/// The path of a binary built next to this one (same target directory and profile).
pub fn sibling_binary(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = exe.with_file_name(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found: build it first (cargo build --release --workspace)",
            path.display()
        ))
    }
}

/// Waits until `url` answers 200 and `accept` likes the body.
pub async fn wait_until(
    client: &reqwest::Client,
    url: &str,
    within: Duration,
    accept: impl Fn(&str) -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(res) = client.get(url).send().await
            && res.status().is_success()
            && let Ok(body) = res.text().await
            && accept(&body)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{url} was not ready within {within:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Prometheus text as `name{labels}` → value (labels as printed).
pub async fn scrape(client: &reqwest::Client, base: &str) -> Result<HashMap<String, f64>, String> {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .map_err(|e| format!("scraping {base}/metrics: {e}"))?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect())
}

/// The value of `name` with exactly these labels (in any order), 0 when absent.
pub fn series(metrics: &HashMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .iter()
        .filter(|(key, _)| {
            let Some(rest) = key.strip_prefix(name) else {
                return false;
            };
            let inner = rest.trim_start_matches('{').trim_end_matches('}');
            let mut have: Vec<&str> = inner.split(',').filter(|s| !s.is_empty()).collect();
            let mut want: Vec<String> =
                labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            have.sort_unstable();
            want.sort_unstable();
            (rest.is_empty() || rest.starts_with('{')) && have == want
        })
        .map(|(_, v)| *v)
        .sum()
}

/// Resident memory of `pid` in KiB (`VmRSS` of /proc/<pid>/status).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Runs a command to completion and answers its stdout (fails on a non-zero exit).
pub fn output(mut cmd: Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_match_their_labels_in_any_order() {
        let metrics = HashMap::from([
            (
                "linkhub_cache_requests_total{namespace=\"profile\",result=\"hit\"}".to_owned(),
                5.0,
            ),
            (
                "linkhub_cache_requests_total{namespace=\"user\",result=\"hit\"}".to_owned(),
                7.0,
            ),
        ]);
        let hits = series(
            &metrics,
            "linkhub_cache_requests_total",
            &[("result", "hit"), ("namespace", "profile")],
        );
        assert_eq!(hits, 5.0);
        assert_eq!(series(&metrics, "linkhub_cache_loads_total", &[]), 0.0);
    }
}
