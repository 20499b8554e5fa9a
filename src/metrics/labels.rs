//! The labels of linkhub's metrics: the closed sets of values a series
//! may carry (methods, routes, cache results, the observer's verdicts), and
//! the resolved-series map that lets a request find its series without
//! hashing label strings. Kept apart from the registry (`mod.rs`) so that
//! what a label may hold is read in one place: an open label set is a
//! series per client-chosen value, a memory a client could grow.

use std::collections::HashMap;
use std::sync::RwLock;

/// The `route` label of a request that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// The `method` label: the methods HTTP defines, and `OTHER` for any other
/// (HTTP lets a client send any token as its method).
pub fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == method)
        .unwrap_or("OTHER")
}

/// The route pattern of a resource, set as its app data where the routing
/// table is built, so that the request metrics label a request without
/// asking the router again (`HttpRequest::match_pattern` walks the table and
/// runs its regexes once more, on every request).
#[derive(Debug, Clone, Copy)]
pub struct RoutePattern(pub &'static str);

/// A request's route label: a pattern of the routing table, known when the
/// table was built, or one read off the router afterwards (the Swagger UI's
/// files, unmatched paths).
pub enum RouteLabel<'a> {
    Static(&'static str),
    Found(&'a str),
}

/// Series of one family already resolved, by a key that is cheap to hash
/// (addresses of `'static` labels, numbers): `with_label_values` hashes
/// every label string each time, on every request.
pub(super) struct Resolved<K, S> {
    series: RwLock<HashMap<K, S>>,
}

impl<K: std::hash::Hash + Eq, S: Clone> Resolved<K, S> {
    pub(super) fn new() -> Self {
        Self {
            series: RwLock::new(HashMap::new()),
        }
    }

    pub(super) fn get(&self, key: K, resolve: impl FnOnce() -> S) -> S {
        if let Some(series) = self
            .series
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&key)
        {
            return series.clone();
        }
        let series = resolve();
        self.series
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(key, series.clone());
        series
    }
}

/// The address of a `'static` label: equal labels from one literal share it.
pub(super) fn address(label: &'static str) -> usize {
    label.as_ptr() as usize
}

/// Why the consistency observer gave a sampled read no verdict (each is
/// counted as `skipped` too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifySkip {
    /// A write moved the namespace's version (or the cache epoch), or was
    /// committed and its bump not yet delivered: the served entry may
    /// rightly differ from PostgreSQL.
    Raced,
    /// Redis was not trusted at the time (breaker open, a bump owed, a new
    /// trust period since the read): its versions prove nothing.
    Untrusted,
    /// Sampled beyond `CACHE_VERIFY_PER_SECOND`: the check was never made.
    Rate,
    /// The observer's queue was full: the check was never made.
    Dropped,
    /// PostgreSQL had no connection to spare: requests come first.
    Busy,
    /// Redis or PostgreSQL failed during the check.
    Failed,
}

impl VerifySkip {
    pub const ALL: [Self; 6] = [
        Self::Raced,
        Self::Untrusted,
        Self::Rate,
        Self::Dropped,
        Self::Busy,
        Self::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raced => "raced",
            Self::Untrusted => "untrusted",
            Self::Rate => "rate",
            Self::Dropped => "dropped",
            Self::Busy => "busy",
            Self::Failed => "failed",
        }
    }
}

/// The `result` labels of `linkhub_cache_verify_total`, in the order of
/// [`Metrics`]'s resolved series.
pub(super) const VERIFY_RESULTS: [&str; 3] = ["fresh", "stale", "skipped"];

/// How a cached read was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheResult {
    Hit,
    Miss,
    Bypass,
}

impl CacheResult {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
            Self::Bypass => "BYPASS",
        }
    }
}
