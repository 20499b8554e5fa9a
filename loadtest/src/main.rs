//! linkhub's load tests.
//!
//! ```text
//! loadtest seed  [--users N] [--host URL]     fill a linkhub through its API
//! loadtest bench [options]                    the benchmark suite (docs/BENCHMARKS.md)
//! loadtest --host URL <goose options>         run scenarios: profiles, search, mixed, stampede, clicks
//! ```
//!
//! A goose run prints goose's metrics, then one `loadtest summary:` line (cache
//! results seen by the profile reads, writes, stale reads) and exits non-zero
//! when a `--threshold` failed or any read-back was stale. Its HTML reports
//! carry their chart script inline, so they work offline.

mod api;
mod bench;
mod clicks;
mod data;
mod offline_report;
mod scenarios;
mod seed;

use std::process::ExitCode;

use clap::Parser;
use goose::config::GooseConfiguration;
use goose::prelude::*;

fn main() -> ExitCode {
    let first = std::env::args().nth(1);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("loadtest: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match first.as_deref() {
        Some("seed") => {
            let args = seed::SeedArgs::parse_from(std::env::args().skip(1));
            runtime.block_on(seed::run(&args)).map(drop)
        }
        Some("bench") => {
            let args = bench::BenchArgs::parse_from(std::env::args().skip(1));
            runtime.block_on(bench::run(args))
        }
        _ => runtime.block_on(load_test()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadtest: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the goose scenarios the command line selects, then makes the HTML
/// reports it wrote self-contained.
async fn load_test() -> Result<(), String> {
    let config = GooseConfiguration::parse_args_default_or_exit();
    let attack = GooseAttack::initialize_with_config(config.clone()).map_err(|e| e.to_string())?;
    let outcome = scenarios::register(attack).execute().await;
    let counters = scenarios::counters();
    let summary = serde_json::to_string(&counters).unwrap_or_default();
    println!("loadtest summary: {summary}");
    // Reports are written when a threshold fails too; they are published either way.
    offline_report::make_self_contained(&config)?;
    match outcome {
        Err(GooseError::ThresholdsFailed { .. }) => Err("a --threshold failed".to_owned()),
        Err(e) => Err(e.to_string()),
        Ok(_) if counters.stale_reads > 0 => Err(format!(
            "{} read-backs did not show their write (stale reads)",
            counters.stale_reads
        )),
        Ok(_) => Ok(()),
    }
}
