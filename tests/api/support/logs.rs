//! `TEST_LOG=1`: the app's own log lines in a test's output, as
//! zero-to-production's `spawn_app` does it. Off by default: the suite spawns
//! hundreds of apps, and their lines would bury the one that failed. With it,
//! `cargo test` shows the lines of a failing test only (they go through the
//! test's captured output), filtered by `RUST_LOG` (default
//! `info,actix_server=warn`, the binary's own).

use std::sync::Once;

use tracing_subscriber::EnvFilter;

/// Whether `TEST_LOG` asks for logs (set, and neither empty nor `0`).
pub fn test_log_enabled() -> bool {
    std::env::var("TEST_LOG").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Installs the test process's log subscriber once, when `TEST_LOG` asks for
/// it; apps spawned in-process then log through it.
pub fn init_test_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if !test_log_enabled() {
            return;
        }
        let filter = EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info,actix_server=warn"));
        // The test writer prints through the harness, which shows a test's
        // output when it fails (or with `--nocapture`).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .with_ansi(false)
            .try_init();
    });
}
