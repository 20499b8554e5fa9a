//! Fixed windows: at most `max` places per key within a window that opens
//! with its first place, kept in this process and bounded in number. The
//! login throttle ([`super::throttle`]) pairs them with shared windows in
//! Redis; the per-address limits of registrations and expensive reads
//! (`middleware::admission`) use them alone.
//!
//! Keys are SHA-256 digests ([`digest`]) of a kind and a value, 32 bytes
//! whatever the value's length, so a window costs the same for a 60 KB
//! login as for a short one, and no raw login or address is kept.
//!
//! A fixed window, not a token bucket: a bucket (`governor`) refills
//! continuously and would let an attempt through before the window ends,
//! which API.md forbids for logins.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Windows kept at most per map. A new window needs a request that reached
/// a limit, and there are at most a few thousand of those per minute per
/// instance (hashing, or the bulkhead, is the bottleneck), so live windows
/// fit; beyond it the oldest half goes. About 100 bytes each: a few MiB at most.
pub const LOCAL_WINDOWS_MAX: usize = 20_000;

/// How many places one key may hold, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub max: u32,
    pub window: Duration,
}

/// The SHA-256 of `kind` and `value`: what both the local and the shared
/// windows are keyed by. `kind` keeps a login and an address apart.
pub fn digest(kind: &str, value: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(kind.as_bytes());
    hasher.update([0]);
    hasher.update(value.as_bytes());
    hasher.finalize().into()
}

/// The whole seconds of a `Retry-After` that covers `wait` (at least 1).
pub fn whole_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// Fixed windows kept in this process, at most `max` of them.
pub struct Windows {
    max: usize,
    windows: HashMap<[u8; 32], Window>,
}

#[derive(Clone, Copy)]
struct Window {
    ends: Instant,
    taken: u32,
    /// Whether this window has refused a request already.
    refused: bool,
}

/// A full window's answer to a request it refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    /// How long the window has left.
    pub wait: Duration,
    /// Whether it had refused a request before this one: the client asked
    /// again before the window ended, whatever `Retry-After` told it.
    pub again: bool,
}

impl Windows {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            windows: HashMap::new(),
        }
    }

    /// Takes a place in the window of `key` (opened now when it has none
    /// or it ended), or answers how long the full window has left.
    pub fn reserve(&mut self, key: [u8; 32], limit: Limit, now: Instant) -> Result<(), Full> {
        if !self.windows.contains_key(&key) && self.windows.len() >= self.max {
            self.make_room(now);
        }
        let opened = Window {
            ends: now + limit.window,
            taken: 0,
            refused: false,
        };
        let window = self.windows.entry(key).or_insert(opened);
        if now >= window.ends {
            *window = opened;
        }
        if window.taken >= limit.max {
            let again = std::mem::replace(&mut window.refused, true);
            return Err(Full {
                wait: window.ends - now,
                again,
            });
        }
        window.taken += 1;
        Ok(())
    }

    /// Gives a place back to the window of `key`, if it is still there.
    pub fn release(&mut self, key: &[u8; 32]) {
        if let Some(window) = self.windows.get_mut(key) {
            window.taken = window.taken.saturating_sub(1);
        }
    }

    /// Drops the ended windows; when that is not enough, the older half of
    /// the live ones, so that making room costs O(1) per new window on average.
    fn make_room(&mut self, now: Instant) {
        self.windows.retain(|_, w| now < w.ends);
        if self.windows.len() < self.max {
            return;
        }
        let mut ends: Vec<Instant> = self.windows.values().map(|w| w.ends).collect();
        let middle = ends.len() / 2;
        let (_, median, _) = ends.select_nth_unstable(middle);
        let median = *median;
        self.windows.retain(|_, w| w.ends > median);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Limit = Limit {
        max: 3,
        window: Duration::from_secs(60),
    };

    fn key(n: u64) -> [u8; 32] {
        digest("login", &n.to_string())
    }

    #[test]
    fn a_window_admits_max_places_until_it_ends() {
        let mut windows = Windows::new(10);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(windows.reserve(key(1), LIMIT, start).is_ok());
        }
        let full = windows.reserve(key(1), LIMIT, start).expect_err("full");
        assert_eq!(
            full,
            Full {
                wait: LIMIT.window,
                again: false
            }
        );
        let later = start + Duration::from_secs(1);
        let full = windows.reserve(key(1), LIMIT, later).expect_err("full");
        assert_eq!(
            full,
            Full {
                wait: LIMIT.window - Duration::from_secs(1),
                again: true
            },
            "a second refusal in the window knows of the first"
        );
        assert!(
            windows.reserve(key(2), LIMIT, start).is_ok(),
            "others are unaffected"
        );
        windows.release(&key(1));
        assert!(
            windows.reserve(key(1), LIMIT, start).is_ok(),
            "a released place is free"
        );
        assert!(windows.reserve(key(1), LIMIT, start).is_err());
        assert!(windows.reserve(key(1), LIMIT, start + LIMIT.window).is_ok());
        for _ in 0..2 {
            windows
                .reserve(key(1), LIMIT, start + LIMIT.window)
                .expect("admitted");
        }
        let full = windows
            .reserve(key(1), LIMIT, start + LIMIT.window)
            .expect_err("full");
        assert!(!full.again, "a new window starts with no refusal");
    }

    #[test]
    fn the_windows_stay_bounded_whatever_keys_arrive() {
        let mut windows = Windows::new(100);
        let start = Instant::now();
        windows.reserve(key(0), LIMIT, start).expect("admitted");
        for n in 1..10_000 {
            let now = start + Duration::from_millis(n);
            windows
                .reserve(key(n), LIMIT, now)
                .expect("a new key is admitted");
            assert!(
                windows.windows.len() <= 100,
                "{} windows",
                windows.windows.len()
            );
        }
        // The newest windows are the ones kept.
        let late = start + Duration::from_millis(9_999);
        for _ in 0..2 {
            windows.reserve(key(9_999), LIMIT, late).expect("admitted");
        }
        assert!(windows.reserve(key(9_999), LIMIT, late).is_err());
    }

    #[test]
    fn ended_windows_go_first() {
        let mut windows = Windows::new(2);
        let start = Instant::now();
        windows.reserve(key(1), LIMIT, start).expect("admitted");
        let later = start + Duration::from_secs(30);
        windows.reserve(key(2), LIMIT, later).expect("admitted");
        let after_first = start + LIMIT.window;
        windows
            .reserve(key(3), LIMIT, after_first)
            .expect("admitted");
        assert_eq!(windows.windows.len(), 2);
        assert!(!windows.windows.contains_key(&key(1)));
        assert!(windows.windows.contains_key(&key(2)));
    }

    #[test]
    fn digests_keep_kinds_and_case_apart() {
        assert_ne!(digest("login", "1.2.3.4"), digest("address", "1.2.3.4"));
        assert_eq!(digest("login", "alice"), digest("login", "alice"));
        assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(59_001)), 60);
    }
}
