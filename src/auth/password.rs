//! Argon2id password hashes (PHC strings). Hashing is deliberately slow (~19
//! MiB and a core for tens of milliseconds each), so it is a bounded
//! resource of its own ([`Hashing`]): it runs on the blocking pool, never on
//! an actix worker; at most `max(1, cores - 1)` hashes run at once, so one
//! core is always left for serving; and only a bounded number wait, for a
//! bounded time. A burst beyond that is answered `503` with `Retry-After`
//! at once, instead of every request waiting ever longer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::ApiError;

/// What a client refused by a full hashing queue is told to wait: a hash
/// takes tens of milliseconds, so the queue has moved on within a second.
const RETRY_AFTER_SECS: u64 = 1;

/// The hashing slots of one application and the queue in front of them.
pub struct Hashing {
    running: Semaphore,
    waiting: AtomicUsize,
    queue_max: usize,
    wait_max: Duration,
}

/// Hashes that may run at once on a machine with `cores` cores: all but one,
/// at least one.
pub fn hashing_slots(cores: usize) -> usize {
    cores.saturating_sub(1).max(1)
}

impl Hashing {
    /// `queue_max` hashes may wait (0: none), each at most `wait_max`.
    pub fn new(queue_max: usize, wait_max: Duration) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            running: Semaphore::new(hashing_slots(cores)),
            waiting: AtomicUsize::new(0),
            queue_max,
            wait_max,
        }
    }

    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        self.blocking(move || hash_now(&password)).await
    }

    /// `false` for a wrong password or an unreadable stored hash.
    pub async fn verify(&self, password: String, stored: String) -> Result<bool, ApiError> {
        self.blocking(move || Ok(verify_now(&password, &stored)))
            .await
    }

    /// Verifies against a fixed hash, so an unknown login takes as long as
    /// a wrong password (no user enumeration by timing).
    pub async fn dummy_verify(&self, password: String) -> Result<(), ApiError> {
        self.blocking(move || {
            static DUMMY: std::sync::OnceLock<Result<String, ApiError>> =
                std::sync::OnceLock::new();
            let stored = DUMMY.get_or_init(|| hash_now("linkhub-timing-equalizer"));
            verify_now(&password, stored.as_ref().map_err(Clone::clone)?);
            Ok(())
        })
        .await
    }

    /// A free slot, or `503` when `queue_max` others already wait or none
    /// frees up within `wait_max`.
    async fn slot(&self) -> Result<SemaphorePermit<'_>, ApiError> {
        if let Ok(permit) = self.running.try_acquire() {
            return Ok(permit);
        }
        let queued = self
            .waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.queue_max).then_some(n + 1)
            });
        if queued.is_err() {
            tracing::warn!(
                "password hashing queue is full ({} waiting)",
                self.queue_max
            );
            return Err(ApiError::busy(RETRY_AFTER_SECS));
        }
        let waited = tokio::time::timeout(self.wait_max, self.running.acquire()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(e)) => Err(ApiError::internal(format!(
                "password hashing is shut down: {e}"
            ))),
            Err(_) => {
                tracing::warn!("no password hashing slot within {:?}", self.wait_max);
                Err(ApiError::busy(RETRY_AFTER_SECS))
            }
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self.slot().await?;
        // The blocking thread logs under the span of the request that hashes.
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(f))
            .await
            .map_err(|e| ApiError::internal(format!("password task failed: {e}")))?
    }
}

fn hash_now(password: &str) -> Result<String, ApiError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| ApiError::internal(format!("hashing a password failed: {e}")))
}

fn verify_now(password: &str, stored: &str) -> bool {
    let Ok(parsed) = argon2::PasswordHash::new(stored) else {
        tracing::error!("a stored password hash is not a PHC string");
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hashing = Hashing::new(4, Duration::from_secs(5));
        let h = hashing.hash("correct horse".into()).await.expect("hashes");
        assert!(h.starts_with("$argon2id$"));
        assert!(
            hashing
                .verify("correct horse".into(), h.clone())
                .await
                .expect("verifies")
        );
        assert!(
            !hashing
                .verify("wrong horse".into(), h)
                .await
                .expect("verifies")
        );
        hashing
            .dummy_verify("anything".into())
            .await
            .expect("verifies");
    }

    #[test]
    fn hashing_leaves_a_core_for_serving() {
        assert_eq!(hashing_slots(1), 1);
        assert_eq!(hashing_slots(2), 1);
        assert_eq!(hashing_slots(8), 7);
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_at_once() {
        let hashing = Hashing::new(0, Duration::from_secs(5));
        let slots: Vec<_> = std::iter::from_fn(|| hashing.running.try_acquire().ok()).collect();
        assert!(!slots.is_empty());
        let refused = hashing.hash("password".into()).await;
        assert!(
            matches!(
                refused,
                Err(ApiError::Busy {
                    retry_after_secs: 1
                })
            ),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn a_hash_that_waits_too_long_answers_busy() {
        let hashing = Hashing::new(8, Duration::from_millis(50));
        let _slots: Vec<_> = std::iter::from_fn(|| hashing.running.try_acquire().ok()).collect();
        let refused = hashing.hash("password".into()).await;
        assert!(matches!(refused, Err(ApiError::Busy { .. })), "{refused:?}");
        assert_eq!(hashing.waiting.load(Ordering::Acquire), 0);
    }
}
