//! Link clicks: every redirect of `GET /l/{link_id}` counted exactly once,
//! at the cost of a cached read plus a share of a group commit, and without
//! touching a cache namespace. This room owns the counting; the redirect's
//! URL comes from the cached read of the link (`service::clicks`).
//!
//! # Why the counts are exact
//! A redirect is answered only after its click is committed in PostgreSQL:
//! [`Clicks::record`] queues the click and waits for the batch that carries
//! it to commit (`commit.rs`). So:
//! - **`kill -9` of an instance** loses nothing answered: a click whose
//!   batch had not committed was not answered either (its redirect was still
//!   waiting), and PostgreSQL rolls the open transaction back. The one case
//!   no server can settle is a click whose batch committed in the
//!   microseconds before the kill while its `302` was still being written:
//!   it is counted, and its client saw the connection drop. Nothing answered
//!   is lost, and nothing is counted twice. A batch is an explicit
//!   transaction, not an autocommit statement, so one still waiting in
//!   PostgreSQL (on a lock) when its process dies is rolled back, never
//!   committed behind the dead process's back (tested).
//! - **Redis restarting, failing over, losing acknowledged writes, or
//!   unreachable** changes nothing: clicks never go through Redis. Only the
//!   link's URL does, through the cache's read-your-writes read, which
//!   bypasses to PostgreSQL when Redis is away; the redirect still answers.
//! - **A retry never counts twice.** A batch and the record that it was
//!   applied (`click_batches`: a number per writer, above the last one
//!   applied) commit in one statement. When a commit's outcome is unknown (the
//!   connection dropped during `COMMIT`), the same batch is sent again under
//!   the same number, and is counted only if the first one was not.
//! - **A click never bumps a namespace**: the click tables are not `users`,
//!   `links` or `socials`, carry no outbox trigger, and a batch writes no
//!   other table (the foreign key to `links` only reads it), so cached
//!   profiles stay `HIT` at any click rate.
//!
//! The price is the commit's latency on each redirect; group commit keeps it
//! a price in latency, not in statements: a batch is one transaction
//! whatever its size (up to `CLICKS_BATCH_MAX`), and the next batch gathers
//! while one commits, lingering up to `CLICKS_LINGER_MS` (`commit.rs`). The
//! floor is the clicks in flight: a click is answered only after its batch
//! committed, so a batch cannot hold more clicks than are waiting at once,
//! and `C` clicks in flight need at least `1,000 / C` commits per 1,000
//! clicks (63 at 16 in flight, 16 at 64, 4 at 256). "A few writes per
//! thousand clicks" therefore holds from a few hundred clicks in flight on
//! an instance; below that, exact counting (nothing answered before it is
//! committed) costs more commits, never lost counts. docs/BENCHMARKS.md has
//! the measurement. Appending clicks to a Redis
//! stream instead would answer sooner, but Redis restarted from an older
//! snapshot, or a replica promoted before it had the entries, loses
//! acknowledged clicks; `WAIT` for a replica covers the failover only, and
//! a lone Redis without persistence has no replica to wait for.
//!
//! # Bounded under abuse
//! A bot clicking without end costs: at most `CLICKS_QUEUE_MAX` clicks
//! waiting (one more is answered `503` with `Retry-After`), one row per link
//! and day in `link_clicks` and `link_visitors`, one row per committer in
//! `click_batches`, at most `CLICKS_VISITORS_PENDING_MAX` visitor entries in
//! memory (`visitors.rs`), at most `CLICKS_COMMITTERS` PostgreSQL
//! connections held by the committers, and nothing in Redis.

mod commit;
mod hll;
mod visitors;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use rand::RngExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use self::commit::{Committer, Shared, Waiting};
pub use self::hll::{Observation, Sketch};
pub use self::visitors::Visitor;
use self::visitors::Visitors;
use crate::config::Settings;
use crate::db::DbPool;
use crate::metrics::Metrics;

/// Why a click was not counted; its redirect is not answered either.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClickError {
    /// `CLICKS_QUEUE_MAX` clicks are waiting already.
    #[error("too many clicks waiting for their commit")]
    Busy,
    /// The batch did not commit within `CLICKS_COMMIT_TIMEOUT_MS`.
    #[error("the click could not be committed: {0}")]
    NotCommitted(String),
}

/// The counting of clicks, one per process: its queue, committers and
/// visitor merges.
pub struct Clicks {
    queue: mpsc::Sender<Waiting>,
    visitors: Arc<Visitors>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    running: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl Clicks {
    /// Starts the committers and the visitor merges on the current runtime.
    pub fn start(settings: &Settings, db: DbPool, metrics: Arc<Metrics>) -> Self {
        let (queue, receiver) = mpsc::channel(settings.clicks_queue_max);
        let shared = Shared::new(receiver);
        let stop = CancellationToken::new();
        let process = format!(
            "{}-{}",
            std::process::id(),
            hex::encode(rand::rng().random::<[u8; 8]>())
        );
        let mut running = Vec::new();
        for n in 0..settings.clicks_committers {
            let committer = Committer {
                db: db.clone(),
                metrics: Arc::clone(&metrics),
                writer: format!("{process}-{n}"),
                batch_max: settings.clicks_batch_max,
                linger: settings.clicks_linger,
                within: settings.clicks_commit_timeout,
            };
            running.push(tokio::spawn(
                committer.run(Arc::clone(&shared), stop.clone()),
            ));
        }
        let visitors = Arc::new(Visitors::new(
            db,
            Arc::clone(&metrics),
            settings.clicks_visitors_pending_max,
        ));
        running.push(tokio::spawn(
            Arc::clone(&visitors).run(settings.clicks_visitors_flush, stop.clone()),
        ));
        Self {
            queue,
            visitors,
            metrics,
            stop,
            running: std::sync::Mutex::new(running),
        }
    }

    /// Counts one click of `link_id` by `visitor`, and returns once it is
    /// committed: only then may its redirect be answered.
    pub async fn record(&self, link_id: i64, visitor: Visitor<'_>) -> Result<(), ClickError> {
        let day = Utc::now().date_naive();
        let observation = self.visitors.observation(day, visitor).await;
        let (done, committed) = oneshot::channel();
        self.queue
            .try_send(Waiting {
                link_id,
                day,
                queued: tokio::time::Instant::now(),
                done,
            })
            .map_err(|_| {
                self.metrics.clicks("busy", 1);
                ClickError::Busy
            })?;
        match committed.await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => return Err(ClickError::NotCommitted(why)),
            Err(_) => return Err(ClickError::NotCommitted("the committer stopped".into())),
        }
        if let Some(observation) = observation {
            self.visitors.add(link_id, day, observation);
        }
        Ok(())
    }

    /// After the server stopped: commits what is still queued (a redirect
    /// cut by the grace), merges the visitors, and waits up to `within`.
    pub async fn stop(&self, within: Duration) {
        self.stop.cancel();
        let running = std::mem::take(&mut *self.running.lock().unwrap_or_else(|p| p.into_inner()));
        let all = futures_util::future::join_all(running);
        if tokio::time::timeout(within, all).await.is_err() {
            tracing::warn!("stop: click counting did not finish within {within:?}");
        }
    }
}
