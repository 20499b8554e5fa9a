//! The `linkhub` binary as a test runs it: a clean environment in an empty
//! directory, and [`ServedBinary`], `linkhub serve` on a port of its own that
//! the test talks to through a [`TestApp`] and can stop with a signal.

use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use linkhub::config::Settings;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use super::app::TestApp;
use super::logs::test_log_enabled;
use super::names::unique_name;
use super::services::redis_url;

/// A command for the binary with a clean environment (only `vars` and PATH)
/// in an empty directory, so neither the caller's environment nor a `.env`
/// of the work tree changes what it does. With `TEST_LOG=1`, the caller's
/// `RUST_LOG` passes through too, so the stderr a failing test prints holds
/// the lines asked for.
pub fn linkhub(args: &[&str], vars: &[(&str, &str)]) -> (Command, tempdir::Dir) {
    let dir = tempdir::Dir::new();
    let mut command = Command::new(env!("CARGO_BIN_EXE_linkhub"));
    command
        .args(args)
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(vars.iter().copied())
        .envs(passed_log_filter())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    (command, dir)
}

/// `RUST_LOG` when `TEST_LOG` asks for logs and it is set; else nothing (the
/// binary's default filter).
fn passed_log_filter() -> Option<(&'static str, String)> {
    test_log_enabled()
        .then(|| std::env::var("RUST_LOG").ok())
        .flatten()
        .map(|filter| ("RUST_LOG", filter))
}

/// Settings every run shares: the shared Redis, a private prefix, port 0,
/// the database's own click journal directory.
pub fn base_vars(database_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", database_url.to_string()),
        (
            "CLICKS_JOURNAL_DIR",
            super::app::journal_dir_of(database_url)
                .to_string_lossy()
                .into_owned(),
        ),
        ("REDIS_URL", redis_url()),
        ("BIND_ADDR", "127.0.0.1:0".to_string()),
        ("CACHE_PREFIX", unique_name("t")),
        ("WORKERS", "1".to_string()),
    ]
}

pub fn as_refs<'a>(vars: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    vars.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// `linkhub serve` running as a child process.
pub struct ServedBinary {
    pub child: Child,
    /// The binary's API, spoken to like any [`TestApp`].
    pub app: TestApp,
    _dir: tempdir::Dir,
}

/// How a served binary ended.
pub struct Exited {
    pub status: ExitStatus,
    pub stderr: String,
}

impl ServedBinary {
    /// Starts `linkhub serve` with `vars` (a `BIND_ADDR` among them is replaced
    /// by a free port) and waits until `/readyz` answers.
    pub async fn start(vars: &[(&'static str, String)]) -> ServedBinary {
        let port = linkhub_harness::free_port();
        let mut vars: Vec<(&'static str, String)> = vars
            .iter()
            .filter(|(k, _)| *k != "BIND_ADDR")
            .cloned()
            .collect();
        vars.push(("BIND_ADDR", format!("127.0.0.1:{port}")));
        let settings = Settings::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        })
        .expect("the test's settings are valid");
        let (mut command, dir) = linkhub(&["serve"], &as_refs(&vars));
        let mut child = command.spawn().expect("failed to start linkhub serve");
        let app = TestApp::at(port, &settings.database_url.clone(), settings);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let output = child.wait_with_output().await.unwrap();
                panic!(
                    "linkhub serve exited with {status}: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            if app.client.get(app.url("/readyz")).send().await.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "linkhub serve never listened");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ServedBinary {
            child,
            app,
            _dir: dir,
        }
    }

    /// Sends `signal` (`"TERM"`, `"INT"`, ...) to the process.
    pub async fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("linkhub serve is running");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .await
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    /// Waits up to `limit` for the process to exit, failing the test otherwise.
    pub async fn exited_within(mut self, limit: Duration) -> Exited {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("linkhub serve did not exit within {limit:?}"))
            .expect("wait for linkhub serve");
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr).await;
        }
        Exited { status, stderr }
    }
}

/// A scratch directory removed on drop.
pub mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new() -> Dir {
            let path = std::env::temp_dir().join(crate::support::unique_name("linkhub_cwd"));
            std::fs::create_dir_all(&path).expect("create a scratch directory");
            Dir(path)
        }

        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
