//! How the cache is set up: the part of the settings it reads, and the
//! durations derived from them. Kept apart from the protocol (`mod.rs`) so
//! that what an operator configures reads in one place.

use std::time::Duration;

use super::store::CounterLifetimes;
use super::verify::ObserverConfig;
use crate::config::{RedisTopology, Settings};

/// How the cache is set up: the part of [`Settings`] it reads.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub topology: RedisTopology,
    /// For the dedicated connection that listens for other instances' owed bumps.
    pub database_url: String,
    pub prefix: String,
    pub pool_size: usize,
    pub timeout: Duration,
    /// `CACHE_NEAR_MAX_BYTES`: the near cache's bound; 0 turns it off.
    pub near_max_bytes: u64,
    pub ttl: Duration,
    /// TTL of cached `404`s and of counters a read created.
    pub negative_ttl: Duration,
    /// Cap of page and search entries per namespace version.
    pub max_entries_per_version: u64,
    pub enabled: bool,
    /// `REDIS_CA_FILE`: verify `rediss://` servers against this CA only.
    pub ca_file: Option<std::path::PathBuf>,
    /// `CACHE_JANITOR_KEYS_PER_SEC`: the janitor's SCAN budget (0: no janitor).
    pub janitor_keys_per_sec: u64,
    /// What an entry holds: a short digest of the shapes of the cached
    /// resources and of the page template (`startup` derives it), part of
    /// every entry key. Two releases whose entries differ in shape never
    /// read each other's entries; the counters are shared, so a write
    /// through either invalidates both.
    pub format: String,
    /// `CACHE_VERIFY_*`: the consistency observer (`verify/`).
    pub observer: ObserverConfig,
}

impl From<&Settings> for CacheConfig {
    fn from(settings: &Settings) -> Self {
        Self {
            topology: settings.redis_topology(),
            database_url: settings.database_url.clone(),
            prefix: settings.cache_prefix.clone(),
            pool_size: settings.redis_pool_size,
            timeout: settings.redis_timeout,
            near_max_bytes: settings.cache_near_max_bytes,
            ttl: settings.cache_ttl,
            negative_ttl: settings.cache_negative_ttl.min(settings.cache_ttl),
            max_entries_per_version: settings.cache_max_entries_per_version,
            enabled: settings.cache_enabled,
            ca_file: settings.redis_ca_file.clone(),
            janitor_keys_per_sec: settings.cache_janitor_keys_per_sec,
            format: String::new(),
            observer: ObserverConfig {
                sample: settings.cache_verify_sample,
                per_second: settings.cache_verify_per_second,
                settle: settings.cache_verify_settle,
                queue: settings.cache_verify_queue,
                db_connections: settings.cache_verify_db_connections,
            },
        }
    }
}

impl CacheConfig {
    /// How long a linkhub writer's own outbox rows are left to it before
    /// other instances deliver them: its bump and `WAIT` take at most
    /// twice the Redis timeout, and a second on top keeps the others from
    /// bumping what is being delivered.
    pub(super) fn writer_grace(&self) -> Duration {
        self.timeout * 2 + Duration::from_secs(1)
    }

    /// Counters outlive every entry stored under them (twice the longest
    /// entry TTL), except the ones a read creates: those may be of something
    /// that does not exist, so they live as long as a cached `404`.
    pub(super) fn counter_lifetimes(&self) -> CounterLifetimes {
        CounterLifetimes {
            created_by_read: self.negative_ttl,
            bumped: self.ttl * 2,
        }
    }
}
