//! The cache: cache-aside reads from Redis with versioned namespaces, and
//! invalidation that keeps read-your-writes under races and faults. This is
//! the reference implementation of the protocol; everything Redis lives below
//! this module, and the service layer only calls [`Cache::read`] and
//! [`Cache::invalidate`].
//!
//! # The rules
//! 1. **Versions are taken before the database read.** A lookup returns the
//!    namespace's version together with the entry (one round trip, a script);
//!    on a miss the row is loaded afterwards and stored under *that* version.
//!    A reader that raced a write stores its old row under a version nobody
//!    asks for again (the stale-set race of cache-aside).
//! 2. **Bump strictly after commit, before answering.** A write records the
//!    namespaces it changed in `cache_outbox` inside its transaction, commits,
//!    then bumps each counter. Bumping earlier would let a reader pair the new
//!    version with the old row.
//! 3. **Counters never reset.** A missing counter (evicted, deleted, expired,
//!    Redis restarted) is re-created from the Redis clock in microseconds,
//!    above any value it held, never 0 or 1, so old entries can never become
//!    reachable. Counters (and indexes) live outside every SCAN pattern. They
//!    expire too: a bump gives a counter `2 × CACHE_TTL_SECS`, storing an
//!    entry under it makes it live at least as long as that entry, and one a
//!    read creates lives `CACHE_NEGATIVE_TTL_SECS` (the read may be of
//!    something that does not exist). Expiry is one more way of going
//!    missing, so it takes the same path back: the clock.
//! 4. **A bump that failed is owed.** Its outbox rows stay; its namespaces
//!    are read with BYPASS here; the breaker opens; recovery replays the whole
//!    outbox (every instance's owed bumps) before the cache is trusted again —
//!    also after a restart, since the breaker starts open. At start the first
//!    replay runs before the server answers (bounded: 8 × `REDIS_TIMEOUT_MS`), so
//!    a fresh instance serves from Redis at once when Redis is up.
//!    A bump counts once every replica of its shard acknowledges it (`WAIT`,
//!    in the store's bumps); one they did not all acknowledge in time is owed
//!    the same way (its namespaces only), the breaker aside, since a failover
//!    could lose it.
//! 5. **Removal off the request path, and never a pass per write.** Every
//!    stored entry is listed in its namespace's index (a sorted set scored by
//!    version, same hash tag: `keys.rs`, `index.rs`). After a bump, a
//!    background task removes, through the index, the entries of versions
//!    older than the new one — one script per namespace, whose cost is what
//!    the namespace holds, not what Redis holds (`purge.rs`). A budgeted
//!    `SCAN MATCH` janitor (never `KEYS`; at most `CACHE_JANITOR_KEYS_PER_SEC`,
//!    and only after bumps) removes what the index missed (`janitor.rs`). A
//!    failure in either is logged and left to the TTL and the next pass.
//!    Removal is never what makes a read fresh — the versions are — so
//!    whatever both miss is only memory until its TTL.
//! 6. **TTL on every entry** (`SET .. EX`, at most `CACHE_TTL_SECS`, jittered
//!    down; a `404` gets `CACHE_NEGATIVE_TTL_SECS`). An entry is stored only
//!    while its counter still holds the version it was read under: otherwise
//!    nobody could ask for it again.
//! 7. **One load per key** in a process (single-flight on the versioned key).
//!    Reads that bypass Redis hold no version, so they share a load only when
//!    it started after they arrived (a load that began earlier may predate a
//!    write acknowledged in between): a burst costs about two loads, not one
//!    per request.
//!
//! # Whether it holds in production
//! A share of the `HIT`s (`CACHE_VERIFY_SAMPLE`) is checked against
//! PostgreSQL later, off the request path, and counted fresh, stale or
//! skipped (`verify/`); a `HIT` hands its unused loader to the check.
//!
//! # What a client can grow, and the bounds
//! Everything linkhub writes to Redis has a TTL. The reads a client can make
//! up without end are bounded so: a read of an id or name that does not exist
//! leaves a counter and a `404` entry that live `CACHE_NEGATIVE_TTL_SECS`
//! (60 s); pages and searches (the open-ended [`keys::QueryKey`]s:
//! `links:p…`, `list:p…:s…`) are stored at most `CACHE_MAX_ENTRIES_PER_VERSION` (1000)
//! times per namespace version within one count lifetime (a key of the
//! version, `…:<version>:stored`, with the first entry's TTL), so at most
//! twice that many are alive; past the cap such reads are served (`MISS`) but
//! not stored. The one-entry-per-namespace reads (`user`, `profile`, …) are
//! never capped, so an attacker filling a cap cannot evict a profile.

mod announce;
pub mod breaker;
mod config;
mod entry;
mod epoch;
mod index;
mod invalidate;
mod janitor;
pub mod keys;
pub mod limits;
mod listener;
mod load;
mod near;
mod owed;
mod purge;
mod recovery;
pub mod single_flight;
pub mod store;
mod tls;
mod topology;
mod verify;

use std::sync::Arc;
use std::time::Duration;

use self::announce::Announcer;
use self::breaker::Breaker;
pub use self::config::CacheConfig;
pub use self::entry::{Entry, Loaded, ReadError};
use self::epoch::CacheEpoch;
pub use self::invalidate::deliver;
use self::janitor::Janitor;
use self::keys::QueryKey;
use self::near::NearCache;
use self::owed::OwedBumps;
use self::purge::Purger;
use self::single_flight::{FreshFlights, SingleFlight};
use self::store::{ConnectionsStatus, Lookup, Store, StoreError};
pub use self::verify::ObserverConfig;
use self::verify::{Hit, Observer, Watched};
use crate::db::DbPool;
use crate::metrics::{CacheResult, Metrics};
use crate::namespace::Namespace;
use crate::tasks::BackgroundTasks;

/// A read's answer and how it was served.
#[derive(Debug, Clone)]
pub struct Served {
    pub entry: Arc<Entry>,
    pub result: CacheResult,
}

/// What a shared load hands to every reader waiting on it.
type LoadOutcome = Result<Arc<Entry>, ReadError>;

/// The cache of every read (the module header states its rules). One per
/// process, shared by every worker: its single-flight maps, near cache and
/// breaker only work when all requests of the process go through the same one.
pub struct Cache {
    store: Arc<Store>,
    /// The cache epoch this process builds keys with (`epoch.rs`).
    epoch: Arc<CacheEpoch>,
    /// What an entry holds, as a short digest in every entry key (see
    /// [`CacheConfig::format`]).
    format: String,
    breaker: Arc<Breaker>,
    owed: Arc<OwedBumps>,
    /// Tells the other instances what this one's writers owe (`announce.rs`).
    announcer: Announcer,
    metrics: Arc<Metrics>,
    flights: SingleFlight<LoadOutcome>,
    bypass_flights: FreshFlights<LoadOutcome>,
    near: NearCache,
    /// Checks a share of the `HIT`s against PostgreSQL (`verify/`).
    observer: Observer,
    purger: Purger,
    db: DbPool,
    enabled: bool,
    ttl: Duration,
    negative_ttl: Duration,
    max_entries_per_version: u64,
    /// Becomes `true` once recovery's first attempt is over (see [`Cache::warm_up`]).
    first_recovery: tokio::sync::watch::Receiver<bool>,
    /// How long the start waits for that first attempt.
    warm_up_within: Duration,
}

impl Cache {
    /// Sets up the store (no connection is made yet) and starts the background
    /// tasks: recovery (closes the breaker once the outbox is replayed), the
    /// purger and the janitor it wakes. [`Cache::warm_up`] waits for
    /// recovery's first attempt.
    pub fn start(
        config: CacheConfig,
        db: DbPool,
        metrics: Arc<Metrics>,
        tasks: &BackgroundTasks,
    ) -> Result<Self, String> {
        let epoch = Arc::new(CacheEpoch::default());
        let store = Arc::new(Store::new(
            &config.topology,
            &config.prefix,
            Arc::clone(&epoch),
            config.pool_size,
            config.timeout,
            config.ca_file.as_deref(),
            config.counter_lifetimes(),
        )?);
        let breaker = Arc::new(Breaker::new(metrics.breaker_open_gauge()));
        let owed = Arc::new(OwedBumps::default());
        let janitor = if config.enabled {
            Janitor::start(
                tasks,
                Arc::clone(&store),
                Arc::clone(&metrics),
                config.janitor_keys_per_sec,
            )
        } else {
            Janitor::default()
        };
        let purger = Purger::start(tasks, Arc::clone(&store), Arc::clone(&metrics), janitor);
        // An instance with the cache off reads nothing from Redis, but
        // delivers what is owed like any other: its own writes' bumps, and
        // the changes made outside the API (nobody else may be running).
        // Its start does not wait for Redis.
        let (first_recovery_done, first_recovery) = tokio::sync::watch::channel(!config.enabled);
        listener::start(
            tasks,
            config.database_url.clone(),
            Arc::clone(&breaker),
            Arc::clone(&owed),
            Arc::clone(&epoch),
            Arc::clone(&metrics),
        );
        recovery::start(
            tasks,
            recovery::Recovery {
                store: Arc::clone(&store),
                breaker: Arc::clone(&breaker),
                owed: Arc::clone(&owed),
                epoch: Arc::clone(&epoch),
                db: db.clone(),
                purger: purger.clone(),
                metrics: Arc::clone(&metrics),
                first_attempt_done: first_recovery_done,
                // Subscribing is one PostgreSQL connection and a `LISTEN`.
                listen_wait: config.timeout * 4,
                writer_grace: config.writer_grace(),
                report: recovery::Report::new(config.enabled),
            },
        );
        let observer = Observer::start(
            config.observer,
            config.enabled,
            Watched {
                store: Arc::clone(&store),
                breaker: Arc::clone(&breaker),
                owed: Arc::clone(&owed),
                db: db.clone(),
                metrics: Arc::clone(&metrics),
                bump_within: config.writer_grace(),
            },
            tasks,
        );
        Ok(Self {
            store,
            epoch,
            observer,
            format: config.format.clone(),
            breaker,
            owed,
            announcer: Announcer::new(config.database_url.clone(), db.clone(), config.timeout),
            metrics,
            flights: SingleFlight::default(),
            bypass_flights: FreshFlights::default(),
            near: NearCache::new(config.near_max_bytes),
            purger,
            db,
            enabled: config.enabled,
            ttl: config.ttl,
            negative_ttl: config.negative_ttl,
            max_entries_per_version: config.max_entries_per_version,
            first_recovery,
            // The listener's subscription, a ping and the replay's bumps,
            // each bounded by the Redis timeout.
            warm_up_within: config.timeout * 8,
        })
    }

    /// Waits, for a bounded time, for recovery's first attempt: when Redis
    /// answers at start, the outbox is replayed and the breaker closed before
    /// the server answers, so a fresh instance serves from the cache at once.
    /// When Redis is down the start goes on and reads bypass it. Returns
    /// whether reads are served from Redis.
    pub async fn warm_up(&self) -> bool {
        let mut first_recovery = self.first_recovery.clone();
        let _ =
            tokio::time::timeout(self.warm_up_within, first_recovery.wait_for(|done| *done)).await;
        self.status() == "ok"
    }

    /// `"ok"` when reads are served from Redis, `"degraded"` while they bypass it.
    pub fn status(&self) -> &'static str {
        if self.enabled && self.breaker.lets_through() {
            "ok"
        } else {
            "degraded"
        }
    }

    /// Asks Redis for a `PONG` (start-up diagnostics).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }

    /// Redis connections open now and the most there may be (for metrics).
    pub fn redis_connections(&self) -> ConnectionsStatus {
        self.store.connections_status()
    }

    /// Bytes the near cache holds.
    pub fn near_bytes(&self) -> u64 {
        self.near.bytes()
    }

    /// Serves the read `query` of namespace `ns` cache-aside; `load` runs
    /// only on a miss or a bypass and answers the body of a `200` or of a
    /// `404` (both cached), or fails (not cached: [`ReadError::Load`]).
    pub async fn read<F, Fut, E>(
        &self,
        ns: Namespace,
        query: &QueryKey,
        load: F,
    ) -> Result<Served, ReadError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<Loaded, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        if !self.may_serve(&ns) {
            return self.bypass(&ns, query, load).await;
        }
        // Read before anything is asked of Redis (see `near`).
        let trust_period = self.breaker.trust_period();
        let query = &query.in_format(&self.format);
        // One epoch for the whole read: the lookup, the key a miss stores
        // under and the counter all name the same one. A store under an
        // epoch adopted after the lookup would file a row read under the
        // old epoch's version as current in the new one.
        let prefix = self.store.cache_prefix();
        let counter = keys::version_key(&prefix, &ns);
        if self.near.is_on() {
            match self.store.version(&counter).await {
                Ok(Some(version)) => {
                    if let Some(entry) =
                        self.near
                            .get(&counter, query.as_str(), version, trust_period)
                    {
                        self.metrics.cache_near_hit();
                        self.observer.offer(load, || {
                            Hit::new(&ns, query, &counter, trust_period, &entry, version)
                        });
                        return self.served(&ns, Ok(entry), CacheResult::Hit);
                    }
                }
                // A missing counter is re-created by the lookup (rule 3).
                Ok(None) => {}
                Err(e) => {
                    self.redis_failed("version read", &e);
                    return self.bypass(&ns, query, load).await;
                }
            }
        }
        let Some(lookup) = self.look_up(&prefix, &ns, query).await else {
            return self.bypass(&ns, query, load).await;
        };
        if let Some(entry) = lookup.entry.and_then(Entry::decode) {
            let entry = Arc::new(entry);
            self.near.put(
                &counter,
                query.as_str(),
                &lookup.version,
                trust_period,
                lookup.entry_ttl,
                Arc::clone(&entry),
            );
            self.observer.offer(load, || {
                let version = lookup.version.parse().unwrap_or_default();
                Hit::new(&ns, query, &counter, trust_period, &entry, version)
            });
            return self.served(&ns, Ok(entry), CacheResult::Hit);
        }
        let loaded = self
            .load_once_and_store(&prefix, &ns, &lookup.version, query, load())
            .await;
        self.served(&ns, loaded, CacheResult::Miss)
    }

    /// Redis may answer for `ns`: the cache is on, the breaker lets reads
    /// through and no bump of `ns` is owed.
    fn may_serve(&self, ns: &Namespace) -> bool {
        self.enabled && self.breaker.lets_through() && !self.owed.is_owed(ns)
    }

    /// The version of `ns` and the entry under it (rule 1: the version is
    /// taken before any database read); `None` when Redis failed. Its span
    /// (debug: for traces) is a child of the request's.
    #[tracing::instrument(name = "cache.lookup", level = "debug", skip_all, fields(namespace = ns.kind()))]
    async fn look_up(&self, prefix: &str, ns: &Namespace, query: &QueryKey) -> Option<Lookup> {
        match self.store.lookup(prefix, ns, query.as_str()).await {
            Ok(lookup) => Some(lookup),
            Err(e) => {
                self.redis_failed("lookup", &e);
                None
            }
        }
    }

    /// Counts a read of `ns` as `result` (a failed load too) and answers it.
    fn served(
        &self,
        ns: &Namespace,
        entry: LoadOutcome,
        result: CacheResult,
    ) -> Result<Served, ReadError> {
        self.metrics.cache_request(ns.kind(), result);
        Ok(Served {
            entry: entry?,
            result,
        })
    }

    fn redis_failed(&self, what: &str, err: &StoreError) {
        // A slot moving between masters costs this one read its cache, not
        // every read (`store`'s header).
        if err.is_slot_moving() {
            tracing::debug!("cache: {what} met a slot being moved ({err}); bypassed");
            return;
        }
        if self.breaker.trip() {
            tracing::warn!("cache: {what} failed ({err}); reads bypass Redis until it recovers");
        }
    }
}
