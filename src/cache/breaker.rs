//! The circuit breaker over Redis: whether reads may use it right now.
//!
//! It starts open: nothing is served from Redis until the recovery task has
//! replayed the outbox (bumps owed by writes of any instance, or of this one
//! before a restart). Any Redis error opens it again; the request that saw
//! the error paid one timeout, every later one bypasses at once until
//! recovery closes it. The breaker owns its gauge
//! (`linkhub_cache_breaker_open`), so the two can never disagree.

use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::IntGauge;

pub struct Breaker {
    /// `true` once recovery succeeded and no error was seen since.
    closed: AtomicBool,
    open_gauge: IntGauge,
}

impl Breaker {
    /// An open breaker reporting to `open_gauge`.
    pub fn new(open_gauge: IntGauge) -> Self {
        open_gauge.set(1);
        Self {
            closed: AtomicBool::new(false),
            open_gauge,
        }
    }

    /// `true` when reads and bumps may use Redis.
    pub fn lets_through(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Opens the breaker; returns `true` for the call that opened it.
    pub fn trip(&self) -> bool {
        let opened = self.closed.swap(false, Ordering::AcqRel);
        self.open_gauge.set(1);
        opened
    }

    /// Closes the breaker: only recovery does this, once the outbox is replayed.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.open_gauge.set(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge() -> IntGauge {
        IntGauge::new("breaker_open", "test").expect("a valid gauge")
    }

    #[test]
    fn the_breaker_starts_open_until_recovery() {
        let open = gauge();
        let breaker = Breaker::new(open.clone());
        assert!(!breaker.lets_through());
        assert_eq!(open.get(), 1);
        breaker.close();
        assert!(breaker.lets_through());
        assert_eq!(open.get(), 0);
        assert!(breaker.trip());
        assert_eq!(open.get(), 1);
        assert!(
            !breaker.trip(),
            "only the first failure reports the transition"
        );
    }
}
