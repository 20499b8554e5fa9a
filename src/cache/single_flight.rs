//! One load per key at a time: concurrent misses of the same entry in this
//! process share the load of the first.
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

    #[tokio::test]
    async fn different_keys_load_separately() {
        let flights: SingleFlight<u8> = SingleFlight::default();
        let (a, la) = flights.run("a", || async { 1 }, || 0).await;
        let (b, lb) = flights.run("b", || async { 2 }, || 0).await;
        assert_eq!((a, la, b, lb), (1, true, 2, true));
    }
}
