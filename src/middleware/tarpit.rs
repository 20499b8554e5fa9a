//! Slow refusals for clients that do not wait: a client refused with `429`
//! and `Retry-After` that asks again before its window ends gets its next
//! refusals only after `REFUSAL_DELAY_MS` (or sooner, when the window ends
//! sooner).
//!
//! # Why
//! A refusal costs little, but a client that ignores `Retry-After` sends
//! the next request the moment the last answer arrives: answered at once,
//! a few dozen such clients keep both cores busy with nothing but `429`s
//! (and their own load generator's work), and the well-behaved clients'
//! reads wait for a core. Held a second, each of them sends one request a
//! second. A client that honours `Retry-After` never meets the delay: its
//! first refusal in a window is answered at once, and it comes back when
//! the window has ended.
//!
//! # Bounded
//! At most `REFUSALS_HELD_MAX` refusals are held at once (a held one costs
//! a connection's buffers and a timer, no worker). Beyond that a refusal is
//! answered at once and its connection is closed
//! (`Connection: close`), so a client opening connections without end pays
//! a new handshake for each refused request rather than holding us.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::metrics::Metrics;

/// How a refusal was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// At once: the client's first refusal in its window, or delays are off.
    No,
    /// After a delay, for this long.
    For(Duration),
    /// At once, because `REFUSALS_HELD_MAX` refusals are held already: the
    /// connection is to be closed.
    Full,
}

/// The delay of repeated refusals and its bound.
pub struct Tarpit {
    delay: Duration,
    slots: Semaphore,
    metrics: Arc<Metrics>,
}

impl Tarpit {
    pub fn new(delay: Duration, max: usize, metrics: Arc<Metrics>) -> Self {
        Self {
            delay,
            slots: Semaphore::new(max),
            metrics,
        }
    }

    /// Waits before a refusal is answered: for a client refused before in
    /// this window (`again`), the delay or `window_left` if that is
    /// shorter, when a slot is free.
    pub async fn hold(&self, again: bool, window_left: Duration) -> Held {
        let delay = self.delay.min(window_left);
        if !again || delay.is_zero() {
            return Held::No;
        }
        let Ok(_slot) = self.slots.try_acquire() else {
            self.metrics.refusal_held("full");
            return Held::Full;
        };
        self.metrics.refusal_held("held");
        tokio::time::sleep(delay).await;
        Held::For(delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const DELAY: Duration = Duration::from_millis(200);
    const LONG: Duration = Duration::from_secs(60);

    fn tarpit(delay: Duration, max: usize) -> Tarpit {
        Tarpit::new(delay, max, Arc::new(Metrics::default()))
    }

    #[tokio::test]
    async fn a_first_refusal_is_answered_at_once() {
        let started = Instant::now();
        assert_eq!(tarpit(DELAY, 4).hold(false, LONG).await, Held::No);
        assert!(started.elapsed() < DELAY);
    }

    #[tokio::test]
    async fn a_repeated_refusal_waits_the_delay_or_the_window_if_shorter() {
        let tarpit = tarpit(DELAY, 4);
        let started = Instant::now();
        assert_eq!(tarpit.hold(true, LONG).await, Held::For(DELAY));
        assert!(started.elapsed() >= DELAY);
        let short = Duration::from_millis(20);
        assert_eq!(tarpit.hold(true, short).await, Held::For(short));
    }

    #[tokio::test]
    async fn no_more_than_the_bound_are_held_and_a_zero_delay_holds_none() {
        let tarpit = Arc::new(tarpit(DELAY, 2));
        let held: Vec<_> = (0..2)
            .map(|_| {
                let tarpit = Arc::clone(&tarpit);
                tokio::spawn(async move { tarpit.hold(true, LONG).await })
            })
            .collect();
        // Both hold their slots well before the delay ends.
        tokio::time::sleep(DELAY / 4).await;
        assert_eq!(tarpit.hold(true, LONG).await, Held::Full);
        for one in held {
            assert_eq!(one.await.expect("joined"), Held::For(DELAY));
        }
        assert_eq!(
            tarpit.hold(true, LONG).await,
            Held::For(DELAY),
            "slots come back"
        );
        assert_eq!(
            self::tarpit(Duration::ZERO, 2).hold(true, LONG).await,
            Held::No
        );
    }
}
