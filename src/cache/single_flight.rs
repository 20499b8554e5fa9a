//! One load per key at a time: concurrent misses of the same entry in this
//! process share the load of the first ([`SingleFlight`]); concurrent
//! bypass reads share loads that began after they arrived ([`FreshFlights`]).
//!
//! Keys are full entry keys, versions included, so a reader that started
//! after a write (and so holds the newer version) never joins a load that
//! began before it.
//!
//! A finished load leaves the map once its entry is stored in Redis; a reader
//! whose lookup missed just before that store and that arrives just after it
//! loads once more. That window is the store's round trip, so a stampede
//! costs one load, rarely two, per process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};

type InFlight<T> = Shared<BoxFuture<'static, T>>;

/// The loads under way, by key; each hands a clone of its value to every
/// caller that joined it (the misses of the cache: the key holds the version).
pub struct SingleFlight<T: Clone> {
    inflight: Arc<Mutex<HashMap<String, InFlight<T>>>>,
}

impl<T: Clone> Default for SingleFlight<T> {
    fn default() -> Self {
        Self {
            inflight: Arc::default(),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> SingleFlight<T> {
    /// Runs `load` for `key` unless a load of `key` is under way, in which case
    /// it waits for that one. Returns the value and whether this call loaded it.
    ///
    /// The load runs as its own task: a client that disconnects does not cancel
    /// it for the others waiting on it.
    pub async fn run<F>(
        &self,
        key: &str,
        load: impl FnOnce() -> F,
        on_panic: impl FnOnce() -> T,
    ) -> (T, bool)
    where
        F: Future<Output = T> + Send + 'static,
    {
        let (shared, leader) = {
            let mut inflight = lock(&self.inflight);
            match inflight.get(key) {
                Some(existing) => (existing.clone(), false),
                None => {
                    let map = Arc::clone(&self.inflight);
                    let owned_key = key.to_owned();
                    let task = tokio::spawn(load());
                    let fallback = on_panic();
                    let shared = async move {
                        let value = task.await.unwrap_or(fallback);
                        lock(&map).remove(&owned_key);
                        value
                    }
                    .boxed()
                    .shared();
                    inflight.insert(key.to_owned(), shared.clone());
                    (shared, true)
                }
            }
        };
        (shared.await, leader)
    }

    /// Loads under way (for tests and metrics).
    pub fn len(&self) -> usize {
        lock(&self.inflight).len()
    }

    /// No load under way.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Coalesces loads of one key whose callers hold no version to tell an old
/// load from a new one: the reads that bypass Redis. A caller may only share
/// a load that *starts after it arrived* — one that began earlier may have
/// read PostgreSQL before a write that was acknowledged in between
/// (read-your-writes). So a caller that finds a load running waits for the
/// next one, which starts when the running one ends and serves everyone who
/// arrived meanwhile: a burst of N concurrent reads costs about two loads, not N.
pub struct FreshFlights<T: Clone> {
    slots: Arc<Mutex<HashMap<String, Slot<T>>>>,
    generation: std::sync::atomic::AtomicU64,
}

/// The loads of one key: the one running, and the one queued behind it.
struct Slot<T: Clone> {
    running: (u64, InFlight<T>),
    /// Not started yet: joining it is always safe.
    next: Option<(u64, InFlight<T>)>,
}

impl<T: Clone> Default for FreshFlights<T> {
    fn default() -> Self {
        Self {
            slots: Arc::default(),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> FreshFlights<T> {
    /// Runs `load` for `key`, or shares a load of `key` that has not started
    /// yet. Returns the value and whether this call's `load` ran.
    ///
    /// Loads run as tasks of their own: a client that disconnects cancels
    /// nothing for the others.
    pub async fn run<F>(
        &self,
        key: &str,
        load: impl FnOnce() -> F,
        on_panic: impl FnOnce() -> T,
    ) -> (T, bool)
    where
        F: Future<Output = T> + Send + 'static,
    {
        let (shared, leader) = {
            let mut slots = lock(&self.slots);
            match slots.get_mut(key) {
                None => {
                    let generation = self.next_generation();
                    let shared = self.spawn(key, generation, None, load(), on_panic());
                    slots.insert(
                        key.to_owned(),
                        Slot {
                            running: (generation, shared.clone()),
                            next: None,
                        },
                    );
                    (shared, true)
                }
                Some(Slot {
                    next: Some((_, next)),
                    ..
                }) => (next.clone(), false),
                Some(slot) => {
                    let generation = self.next_generation();
                    let after = Some(slot.running.1.clone());
                    let shared = self.spawn(key, generation, after, load(), on_panic());
                    slot.next = Some((generation, shared.clone()));
                    (shared, true)
                }
            }
        };
        (shared.await, leader)
    }

    fn next_generation(&self) -> u64 {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Starts the task of load `generation`: after `after` (the running load)
    /// ended, it becomes the running one — from then on newcomers queue behind
    /// it — then it loads, and forgets the key when nobody queued behind it.
    fn spawn<F>(
        &self,
        key: &str,
        generation: u64,
        after: Option<InFlight<T>>,
        load: F,
        fallback: T,
    ) -> InFlight<T>
    where
        F: Future<Output = T> + Send + 'static,
    {
        let slots = Arc::clone(&self.slots);
        let owned_key = key.to_owned();
        let task = tokio::spawn(async move {
            if let Some(previous) = after {
                previous.await;
                let mut slots = lock(&slots);
                if let Some(slot) = slots.get_mut(&owned_key)
                    && let Some(next) = slot.next.take_if(|(g, _)| *g == generation)
                {
                    slot.running = next;
                }
            }
            let value = load.await;
            let mut slots = lock(&slots);
            if slots
                .get(&owned_key)
                .is_some_and(|slot| slot.running.0 == generation && slot.next.is_none())
            {
                slots.remove(&owned_key);
            }
            value
        });
        async move { task.await.unwrap_or(fallback) }
            .boxed()
            .shared()
    }

    /// Keys with a load running or queued (for tests).
    pub fn len(&self) -> usize {
        lock(&self.slots).len()
    }

    /// No load under way.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn lock<V>(m: &Mutex<V>) -> std::sync::MutexGuard<'_, V> {
    // Nothing here can be left half-updated by a panic; keep using the map.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_of_one_key_share_one_load() {
        let flights: Arc<SingleFlight<usize>> = Arc::default();
        let loads = Arc::new(AtomicUsize::new(0));
        let callers = (0..50).map(|_| {
            let flights = Arc::clone(&flights);
            let loads = Arc::clone(&loads);
            tokio::spawn(async move {
                flights
                    .run(
                        "k",
                        move || async move {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            loads.fetch_add(1, Ordering::SeqCst) + 100
                        },
                        || 0,
                    )
                    .await
            })
        });
        let results = futures_util::future::join_all(callers).await;
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        let leaders = results
            .iter()
            .filter(|r| r.as_ref().is_ok_and(|(_, l)| *l))
            .count();
        assert_eq!(leaders, 1);
        assert!(
            results
                .iter()
                .all(|r| r.as_ref().is_ok_and(|(v, _)| *v == 100))
        );
        assert!(flights.is_empty(), "finished loads are forgotten");
    }

    /// A caller that arrives while a load runs never gets that load's value:
    /// it may predate a write the caller saw acknowledged.
    #[tokio::test]
    async fn fresh_flights_share_only_loads_that_start_after_the_caller_arrived() {
        let flights: Arc<FreshFlights<usize>> = Arc::default();
        let started = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let load = |started: Arc<AtomicUsize>, gate: Arc<tokio::sync::Notify>| {
            move || async move {
                let n = started.fetch_add(1, Ordering::SeqCst);
                if n == 0 {
                    gate.notified().await;
                }
                n
            }
        };
        let first = {
            let (flights, started, gate) = (flights.clone(), started.clone(), gate.clone());
            tokio::spawn(async move { flights.run("k", load(started, gate), || 99).await })
        };
        while started.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // These arrive while load 0 runs: all of them share load 1.
        let later: Vec<_> = (0..20)
            .map(|_| {
                let (flights, started, gate) = (flights.clone(), started.clone(), gate.clone());
                tokio::spawn(async move { flights.run("k", load(started, gate), || 99).await })
            })
            .collect();
        while flights.len() == 1 && lock(&flights.slots)["k"].next.is_none() {
            tokio::task::yield_now().await;
        }
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        assert_eq!(first.await.expect("first").0, 0);
        for caller in later {
            assert_eq!(caller.await.expect("later").0, 1, "shared the fresh load");
        }
        assert_eq!(started.load(Ordering::SeqCst), 2, "one load for the 20");
        assert!(flights.is_empty(), "finished loads are forgotten");
    }

    #[tokio::test]
    async fn different_keys_load_separately() {
        let flights: SingleFlight<u8> = SingleFlight::default();
        let (a, la) = flights.run("a", || async { 1 }, || 0).await;
        let (b, lb) = flights.run("b", || async { 2 }, || 0).await;
        assert_eq!((a, la, b, lb), (1, true, 2, true));
    }
}
