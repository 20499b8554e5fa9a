//! Bulkheads: a bounded share of a resource for one kind of work, so that
//! the work a hostile client can make up cannot take all of it.
//!
//! The users list and its searches are the reads a client can vary without
//! end (every search term, page and `after` is a new cache key, so a new
//! PostgreSQL load); profiles, users, links and socials are not. Every load
//! of the users list enters [`Bulkhead`] `list_loads` before it takes a
//! pooled connection: at most `LIST_LOADS_MAX` run at once (default a
//! quarter of `DB_POOL_SIZE`, at most half the cores), so the rest of the pool stays free for every
//! other read and every write, which never enter it. A load that finds the
//! bulkhead full waits at most `LIST_LOAD_WAIT_MS`, behind at most
//! [`WAITERS_PER_PLACE`] others per place and [`WAITERS_MIN`] in all, and
//! is answered `503
//! service_unavailable` with `Retry-After: 1` beyond: a clear, cheap answer
//! instead of a pool that every request waits on.
//!
//! The bound is per process, as the pool it protects is. Why a quarter of
//! the pool: with four busy list loads beside a profile load, the
//! profile's backend still gets a fifth of the CPU time at worst, not a
//! seventeenth. Why at most half the cores: a list load is CPU in
//! PostgreSQL and in serializing its page; on the 2-core machine the
//! figures of docs/ABUSE.md come from, one place leaves a core to every
//! other request even while hostile clients keep the bulkhead full (with
//! four, a well-behaved client's profile misses had a p99 up to 23 times
//! their quiet one during such a burst; with one, under 5 times).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::metrics::Metrics;

/// Loads that may wait for each place of a bulkhead. Beyond it a load is
/// refused at once: were they served, they would wait longer than the wait.
pub const WAITERS_PER_PLACE: usize = 4;

/// Loads that may wait, whatever the places: a burst of a few ordinary
/// misses at once (a list load takes a millisecond or two) waits for the
/// one place of a small machine instead of being refused.
pub const WAITERS_MIN: usize = 16;

/// What a client refused by a full bulkhead is told to wait.
const RETRY_AFTER_SECS: u64 = 1;

/// The places of one kind of work. A clone is a handle to the same places
/// (a load runs as a task of its own, so it holds one).
#[derive(Clone)]
pub struct Bulkhead {
    name: &'static str,
    places: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    waiting_max: usize,
    wait_max: Duration,
    metrics: Arc<Metrics>,
}

/// A place in a bulkhead; dropping it frees the place.
pub struct Place(#[allow(dead_code)] OwnedSemaphorePermit);

/// The places of list loads when `LIST_LOADS_MAX` is 0: a quarter of the
/// pool, and at most half the cores, at least one.
pub fn default_list_loads(pool_size: usize, cores: usize) -> usize {
    (pool_size / 4).min(cores / 2).max(1)
}

impl Bulkhead {
    /// `size` places (at least one); a load waits at most `wait_max`.
    /// `name` labels its metric.
    pub fn new(name: &'static str, size: usize, wait_max: Duration, metrics: Arc<Metrics>) -> Self {
        let size = size.max(1);
        Self {
            name,
            places: Arc::new(Semaphore::new(size)),
            waiting: Arc::new(AtomicUsize::new(0)),
            waiting_max: (size * WAITERS_PER_PLACE).max(WAITERS_MIN),
            wait_max,
            metrics,
        }
    }

    /// A place, at once or within the wait; `503` with `Retry-After`
    /// when too many wait already or none frees up in time.
    pub async fn enter(&self) -> Result<Place, ApiError> {
        if let Ok(permit) = Arc::clone(&self.places).try_acquire_owned() {
            return Ok(Place(permit));
        }
        let queued = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.waiting_max).then_some(n + 1)
            });
        if queued.is_err() {
            return Err(self.refused());
        }
        let waited =
            tokio::time::timeout(self.wait_max, Arc::clone(&self.places).acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match waited {
            Ok(Ok(permit)) => Ok(Place(permit)),
            Ok(Err(_)) | Err(_) => Err(self.refused()),
        }
    }

    fn refused(&self) -> ApiError {
        self.metrics.bulkhead_refused(self.name);
        tracing::warn!(bulkhead = self.name, "bulkhead full: a load is refused");
        ApiError::busy(RETRY_AFTER_SECS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_bulkhead_refuses_after_its_wait_and_a_freed_place_serves() {
        let bulkhead = Bulkhead::new(
            "test",
            2,
            Duration::from_millis(20),
            Arc::new(Metrics::default()),
        );
        let first = bulkhead.enter().await.expect("a place");
        let _second = bulkhead.enter().await.expect("a place");
        let refused = bulkhead.enter().await.err();
        assert!(
            matches!(
                refused,
                Some(ApiError::Busy {
                    retry_after_secs: 1
                })
            ),
            "{refused:?}"
        );
        drop(first);
        bulkhead.enter().await.expect("the freed place");
        assert_eq!(bulkhead.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test]
    async fn waiters_beyond_the_bound_are_refused_at_once() {
        let bulkhead = Arc::new(Bulkhead::new(
            "test",
            1,
            Duration::from_secs(30),
            Arc::new(Metrics::default()),
        ));
        let held = bulkhead.enter().await.expect("a place");
        let bound = WAITERS_MIN.max(WAITERS_PER_PLACE);
        assert_eq!(bulkhead.waiting_max, bound);
        let waiters: Vec<_> = (0..bound)
            .map(|_| {
                let bulkhead = Arc::clone(&bulkhead);
                tokio::spawn(async move { bulkhead.enter().await.is_ok() })
            })
            .collect();
        while bulkhead.waiting.load(Ordering::Acquire) < bound {
            tokio::task::yield_now().await;
        }
        assert!(bulkhead.enter().await.is_err(), "one waiter too many");
        drop(held);
        for waiter in waiters {
            assert!(
                waiter.await.expect("waiter"),
                "each waiter gets the place in turn"
            );
        }
    }

    #[test]
    fn list_loads_take_a_quarter_of_the_pool() {
        assert_eq!(default_list_loads(16, 8), 4);
        assert_eq!(default_list_loads(16, 16), 4);
        assert_eq!(default_list_loads(16, 2), 1);
        assert_eq!(default_list_loads(4, 8), 1);
        assert_eq!(default_list_loads(1, 8), 1);
        assert_eq!(default_list_loads(16, 1), 1);
    }
}
