//! Distinct visitors per link and UTC day. A visitor is a digest of the
//! client address and user agent under the day's salt (`click_salts`, one
//! per day shared by every instance, removed after two days): neither the
//! address nor the user agent is kept, only the register and rank the digest
//! lands on in the link-day's HyperLogLog sketch (`hll.rs`).
//!
//! The redirect never waits long for PostgreSQL here: the day's salt is
//! loaded by the merge task (each tick, so also just after midnight), and a
//! redirect that finds none loaded waits at most `SALT_WAIT` for it; when
//! PostgreSQL is away, the click is journaled and counted without its
//! visitor (for `SALT_RETRY`, no redirect waits at all).
//!
//! Observations of counted clicks gather in process, one entry per
//! link-day and register, and are merged into PostgreSQL every
//! `CLICKS_VISITORS_FLUSH_MS` (`db::clicks::merge_sketches`: the stored
//! sketch, locked, raised register-wise, its estimate stored beside it). At
//! most `CLICKS_VISITORS_PENDING_MAX` entries wait; past that an observation
//! is dropped and counted (`linkhub_click_visitors_dropped_total`). Visitors
//! are an estimate, unlike clicks: each click's journal record carries its
//! register and rank too, and adoption merges those of a dead process's
//! segment (`adopt.rs`), so a `kill -9` loses only the observations of
//! segments it had already applied but not yet merged.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use rand::RngExt;
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::hll::{Observation, Sketch};
use crate::db::clicks::{MergedSketch, StoredSketch};
use crate::db::{self, DbPool};
use crate::metrics::Metrics;

/// Who clicked, as the request shows it; hashed at once, never kept.
#[derive(Debug, Clone, Copy)]
pub struct Visitor<'a> {
    pub address: Option<IpAddr>,
    pub user_agent: &'a [u8],
}

/// Link-day → register → highest rank seen since the last merge.
type Observed = HashMap<(i64, NaiveDate), HashMap<u16, u8>>;

#[derive(Default)]
struct Pending {
    observed: Observed,
    /// Register entries in `observed`, the bounded quantity.
    entries: usize,
}

/// How long a redirect waits for the day's salt when none is loaded.
const SALT_WAIT: Duration = Duration::from_millis(100);

/// After a salt load failed or took longer than `SALT_WAIT`, redirects stop
/// waiting for one for this long (the merge task keeps trying).
const SALT_RETRY: Duration = Duration::from_secs(1);

pub(super) struct Visitors {
    db: DbPool,
    metrics: Arc<Metrics>,
    /// The salt of the day it was loaded for.
    salt: RwLock<Option<(NaiveDate, Arc<[u8]>)>>,
    /// One salt load at a time: a burst at midnight asks PostgreSQL once.
    loading: tokio::sync::Mutex<()>,
    /// Until when redirects do not wait for a salt.
    salt_retry_at: Mutex<Option<Instant>>,
    pending: Mutex<Pending>,
    pending_max: usize,
    /// Wakes the merge early when half the bound is reached.
    full: Notify,
}

impl Visitors {
    pub fn new(db: DbPool, metrics: Arc<Metrics>, pending_max: usize) -> Self {
        Self {
            db,
            metrics,
            salt: RwLock::new(None),
            loading: tokio::sync::Mutex::new(()),
            salt_retry_at: Mutex::new(None),
            pending: Mutex::new(Pending::default()),
            pending_max,
            full: Notify::new(),
        }
    }

    /// Where `visitor` lands in `day`'s sketches; `None` when the day's
    /// salt cannot be had at once (PostgreSQL away: the click still counts).
    pub async fn observation(&self, day: NaiveDate, visitor: Visitor<'_>) -> Option<Observation> {
        let salt = match self.loaded_salt(day) {
            Some(salt) => salt,
            None => self.salt_within_wait(day).await?,
        };
        let mut digest = Sha256::new();
        digest.update(&salt);
        match visitor.address {
            Some(IpAddr::V4(v4)) => digest.update(v4.to_ipv6_mapped().octets()),
            Some(IpAddr::V6(v6)) => digest.update(v6.octets()),
            None => digest.update([0u8; 16]),
        }
        digest.update(visitor.user_agent);
        let digest = digest.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        Some(Observation::of(u64::from_le_bytes(first)))
    }

    fn loaded_salt(&self, day: NaiveDate) -> Option<Arc<[u8]>> {
        match &*self.salt.read().unwrap_or_else(|p| p.into_inner()) {
            Some((loaded, salt)) if *loaded == day => Some(Arc::clone(salt)),
            _ => None,
        }
    }

    /// The salt of `day` if it loads within `SALT_WAIT`, and no load
    /// failed in the last `SALT_RETRY`.
    async fn salt_within_wait(&self, day: NaiveDate) -> Option<Arc<[u8]>> {
        let retry_at = || self.salt_retry_at.lock().unwrap_or_else(|p| p.into_inner());
        if retry_at().is_some_and(|at| Instant::now() < at) {
            return None;
        }
        let loaded = tokio::time::timeout(SALT_WAIT, self.salt_of(day))
            .await
            .ok()
            .flatten();
        if loaded.is_none() {
            *retry_at() = Some(Instant::now() + SALT_RETRY);
        }
        loaded
    }

    async fn salt_of(&self, day: NaiveDate) -> Option<Arc<[u8]>> {
        if let Some(salt) = self.loaded_salt(day) {
            return Some(salt);
        }
        let _one_at_a_time = self.loading.lock().await;
        if let Some(salt) = self.loaded_salt(day) {
            return Some(salt);
        }
        let fresh: [u8; 32] = rand::rng().random();
        let loaded = async {
            let mut conn = self.db.get().await.map_err(|e| e.to_string())?;
            db::clicks::salt_of(&mut conn, day, &fresh)
                .await
                .map_err(|e| e.to_string())
        };
        match loaded.await {
            Ok(salt) => {
                let salt: Arc<[u8]> = salt.into();
                *self.salt.write().unwrap_or_else(|p| p.into_inner()) =
                    Some((day, Arc::clone(&salt)));
                Some(salt)
            }
            Err(e) => {
                tracing::warn!("cannot load the visitor salt of {day}: {e}");
                None
            }
        }
    }

    /// Keeps an observation of a counted click for the next merge.
    pub fn add(&self, link_id: i64, day: NaiveDate, seen: Observation) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let Pending { observed, entries } = &mut *pending;
        let registers = observed.entry((link_id, day)).or_default();
        match registers.get_mut(&seen.register) {
            Some(rank) => *rank = (*rank).max(seen.rank),
            None if *entries < self.pending_max => {
                registers.insert(seen.register, seen.rank);
                *entries += 1;
                if *entries == self.pending_max / 2 {
                    self.full.notify_one();
                }
            }
            None => {
                if registers.is_empty() {
                    observed.remove(&(link_id, day));
                }
                self.metrics.click_visitor_dropped();
            }
        }
    }

    /// Merges what gathered every `every` (or sooner, when half the bound
    /// is reached) until `stop`, then once more.
    pub async fn run(self: Arc<Self>, every: Duration, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut sweeps = 0u64;
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = self.full.notified() => {}
                () = stop.cancelled() => {
                    self.merge().await;
                    return;
                }
            }
            self.merge().await;
            // Today's salt, loaded before a redirect asks (after midnight too).
            self.salt_of(chrono::Utc::now().date_naive()).await;
            sweeps += 1;
            // About hourly at the default interval.
            if sweeps % 3600 == 1 {
                self.forget_old_writers().await;
            }
        }
    }

    /// Merges every pending observation into PostgreSQL. On failure they go
    /// back to the pending ones (within the bound) for the next merge.
    pub async fn merge(&self) {
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if taken.observed.is_empty() {
            return;
        }
        let keys: Vec<(i64, NaiveDate)> = taken.observed.keys().copied().collect();
        let observed = &taken.observed;
        let merged = async {
            let mut conn = self.db.get().await.map_err(|e| e.to_string())?;
            db::clicks::merge_sketches(&mut conn, &keys, |stored| merge_into(stored, observed))
                .await
                .map_err(|e| e.to_string())
        };
        if let Err(e) = merged.await {
            tracing::warn!("merging visitor sketches failed, kept for the next merge: {e}");
            for ((link_id, day), registers) in taken.observed {
                for (register, rank) in registers {
                    self.add(link_id, day, Observation { register, rank });
                }
            }
        }
    }

    async fn forget_old_writers(&self) {
        if let Ok(mut conn) = self.db.get().await
            && let Err(e) = db::clicks::forget_old_writers(&mut conn).await
        {
            tracing::warn!("forgetting old click batch records failed: {e}");
        }
    }
}

/// The stored sketches raised by what was observed: one per observed
/// link-day, a new one where none was stored.
fn merge_into(stored: Vec<StoredSketch>, observed: &Observed) -> Vec<MergedSketch> {
    let mut sketches: HashMap<(i64, NaiveDate), Sketch> = stored
        .into_iter()
        .map(|s| ((s.link_id, s.day), Sketch::from_bytes(s.registers)))
        .collect();
    observed
        .iter()
        .map(|(&(link_id, day), registers)| {
            let mut sketch = sketches.remove(&(link_id, day)).unwrap_or_default();
            for (&register, &rank) in registers {
                sketch.observe(Observation { register, rank });
            }
            let visitors = i64::try_from(sketch.estimate()).unwrap_or(i64::MAX);
            MergedSketch {
                link_id,
                day,
                registers: sketch.into_bytes(),
                visitors,
            }
        })
        .collect()
}
