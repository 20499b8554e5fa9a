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
//!
//! **A [`SingleFlight`] load lives only while someone waits for it.** It is
//! driven by the requests that share it, not by a task of its own: a reader
//! that hangs up leaves it to the others, and when the last one is gone the
//! load is dropped and its key forgotten (the map holds it weakly). As a
//! detached task, a load outlived its clients, so a client hanging up on
//! requests for made-up keys grew the tasks (and the PostgreSQL connections
//! they wait for) with its request rate; now what runs is bounded by the
//! requests in flight, which the server bounds.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared, WeakShared};

type InFlight<T> = Shared<BoxFuture<'static, T>>;

/// The loads under way by key, each with its generation, held weakly.
type Loads<T> = Arc<Mutex<HashMap<String, (u64, WeakShared<BoxFuture<'static, T>>)>>>;

/// The loads under way, by key; each hands a clone of its value to every
/// caller that joined it (the misses of the cache: the key holds the version).
pub struct SingleFlight<T: Clone> {
    /// Held weakly: a load nobody waits for any more is dropped.
    inflight: Loads<T>,
    generation: AtomicU64,
}

impl<T: Clone> Default for SingleFlight<T> {
    fn default() -> Self {
        Self {
            inflight: Arc::default(),
            generation: AtomicU64::new(0),
        }
    }
}

/// Forgets load `generation` of `key` when the load ends or is dropped.
struct Forget<T: Clone> {
    map: Loads<T>,
    key: String,
    generation: u64,
}

impl<T: Clone> Drop for Forget<T> {
    fn drop(&mut self) {
        let mut map = lock(&self.map);
        if map
            .get(&self.key)
            .is_some_and(|(g, _)| *g == self.generation)
        {
            map.remove(&self.key);
        }
    }
}

impl<T: Clone + Send + Sync + 'static> SingleFlight<T> {
    /// Runs `load` for `key` unless a load of `key` is under way, in which case
    /// it waits for that one. Returns the value and whether this call loaded it.
    ///
    /// The load is driven by every caller waiting on it: one that hangs up
    /// cancels nothing for the others, and once none waits the load is
    /// dropped (see the module header). A load that panics answers `on_panic`.
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
            match inflight.get(key).and_then(|(_, weak)| weak.upgrade()) {
                Some(existing) => (existing, false),
                None => {
                    let generation = self.generation.fetch_add(1, Ordering::Relaxed);
                    let forget = Forget {
                        map: Arc::clone(&self.inflight),
                        key: key.to_owned(),
                        generation,
                    };
                    let load = load();
                    let fallback = on_panic();
                    let shared = async move {
                        let _forget = forget;
                        AssertUnwindSafe(load)
                            .catch_unwind()
                            .await
                            .unwrap_or(fallback)
                    }
                    .boxed()
                    .shared();
                    if let Some(weak) = shared.downgrade() {
                        inflight.insert(key.to_owned(), (generation, weak));
                    }
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
///
/// **Its loads are bounded.** They run as tasks of their own, so a reader that
/// hangs up cancels nothing for the others; such a task outlives its
/// clients, so at most [`MAX_DETACHED_LOADS`] run at once per process. A
/// read that would start one past that runs its own load instead, driven by
/// the request and dropped with it, shared with nobody: a client hanging up
/// on bypass reads of made-up keys cannot grow the tasks (nor the PostgreSQL
/// connections they wait for) with its request rate. Such loads are counted
/// ([`FreshFlights::undetached`]; `linkhub_cache_bypass_loads_undetached_total`).
pub struct FreshFlights<T: Clone> {
    slots: Arc<Mutex<HashMap<String, Slot<T>>>>,
    generation: std::sync::atomic::AtomicU64,
    /// A permit per load running as a task of its own.
    detached: Arc<tokio::sync::Semaphore>,
    /// Loads run by their caller because [`MAX_DETACHED_LOADS`] ran.
    undetached: AtomicU64,
}

/// Bypass loads running as tasks of their own at once, per process, at
/// most: well above what a pool of PostgreSQL connections serves at once,
/// so only a flood of distinct keys (which coalescing cannot help) reaches it.
pub const MAX_DETACHED_LOADS: usize = 256;

/// What a call of [`FreshFlights::run`] does once the map is unlocked.
enum Plan<T: Clone, F, P> {
    /// Waits for a shared load; `true` when this call's load is the one.
    Wait(InFlight<T>, bool),
    /// Runs its own load, not shared, driven by the caller; what a panic in
    /// it answers.
    Own(F, P),
}

/// The loads of one key: the one running, and the one queued behind it.
struct Slot<T: Clone> {
    running: (u64, InFlight<T>),
    /// Not started yet: joining it is always safe.
    next: Option<(u64, InFlight<T>)>,
}

impl<T: Clone> Default for FreshFlights<T> {
    fn default() -> Self {
        Self::with_cap(MAX_DETACHED_LOADS)
    }
}

impl<T: Clone> FreshFlights<T> {
    /// Flights with at most `cap` loads running as tasks of their own.
    pub fn with_cap(cap: usize) -> Self {
        Self {
            slots: Arc::default(),
            generation: std::sync::atomic::AtomicU64::new(0),
            detached: Arc::new(tokio::sync::Semaphore::new(cap)),
            undetached: AtomicU64::new(0),
        }
    }

    /// Loads run by their caller since the start because the cap was reached.
    pub fn undetached(&self) -> u64 {
        self.undetached.load(Ordering::Relaxed)
    }
}

impl<T: Clone + Send + Sync + 'static> FreshFlights<T> {
    /// Runs `load` for `key`, or shares a load of `key` that has not started
    /// yet. Returns the value and whether this call's `load` ran.
    ///
    /// Loads run as tasks of their own: a client that disconnects cancels
    /// nothing for the others. Past [`MAX_DETACHED_LOADS`] of them, the
    /// caller runs its own load (see the type's header), and `undetached`
    /// is called first.
    pub async fn run<F>(
        &self,
        key: &str,
        load: impl FnOnce() -> F,
        on_panic: impl FnOnce() -> T,
        undetached: impl FnOnce(),
    ) -> (T, bool)
    where
        F: Future<Output = T> + Send + 'static,
    {
        let plan = {
            let mut slots = lock(&self.slots);
            let joined = match slots.get(key) {
                Some(Slot {
                    next: Some((_, next)),
                    ..
                }) => Some(next.clone()),
                _ => None,
            };
            match joined {
                Some(next) => Plan::Wait(next, false),
                None => match Arc::clone(&self.detached).try_acquire_owned() {
                    Err(_) => Plan::Own(load(), on_panic),
                    Ok(permit) => {
                        let generation = self.next_generation();
                        match slots.get_mut(key) {
                            None => {
                                let shared =
                                    self.spawn(key, generation, None, load(), on_panic(), permit);
                                slots.insert(
                                    key.to_owned(),
                                    Slot {
                                        running: (generation, shared.clone()),
                                        next: None,
                                    },
                                );
                                Plan::Wait(shared, true)
                            }
                            Some(slot) => {
                                let after = Some(slot.running.1.clone());
                                let shared =
                                    self.spawn(key, generation, after, load(), on_panic(), permit);
                                slot.next = Some((generation, shared.clone()));
                                Plan::Wait(shared, true)
                            }
                        }
                    }
                },
            }
        };
        match plan {
            Plan::Wait(shared, leader) => (shared.await, leader),
            Plan::Own(load, on_panic) => {
                self.undetached.fetch_add(1, Ordering::Relaxed);
                undetached();
                let value = AssertUnwindSafe(load).catch_unwind().await;
                (value.unwrap_or_else(|_| on_panic()), true)
            }
        }
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
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> InFlight<T>
    where
        F: Future<Output = T> + Send + 'static,
    {
        let slots = Arc::clone(&self.slots);
        let owned_key = key.to_owned();
        let task = tokio::spawn(async move {
            // Held until the task ends: counts it against the cap.
            let _permit = permit;
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
            tokio::spawn(async move { flights.run("k", load(started, gate), || 99, || {}).await })
        };
        while started.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // These arrive while load 0 runs: all of them share load 1.
        let later: Vec<_> = (0..20)
            .map(|_| {
                let (flights, started, gate) = (flights.clone(), started.clone(), gate.clone());
                tokio::spawn(
                    async move { flights.run("k", load(started, gate), || 99, || {}).await },
                )
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

    /// Counts the loads alive (started, not yet ended or dropped).
    struct Alive(Arc<AtomicUsize>);

    impl Alive {
        fn new(count: &Arc<AtomicUsize>) -> Self {
            count.fetch_add(1, Ordering::SeqCst);
            Self(Arc::clone(count))
        }
    }

    impl Drop for Alive {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Clients that hang up (here: a timeout drops the request) leave no
    /// load behind: 2000 of them, each on a key of its own whose load would
    /// never end, leave no load, no key and no task.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn loads_nobody_waits_for_are_dropped() {
        let flights: Arc<SingleFlight<usize>> = Arc::default();
        let alive = Arc::new(AtomicUsize::new(0));
        let metrics = tokio::runtime::Handle::current().metrics();
        let tasks_before = metrics.num_alive_tasks();
        let requests = (0..2000).map(|n| {
            let (flights, alive) = (Arc::clone(&flights), Arc::clone(&alive));
            tokio::spawn(async move {
                let load = move || async move {
                    let _alive = Alive::new(&alive);
                    std::future::pending::<()>().await;
                    n
                };
                tokio::time::timeout(
                    Duration::from_millis(5),
                    flights.run(&format!("k{n}"), load, || 0),
                )
                .await
            })
        });
        for request in futures_util::future::join_all(requests).await {
            assert!(request.expect("request task").is_err(), "hung up");
        }
        assert_eq!(alive.load(Ordering::SeqCst), 0, "loads nobody waits for");
        assert!(flights.is_empty(), "keys of dropped loads are forgotten");
        // A joined task is released by its worker a moment after its
        // output was taken: wait for the count to settle (a task that
        // lived on would keep it up however long this waits).
        for _ in 0..200 {
            if metrics.num_alive_tasks() <= tasks_before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            metrics.num_alive_tasks() <= tasks_before,
            "{} tasks alive after the hang-ups, {tasks_before} before",
            metrics.num_alive_tasks()
        );
    }

    /// Bypass reads whose clients hang up leave at most the cap of loads
    /// running: 200 of them, each on a key of its own whose load would never
    /// end, leave 4 (the cap here); the others' loads went with them, and a
    /// later read is still served.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bypass_loads_of_clients_that_hung_up_are_capped() {
        let flights: Arc<FreshFlights<usize>> = Arc::new(FreshFlights::with_cap(4));
        let alive = Arc::new(AtomicUsize::new(0));
        let counted = Arc::new(AtomicUsize::new(0));
        let requests = (0..200).map(|n| {
            let (flights, alive, counted) = (
                Arc::clone(&flights),
                Arc::clone(&alive),
                Arc::clone(&counted),
            );
            tokio::spawn(async move {
                let load = move || async move {
                    let _alive = Alive::new(&alive);
                    std::future::pending::<()>().await;
                    n
                };
                let count = move || {
                    counted.fetch_add(1, Ordering::SeqCst);
                };
                tokio::time::timeout(
                    Duration::from_millis(5),
                    flights.run(&format!("k{n}"), load, || 0, count),
                )
                .await
            })
        });
        for request in futures_util::future::join_all(requests).await {
            assert!(request.expect("request task").is_err(), "hung up");
        }
        assert_eq!(flights.undetached(), 196);
        assert_eq!(counted.load(Ordering::SeqCst), 196);
        // The 4 detached loads start on the runtime's own time.
        for _ in 0..200 {
            if alive.load(Ordering::SeqCst) == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(alive.load(Ordering::SeqCst), 4, "loads left running");
        let (value, ran) = flights.run("k-later", || async { 7 }, || 0, || {}).await;
        assert_eq!((value, ran), (7, true));
    }

    /// The leader hanging up does not cancel the load for a reader that
    /// joined it: the load goes on, driven by that reader.
    #[tokio::test]
    async fn a_load_outlives_its_leader_while_another_waits() {
        let flights: Arc<SingleFlight<usize>> = Arc::default();
        let gate = Arc::new(tokio::sync::Notify::new());
        let load = |gate: Arc<tokio::sync::Notify>| {
            move || async move {
                gate.notified().await;
                7
            }
        };
        let leader = {
            let (flights, gate) = (Arc::clone(&flights), Arc::clone(&gate));
            tokio::spawn(async move { flights.run("k", load(gate), || 0).await })
        };
        while flights.is_empty() {
            tokio::task::yield_now().await;
        }
        let follower = {
            let (flights, gate) = (Arc::clone(&flights), Arc::clone(&gate));
            tokio::spawn(async move { flights.run("k", load(gate), || 0).await })
        };
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        leader.abort();
        assert!(leader.await.is_err(), "the leader hung up");
        gate.notify_one();
        assert_eq!(follower.await.expect("follower"), (7, false));
        assert!(flights.is_empty());
    }

    /// `false`, opaquely to the compiler.
    fn flights_never_panic() -> bool {
        std::hint::black_box(false)
    }

    #[tokio::test]
    async fn a_panicking_load_answers_the_fallback() {
        let flights: SingleFlight<u8> = SingleFlight::default();
        let (value, _) = flights
            .run(
                "k",
                || async {
                    if flights_never_panic() {
                        return 1;
                    }
                    panic!("a load panicked")
                },
                || 9,
            )
            .await;
        assert_eq!(value, 9);
        assert!(flights.is_empty());
    }

    #[tokio::test]
    async fn different_keys_load_separately() {
        let flights: SingleFlight<u8> = SingleFlight::default();
        let (a, la) = flights.run("a", || async { 1 }, || 0).await;
        let (b, lb) = flights.run("b", || async { 2 }, || 0).await;
        assert_eq!((a, la, b, lb), (1, true, 2, true));
    }
}
