//! Login throttle: after `max_failures` failed attempts for one login within
//! a window, every attempt for that login — right password or not, existing
//! login or not — is refused until the window that started with the first
//! attempt has passed. The same holds per client address across all login
//! names (password spraying), with its own limit.
//!
//! - **Reserve before judging.** An attempt takes its place in the window
//!   before its password is hashed; a success gives the place back, a
//!   failure keeps it. So of any number of simultaneous attempts at most
//!   `max_failures` are judged, and a right password never counts as a failure.
//! - **Shared, and never a raw login.** The windows live in Redis (one script
//!   per attempt, expiring with the window: [`crate::cache::limits`]) under a
//!   SHA-256 of the lowercased login, so every instance counts the same
//!   attempts and no email reaches Redis. This process keeps windows of its
//!   own as well, counting every attempt it sees; an attempt needs a place
//!   in both. While Redis cannot be used (the breaker is open) the local
//!   windows alone decide, already holding what this instance saw: a login
//!   never fails because Redis is down.
//! - **Bounded memory.** The local windows are keyed by the same 32-byte
//!   digest (whatever the login's length) in a map of at most
//!   [`LOCAL_WINDOWS_MAX`] entries; logins longer than any valid one never
//!   reach the throttle (see [`crate::service::sessions`]).
//!
//! A fixed window, not a token bucket: a bucket (`governor`) refills
//! continuously and would let an attempt through before the window ends,
//! which API.md forbids.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::cache::Cache;
use crate::cache::limits::Admission;
use crate::error::ApiError;

/// Local windows kept at most. A new window needs an attempt that reached
/// the throttle, and there are at most a few thousand of those per minute
/// per instance (hashing is the bottleneck), so live windows fit; beyond it
/// the oldest half goes. About 100 bytes each: a few MiB at most.
pub const LOCAL_WINDOWS_MAX: usize = 20_000;

/// How many attempts one key may have in flight or failed, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub max: u32,
    pub window: Duration,
}

pub struct LoginThrottle {
    per_login: Limit,
    per_address: Limit,
    local: Mutex<Windows>,
}

/// A place held in the windows of one attempt. Dropping it keeps the
/// places (the attempt counts as a failure); [`LoginThrottle::release`]
/// gives them back.
#[must_use = "a reservation that is dropped counts as a failed attempt"]
pub struct Reservation {
    places: Vec<Place>,
}

struct Place {
    digest: [u8; 32],
    /// Held in Redis too (always in this process's windows).
    shared: bool,
}

impl LoginThrottle {
    pub fn new(per_login: Limit, per_address: Limit) -> Self {
        Self {
            per_login,
            per_address,
            local: Mutex::new(Windows::new(LOCAL_WINDOWS_MAX)),
        }
    }

    /// Takes a place for an attempt on `login` from `address` (when known),
    /// or answers `429` with the seconds until the fullest window ends.
    pub async fn reserve(
        &self,
        cache: &Cache,
        login: &str,
        address: Option<IpAddr>,
    ) -> Result<Reservation, ApiError> {
        let mut keys = vec![(digest("login", &login.to_lowercase()), self.per_login)];
        if let Some(address) = address {
            keys.push((digest("address", &address.to_string()), self.per_address));
        }
        let mut reservation = Reservation { places: Vec::new() };
        for (key, limit) in keys {
            match self.reserve_one(cache, key, limit).await {
                Ok(place) => reservation.places.push(place),
                Err(wait) => {
                    // The attempt is not judged: the places it took go back.
                    self.release(cache, reservation).await;
                    return Err(ApiError::RateLimited {
                        retry_after_secs: whole_seconds(wait),
                    });
                }
            }
        }
        Ok(reservation)
    }

    /// Gives the places of an attempt back: it succeeded, or it was never
    /// judged (hashing was busy, the database was down).
    pub async fn release(&self, cache: &Cache, reservation: Reservation) {
        for place in reservation.places {
            self.lock().release(&place.digest);
            if place.shared {
                cache.release_attempt(&place.digest).await;
            }
        }
    }

    /// Takes a place in this process's window of `digest`, then in the
    /// shared one. The local windows count every attempt this instance sees
    /// even while Redis is used, so they hold at once when Redis goes away
    /// (no count starts from zero then).
    async fn reserve_one(
        &self,
        cache: &Cache,
        digest: [u8; 32],
        limit: Limit,
    ) -> Result<Place, Duration> {
        let local = self.lock().reserve(digest, limit, Instant::now());
        if let Err(local_wait) = local {
            let shared_wait = cache.attempt_window_full_for(&digest, limit.max).await;
            return Err(local_wait.max(shared_wait));
        }
        let window_ms = u64::try_from(limit.window.as_millis()).unwrap_or(u64::MAX);
        match cache.reserve_attempt(&digest, limit.max, window_ms).await {
            Some(Admission::Admitted) => Ok(Place {
                digest,
                shared: true,
            }),
            Some(Admission::Refused { retry_after_ms }) => {
                self.lock().release(&digest);
                Err(Duration::from_millis(retry_after_ms))
            }
            None => Ok(Place {
                digest,
                shared: false,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Windows> {
        self.local
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The SHA-256 of `kind` and `value`: what both the local and the shared
/// windows are keyed by. `kind` keeps a login and an address apart.
fn digest(kind: &str, value: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(kind.as_bytes());
    hasher.update([0]);
    hasher.update(value.as_bytes());
    hasher.finalize().into()
}

fn whole_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// This process's windows, at most `max` of them.
struct Windows {
    max: usize,
    windows: HashMap<[u8; 32], Window>,
}

#[derive(Clone, Copy)]
struct Window {
    ends: Instant,
    taken: u32,
}

impl Windows {
    fn new(max: usize) -> Self {
        Self {
            max,
            windows: HashMap::new(),
        }
    }

    fn reserve(&mut self, key: [u8; 32], limit: Limit, now: Instant) -> Result<(), Duration> {
        if !self.windows.contains_key(&key) && self.windows.len() >= self.max {
            self.make_room(now);
        }
        let window = self.windows.entry(key).or_insert(Window {
            ends: now + limit.window,
            taken: 0,
        });
        if now >= window.ends {
            *window = Window {
                ends: now + limit.window,
                taken: 0,
            };
        }
        if window.taken >= limit.max {
            return Err(window.ends - now);
        }
        window.taken += 1;
        Ok(())
    }

    fn release(&mut self, key: &[u8; 32]) {
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
        let wait = windows.reserve(key(1), LIMIT, start).expect_err("full");
        assert_eq!(wait, LIMIT.window);
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
