//! The cache epoch as this process knows it: part of every cache key this
//! process builds (`<CACHE_PREFIX>:e<epoch>`), so that moving it makes every
//! entry and counter of the older epoch unreachable at once.
//!
//! PostgreSQL holds the truth (`db::epoch`); this is a copy that only ever
//! moves forward. It is learned when recovery trusts Redis (which checks the
//! Redis processes against the ones the epoch was trusted on, and moves the
//! epoch when they differ), from the announcement of every move (`NOTIFY`,
//! delivered within milliseconds to every instance that serves from Redis:
//! one that is not listening bypasses Redis), from each write's own outbox
//! rows (read back with the epoch they were committed under), and from a
//! poll each second.
//!
//! Instances adopt a move at slightly different moments. For a short while
//! after a move ([`PREVIOUS_IN_USE_FOR`]) bumps go to the previous epoch
//! too, so that an instance that has not adopted the move yet still sees a
//! write that another instance answered under the new one.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

/// How long after this process adopted a move its bumps also go to the
/// previous epoch: far above the time an announcement takes to reach every
/// listening instance.
pub const PREVIOUS_IN_USE_FOR: Duration = Duration::from_secs(10);

/// The epoch this process builds keys with; `0` until recovery first read it.
#[derive(Debug, Default)]
pub struct CacheEpoch {
    current: AtomicI64,
    /// When this process last moved from one known epoch to a newer one.
    moved_at: Mutex<Option<Instant>>,
}

impl CacheEpoch {
    /// The current epoch.
    pub fn get(&self) -> i64 {
        self.current.load(Ordering::Acquire)
    }

    /// Moves to `epoch` when it is newer; `true` when it moved. An older
    /// value (a late announcement) is ignored.
    pub fn adopt(&self, epoch: i64) -> bool {
        let before = self.current.fetch_max(epoch, Ordering::AcqRel);
        if before >= epoch {
            return false;
        }
        if before > 0 {
            *self.moved_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            tracing::info!(
                "cache: epoch {epoch} (was {before}): entries of older epochs are unreachable"
            );
        }
        true
    }

    /// The epochs a bump goes to: the current one, and the previous one for
    /// [`PREVIOUS_IN_USE_FOR`] after a move.
    pub fn bumped(&self) -> Vec<i64> {
        let current = self.get();
        let recent = self
            .moved_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| at.elapsed() < PREVIOUS_IN_USE_FOR);
        if recent && current > 1 {
            vec![current - 1, current]
        } else {
            vec![current]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_only_moves_forward() {
        let epoch = CacheEpoch::default();
        assert!(epoch.adopt(3));
        assert_eq!(
            epoch.bumped(),
            vec![3],
            "learning the first epoch is no move"
        );
        assert!(!epoch.adopt(2));
        assert!(!epoch.adopt(3));
        assert_eq!(epoch.get(), 3);
        assert!(epoch.adopt(4));
        assert_eq!(epoch.bumped(), vec![3, 4], "right after a move, both");
    }
}
