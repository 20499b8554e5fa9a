//! The operator's cache commands: `linkhub cache invalidate` and `linkhub
//! cache status`. They talk to PostgreSQL only, through the same mechanism as
//! every other change: an invalidation is owed in the outbox (or is an epoch
//! move) and announced at commit, and every running instance delivers it. So
//! a command reaches every instance, also one behind another Redis proxy, and
//! an invalidation made while no instance runs is delivered by the next one
//! to start, before it trusts Redis.
//!
//! Exit codes, for scripts: `0` done (status: healthy), `1` the database could
//! not be reached or the target does not exist, `2` a bad setting or usage,
//! [`EXIT_DEGRADED`] the command ran but something is still owed (status:
//! an owed bump older than [`OVERDUE`], or an instance bypassing Redis).

use std::time::Duration;

use crate::db::{self, DbConn, epoch, instances, outbox};

/// The exit code of a status that found the cache degraded, or of an
/// invalidation still undelivered when its wait ran out.
pub const EXIT_DEGRADED: u8 = 4;

/// An owed bump older than this is overdue: the instances deliver outside
/// changes within a second, and their own writes' leftovers within seconds.
const OVERDUE: Duration = Duration::from_secs(30);

/// A report older than this is of an instance that is gone.
const REPORT_FRESH_SECS: i64 = 30;

/// Which cache entries an invalidation targets.
pub enum Target {
    /// One user, by id or username: their record, profile, links and socials,
    /// and the users list.
    User(String),
    /// Everything: the cache epoch moves.
    All,
}

/// What a command printed and how it ended.
pub struct Outcome {
    pub lines: Vec<String>,
    pub exit: u8,
}

/// Owes the invalidation of `target`, then waits up to `wait` for the running
/// instances to deliver it (a user's namespaces: until their outbox rows are
/// gone).
pub async fn invalidate(
    database_url: &str,
    target: Target,
    wait: Duration,
) -> Result<Outcome, String> {
    let mut conn = connect(database_url).await?;
    match target {
        Target::All => {
            let moved = epoch::move_epoch(&mut conn, "linkhub cache invalidate --all")
                .await
                .map_err(|e| format!("moving the cache epoch: {e}"))?;
            Ok(Outcome {
                lines: vec![format!(
                    "linkhub: the cache epoch is now {moved}: every instance drops every cached entry \
                     as it learns of it (at once when it listens, within a second when not)"
                )],
                exit: 0,
            })
        }
        Target::User(who) => {
            let id = match who.parse::<i64>() {
                Ok(id) => Some(id),
                Err(_) => db::users::id_by_username(&mut conn, &who)
                    .await
                    .map_err(|e| format!("looking up {who:?}: {e}"))?,
            };
            let Some(id) = id else {
                return Err(format!("no user {who:?}"));
            };
            let owed = epoch::owe_user(&mut conn, id)
                .await
                .map_err(|e| format!("owing user {id}'s cache: {e}"))?;
            if owed == 0 {
                return Err(format!("no user with id {id}"));
            }
            let mut lines = vec![format!(
                "linkhub: {owed} cache namespace(s) of user {id} owed"
            )];
            let delivered = wait_delivered(&mut conn, wait).await?;
            let exit = if delivered {
                lines.push("linkhub: delivered by the running instances".to_owned());
                0
            } else {
                lines.push(format!(
                    "linkhub: still owed after {} s: no instance delivered it (none running, or Redis \
                     unreachable); the next instance to trust Redis will",
                    wait.as_secs()
                ));
                EXIT_DEGRADED
            };
            Ok(Outcome { lines, exit })
        }
    }
}

/// Whether the outbox emptied of the rows that were there, within `wait`.
async fn wait_delivered(conn: &mut DbConn, wait: Duration) -> Result<bool, String> {
    let deadline = tokio::time::Instant::now() + wait;
    let first = outbox::max_id(conn).await.map_err(|e| e.to_string())?;
    loop {
        let left = outbox::count_up_to(conn, first)
            .await
            .map_err(|e| e.to_string())?;
        if left == 0 {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The epoch, the owed bumps, and every instance that reported within a day.
pub async fn status(database_url: &str) -> Result<Outcome, String> {
    let mut conn = connect(database_url).await?;
    let current = epoch::current(&mut conn).await.map_err(|e| e.to_string())?;
    let (rows, oldest) = outbox::summary(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    let reports = instances::all(&mut conn).await.map_err(|e| e.to_string())?;
    let mut degraded = oldest.is_some_and(|secs| secs > OVERDUE.as_secs_f64());
    let mut lines = vec![
        format!(
            "epoch {} (moved {}: {})",
            current.epoch,
            current.moved_at.format("%Y-%m-%d %H:%M:%S UTC"),
            current.reason
        ),
        match oldest {
            Some(secs) => format!("owed bumps: {rows} (oldest {secs:.1} s)"),
            None => "owed bumps: 0".to_owned(),
        },
    ];
    let live: Vec<_> = reports
        .iter()
        .filter(|r| r.age_secs <= REPORT_FRESH_SECS)
        .collect();
    lines.push(format!("instances reporting: {}", live.len()));
    for r in &reports {
        let gone = r.age_secs > REPORT_FRESH_SECS;
        if !gone && (r.cache == "degraded" || r.epoch != current.epoch) {
            degraded = true;
        }
        lines.push(format!(
            "  {}  cache {}  epoch {}  owed {}  seen {} s ago{}",
            r.instance,
            r.cache,
            r.epoch,
            r.owed,
            r.age_secs,
            if gone { "  (gone)" } else { "" }
        ));
    }
    lines.push(
        if degraded {
            "status: degraded"
        } else {
            "status: ok"
        }
        .to_owned(),
    );
    Ok(Outcome {
        lines,
        exit: if degraded { EXIT_DEGRADED } else { 0 },
    })
}

async fn connect(database_url: &str) -> Result<DbConn, String> {
    let pool =
        db::build_pool(database_url, 1, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    pool.get().await.map_err(|e| format!("DATABASE_URL: {e}"))
}
