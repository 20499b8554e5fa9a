//! Operations: readiness, the metrics snapshot and who may read it.
//!
//! Readiness is one shared check ([`SharedReadiness`]): at most one
//! PostgreSQL check is in flight, and its answer serves every `/readyz` for
//! `READINESS_REUSE_MS`. A flood of `/readyz` then costs no query and no
//! wait behind other queries, so it cannot make the orchestrator's own probe
//! time out and pull a healthy instance out of service.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use subtle::ConstantTimeEq;

use crate::auth::token;
use crate::config::Secret;
use crate::db;
use crate::error::ApiError;
use crate::state::AppState;

/// What `/readyz` reports.
pub struct Readiness {
    /// PostgreSQL answered a trivial query.
    pub database_ok: bool,
    /// `ok`, or `degraded` while reads bypass Redis.
    pub cache: &'static str,
}

/// The database part of readiness, shared by every `/readyz` of the
/// process; registered once as app data by startup.
pub struct SharedReadiness {
    reuse: Duration,
    /// When the last check ended, and what it found.
    last: Mutex<Option<(Instant, bool)>>,
    /// Held by the one check in flight; the others wait for its answer.
    in_flight: tokio::sync::Mutex<()>,
}

impl SharedReadiness {
    /// A check's answer serves for `reuse`.
    pub fn new(reuse: Duration) -> Self {
        Self {
            reuse,
            last: Mutex::new(None),
            in_flight: tokio::sync::Mutex::new(()),
        }
    }

    /// The last check's answer while it is fresh; else the answer of the
    /// check in flight, or of a new one this call makes. A check is bounded
    /// by `READINESS_TIMEOUT_MS`, so the wait is too.
    async fn database_ok(&self, state: &AppState) -> bool {
        if let Some(ok) = self.fresh() {
            return ok;
        }
        let _checking = self.in_flight.lock().await;
        // The check this call waited for answered meanwhile.
        if let Some(ok) = self.fresh() {
            return ok;
        }
        state.metrics.readiness_check();
        let ok = state.readiness.database_answers().await;
        *self.lock() = Some((Instant::now(), ok));
        ok
    }

    fn fresh(&self) -> Option<bool> {
        let last = *self.lock();
        last.filter(|(at, _)| at.elapsed() < self.reuse)
            .map(|(_, ok)| ok)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<(Instant, bool)>> {
        self.last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// PostgreSQL's answer through the shared check; the cache's state is
/// what the breaker says now.
pub async fn readiness(state: &AppState, shared: &SharedReadiness) -> Readiness {
    Readiness {
        database_ok: shared.database_ok(state).await,
        cache: state.cache.status(),
    }
}

/// `/metrics` is open when no `METRICS_TOKEN` is set; else it needs that
/// token as its bearer token (`401` without it). The digests are compared,
/// in constant time, so that neither the token's bytes nor its length can
/// be found by timing the answers.
pub fn may_read_metrics(
    required: Option<&Secret>,
    presented: Option<&str>,
) -> Result<(), ApiError> {
    let Some(required) = required else {
        return Ok(());
    };
    let presented = presented.ok_or(ApiError::Unauthorized)?;
    let matches = token::digest(presented).ct_eq(&token::digest(required.expose()));
    if bool::from(matches) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// The Prometheus text of every metric, the pool gauges and the outbox's
/// row count read just now.
pub async fn metrics_text(state: &AppState) -> String {
    if let Some(rows) = outbox_rows(state).await {
        state.metrics.set_cache_outbox_rows(rows);
    }
    state.metrics.set_db_pool(&state.db.status());
    let redis = state.cache.redis_connections();
    state.metrics.set_redis_connections(redis.open, redis.max);
    state.metrics.set_cache_near_bytes(state.cache.near_bytes());
    state.metrics.render()
}

/// The outbox's rows, for the owed-bumps gauge: one `count(*)` per scrape on
/// a pooled connection, bounded by `READINESS_TIMEOUT_MS` so that a slow
/// PostgreSQL does not hold the scrape. `None` (the gauge keeps its last
/// value) when PostgreSQL does not answer in time.
async fn outbox_rows(state: &AppState) -> Option<i64> {
    let count = async {
        let mut conn = state.db.get().await.ok()?;
        db::outbox::count(&mut conn).await.ok()
    };
    tokio::time::timeout(state.settings.readiness_timeout, count)
        .await
        .ok()
        .flatten()
}
