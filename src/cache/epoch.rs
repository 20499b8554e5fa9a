//! The cache epoch as this process knows it: part of every key this process
//! builds, so that moving it makes every entry and counter of the older
//! epoch unreachable at once.
//!
//! PostgreSQL holds the truth (`db::epoch`); this is a copy that only ever
//! moves forward. It is learned when recovery trusts Redis (which checks the
//! Redis processes against the ones the epoch was trusted on, and moves the
//! epoch when they differ), from the announcement of every move (`NOTIFY`),
//! and from a poll each second in case an announcement was missed.

use std::sync::atomic::{AtomicI64, Ordering};

/// The epoch this process builds keys with; `0` until recovery first read it.
#[derive(Debug, Default)]
pub struct CacheEpoch(AtomicI64);

impl CacheEpoch {
    /// The current epoch.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Acquire)
    }

    /// Moves to `epoch` when it is newer; `true` when it moved. An older
    /// value (a late announcement) is ignored.
    pub fn adopt(&self, epoch: i64) -> bool {
        let before = self.0.fetch_max(epoch, Ordering::AcqRel);
        if before < epoch {
            tracing::info!("cache: epoch {epoch} (was {before}): entries of older epochs are unreachable");
            true
        } else {
            false
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
        assert!(!epoch.adopt(2));
        assert!(!epoch.adopt(3));
        assert_eq!(epoch.get(), 3);
    }
}
