//! Recovery: the only way the breaker closes. While it is open, this task
//! pings Redis; once Redis answers, it replays the whole outbox — the bumps
//! owed by every instance's writes, including this one's before a restart —
//! and only then lets reads use Redis again. While it is closed, it settles
//! bumps owed since, and now and then replays the rows that stayed behind (a
//! writer that died between its commit and its bump).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::breaker::Breaker;
use super::owed::OwedBumps;
use super::purge::Purger;
use super::store::Store;
use crate::db::{DbPool, outbox};
use crate::metrics::Metrics;
use crate::tasks::BackgroundTasks;

/// How often an open breaker retries.
const RETRY_EVERY: Duration = Duration::from_millis(200);
/// How often leftover rows are looked for while healthy.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
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
        let mut trusted_before = false;
        let listening_by = Instant::now() + recovery.listen_wait;
        while !recovery.owed.is_listening() && Instant::now() < listening_by {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        loop {
            recovery.tick(&mut last_sweep, &mut trusted_before).await;
            recovery.first_attempt_done.send_replace(true);
            tokio::time::sleep(RETRY_EVERY).await;
        }
    });
}

impl Recovery {
    /// `trusted_before`: whether this process has trusted Redis yet, so the
    /// log says "trusted" on the first start and "trusted again" after an outage.
    async fn tick(&self, last_sweep: &mut Instant, trusted_before: &mut bool) {
        if !self.breaker.lets_through() {
            if !self.owed.is_listening() {
                // Other instances' owed bumps could not reach this one.
                tracing::debug!("cache: still bypassing Redis: not listening for owed bumps yet");
                return;
            }
            let recovered = match self.store.ping().await {
                Ok(()) => self.settle_owed().await,
                Err(e) => Err(e.to_string()),
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
        } else if self.owed.has_owed() || self.owed.take_replay_request() {
            // Owed since the last recovery: a write of this instance that
            // raced it, or another instance's, announced over NOTIFY.
            if let Err(e) = self.settle_owed().await {
                tracing::warn!("cache: replaying owed bumps failed: {e}");
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
    async fn settle_owed(&self) -> Result<usize, String> {
        let owed = self.owed.snapshot_owed();
        let replayed = self.replay(0).await?;
        self.owed.settle(owed);
        Ok(replayed)
    }

    /// Bumps every namespace with an outbox row at least `min_age_secs` old,
    /// then deletes those rows. Returns how many rows were replayed.
    async fn replay(&self, min_age_secs: i32) -> Result<usize, String> {
        let mut conn = self.db.get().await.map_err(|e| e.to_string())?;
        let mut replayed = 0;
        loop {
            let pending = outbox::pending(&mut conn, min_age_secs, BATCH)
                .await
                .map_err(|e| e.to_string())?;
            if pending.ids.is_empty() {
                return Ok(replayed);
            }
            self.store
                .bump(&pending.namespaces)
                .await
                .map_err(|e| e.to_string())?;
            for ns in &pending.namespaces {
                self.metrics.cache_bump(ns.kind());
            }
            outbox::delete(&mut conn, &pending.ids)
                .await
                .map_err(|e| e.to_string())?;
            replayed += pending.ids.len();
            self.purger.enqueue(pending.namespaces);
        }
    }
}
