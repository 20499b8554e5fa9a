//! The namespaces whose version bump is still owed (rule 4): their cached
//! entries must not be trusted until recovery has replayed the outbox rows
//! that cover them. Filled by this instance's failed bumps and by other
//! instances' announcements (`NOTIFY`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::namespace::Namespace;

#[derive(Default)]
pub struct OwedBumps {
    /// Bumps the outbox still owes, with the sequence number of the write that
    /// added them (so a recovery clears only what it covered).
    owed: Mutex<HashMap<Namespace, u64>>,
    /// Cheap "nothing owed" check for the read path.
    owed_count: AtomicU64,
    sequence: AtomicU64,
    /// Set when owed bumps may have been missed (the listener reconnected).
    replay_requested: AtomicBool,
    /// `true` while the owed-bump listener is subscribed. Other instances'
    /// owed bumps reach this one only through it, so the cache may be trusted
    /// only while it listens.
    listening: AtomicBool,
}

/// What a recovery may clear: the owed namespaces as they were before it read the outbox.
pub struct OwedSnapshot(HashMap<Namespace, u64>);

impl OwedBumps {
    /// `true` when `ns` has a bump owed: its cached entries must not be trusted.
    pub fn is_owed(&self, ns: &Namespace) -> bool {
        self.has_owed() && self.lock_owed().contains_key(ns)
    }

    /// Called by the listener when it subscribed (`true`) or lost its connection (`false`).
    pub fn set_listening(&self, listening: bool) {
        self.listening.store(listening, Ordering::Release);
    }

    /// `true` while other instances' announcements can reach this one.
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    /// Asks recovery for a full outbox replay.
    pub fn request_replay(&self) {
        self.replay_requested.store(true, Ordering::Release);
    }

    /// Takes the replay request, if any.
    pub fn take_replay_request(&self) -> bool {
        self.replay_requested.swap(false, Ordering::AcqRel)
    }

    /// How many namespaces are owed now.
    pub fn count(&self) -> u64 {
        self.owed_count.load(Ordering::Acquire)
    }

    pub fn has_owed(&self) -> bool {
        self.owed_count.load(Ordering::Acquire) > 0
    }

    /// Records namespaces whose bump failed.
    pub fn owe(&self, namespaces: &[Namespace]) {
        let seq = self.sequence.fetch_add(1, Ordering::AcqRel) + 1;
        let mut owed = self.lock_owed();
        for ns in namespaces {
            owed.insert(ns.clone(), seq);
        }
        self.owed_count.store(owed.len() as u64, Ordering::Release);
    }

    /// Taken before a recovery reads the outbox.
    pub fn snapshot_owed(&self) -> OwedSnapshot {
        OwedSnapshot(self.lock_owed().clone())
    }

    /// Forgets what `snapshot` held and no later failure re-added: the
    /// outbox rows of those writes were committed before the snapshot, so the
    /// recovery that followed it has bumped them.
    pub fn settle(&self, snapshot: OwedSnapshot) {
        let mut owed = self.lock_owed();
        for (ns, seq) in snapshot.0 {
            if owed.get(&ns) == Some(&seq) {
                owed.remove(&ns);
            }
        }
        self.owed_count.store(owed.len() as u64, Ordering::Release);
    }

    fn lock_owed(&self) -> std::sync::MutexGuard<'_, HashMap<Namespace, u64>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (single inserts and removes), so a poisoned lock is still usable.
        self.owed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settle_keeps_namespaces_owed_again_after_the_snapshot() {
        let owed = OwedBumps::default();
        owed.owe(&[Namespace::User(1), Namespace::User(2)]);
        let snapshot = owed.snapshot_owed();
        owed.owe(&[Namespace::User(2)]);
        owed.settle(snapshot);
        assert!(!owed.is_owed(&Namespace::User(1)));
        assert!(owed.is_owed(&Namespace::User(2)));
    }
}
