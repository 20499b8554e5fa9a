//! The command line: `linkhub [serve]`, `linkhub migrate`, `linkhub promote <username>`,
//! `linkhub cache invalidate (--user <id|name> | --all)`, `linkhub cache status`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::admin;
use crate::cache::{self, CacheConfig};
use crate::config::Settings;
use crate::db;
use crate::startup::Application;
use crate::telemetry::{self, Telemetry};

#[derive(Parser)]
#[command(
    name = "linkhub",
    version,
    about = "Link-in-bio profiles served cache-aside from Redis"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Create the database when missing and run pending migrations, then exit.
    Migrate,
    /// Give a user the admin role.
    Promote {
        /// The user to promote.
        username: String,
    },
    /// Operate the cache of every running instance (through PostgreSQL).
    #[command(subcommand)]
    Cache(CacheCommand),
}

#[derive(Subcommand)]
enum CacheCommand {
    /// Drop cached entries on every instance: one user's, or all of them.
    #[command(group(clap::ArgGroup::new("target").required(true).args(["user", "all"])))]
    Invalidate {
        /// The user, by id or username: their record, profile, links and socials.
        #[arg(long)]
        user: Option<String>,
        /// Every entry: moves the cache epoch.
        #[arg(long)]
        all: bool,
        /// How long to wait for the running instances to deliver a user's
        /// invalidation before exiting 4.
        #[arg(long, default_value_t = 10)]
        wait_secs: u64,
    },
    /// The cache epoch, the owed bumps and each instance's cache; exits 4 when degraded.
    Status,
}

/// The exit code of a stop whose grace ran out before every request in
/// flight had answered (`1` is a start-up or server error, `2` a bad setting).
pub const EXIT_REQUESTS_CUT: u8 = 3;

/// Runs the command; configuration and start-up errors are one line on stderr
/// and a non-zero exit, never a panic.
pub fn main() -> ExitCode {
    keep_large_allocations_returnable();
    let cli = Cli::parse();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("linkhub: {e}");
            return ExitCode::from(2);
        }
    };
    // Dropped when `main` returns, which flushes the spans not yet exported.
    let _telemetry = match init_logging(&settings) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("linkhub: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = actix_web::rt::System::new().block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => serve(settings).await,
            Command::Migrate => db::prepare_database(&settings.database_url)
                .await
                .map(|()| println!("linkhub: migrations are up to date"))
                .map(|()| ExitCode::SUCCESS)
                .map_err(|e| e.to_string()),
            Command::Promote { username } => promote(&settings, &username)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Cache(command) => cache_command(&settings, command).await,
        }
    });
    match outcome {
        Ok(code) => code,
        Err(message) => {
            eprintln!("linkhub: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Serves until `SIGTERM`/`SIGINT`; exits `0` when every request in flight
/// answered within the grace, [`EXIT_REQUESTS_CUT`] when some were cut.
async fn serve(settings: Settings) -> Result<ExitCode, String> {
    let bind = settings.bind_addr.clone();
    let grace = settings.shutdown_grace.as_secs();
    let app = Application::build(settings)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!("linkhub listening on {bind} (port {})", app.port());
    let stopped = app
        .run_until_stopped()
        .await
        .map_err(|e| format!("server error: {e}"))?;
    if stopped.drained() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "linkhub: {} request(s) in flight were cut after SHUTDOWN_GRACE_SECS={grace}",
            stopped.cut_requests
        );
        Ok(ExitCode::from(EXIT_REQUESTS_CUT))
    }
}

async fn cache_command(settings: &Settings, command: CacheCommand) -> Result<ExitCode, String> {
    let outcome = match command {
        CacheCommand::Invalidate {
            user,
            all: _,
            wait_secs,
        } => {
            let target = user.map_or(admin::Target::All, admin::Target::User);
            admin::invalidate(
                &settings.database_url,
                target,
                std::time::Duration::from_secs(wait_secs),
            )
            .await?
        }
        CacheCommand::Status => admin::status(&settings.database_url).await?,
    };
    for line in &outcome.lines {
        println!("{line}");
    }
    Ok(ExitCode::from(outcome.exit))
}

async fn promote(settings: &Settings, username: &str) -> Result<(), String> {
    db::create_database_if_missing(&settings.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let pool = db::build_pool(&settings.database_url, 1, settings.db_timeout)
        .map_err(|e| e.to_string())?;
    let mut conn = pool.get().await.map_err(|e| format!("DATABASE_URL: {e}"))?;
    let written = db::users::promote(&mut conn, username)
        .await
        .map_err(|e| format!("promoting {username}: {e}"))?
        .ok_or_else(|| format!("no user named {username:?}"))?;
    // The role change touches the user's row (updated_at), so cached copies
    // must go. When Redis does not answer, the outbox rows stay and every
    // running instance replays them.
    if settings.cache_enabled {
        match cache::deliver(&CacheConfig::from(settings), &written.changes).await {
            Ok(()) => {
                db::outbox::delete(&mut conn, &written.changes.ids)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Err(e) => tracing::warn!("cache invalidation left to the running instances: {e}"),
        }
    }
    println!(
        "linkhub: {} is now an admin (id {})",
        written.value.username, written.value.id
    );
    Ok(())
}

/// Log lines go to stderr through `tracing`, filtered by `RUST_LOG` (default
/// `info,actix_server=warn`), as text or, with `LOG_FORMAT=json`, one JSON
/// object a line; the `log` records of dependencies are bridged in. A
/// request's text lines carry `request{request_id=<id>}:`. With
/// `OTEL_EXPORTER_OTLP_ENDPOINT`, spans are exported too (see [`telemetry`]).
/// Read after the settings, so that `.env` may set these too.
fn init_logging(settings: &Settings) -> Result<Telemetry, String> {
    telemetry::init(settings)
}

/// glibc raises its mmap threshold each time a large block is freed; past
/// that, argon2's 19 MiB working blocks come from per-thread arenas that keep
/// them (10,000 registrations left 1.3 GiB resident). A fixed threshold keeps
/// blocks of 1 MiB and more in their own mappings, returned to the system on free.
fn keep_large_allocations_returnable() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it runs once, before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
