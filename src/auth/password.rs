//! Argon2id password hashes (PHC strings). Hashing is deliberately slow (~19
//! MiB and a core for tens of milliseconds each), so it is a bounded
//! resource of its own ([`Hashing`]): it runs on the blocking pool, never on
//! an actix worker; at most `max(1, cores - 1)` hashes run at once, so one
//! core is always left for serving; and only a bounded number wait, for a
//! bounded time. A burst beyond that is answered `503` with `Retry-After`
//! at once, instead of every request waiting ever longer.
//!
//! Registrations come last ([`Priority`]): anyone can send them, and on a
//! 2-core machine there is one slot, which ~20 registrations a second keep
//! busy. A freed slot goes to a waiting login (or password check) before
//! any registration, and registrations wait in a queue of their own, so a
//! registration flood costs a login at most the one hash in progress.
//! Their hashes also run at a lower OS priority (`HASH_REGISTRATION_NICE`,
//! [`super::niced`]), so a burst of them takes only the CPU that serving
//! leaves idle.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use tokio::sync::oneshot;

use super::niced::NicedPool;
use crate::error::ApiError;

/// What a client refused by a full hashing queue is told to wait: a hash
/// takes tens of milliseconds, so the queue has moved on within a second.
const RETRY_AFTER_SECS: u64 = 1;

/// Who a hash is for, which decides who gets a slot first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Logins and the checks of an authenticated user's password: people
    /// who have an account. Served first.
    Account,
    /// Registrations: anyone can send them, as fast as they like. They get
    /// a slot only when no account hash waits, and wait in a queue of their
    /// own, so a registration flood can neither fill the queue logins wait
    /// in nor take a slot a login is waiting for.
    Registration,
}

impl Priority {
    fn index(self) -> usize {
        match self {
            Self::Account => 0,
            Self::Registration => 1,
        }
    }
}

/// The hashing slots of one application and the queues in front of them.
pub struct Hashing {
    slots: Arc<Slots>,
    queue_max: usize,
    wait_max: Duration,
    /// Where registrations' hashes run; `None`: the blocking pool.
    registrations: Option<NicedPool>,
}

/// Free slots and who waits for one, per [`Priority`]: a freed slot goes
/// to the oldest waiter of the highest priority, handed over directly, so
/// no newcomer can take it first.
struct Slots {
    state: Mutex<SlotState>,
}

struct SlotState {
    free: usize,
    /// Waiters by [`Priority::index`]; a sender whose receiver is gone
    /// (its wait timed out) is skipped.
    waiting: [VecDeque<oneshot::Sender<SlotPermit>>; 2],
}

/// A hashing slot; dropping it frees the slot for the next waiter.
struct SlotPermit {
    /// `None` once the slot was counted free (nothing left to release).
    slots: Option<Arc<Slots>>,
}

impl SlotPermit {
    fn of(slots: &Arc<Slots>) -> Self {
        Self {
            slots: Some(Arc::clone(slots)),
        }
    }
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        if let Some(slots) = self.slots.take() {
            Slots::release(&slots);
        }
    }
}

impl Slots {
    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A slot at once when one is free and nobody of this or a higher
    /// priority waits (no overtaking); else the place in line of `priority`
    /// when fewer than `queue_max` wait there; else `None` (queue full).
    fn try_take(
        this: &Arc<Self>,
        priority: Priority,
        queue_max: usize,
    ) -> Option<Result<SlotPermit, oneshot::Receiver<SlotPermit>>> {
        let mut state = this.lock();
        for queue in state.waiting.iter_mut() {
            queue.retain(|waiter| !waiter.is_closed());
        }
        let ahead = state.waiting[..=priority.index()]
            .iter()
            .any(|queue| !queue.is_empty());
        if state.free > 0 && !ahead {
            state.free -= 1;
            return Some(Ok(SlotPermit::of(this)));
        }
        let queue = &mut state.waiting[priority.index()];
        if queue.len() >= queue_max {
            return None;
        }
        let (sender, receiver) = oneshot::channel();
        queue.push_back(sender);
        Some(Err(receiver))
    }

    /// Hands a freed slot to the first live waiter, highest priority first,
    /// or counts it free. A waiter whose wait ended meanwhile hands the slot
    /// back when its receiver drops the permit (it comes back here).
    fn release(this: &Arc<Self>) {
        let mut permit = SlotPermit::of(this);
        let mut state = this.lock();
        for queue in state.waiting.iter_mut() {
            while let Some(waiter) = queue.pop_front() {
                match waiter.send(permit) {
                    Ok(()) => return,
                    Err(back) => permit = back,
                }
            }
        }
        state.free += 1;
        // The permit made for the hand-over is the slot just counted free.
        permit.slots = None;
    }
}

/// Hashes that may run at once on a machine with `cores` cores: all but one,
/// at least one.
pub fn hashing_slots(cores: usize) -> usize {
    cores.saturating_sub(1).max(1)
}

impl Hashing {
    /// `queue_max` hashes of each [`Priority`] may wait (0: none), each at
    /// most `wait_max`.
    /// Registrations' hashes run `registration_nice` lower in the OS
    /// scheduler (see [`super::niced`]).
    pub fn new(queue_max: usize, wait_max: Duration, registration_nice: u8) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let slots = hashing_slots(cores);
        let mut hashing = Self::with_slots(slots, queue_max, wait_max);
        match NicedPool::start(
            "hash-registration",
            slots,
            i32::from(registration_nice.min(19)),
        ) {
            Ok(pool) => hashing.registrations = Some(pool),
            Err(e) => tracing::warn!(
                "registrations' hashes run at the normal priority: no thread for them: {e}"
            ),
        }
        hashing
    }

    fn with_slots(slots: usize, queue_max: usize, wait_max: Duration) -> Self {
        Self {
            registrations: None,
            slots: Arc::new(Slots {
                state: Mutex::new(SlotState {
                    free: slots,
                    waiting: [VecDeque::new(), VecDeque::new()],
                }),
            }),
            queue_max,
            wait_max,
        }
    }

    /// Hashes a new password of an existing account (a password change).
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        self.blocking(Priority::Account, move || hash_now(&password))
            .await
    }

    /// Hashes the password of a registration, behind every account hash.
    pub async fn hash_registration(&self, password: String) -> Result<String, ApiError> {
        self.blocking(Priority::Registration, move || hash_now(&password))
            .await
    }

    /// `false` for a wrong password or an unreadable stored hash.
    pub async fn verify(&self, password: String, stored: String) -> Result<bool, ApiError> {
        self.blocking(Priority::Account, move || {
            Ok(verify_now(&password, &stored))
        })
        .await
    }

    /// Verifies against a fixed hash, so an unknown login takes as long as
    /// a wrong password (no user enumeration by timing).
    pub async fn dummy_verify(&self, password: String) -> Result<(), ApiError> {
        self.blocking(Priority::Account, move || {
            static DUMMY: std::sync::OnceLock<Result<String, ApiError>> =
                std::sync::OnceLock::new();
            let stored = DUMMY.get_or_init(|| hash_now("linkhub-timing-equalizer"));
            verify_now(&password, stored.as_ref().map_err(Clone::clone)?);
            Ok(())
        })
        .await
    }

    /// A free slot, or `503` when `queue_max` others of `priority` already
    /// wait or none frees up within `wait_max`.
    async fn slot(&self, priority: Priority) -> Result<SlotPermit, ApiError> {
        let receiver = match Slots::try_take(&self.slots, priority, self.queue_max) {
            Some(Ok(permit)) => return Ok(permit),
            Some(Err(receiver)) => receiver,
            None => {
                tracing::warn!(
                    "password hashing queue ({priority:?}) is full ({} waiting)",
                    self.queue_max
                );
                return Err(ApiError::busy(RETRY_AFTER_SECS));
            }
        };
        match tokio::time::timeout(self.wait_max, receiver).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(ApiError::internal("password hashing is shut down")),
            Err(_) => {
                tracing::warn!(
                    "no password hashing slot ({priority:?}) within {:?}",
                    self.wait_max
                );
                Err(ApiError::busy(RETRY_AFTER_SECS))
            }
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        priority: Priority,
        f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = self.slot(priority).await?;
        // The thread logs under the span of the request that hashes.
        let span = tracing::Span::current();
        let work = move || span.in_scope(f);
        let ran = match (&self.registrations, priority) {
            (Some(pool), Priority::Registration) => pool.run(work).await.map_err(|e| e.to_string()),
            _ => tokio::task::spawn_blocking(work)
                .await
                .map_err(|e| e.to_string()),
        };
        ran.map_err(|e| ApiError::internal(format!("password task failed: {e}")))?
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
        let hashing = Hashing::new(4, Duration::from_secs(5), 10);
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

    /// Every slot, taken.
    fn take_all(hashing: &Hashing) -> Vec<SlotPermit> {
        std::iter::from_fn(
            || match Slots::try_take(&hashing.slots, Priority::Account, 0) {
                Some(Ok(permit)) => Some(permit),
                _ => None,
            },
        )
        .collect()
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_at_once() {
        let hashing = Hashing::new(0, Duration::from_secs(5), 10);
        let slots = take_all(&hashing);
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
    async fn a_hash_that_waits_too_long_answers_busy_and_leaves_the_slot() {
        let hashing = Hashing::with_slots(1, 8, Duration::from_millis(50));
        let slot = take_all(&hashing);
        let refused = hashing.hash("password".into()).await;
        assert!(matches!(refused, Err(ApiError::Busy { .. })), "{refused:?}");
        drop(slot);
        // The waiter that gave up is skipped: the freed slot is free again.
        assert_eq!(hashing.slots.lock().free, 1);
        hashing.hash("password".into()).await.expect("a free slot");
    }

    #[tokio::test]
    async fn a_freed_slot_goes_to_a_waiting_login_before_registrations() {
        let hashing = Arc::new(Hashing::with_slots(1, 8, Duration::from_secs(10)));
        let held = take_all(&hashing);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        // Registrations queue first, then one login.
        for (name, priority) in [
            ("registration 1", Priority::Registration),
            ("registration 2", Priority::Registration),
            ("login", Priority::Account),
        ] {
            let (waiter, order) = (Arc::clone(&hashing), Arc::clone(&order));
            waiters.push(tokio::spawn(async move {
                let _slot = waiter.slot(priority).await.expect("a slot");
                order.lock().expect("order").push(name);
            }));
            // Each is in line before the next one comes.
            while hashing
                .slots
                .lock()
                .waiting
                .iter()
                .map(VecDeque::len)
                .sum::<usize>()
                < waiters.len()
            {
                tokio::task::yield_now().await;
            }
        }
        drop(held);
        for waiter in waiters {
            waiter.await.expect("waiter");
        }
        assert_eq!(
            *order.lock().expect("order"),
            ["login", "registration 1", "registration 2"]
        );
    }

    #[tokio::test]
    async fn registrations_cannot_fill_the_queue_logins_wait_in() {
        let hashing = Hashing::with_slots(1, 1, Duration::from_secs(10));
        let _held = take_all(&hashing);
        let _registration =
            Slots::try_take(&hashing.slots, Priority::Registration, 1).expect("a place in line");
        assert!(
            Slots::try_take(&hashing.slots, Priority::Registration, 1).is_none(),
            "the registrations' queue is full"
        );
        assert!(
            Slots::try_take(&hashing.slots, Priority::Account, 1).is_some(),
            "a login still gets in line"
        );
    }
}
