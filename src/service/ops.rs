//! Operations: readiness, the metrics snapshot and who may read it.

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

/// Asks PostgreSQL now; the cache's state is what the breaker says.
pub async fn readiness(state: &AppState) -> Readiness {
    Readiness {
        database_ok: state.readiness.database_answers().await,
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
