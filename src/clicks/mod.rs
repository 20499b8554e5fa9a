//! Link clicks: every redirect of `GET /l/{link_id}` counted exactly once,
//! at the cost of a cached read plus a `write(2)` of 20 bytes, and without
//! touching a cache namespace. This room owns the counting; the redirect's
//! URL comes from the cached read of the link (`service::clicks`).
//!
//! # The click journal
//! Something durable must hold a click before its `302`, and PostgreSQL's
//! commit is too slow to wait for on every redirect (it held redirects to
//! 0.37 × the throughput of a cached read). Redis cannot: it restarts from
//! older snapshots and loses acknowledged writes on failover. A local file
//! can: what `write(2)` returned is in the kernel's page cache, which
//! outlives a `kill -9` of the process. So:
//! - **each process appends to its own segment file** in
//!   `CLICKS_JOURNAL_DIR` (`segment.rs`: created race-free, under an
//!   exclusive `flock` held for its life; `record.rs`: the bytes), one
//!   fixed-size record per click, and answers the `302` only after the
//!   append returned ([`Clicks::record`], `journal.rs`). There is no
//!   PostgreSQL on the redirect path;
//! - **an applier per process** (`applier.rs`) applies the clicks to
//!   PostgreSQL every `CLICKS_FLUSH_MS` (250 ms), in one transaction with
//!   the segment's applied offset (`click_batches`): a batch retried after
//!   an unknown outcome is not counted again;
//! - **a dead process's segment is adopted** (`adopt.rs`) by any process
//!   sharing the directory, a sibling or its own restart: once its lock is
//!   free, its clicks beyond the applied offset, counted after that offset's
//!   row is locked, are applied, and the file removed. Applier and adopter
//!   go through the one transaction-then-recount path,
//!   `db::clicks::apply_segment`.
//!
//! # Why the counts are exact
//! - **`kill -9`** loses nothing answered: every answered click's record is
//!   in the file before its `302`, and the file outlives the process. A
//!   click whose record was written in the microseconds before the kill
//!   while its `302` was still on its way is counted, and its client saw the
//!   connection drop (in doubt, as with any server). A batch of the dead
//!   process still open in PostgreSQL either commits before the adopter's
//!   row lock is granted (and its clicks are behind the offset the adopter
//!   reads) or is rolled back (and they are beyond it): never both.
//! - **Redis restarting, failing over, losing acknowledged writes, or
//!   unreachable** changes nothing: clicks never go through Redis. Only the
//!   link's URL does, through the cache's read-your-writes read, which
//!   bypasses to PostgreSQL when Redis is away; the redirect still answers.
//! - **PostgreSQL away** delays the counts, not the redirects of cached
//!   links: the journal holds up to `CLICKS_JOURNAL_MAX_BYTES` not yet
//!   applied, then redirects answer `503` with `Retry-After`, counting
//!   nothing.
//! - **A click never bumps a namespace**: the click tables are not `users`,
//!   `links` or `socials`, carry no outbox trigger, and a batch writes no
//!   other table (the foreign key to `links` only reads it), so cached
//!   profiles stay `HIT` at any click rate.
//!
//! What the journal does not survive: the loss of its directory. A power
//! loss can take the clicks written since the last `fdatasync` (one per
//! flush, so at most `CLICKS_FLUSH_MS` of them); the loss of the machine or
//! of a Kubernetes pod's `emptyDir` takes the clicks not yet applied
//! (docs/OPERATIONS.md).
//!
//! # Bounded under abuse
//! A bot clicking without end costs: at most `CLICKS_JOURNAL_MAX_BYTES` of
//! journal not yet applied (one click more is answered `503` with
//! `Retry-After`), one aggregate entry per link and day in memory, one row
//! per link and day in `link_clicks` and `link_visitors`, one
//! `click_batches` row per live segment, at most
//! `CLICKS_VISITORS_PENDING_MAX` visitor entries in memory (`visitors.rs`),
//! one PostgreSQL connection for the applier, and nothing in Redis.

mod adopt;
mod applier;
mod hll;
mod journal;
mod record;
mod segment;
mod visitors;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::RngExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::adopt::Adopter;
use self::applier::Applier;
pub use self::hll::{Observation, Sketch};
use self::journal::{AppendError, Journal};
use self::record::ClickRecord;
pub use self::visitors::Visitor;
use self::visitors::Visitors;
use crate::config::Settings;
use crate::db::{self, DbPool};
use crate::metrics::Metrics;

/// How often the journal directory is scanned for dead processes' segments.
const ADOPT_EVERY: Duration = Duration::from_secs(2);

/// How long a stop tries to apply what is journaled; what is not applied
/// by then stays in the segment for an adopter. Within the server's
/// `TASKS_STOP_WITHIN` (5 s).
const APPLY_AT_STOP_WITHIN: Duration = Duration::from_secs(4);

/// Why a click was not counted; its redirect is not answered either.
#[derive(Debug, thiserror::Error)]
pub enum ClickError {
    /// `CLICKS_JOURNAL_MAX_BYTES` are journaled and not applied yet.
    #[error("too many clicks waiting to be applied")]
    Busy,
    /// The journal could not be written (`ENOSPC` …).
    #[error("the click could not be journaled: {0}")]
    NotJournaled(std::io::Error),
}

/// Why the counting of clicks could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClicksStartError {
    /// The journal directory cannot be created or written.
    #[error("cannot use the click journal directory CLICKS_JOURNAL_DIR={dir}: {cause}")]
    Journal { dir: PathBuf, cause: std::io::Error },
    /// The database's name and port, which the segments' headers carry,
    /// could not be read.
    #[error("cannot read the database's name and port for the click journal: {0}")]
    Database(String),
}

/// The counting of clicks, one per process: its journal, applier, adopter
/// and visitor merges.
pub struct Clicks {
    journal: Arc<Journal>,
    visitors: Arc<Visitors>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    running: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl Clicks {
    /// Opens this process's journal segment and starts the applier, the
    /// adopter and the visitor merges on the current runtime.
    pub async fn start(
        settings: &Settings,
        db: DbPool,
        metrics: Arc<Metrics>,
    ) -> Result<Self, ClicksStartError> {
        let dir = settings.clicks_journal_dir();
        let refused = |cause| ClicksStartError::Journal {
            dir: dir.clone(),
            cause,
        };
        std::fs::create_dir_all(&dir).map_err(refused)?;
        let identity = async {
            let mut conn = db.get().await.map_err(|e| e.to_string())?;
            db::clicks::database_identity(&mut conn)
                .await
                .map_err(|e| e.to_string())
        }
        .await
        .map_err(ClicksStartError::Database)?;
        let process = format!(
            "{}-{}-{}",
            segment::host_name(),
            std::process::id(),
            hex::encode(rand::rng().random::<[u8; 4]>())
        );
        let journal = Arc::new(
            Journal::open(
                dir.clone(),
                identity,
                process,
                settings.clicks_journal_max_bytes,
            )
            .map_err(refused)?,
        );
        let stop = CancellationToken::new();
        let visitors = Arc::new(Visitors::new(
            db.clone(),
            Arc::clone(&metrics),
            settings.clicks_visitors_pending_max,
        ));
        let adopter = Adopter {
            journal: Arc::clone(&journal),
            db: db.clone(),
            metrics: Arc::clone(&metrics),
            visitors: Arc::clone(&visitors),
        };
        let applier = Applier {
            journal: Arc::clone(&journal),
            db,
            metrics: Arc::clone(&metrics),
            every: settings.clicks_flush,
        };
        let running = vec![
            tokio::spawn(applier.run(stop.clone(), APPLY_AT_STOP_WITHIN)),
            tokio::spawn(adopter.run(ADOPT_EVERY, stop.clone())),
            tokio::spawn(Arc::clone(&visitors).run(settings.clicks_visitors_flush, stop.clone())),
        ];
        Ok(Self {
            journal,
            visitors,
            metrics,
            stop,
            running: std::sync::Mutex::new(running),
        })
    }

    /// Counts one click of `link_id` by `visitor`: once this returns `Ok`,
    /// the click is in the journal and its redirect may be answered.
    pub async fn record(&self, link_id: i64, visitor: Visitor<'_>) -> Result<(), ClickError> {
        let day = Utc::now().date_naive();
        let seen = self.visitors.observation(day, visitor).await;
        let appended = self.journal.append(&ClickRecord { link_id, day, seen });
        match appended {
            Ok(()) => self.metrics.clicks("counted", 1),
            Err(AppendError::Full) => {
                self.metrics.clicks("busy", 1);
                return Err(ClickError::Busy);
            }
            Err(AppendError::Write(e)) => {
                self.metrics.clicks("failed", 1);
                return Err(ClickError::NotJournaled(e));
            }
        }
        if let Some(seen) = seen {
            self.visitors.add(link_id, day, seen);
        }
        Ok(())
    }

    /// After the server stopped: applies every click journaled, removes
    /// the segment, merges the visitors, and waits up to `within`.
    pub async fn stop(&self, within: Duration) {
        self.stop.cancel();
        let running = std::mem::take(&mut *self.running.lock().unwrap_or_else(|p| p.into_inner()));
        let all = futures_util::future::join_all(running);
        if tokio::time::timeout(within, all).await.is_err() {
            tracing::warn!("stop: click counting did not finish within {within:?}");
        }
    }
}
