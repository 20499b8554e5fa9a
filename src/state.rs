//! The application state: what the services reach, built once at start-up
//! by [`crate::startup`]. Extractors and middleware do not take it whole:
//! the pieces they need (the PostgreSQL pool for [`crate::auth::Caller`],
//! the [`Metrics`] for the request metrics) are registered on their own.

use std::sync::Arc;

use crate::auth::password::Hashing;
use crate::auth::throttle::LoginThrottle;
use crate::bulkhead::Bulkhead;
use crate::cache::Cache;
use crate::clicks::Clicks;
use crate::config::Settings;
use crate::db::{DbPool, ReadinessProbe};
use crate::metrics::Metrics;

/// What every use case can reach.
pub struct AppState {
    pub db: DbPool,
    pub cache: Cache,
    /// The counting of link clicks (its journal, applier, adopter and visitor merges).
    pub clicks: Arc<Clicks>,
    pub metrics: Arc<Metrics>,
    pub login_throttle: LoginThrottle,
    /// The bounded password hashing slots and their queue.
    pub hashing: Hashing,
    pub settings: Settings,
    /// `/readyz`'s own PostgreSQL connection.
    pub readiness: ReadinessProbe,
    /// The share of the pool the users list's loads may take.
    pub list_loads: Bulkhead,
}
