//! Operations: readiness and the metrics snapshot.

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

/// The Prometheus text of every metric, the pool gauges read just now.
pub fn metrics_text(state: &AppState) -> String {
    state.metrics.set_db_pool(&state.db.status());
    let redis = state.cache.redis_connections();
    state.metrics.set_redis_connections(redis.open, redis.max);
    state.metrics.set_cache_near_bytes(state.cache.near_bytes());
    state.metrics.render()
}
