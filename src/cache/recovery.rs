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
//! too: a replica that does not acknowledge it leaves the rows and the owed
//! namespaces as they were, and the next tick tries again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::breaker::Breaker;
use super::owed::OwedBumps;
use super::purge::Purger;
use super::store::{Store, StoreError};
use crate::db::{DbPool, outbox};
use crate::metrics::Metrics;
use crate::tasks::BackgroundTasks;

/// How often an open breaker retries.
const RETRY_EVERY: Duration = Duration::from_millis(200);
/// How often leftover rows are looked for while healthy.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// How often the masters are read to notice a failover: a round trip per
/// master and one `CLUSTER NODES` per second, off the request path.
const TOPOLOGY_EVERY: Duration = Duration::from_secs(1);
/// Rows younger than this are still being delivered by their own writer.
const LEFTOVER_AGE_SECS: i32 = 10;
/// Rows per replay step; their namespaces are deduplicated, so a long outage
/// of writes to few namespaces costs few bumps.
const BATCH: i64 = 5000;

/// What recovery works with; built by [`super::Cache::start`].
pub struct Recovery {
    pub store: Arc<Store>,
    pub breaker: Arc<Breaker>,
    pub owed: Arc<OwedBumps>,
    pub db: DbPool,
    pub purger: Purger,
    pub metrics: Arc<Metrics>,
    /// Set once the first attempt is over, whatever its outcome: the start
    /// waits for it, so that a fresh instance serves from the cache at once.
    pub first_attempt_done: tokio::sync::watch::Sender<bool>,
    /// How long the first attempt waits for the owed-bump listener to subscribe.
    pub listen_wait: Duration,
}

/// The first attempt runs at once (after the listener subscribed, or
/// `listen_wait`), not after a retry period: a fresh instance replays the
/// outbox and trusts Redis before it answers its first request.
pub fn start(tasks: &BackgroundTasks, recovery: Recovery) {
    tasks.spawn("cache_recovery", async move {
        let mut last_sweep = Instant::now();
        let mut last_topology = Instant::now();
        let mut trusted_before = false;
        let listening_by = Instant::now() + recovery.listen_wait;
        while !recovery.owed.is_listening() && Instant::now() < listening_by {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        loop {
            recovery
                .tick(&mut last_sweep, &mut last_topology, &mut trusted_before)
                .await;
            recovery.first_attempt_done.send_replace(true);
            tokio::time::sleep(RETRY_EVERY).await;
        }
    });
}

impl Recovery {
    /// `trusted_before`: whether this process has trusted Redis yet, so the
    /// log says "trusted" on the first start and "trusted again" after an outage.
    async fn tick(
        &self,
        last_sweep: &mut Instant,
        last_topology: &mut Instant,
        trusted_before: &mut bool,
    ) {
        if !self.breaker.lets_through() {
            if !self.owed.is_listening() {
                // Other instances' owed bumps could not reach this one.
                tracing::debug!("cache: still bypassing Redis: not listening for owed bumps yet");
                return;
            }
            // The replay's bumps wait for the replicas of the masters there
            // are now, not of the ones that failed.
            let recovered = match self.store.refresh_topology().await {
                Ok(_) => {
                    *last_topology = Instant::now();
                    self.settle_owed().await
                }
                Err(e) => Err(ReplayError::Redis(e.to_string())),
            };
            match recovered {
                Ok(replayed) => {
                    self.breaker.close();
                    if !self.owed.is_listening() {
                        // The listener lost its connection meanwhile; its trip
                        // may have come before this close.
                        self.breaker.trip();
                        return;
                    }
                    let again = if *trusted_before { " again" } else { "" };
                    *trusted_before = true;
                    tracing::info!(
                        "cache: Redis trusted{again} ({replayed} owed bump(s) replayed)"
                    );
                }
                Err(e) => tracing::debug!("cache: still bypassing Redis: {e}"),
            }
        } else if last_topology.elapsed() >= TOPOLOGY_EVERY {
            *last_topology = Instant::now();
            match self.store.refresh_topology().await {
                Ok(false) => {}
                Ok(true) => {
                    if self.breaker.trip() {
                        tracing::warn!(
                            "cache: the Redis masters changed (a failover, a resharding or a restart); \
                             reads bypass Redis until the outbox is replayed on them"
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
            match self.settle_owed().await {
                Ok(_) => {}
                // Retried every tick while a replica lags: not worth a warning each time.
                Err(e @ ReplayError::NotReplicated(_)) => {
                    tracing::debug!("cache: owed bumps stay owed: {e}")
                }
                Err(e) => tracing::warn!("cache: replaying owed bumps failed: {e}"),
            }
        } else if last_sweep.elapsed() >= SWEEP_EVERY {
            *last_sweep = Instant::now();
            if let Err(e) = self.replay(LEFTOVER_AGE_SECS).await {
                tracing::warn!("cache: replaying leftover outbox rows failed: {e}");
            }
        }
    }

    /// Replays the whole outbox, then forgets the owed namespaces it covered:
    /// their rows were committed before the snapshot, so the replay bumped them.
    async fn settle_owed(&self) -> Result<usize, ReplayError> {
        let owed = self.owed.snapshot_owed();
        let replayed = self.replay(0).await?;
        self.owed.settle(owed);
        Ok(replayed)
    }

    /// Bumps every namespace with an outbox row at least `min_age_secs` old,
    /// then deletes those rows. Returns how many rows were replayed.
    async fn replay(&self, min_age_secs: i32) -> Result<usize, ReplayError> {
        let db = |e: String| ReplayError::Database(e);
        let mut conn = self.db.get().await.map_err(|e| db(e.to_string()))?;
        let mut replayed = 0;
        loop {
            let pending = outbox::pending(&mut conn, min_age_secs, BATCH)
                .await
                .map_err(|e| db(e.to_string()))?;
            if pending.ids.is_empty() {
                return Ok(replayed);
            }
            self.store
                .bump(&pending.namespaces)
                .await
                .map_err(|e| match e {
                    StoreError::NotReplicated { .. } => ReplayError::NotReplicated(e.to_string()),
                    other => ReplayError::Redis(other.to_string()),
                })?;
            for ns in &pending.namespaces {
                self.metrics.cache_bump(ns.kind());
            }
            outbox::delete(&mut conn, &pending.ids)
                .await
                .map_err(|e| db(e.to_string()))?;
            replayed += pending.ids.len();
            self.purger.enqueue(pending.namespaces);
        }
    }
}

/// Why a replay did not deliver: the rows stay either way.
#[derive(Debug, thiserror::Error)]
enum ReplayError {
    #[error("{0}")]
    Redis(String),
    /// Redis took the bumps, no replica acknowledged them (yet).
    #[error("{0}")]
    NotReplicated(String),
    #[error("database: {0}")]
    Database(String),
}
