//! The loads behind a read that Redis did not answer: a miss, loaded once
//! per key in this process and stored under the version its lookup took
//! (rules 1, 6 and 7 of the module header), and a bypass, loaded fresh
//! from PostgreSQL. They live apart from [`Cache::read`]'s decisions (which
//! path a read takes) because they own what a load needs: the flights, the
//! TTLs, the store and what a failure there means for the breaker.

use std::sync::Arc;

use rand::RngExt;
use tracing::Instrument;

use super::entry::failed_load;
use super::keys::{self, QueryKey};
use super::store::{StoreEntry, StoreError};
use super::{Cache, Entry, LoadOutcome, Loaded, ReadError, Served};
use crate::metrics::CacheResult;
use crate::namespace::Namespace;

impl Cache {
    /// Loads a missed entry once per key in this process (rule 7) and stores
    /// it under the version taken before the load, with a TTL (rule 6). The
    /// load is driven by the readers that share it, and dropped once none
    /// waits (`single_flight.rs`), under the span of the request that started it.
    pub(super) async fn load_once_and_store<Fut, E>(
        &self,
        prefix: &str,
        ns: &Namespace,
        version: &str,
        query: &QueryKey,
        load: Fut,
    ) -> LoadOutcome
    where
        Fut: Future<Output = Result<Loaded, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let key = keys::entry_key(prefix, ns, version, query.as_str());
        let kind = ns.kind();
        let ttl = self.jittered_ttl_secs();
        let negative_ttl = self.negative_ttl.as_secs().clamp(1, ttl);
        let cap = if query.is_open_ended() {
            self.max_entries_per_version
        } else {
            0
        };
        let (task_prefix, task_ns, task_version, task_query) = (
            prefix.to_owned(),
            ns.clone(),
            version.to_owned(),
            query.clone(),
        );
        let store = Arc::clone(&self.store);
        let breaker = Arc::clone(&self.breaker);
        let metrics = Arc::clone(&self.metrics);
        let task_key = key.clone();
        let (outcome, _leader) = self
            .flights
            .run(
                &key,
                move || {
                    async move {
                        // A reader whose lookup missed just before the
                        // previous flight of this key stored its entry starts
                        // a new flight after that one ended: it finds the
                        // entry here instead of loading again (rule 7).
                        match store.get(&task_key).await {
                            Ok(raw) => {
                                if let Some(entry) = raw.and_then(Entry::decode) {
                                    return Ok(Arc::new(entry));
                                }
                            }
                            // The error may be the only sign that Redis
                            // went away (a restart from a snapshot, say):
                            // swallowed, the next command would reach the
                            // new process on a fresh connection and trust
                            // what it restored. It trips the breaker as
                            // any failed read does, so recovery checks the
                            // run ids before Redis is trusted again.
                            Err(e) => {
                                if trips_the_breaker(&e) {
                                    breaker.trip();
                                }
                            }
                        }
                        metrics.cache_load(kind);
                        let load = load.instrument(load_span(kind));
                        let entry = Arc::new(Entry::render(load.await.map_err(failed_load)?));
                        // A `404` may be of anything a client makes up: it
                        // lives shortly, and does not lengthen the counter.
                        let (ttl_secs, counter_ttl_secs) = if entry.status == 404 {
                            (negative_ttl, negative_ttl)
                        } else {
                            (ttl, store.counter_ttl_secs())
                        };
                        let stored = store
                            .store_entry(StoreEntry {
                                prefix: &task_prefix,
                                ns: &task_ns,
                                version: &task_version,
                                query: task_query.as_str(),
                                value: &entry.encode(),
                                ttl_secs,
                                counter_ttl_secs,
                                cap,
                            })
                            .await;
                        if let Err(e) = stored {
                            if trips_the_breaker(&e) {
                                tracing::warn!("cache: storing {task_key} failed: {e}");
                                breaker.trip();
                            } else {
                                // A slot migrating answers TRYAGAIN to the
                                // store's keys until they all moved: expected.
                                tracing::debug!("cache: {task_key} not stored: {e}");
                            }
                        }
                        Ok(entry)
                    }
                    .in_current_span()
                },
                || Err(ReadError::Panicked("a cache load")),
            )
            .await;
        outcome
    }

    /// Serves a read from PostgreSQL. Concurrent bypass reads of one query
    /// share a load, but only one that started after they arrived (see
    /// [`FreshFlights`]), so a Redis outage does not turn into a stampede on
    /// PostgreSQL and every read still sees the writes acknowledged before it.
    pub(super) async fn bypass<F, Fut, E>(
        &self,
        ns: &Namespace,
        query: &QueryKey,
        load: F,
    ) -> Result<Served, ReadError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Loaded, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let kind = ns.kind();
        let metrics = Arc::clone(&self.metrics);
        let (outcome, _leader) = self
            .bypass_flights
            .run(
                &format!("{ns}|{query}"),
                move || {
                    let load = load();
                    async move {
                        metrics.cache_bypass_load(kind);
                        let load = load.instrument(load_span(kind));
                        Ok(Arc::new(Entry::render(load.await.map_err(failed_load)?)))
                    }
                    .in_current_span()
                },
                || Err(ReadError::Panicked("a cache bypass load")),
                || self.metrics.cache_bypass_load_undetached(kind),
            )
            .await;
        self.served(ns, outcome, CacheResult::Bypass)
    }

    /// The TTL of a new entry in seconds: up to 10 % shorter than the
    /// configured one, so entries written together do not expire together.
    fn jittered_ttl_secs(&self) -> u64 {
        let ttl = self.ttl.as_secs();
        let jitter = ttl / 10;
        if jitter == 0 {
            return ttl;
        }
        ttl - rand::rng().random_range(0..=jitter)
    }
}

/// The span of a PostgreSQL load (debug: for traces), a child of the span
/// current where the load's flight starts: the request's.
fn load_span(kind: &'static str) -> tracing::Span {
    tracing::debug_span!("db.load", namespace = kind)
}

/// Whether a failed store or get inside a load means Redis failed: a slot
/// moving is no failure (the store's script names four keys of one slot, and
/// while a migration has moved some of them Redis answers `TRYAGAIN`), nor
/// is a command that outlasted its bound right after this read's lookup
/// answered. Either costs only this entry; the next lookup trips the breaker
/// if Redis is really gone.
fn trips_the_breaker(e: &StoreError) -> bool {
    !e.is_slot_moving() && !matches!(e, StoreError::Timeout(_))
}
