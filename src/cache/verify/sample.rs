//! Which `HIT`s the observer checks: a share of them, drawn at random
//! (`CACHE_VERIFY_SAMPLE`), and of those at most `CACHE_VERIFY_PER_SECOND`
//! a second. A check costs the instance about as much CPU as a few hundred
//! `HIT`s (PostgreSQL and Redis round trips, the load, its digest), so a
//! share alone would make the observer's cost grow with the traffic: at
//! 26,000 `HIT`s a second, 1 % is 260 checks a second, about a tenth of a
//! core. The rate budget caps that cost at any traffic; the reads sampled
//! beyond it are counted (`skipped`, reason `rate`), never checked.

use std::sync::Mutex;
use std::time::Instant;

/// Which reads are sampled: a random 64-bit number below a threshold.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sampler {
    /// `share × 2^64`; 0: none, `u64::MAX`: every one.
    threshold: u64,
}

impl Sampler {
    pub(super) fn new(share: f64) -> Self {
        let threshold = if share.is_nan() || share <= 0.0 {
            0
        } else if share >= 1.0 {
            u64::MAX
        } else {
            // Saturates below 2^64; a share too small for 64 bits is none.
            (share * 18_446_744_073_709_551_616.0) as u64
        };
        Self { threshold }
    }

    pub(super) fn is_on(self) -> bool {
        self.threshold > 0
    }

    pub(super) fn sampled(self) -> bool {
        match self.threshold {
            0 => false,
            u64::MAX => true,
            threshold => rand::random::<u64>() < threshold,
        }
    }
}

/// At most `per_second` checks a second, in bursts of up to one second's
/// worth: a token bucket. Only sampled reads take from it, so its lock is
/// taken by a small share of the reads.
#[derive(Debug)]
pub(super) struct RateBudget {
    /// 0: no limit.
    per_second: f64,
    /// Tokens left, and when they were counted.
    bucket: Mutex<(f64, Instant)>,
}

impl RateBudget {
    pub(super) fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second);
        Self {
            per_second,
            bucket: Mutex::new((per_second, Instant::now())),
        }
    }

    /// Whether one more check fits the budget now (and takes it if so).
    pub(super) fn take(&self) -> bool {
        self.take_at(Instant::now())
    }

    fn take_at(&self, now: Instant) -> bool {
        if self.per_second == 0.0 {
            return true;
        }
        let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, counted) = *bucket;
        let refilled = now.saturating_duration_since(counted).as_secs_f64() * self.per_second;
        let tokens = (tokens + refilled).min(self.per_second);
        if tokens >= 1.0 {
            *bucket = (tokens - 1.0, now);
            true
        } else {
            *bucket = (tokens, now);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_share_of_0_samples_nothing_and_1_everything() {
        let none = Sampler::new(0.0);
        assert!(!none.is_on());
        assert!((0..10_000).all(|_| !none.sampled()));
        let all = Sampler::new(1.0);
        assert!(all.is_on());
        assert!((0..10_000).all(|_| all.sampled()));
        assert!(!Sampler::new(f64::NAN).is_on());
        assert!(!Sampler::new(-1.0).is_on());
    }

    #[test]
    fn the_threshold_is_the_share_of_the_64_bit_range() {
        assert_eq!(Sampler::new(0.5).threshold, 1 << 63);
        assert_eq!(Sampler::new(0.25).threshold, 1 << 62);
        let one_in_a_hundred = Sampler::new(0.01).threshold as f64 / u64::MAX as f64;
        assert!(
            (one_in_a_hundred - 0.01).abs() < 1e-12,
            "{one_in_a_hundred}"
        );
    }

    #[test]
    fn the_rate_budget_allows_a_seconds_worth_then_refills_with_time() {
        let budget = RateBudget::new(50);
        let start = Instant::now();
        let burst = (0..200).filter(|_| budget.take_at(start)).count();
        assert_eq!(burst, 50, "one second's worth at once");
        assert!(
            !budget.take_at(start + Duration::from_millis(10)),
            "half a token"
        );
        assert!(
            budget.take_at(start + Duration::from_millis(20)),
            "one token after 20 ms"
        );
        let later = start + Duration::from_secs(60);
        let after_a_minute = (0..200).filter(|_| budget.take_at(later)).count();
        assert_eq!(after_a_minute, 50, "never more than a second's worth");
    }

    #[test]
    fn a_rate_budget_of_0_is_no_limit() {
        let budget = RateBudget::new(0);
        assert!((0..10_000).all(|_| budget.take()));
    }
}
