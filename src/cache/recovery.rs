//! Recovery: the only way the breaker closes. While it is open, this task
//! pings Redis; once Redis answers, it replays the whole outbox — the bumps
//! owed by every instance's writes, including this one's before a restart —
//! and only then lets reads use Redis again. While it is closed, it replays
//! now and then the rows that stayed behind (a writer that died between its
//! commit and its bump).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::health::Health;
use super::purge::Purger;
use super::store::Store;
use crate::db::{DbPool, outbox};
use crate::metrics::Metrics;

/// How often an open breaker retries.
const RETRY_EVERY: Duration = Duration::from_millis(200);
/// How often leftover rows are looked for while healthy.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Rows younger than this are still being delivered by their own writer.
const LEFTOVER_AGE_SECS: i32 = 10;
const BATCH: i64 = 500;

pub fn start(
    store: Arc<Store>,
    health: Arc<Health>,
    db: DbPool,
    purger: Purger,
    metrics: Arc<Metrics>,
) {
    tokio::spawn(async move {
        let mut last_sweep = Instant::now();
        loop {
            tokio::time::sleep(RETRY_EVERY).await;
            if !health.is_closed() {
                match recover(&store, &health, &db, &purger).await {
                    Ok(replayed) => {
                        health.close();
                        metrics.set_breaker_open(false);
                        log::info!("cache: Redis trusted again ({replayed} owed bump(s) replayed)");
                    }
                    Err(e) => log::debug!("cache: still bypassing Redis: {e}"),
                }
            } else if last_sweep.elapsed() >= SWEEP_EVERY {
                last_sweep = Instant::now();
                if let Err(e) = replay(&store, &db, &purger, LEFTOVER_AGE_SECS).await {
                    log::warn!("cache: replaying leftover outbox rows failed: {e}");
                }
            }
        }
    });
}

async fn recover(
    store: &Store,
    health: &Health,
    db: &DbPool,
    purger: &Purger,
) -> Result<usize, String> {
    store.ping().await.map_err(|e| e.to_string())?;
    let owed = health.snapshot_owed();
    let replayed = replay(store, db, purger, 0).await?;
    health.settle(owed);
    Ok(replayed)
}

/// Bumps every namespace with an outbox row at least `min_age_secs` old, then
/// deletes those rows. Returns how many rows were replayed.
async fn replay(
    store: &Store,
    db: &DbPool,
    purger: &Purger,
    min_age_secs: i32,
) -> Result<usize, String> {
    let mut conn = db.get().await.map_err(|e| e.to_string())?;
    let mut replayed = 0;
    loop {
        let pending = outbox::pending(&mut conn, min_age_secs, BATCH)
            .await
            .map_err(|e| e.to_string())?;
        if pending.ids.is_empty() {
            return Ok(replayed);
        }
        store
            .bump(&pending.namespaces)
            .await
            .map_err(|e| e.to_string())?;
        outbox::delete(&mut conn, &pending.ids)
            .await
            .map_err(|e| e.to_string())?;
        replayed += pending.ids.len();
        purger.enqueue(pending.namespaces);
    }
}
