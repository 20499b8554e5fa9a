//! Recovery: the only way the breaker closes. While it is open, this task
//! pings Redis; once Redis answers, it replays the whole outbox — the bumps
//! owed by every instance's writes, including this one's before a restart —
//! and only then lets reads use Redis again. While it is closed, it settles
//! bumps owed since, and now and then replays the rows that stayed behind (a
//! writer that died between its commit and its bump).
//!
//! It also watches for failovers, on every instance: each second
//! it reads the masters anew (slots, node ids, run ids: `Store::refresh_topology`),
//! and when they changed it opens the breaker, so the outbox is replayed on the
//! new masters before they are trusted; a new master may lack bumps that were
//! owed when the old one died. Errors, `MOVED` (which the cluster client
//! follows silently, but which shows as changed slots here) and restarts all
//! end the same way. Every replay reads the topology first, so its bumps wait
//! for the replicas the new masters have, and count at once where they have
//! none. A replayed bump is delivered only when it would survive a failover
//! too: a shard whose replicas do not acknowledge it keeps its rows, and its
//! namespaces stay owed (read with BYPASS), while every other shard's rows
//! are deleted and the breaker closes: one sick replica costs the
//! namespaces whose bumps it holds, not the cache. The next tick tries
//! them again (waiting for the replicas even of a shard the writers take to
//! lag: that is how the mark clears, `store/bumps.rs`).
//!
//! A replay goes through the outbox in steps of at most [`BATCH`] rows,
//! oldest first: each step's delivered rows are deleted before the next, and
//! rows left behind (their shard lags) are stepped over. A step cut by the
//! Redis bound (a slow link: a step's pipeline is one round trip per chunk
//! the link delivers) is tried again four times smaller, down to one row, so
//! a replay on a slow link keeps what it delivered and gets through; each
//! step that succeeds doubles the next, up to [`BATCH`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::breaker::Breaker;
use super::epoch::CacheEpoch;
use super::owed::OwedBumps;
use super::purge::Purger;
use super::store::{Store, StoreError};
use crate::db::{DbPool, epoch, instances, outbox};
use crate::metrics::Metrics;
use crate::namespace::Namespace;
use crate::tasks::BackgroundTasks;

/// How often an open breaker retries.
const RETRY_EVERY: Duration = Duration::from_millis(200);
/// How often leftover rows are looked for while healthy: rows of a writer
/// that died before its bump, older than the writer's grace on
/// PostgreSQL's clock. One indexed query, mostly on an empty table.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// How often this instance reports its cache to `cache_instances`.
const REPORT_EVERY: Duration = Duration::from_secs(5);
/// How often the masters are read to notice a failover: a round trip per
/// master and one `CLUSTER NODES` per second, off the request path.
const TOPOLOGY_EVERY: Duration = Duration::from_secs(1);
/// Rows per replay step at most; their namespaces are deduplicated, so a
/// long outage of writes to few namespaces costs few bumps.
const BATCH: i64 = 5000;
/// A step cut by its bound is tried again this many times smaller.
const SHRINK: i64 = 4;

/// What recovery works with; built by [`super::Cache::start`].
pub struct Recovery {
    pub store: Arc<Store>,
    pub breaker: Arc<Breaker>,
    pub owed: Arc<OwedBumps>,
    pub epoch: Arc<CacheEpoch>,
    pub db: DbPool,
    pub purger: Purger,
    pub metrics: Arc<Metrics>,
    /// Set once the first attempt is over, whatever its outcome: the start
    /// waits for it, so that a fresh instance serves from the cache at once.
    pub first_attempt_done: tokio::sync::watch::Sender<bool>,
    /// How long the first attempt waits for the owed-bump listener to subscribe.
    pub listen_wait: Duration,
    /// How long a linkhub writer's own outbox rows are left to it.
    pub writer_grace: Duration,
    /// This instance's report to `cache_instances`.
    pub report: Report,
}

/// What `linkhub cache status` shows of this instance.
pub struct Report {
    instance: String,
    started_at: chrono::DateTime<chrono::Utc>,
    enabled: bool,
}

impl Report {
    /// `<host>:<pid>:<start, µs>`: unique per process.
    pub fn new(enabled: bool) -> Self {
        let started_at = chrono::Utc::now();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".to_owned());
        Self {
            instance: format!(
                "{host}:{}:{}",
                std::process::id(),
                started_at.timestamp_micros()
            ),
            started_at,
            enabled,
        }
    }
}

/// The first attempt runs at once (after the listener subscribed, or
/// `listen_wait`), not after a retry period: a fresh instance replays the
/// outbox and trusts Redis before it answers its first request.
pub fn start(tasks: &BackgroundTasks, recovery: Recovery) {
    tasks.spawn("cache_recovery", async move {
        let mut state = Ticks {
            last_sweep: Instant::now(),
            last_topology: Instant::now(),
            trusted_before: false,
            batch: BATCH,
            // The first start has none to drop.
            connections_forgotten: true,
        };
        let listening_by = Instant::now() + recovery.listen_wait;
        while !recovery.owed.is_listening() && Instant::now() < listening_by {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut last_report: Option<(Instant, (&'static str, i64))> = None;
        loop {
            recovery.tick(&mut state).await;
            recovery.first_attempt_done.send_replace(true);
            // Every few seconds, and at once when the state or the epoch changed.
            let state = (recovery.cache_state(), recovery.epoch.get());
            if last_report.is_none_or(|(at, was)| was != state || at.elapsed() >= REPORT_EVERY) {
                last_report = Some((Instant::now(), state));
                recovery.report(state).await;
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    });
}

/// What recovery carries from one tick to the next.
struct Ticks {
    last_sweep: Instant,
    last_topology: Instant,
    /// Whether this process has trusted Redis yet, so the log says
    /// "trusted" on the first start and "trusted again" after an outage.
    trusted_before: bool,
    /// Rows the next replay step takes (see the module header).
    batch: i64,
    /// Whether this outage's attempts dropped the connections kept from
    /// before it.
    connections_forgotten: bool,
}

/// What a replay did.
#[derive(Default)]
struct Replayed {
    /// Rows delivered and deleted.
    rows: usize,
    /// Namespaces whose bumps did not count: their rows stay.
    undelivered: HashSet<Namespace>,
    /// Why, for the log.
    reason: String,
}

impl Recovery {
    async fn tick(&self, ticks: &mut Ticks) {
        let Ticks {
            last_sweep,
            last_topology,
            trusted_before,
            batch,
            connections_forgotten,
        } = ticks;
        if !self.breaker.lets_through() {
            if !self.owed.is_listening() {
                // Other instances' owed bumps could not reach this one.
                tracing::debug!("cache: still bypassing Redis: not listening for owed bumps yet");
                return;
            }
            if !*connections_forgotten {
                // Connections from before the outage (`forget_connections`).
                self.store.forget_connections();
                *connections_forgotten = true;
            }
            // The replay's bumps wait for the replicas of the masters there
            // are now, not of the ones that failed.
            let recovered = match self.store.refresh_topology().await {
                Ok(_) => {
                    *last_topology = Instant::now();
                    match self.trust_epoch().await {
                        Ok(()) => self.settle_owed(batch).await,
                        Err(e) => Err(e),
                    }
                }
                Err(e) => Err(ReplayError::Redis(e.to_string())),
            };
            match recovered {
                Ok(replayed) => {
                    self.breaker.close();
                    // The next outage drops the connections kept until then.
                    *connections_forgotten = false;
                    if !self.owed.is_listening() {
                        // The listener lost its connection meanwhile; its trip
                        // may have come before this close.
                        self.breaker.trip();
                        return;
                    }
                    let again = if *trusted_before { " again" } else { "" };
                    *trusted_before = true;
                    tracing::info!(
                        "cache: Redis trusted{again} ({} owed bump(s) replayed)",
                        replayed.rows
                    );
                    if !replayed.undelivered.is_empty() {
                        tracing::warn!(
                            "cache: {} namespace(s) stay owed, read with BYPASS: {}",
                            replayed.undelivered.len(),
                            replayed.reason
                        );
                    }
                }
                Err(e) => tracing::debug!("cache: still bypassing Redis: {e}"),
            }
        } else if last_topology.elapsed() >= TOPOLOGY_EVERY {
            *last_topology = Instant::now();
            self.poll_epoch().await;
            match self.store.refresh_topology().await {
                Ok(false) => {}
                Ok(true) => {
                    if self.breaker.trip() {
                        tracing::warn!(
                            "cache: a Redis master was replaced (a failover or a restart; masters now: {}); \
                             reads bypass Redis until the outbox is replayed on them",
                            self.store.master_addresses()
                        );
                    }
                }
                Err(e) => {
                    if self.breaker.trip() {
                        tracing::warn!(
                            "cache: reading the Redis topology failed ({e}); reads bypass Redis until it recovers"
                        );
                    }
                }
            }
        } else if self.owed.has_owed() || self.owed.take_replay_request() {
            // Owed since the last recovery: a write of this instance that
            // raced it, or another instance's, announced over NOTIFY.
            match self.settle_owed(batch).await {
                // Retried every tick while a replica lags: not worth a warning each time.
                Ok(replayed) if !replayed.undelivered.is_empty() => tracing::debug!(
                    "cache: {} namespace(s) stay owed: {}",
                    replayed.undelivered.len(),
                    replayed.reason
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!("cache: replaying owed bumps failed: {e}"),
            }
        } else if last_sweep.elapsed() >= SWEEP_EVERY {
            *last_sweep = Instant::now();
            match self.replay(self.writer_grace, batch).await {
                // A dead writer's rows nobody announced: owed here from now on.
                Ok(replayed) => self.owe_undelivered(&replayed),
                Err(e) => tracing::warn!("cache: replaying leftover outbox rows failed: {e}"),
            }
        }
    }

    /// Replays the whole outbox, then forgets the owed namespaces it covered:
    /// their rows were committed before the snapshot, so the replay bumped
    /// them, unless their bumps did not count, which stay owed.
    async fn settle_owed(&self, batch: &mut i64) -> Result<Replayed, ReplayError> {
        let owed = self.owed.snapshot_owed();
        let replayed = self.replay(Duration::ZERO, batch).await?;
        // Owed anew before the settle, so the settle cannot clear them.
        self.owe_undelivered(&replayed);
        self.owed.settle(owed);
        Ok(replayed)
    }

    /// The namespaces a replay could not deliver are owed (read with BYPASS)
    /// until a later one does.
    fn owe_undelivered(&self, replayed: &Replayed) {
        if !replayed.undelivered.is_empty() {
            let namespaces: Vec<Namespace> = replayed.undelivered.iter().cloned().collect();
            self.owed.owe(&namespaces);
        }
    }

    /// The epoch under which the Redis processes there are now may be
    /// trusted: the current one when they are those it was trusted on, a new
    /// one when any differs (a restart from a snapshot or an AOF, a restored
    /// backup, a master replaced). What such a Redis brought back stays
    /// behind in the older epoch (`db::epoch`).
    async fn trust_epoch(&self) -> Result<(), ReplayError> {
        let runs = self
            .store
            .master_runs()
            .ok_or_else(|| ReplayError::Redis("a Redis master's run id is unknown".to_owned()))?;
        let mut conn = self
            .db
            .get()
            .await
            .map_err(|e| ReplayError::Database(e.to_string()))?;
        let trusted = epoch::trust_runs(&mut conn, &runs)
            .await
            .map_err(|e| ReplayError::Database(e.to_string()))?;
        self.epoch.adopt(trusted);
        Ok(())
    }

    /// Reads the epoch, in case an announcement of a move was missed.
    async fn poll_epoch(&self) {
        let current = match self.db.get().await {
            Ok(mut conn) => epoch::current(&mut conn).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match current {
            Ok(current) => {
                self.epoch.adopt(current.epoch);
            }
            Err(e) => tracing::debug!("cache: reading the cache epoch failed: {e}"),
        }
    }

    /// `off` (`CACHE_ENABLED=false`), `ok` (reads are served from Redis)
    /// or `degraded` (they bypass it).
    fn cache_state(&self) -> &'static str {
        match (self.report.enabled, self.breaker.lets_through()) {
            (false, _) => "off",
            (true, true) => "ok",
            (true, false) => "degraded",
        }
    }

    /// Tells `cache_instances` how this instance's cache is: `(state, epoch)`.
    async fn report(&self, (cache, epoch): (&'static str, i64)) {
        let report = instances::InstanceReport {
            instance: self.report.instance.clone(),
            started_at: self.report.started_at,
            seen_at: chrono::Utc::now(),
            cache: cache.to_owned(),
            epoch,
            owed: i64::try_from(self.owed.count()).unwrap_or(i64::MAX),
            age_secs: 0,
        };
        let reported = match self.db.get().await {
            Ok(mut conn) => instances::report(&mut conn, &report)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = reported {
            tracing::debug!("cache: reporting to cache_instances failed: {e}");
        }
    }

    /// Bumps every namespace owed by an outbox row that is due (every row no
    /// linkhub writer made, and linkhub writers' rows older than
    /// `writer_grace`), in steps of `batch` rows at most (see the module
    /// header), and deletes the rows whose bumps counted.
    async fn replay(
        &self,
        writer_grace: Duration,
        batch: &mut i64,
    ) -> Result<Replayed, ReplayError> {
        let db = |e: String| ReplayError::Database(e);
        let mut conn = self.db.get().await.map_err(|e| db(e.to_string()))?;
        let mut replayed = Replayed::default();
        let mut after = 0;
        loop {
            let rows = outbox::pending_after(&mut conn, writer_grace, after, *batch)
                .await
                .map_err(|e| db(e.to_string()))?;
            let Some(&(last, _)) = rows.last() else {
                return Ok(replayed);
            };
            let mut namespaces: Vec<Namespace> =
                rows.iter().filter_map(|(_, ns)| ns.clone()).collect();
            namespaces.sort();
            namespaces.dedup();
            let started = Instant::now();
            let bumped = match self.store.bump(&namespaces, true).await {
                Ok(bumped) => bumped,
                Err(StoreError::Timeout(limit)) if *batch > 1 => {
                    *batch = (*batch / SHRINK).max(1);
                    tracing::debug!(
                        "cache: a replay step took longer than {limit:?}; \
                         the next ones take {batch} row(s)"
                    );
                    continue;
                }
                Err(e) => return Err(ReplayError::Redis(e.to_string())),
            };
            *batch = next_batch(
                *batch,
                rows.len(),
                started.elapsed(),
                self.store.timeout() / 2,
            );
            let undelivered: HashSet<&Namespace> = bumped.undelivered.iter().collect();
            let delivered_rows: Vec<i64> = rows
                .iter()
                .filter(|(_, ns)| ns.as_ref().is_none_or(|ns| !undelivered.contains(ns)))
                .map(|(id, _)| *id)
                .collect();
            let delivered: Vec<Namespace> = namespaces
                .into_iter()
                .filter(|ns| !undelivered.contains(ns))
                .collect();
            for ns in &delivered {
                self.metrics.cache_bump(ns.kind());
            }
            outbox::delete(&mut conn, &delivered_rows)
                .await
                .map_err(|e| db(e.to_string()))?;
            replayed.rows += delivered_rows.len();
            if replayed.reason.is_empty() {
                replayed.reason = bumped.reason.clone();
            }
            replayed.undelivered.extend(bumped.undelivered);
            self.purger.enqueue(delivered);
            after = last;
        }
    }
}

/// Rows the next replay step takes after one that was given `batch` rows,
/// found `rows` and took `took`: as many as fit in `target` at this step's
/// pace, at least a
/// [`SHRINK`]th and at most twice this step's, within 1..=[`BATCH`]. On a
/// slow link a step's replies come back a chunk at a time, so its time grows
/// with its size: a step that answered within its bound but slowly makes the
/// next one smaller before that one outlasts the bound.
fn next_batch(batch: i64, rows: usize, took: Duration, target: Duration) -> i64 {
    let grown = (batch * 2).min(BATCH);
    let floor = (batch / SHRINK).max(1);
    if took.is_zero() {
        return grown;
    }
    let fits = rows as f64 * target.as_secs_f64() / took.as_secs_f64();
    // `as` saturates: a huge or infinite quotient is `i64::MAX`, clamped below.
    (fits as i64).clamp(floor.min(grown), grown).clamp(1, BATCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: Duration = Duration::from_millis(125);

    #[test]
    fn a_fast_step_doubles_the_next_up_to_the_most() {
        assert_eq!(next_batch(100, 100, Duration::from_millis(1), TARGET), 200);
        assert_eq!(
            next_batch(BATCH, 5000, Duration::from_millis(1), TARGET),
            BATCH
        );
        assert_eq!(next_batch(1, 1, Duration::ZERO, TARGET), 2);
    }

    #[test]
    fn a_slow_step_sizes_the_next_by_its_pace() {
        // 1000 rows in 250 ms: 500 fit in 125 ms.
        assert_eq!(
            next_batch(1000, 1000, Duration::from_millis(250), TARGET),
            500
        );
        // Far too slow: a quarter at most per step, never below one row.
        assert_eq!(next_batch(1000, 1000, Duration::from_secs(10), TARGET), 250);
        assert_eq!(next_batch(1, 1, Duration::from_secs(10), TARGET), 1);
    }
}

/// Why a replay did not deliver: the rows stay either way.
#[derive(Debug, thiserror::Error)]
enum ReplayError {
    #[error("{0}")]
    Redis(String),
    #[error("database: {0}")]
    Database(String),
}
