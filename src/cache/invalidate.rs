//! Invalidation, the write side of the protocol (rules 2 and 4): a committed
//! write's namespaces are bumped before it answers, and a bump Redis could
//! not take is owed, announced and left to recovery. Also the one-off
//! delivery of the CLI, which has no breaker.

use std::sync::Arc;

use tracing::Instrument;

use super::epoch::CacheEpoch;
use super::store::{Store, StoreError};
use super::{Cache, CacheConfig};
use crate::db::outbox;
use crate::namespace::Namespace;

impl Cache {
    /// Makes the entries of a committed write's namespaces unreachable, before
    /// the write answers. When Redis cannot take the bump it is owed: the
    /// outbox rows stay for recovery, and those namespaces bypass meanwhile.
    #[tracing::instrument(name = "cache.bump", level = "debug", skip_all, fields(namespaces = pending.namespaces.len()))]
    pub async fn invalidate(&self, pending: outbox::Pending) {
        if pending.namespaces.is_empty() {
            return;
        }
        // Bump under the epoch the write committed in, at least (see `epoch.rs`).
        self.epoch.adopt(pending.epoch);
        if !self.breaker.lets_through() {
            self.owe(&pending.namespaces).await;
            return;
        }
        match self.store.bump(&pending.namespaces, false).await {
            Ok(bumped) if bumped.delivered_all() => {
                for ns in &pending.namespaces {
                    self.metrics.cache_bump(ns.kind());
                }
                self.forget_outbox_rows(pending.ids);
                self.purger.enqueue(pending.namespaces);
            }
            // Redis works, but a failover could lose the bumps of a shard
            // whose replicas lag (or a slot was moving): those are owed, the
            // rows stay for recovery, and the breaker stays closed (the
            // other namespaces are fine). Counted in
            // `linkhub_cache_version_bump_failures_total`; a log line per
            // write would flood while a replica lags.
            Ok(bumped) => {
                tracing::debug!(
                    "cache: {}; owed until the replicas have them",
                    bumped.reason
                );
                let delivered: Vec<Namespace> = pending
                    .namespaces
                    .iter()
                    .filter(|ns| !bumped.undelivered.contains(ns))
                    .cloned()
                    .collect();
                for ns in &delivered {
                    self.metrics.cache_bump(ns.kind());
                }
                self.owe(&bumped.undelivered).await;
                self.purger.enqueue(delivered);
            }
            Err(e) => {
                self.redis_failed("version bump", &e);
                self.owe(&pending.namespaces).await;
            }
        }
    }

    /// Leaves a bump to the outbox: this instance bypasses the namespaces
    /// until recovery delivered it, and tells the other instances, before the
    /// write answers, to do the same (they may reach Redis and deliver it);
    /// the telling is bounded by `REDIS_TIMEOUT_MS` (`announce.rs`).
    async fn owe(&self, namespaces: &[Namespace]) {
        self.owed.owe(namespaces);
        for ns in namespaces {
            self.metrics.cache_bump_failure(ns.kind());
        }
        let announced = self.announcer.announce(namespaces).await;
        if let Err(e) = announced {
            tracing::warn!("cache: could not announce owed bumps to other instances: {e}");
        }
    }

    /// Deletes delivered outbox rows off the request path; rows that survive a
    /// failure here are only bumped once more by a later replay.
    fn forget_outbox_rows(&self, ids: Vec<i64>) {
        if ids.is_empty() {
            return;
        }
        let db = self.db.clone();
        tokio::spawn(
            async move {
                let deleted = match db.get().await {
                    Ok(mut conn) => outbox::delete(&mut conn, &ids)
                        .await
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = deleted {
                    tracing::warn!("cache: outbox rows {ids:?} stay for the next replay: {e}");
                }
            }
            .in_current_span(),
        );
    }
}

/// Bumps the namespaces of a write made outside the server (the CLI), with
/// no breaker: the caller decides what to do when Redis does not answer.
pub async fn deliver(config: &CacheConfig, pending: &outbox::Pending) -> Result<(), StoreError> {
    let epoch = Arc::new(CacheEpoch::default());
    epoch.adopt(pending.epoch);
    let store = Store::new(
        &config.topology,
        &config.prefix,
        epoch,
        1,
        config.timeout,
        config.ca_file.as_deref(),
        config.counter_lifetimes(),
    )
    .map_err(StoreError::Protocol)?;
    // Which shards have replicas to wait for.
    store.refresh_topology().await?;
    let bumped = store.bump(&pending.namespaces, true).await?;
    if bumped.delivered_all() {
        Ok(())
    } else {
        Err(StoreError::NotReplicated {
            namespaces: bumped.undelivered.len(),
            reason: bumped.reason,
        })
    }
}
