//! The circuit breaker over Redis: whether reads may use it right now.
//!
//! It starts open: nothing is served from Redis until the recovery task has
//! replayed the outbox (bumps owed by writes of any instance, or of this one
//! before a restart). Any Redis error opens it again; the request that saw
//! the error paid one timeout, every later one bypasses at once until
//! recovery closes it. The breaker owns its gauge
//! (`linkhub_cache_breaker_open`), so the two can never disagree.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use prometheus::IntGauge;

pub struct Breaker {
    /// `true` once recovery succeeded and no error was seen since.
    closed: AtomicBool,
    /// How many times it closed: the current *trust period*. What was
    /// learned from Redis in an earlier period (the near cache's copies) is
    /// not trusted in a later one: between the two, Redis failed or changed.
    closings: AtomicU64,
    open_gauge: IntGauge,
}

impl Breaker {
    /// An open breaker reporting to `open_gauge`.
    pub fn new(open_gauge: IntGauge) -> Self {
        open_gauge.set(1);
        Self {
            closed: AtomicBool::new(false),
            closings: AtomicU64::new(0),
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

    /// The current trust period: it changes each time the breaker closes
    /// after it was open.
    pub fn trust_period(&self) -> u64 {
        self.closings.load(Ordering::Acquire)
    }

    /// Closes the breaker: only recovery does this, once the outbox is
    /// replayed. Closing an open breaker starts a new trust period; the
    /// count moves before reads are let through, so no read of the new
    /// period sees the old one's number.
    pub fn close(&self) {
        if !self.closed.load(Ordering::Acquire) {
            self.closings.fetch_add(1, Ordering::AcqRel);
        }
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

    #[test]
    fn each_closing_after_a_trip_starts_a_new_trust_period() {
        let breaker = Breaker::new(gauge());
        let start = breaker.trust_period();
        breaker.close();
        let first = breaker.trust_period();
        assert_ne!(first, start);
        breaker.close();
        assert_eq!(breaker.trust_period(), first, "closing a closed breaker");
        breaker.trip();
        breaker.close();
        assert_ne!(breaker.trust_period(), first);
    }
}
