//! Runs `wrk` (Debian's package) and reads its result: a Lua `done()` hook
//! prints the summary and the latency percentiles as one JSON line.

use std::path::Path;
use std::process::Command;

use serde::Deserialize;

/// The `done()` hook every wrk run gets.
const REPORT_LUA: &str = r#"
done = function(summary, latency, requests)
  io.write(string.format(
    "WRK_JSON {\"requests\":%d,\"duration_us\":%d,\"non_2xx\":%d,\"socket_errors\":%d,\"p50_us\":%d,\"p99_us\":%d}\n",
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"#;

/// One wrk run.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct WrkResult {
    pub requests: u64,
    pub duration_us: u64,
    pub non_2xx: u64,
    pub socket_errors: u64,
    pub p50_us: u64,
    pub p99_us: u64,
}

impl WrkResult {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / (self.duration_us as f64 / 1e6)
    }

    pub fn errors(&self) -> u64 {
        self.non_2xx + self.socket_errors
    }
}

/// What to send.
pub enum Load<'a> {
    /// `GET url`.
    Get,
    /// A Lua script with a `request()` function (the report hook is appended).
    Script(&'a str),
}

/// `wrk -t<threads> -c<connections> -d<secs>s url`.
pub fn run(
    work_dir: &Path,
    url: &str,
    load: Load<'_>,
    threads: usize,
    connections: usize,
    secs: u64,
) -> Result<WrkResult, String> {
    let script = match load {
        Load::Get => REPORT_LUA.to_owned(),
        Load::Script(body) => format!("{body}\n{REPORT_LUA}"),
    };
    let path = work_dir.join(format!("wrk-{}.lua", std::process::id()));
    std::fs::write(&path, script).map_err(|e| format!("{}: {e}", path.display()))?;
    let out = Command::new("wrk")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{secs}s"))
        .arg("--timeout")
        .arg("5s")
        .arg("-s")
        .arg(&path)
        .arg(url)
        .output()
        .map_err(|e| format!("cannot run wrk (apt-get install -y wrk): {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("WRK_JSON "))
        .ok_or_else(|| {
            format!(
                "wrk printed no result for {url}: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    serde_json::from_str(line).map_err(|e| format!("wrk result {line}: {e}"))
}

/// A `request()` that PATCHes the bio of the given users in turn, each with
/// its own token.
pub fn patch_bio_script(writers: &[(i64, String)]) -> String {
    let users: Vec<String> = writers
        .iter()
        .map(|(id, token)| format!("{{id={id}, token=\"{token}\"}}"))
        .collect();
    format!(
        r#"
local users = {{ {} }}
local n = 0
request = function()
  n = n + 1
  local u = users[(n % #users) + 1]
  local body = string.format('{{"bio":"wrk bio %d %d"}}', n, math.random(1000000))
  return wrk.format("PATCH", "/api/v1/users/" .. u.id,
    {{["Authorization"] = "Bearer " .. u.token, ["Content-Type"] = "application/json"}}, body)
end
"#,
        users.join(", ")
    )
}
