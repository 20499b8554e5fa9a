//! Login throttle: after `max_failures` failed attempts for one account
//! within a window, every attempt for that account — right password or not —
//! is refused until the window that started with the first attempt has
//! passed; a login that names no account has a window of its own, so an
//! unknown login is throttled the same way. The same holds per client
//! address across all logins (password spraying), with its own limit.
//!
//! - **One window per account.** A login resolves to an account (its
//!   username or its email, in any case) before it takes its place, and the
//!   window is the account's: ten wrong passwords under the username and
//!   ten under the email are twenty failures of one account, not two
//!   windows of ten. An address's place is taken first, before the lookup,
//!   so a flood from one address costs no query once its window is full.
//! - **Reserve before judging.** An attempt takes its place in the window
//!   before its password is hashed; a success gives the place back, a
//!   failure keeps it. So of any number of simultaneous attempts at most
//!   `max_failures` are judged, and a right password never counts as a failure.
//! - **Shared, and never a raw login.** The windows live in Redis (one script
//!   per attempt, expiring with the window: [`crate::cache::limits`]) under a
//!   SHA-256 of the account id or of the lowercased login, so every instance
//!   counts the same attempts and no email reaches Redis. This process keeps
//!   windows of its own as well ([`super::windows`]), counting every attempt
//!   it sees; an attempt needs a place in both. While Redis cannot be used
//!   (the breaker is open) the local windows alone decide, already holding
//!   what this instance saw: a login never fails because Redis is down.
//! - **Bounded memory.** The local windows are keyed by a 32-byte digest
//!   (whatever the login's length) in a map of at most
//!   [`LOCAL_WINDOWS_MAX`] entries; logins longer than any valid one never
//!   reach the throttle (see [`crate::service::sessions`]).

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::client_addr::limit_key;
use super::windows::{Full, LOCAL_WINDOWS_MAX, Windows, digest, whole_seconds};
use crate::cache::Cache;
use crate::cache::limits::Admission;
use crate::error::ApiError;

pub use super::windows::Limit;

pub struct LoginThrottle {
    per_login: Limit,
    per_address: Limit,
    local: Mutex<Windows>,
}

/// Whose window a login attempt counts in.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// The account the login resolved to (by username or by email).
    Account(i64),
    /// A login that names no account: its own window, by the lowercased login.
    UnknownLogin(&'a str),
}

impl Subject<'_> {
    fn digest(self) -> [u8; 32] {
        match self {
            Self::Account(id) => digest("account", &id.to_string()),
            Self::UnknownLogin(login) => digest("login", &login.to_lowercase()),
        }
    }
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

    /// The first step of an attempt: a place in the window of the client's
    /// `address` (its /64 for IPv6; none when the address is unknown), or
    /// `429` with the seconds until that window ends. Taken before the
    /// login is looked up.
    pub async fn reserve_address(
        &self,
        cache: &Cache,
        address: Option<IpAddr>,
    ) -> Result<Reservation, ApiError> {
        let mut reservation = Reservation { places: Vec::new() };
        if let Some(address) = address {
            let key = digest("address", &limit_key(address));
            self.take(cache, &mut reservation, key, self.per_address)
                .await?;
        }
        Ok(reservation)
    }

    /// The second step: a place in the window of `subject`, added to
    /// `reservation`; on `429` every place the reservation held goes back.
    pub async fn reserve_subject(
        &self,
        cache: &Cache,
        mut reservation: Reservation,
        subject: Subject<'_>,
    ) -> Result<Reservation, ApiError> {
        self.take(cache, &mut reservation, subject.digest(), self.per_login)
            .await?;
        Ok(reservation)
    }

    /// Adds a place in `key`'s windows to `reservation`; a refusal gives
    /// back the places it already held (the attempt is not judged).
    async fn take(
        &self,
        cache: &Cache,
        reservation: &mut Reservation,
        key: [u8; 32],
        limit: Limit,
    ) -> Result<(), ApiError> {
        match self.reserve_one(cache, key, limit).await {
            Ok(place) => {
                reservation.places.push(place);
                Ok(())
            }
            Err(wait) => {
                let held = Reservation {
                    places: std::mem::take(&mut reservation.places),
                };
                self.release(cache, held).await;
                Err(ApiError::RateLimited {
                    retry_after_secs: whole_seconds(wait),
                })
            }
        }
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
        if let Err(Full {
            wait: local_wait, ..
        }) = local
        {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_and_a_login_of_the_same_text_are_different_windows() {
        assert_ne!(
            Subject::Account(7).digest(),
            Subject::UnknownLogin("7").digest()
        );
        assert_eq!(
            Subject::UnknownLogin("Ada@Example.com").digest(),
            Subject::UnknownLogin("ada@example.com").digest(),
            "a login's case does not make another window"
        );
    }
}
