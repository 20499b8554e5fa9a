//! The near cache: entries this process found in Redis lately, kept in
//! memory so that a cached read asks Redis only for the version.
//!
//! An entry stored under a namespace version never changes (rule 1: it is
//! stored under the version taken before its load, and a write bumps the
//! version), so a copy of it is good for exactly as long as the counter
//! still holds that version. A read therefore still asks Redis for the
//! version, every time — one `GET` of a few bytes, no script, no body on the
//! wire — and serves the copy only when the versions match. The version
//! itself is never kept in process: read-your-writes across instances rests
//! on Redis alone, as before.
//!
//! # What a copy is tied to
//! - **Its version**, compared on every read.
//! - **Its entry's TTL** in Redis: a copy lives no longer than the entry it
//!   copies had left when it was read (changes made outside the API become
//!   visible when the TTL says, as without the near cache).
//! - **The Redis it came from.** Memory outlives a Redis restart, a flush or
//!   a failover, and a counter re-created from another node's clock could
//!   hold again a version that a copy carries. Each copy carries the
//!   breaker's *trust period*: the number of times the breaker was closed,
//!   read before the lookup that found the entry. Any Redis error trips the
//!   breaker, and recovery trips it too when the masters changed (another
//!   run id: a restart; another node: a failover; moved slots). Closing it
//!   again starts a new period, in which no older copy is served: whatever
//!   Redis answers after such a change, it cannot match a copy from before.
//! - **A size**: at most `CACHE_NEAR_MAX_BYTES` in all (bodies, ETags and
//!   keys), the least useful copies evicted first (`quick_cache`'s CLOCK-Pro
//!   policy); `0` turns the near cache off and every read runs the lookup
//!   script as before. `linkhub_cache_near_bytes` shows what it holds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use quick_cache::Weighter;
use quick_cache::sync::Cache as Bounded;

use super::Entry;

/// What one copy costs besides its body, ETag and key (the value, the
/// cache's own slot), in bytes: an estimate, so that tiny entries count.
const OVERHEAD_BYTES: u64 = 96;

/// A typical entry's size, to size the cache's table up front.
const TYPICAL_ENTRY_BYTES: u64 = 2048;

/// `(counter key, query)`: one copy per read at most; a newer version's
/// copy replaces an older one.
type Key = (String, String);

#[derive(Clone)]
struct Copy {
    version: u64,
    trust_period: u64,
    expires: Instant,
    entry: Arc<Entry>,
}

#[derive(Clone)]
struct BySize;

impl Weighter<Key, Copy> for BySize {
    fn weight(&self, key: &Key, copy: &Copy) -> u64 {
        (key.0.len() + key.1.len() + copy.entry.body.len() + copy.entry.etag.len()) as u64
            + OVERHEAD_BYTES
    }
}

/// The key as a lookup borrows it, without allocating.
#[derive(Hash)]
struct KeyRef<'a>(&'a str, &'a str);

impl quick_cache::Equivalent<Key> for KeyRef<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

pub struct NearCache {
    /// `None` when `CACHE_NEAR_MAX_BYTES` is 0.
    copies: Option<Bounded<Key, Copy, BySize>>,
}

impl NearCache {
    pub fn new(max_bytes: u64) -> Self {
        let copies = (max_bytes > 0).then(|| {
            let items = usize::try_from(max_bytes / TYPICAL_ENTRY_BYTES)
                .unwrap_or(usize::MAX)
                .max(16);
            Bounded::with_weighter(items, max_bytes, BySize)
        });
        Self { copies }
    }

    pub fn is_on(&self) -> bool {
        self.copies.is_some()
    }

    /// The copy of the read `query` under `counter` when it is of `version`,
    /// from `trust_period`, and not expired.
    pub fn get(
        &self,
        counter: &str,
        query: &str,
        version: u64,
        trust_period: u64,
    ) -> Option<Arc<Entry>> {
        let copy = self.copies.as_ref()?.get(&KeyRef(counter, query))?;
        let fresh = version == copy.version
            && copy.trust_period == trust_period
            && copy.expires > Instant::now();
        fresh.then_some(copy.entry)
    }

    /// Keeps a copy of `entry`, found under `version` in the trust period
    /// read before the lookup, for at most `ttl` (what the entry had left in
    /// Redis; an entry without one is not copied).
    pub fn put(
        &self,
        counter: &str,
        query: &str,
        version: &str,
        trust_period: u64,
        ttl: Option<Duration>,
        entry: Arc<Entry>,
    ) {
        let (Some(copies), Some(ttl), Ok(version)) = (&self.copies, ttl, version.parse()) else {
            return;
        };
        copies.insert(
            (counter.to_owned(), query.to_owned()),
            Copy {
                version,
                trust_period,
                expires: Instant::now() + ttl,
                entry,
            },
        );
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.copies.as_ref().map_or(0, Bounded::weight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: &str) -> Arc<Entry> {
        Arc::new(Entry {
            status: 200,
            etag: "\"e\"".to_owned(),
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        })
    }

    const TTL: Option<Duration> = Some(Duration::from_secs(60));

    #[test]
    fn a_copy_serves_its_version_in_its_trust_period_only() {
        let near = NearCache::new(1 << 20);
        near.put("c", "profile", "17", 3, TTL, entry("a"));
        assert!(near.get("c", "profile", 17, 3).is_some());
        assert!(near.get("c", "profile", 18, 3).is_none(), "another version");
        assert!(near.get("c", "profile", 17, 4).is_none(), "a later period");
        assert!(near.get("c", "user", 17, 3).is_none(), "another read");
        assert!(near.get("d", "profile", 17, 3).is_none(), "another counter");
    }

    #[test]
    fn a_copy_lives_no_longer_than_its_entry_had_left() {
        let near = NearCache::new(1 << 20);
        near.put("c", "q", "1", 0, Some(Duration::ZERO), entry("a"));
        assert!(near.get("c", "q", 1, 0).is_none());
        near.put("c", "q", "1", 0, None, entry("a"));
        assert!(near.get("c", "q", 1, 0).is_none(), "no TTL, no copy");
    }

    #[test]
    fn a_newer_version_replaces_the_copy() {
        let near = NearCache::new(1 << 20);
        near.put("c", "q", "1", 0, TTL, entry("old"));
        near.put("c", "q", "2", 0, TTL, entry("new"));
        assert!(near.get("c", "q", 1, 0).is_none());
        assert_eq!(
            near.get("c", "q", 2, 0).map(|e| e.body.clone()),
            Some(bytes::Bytes::from_static(b"new"))
        );
    }

    #[test]
    fn the_bytes_held_stay_under_the_bound() {
        let max = 64 * 1024;
        let near = NearCache::new(max);
        let body = "x".repeat(1000);
        for i in 0..1000 {
            near.put("c", &format!("q{i}"), "1", 0, TTL, entry(&body));
        }
        assert!(near.bytes() <= max, "{} > {max}", near.bytes());
        assert!(
            near.bytes() > max / 2,
            "it does keep copies: {}",
            near.bytes()
        );
    }

    #[test]
    fn zero_bytes_turns_it_off() {
        let near = NearCache::new(0);
        assert!(!near.is_on());
        near.put("c", "q", "1", 0, TTL, entry("a"));
        assert!(near.get("c", "q", 1, 0).is_none());
        assert_eq!(near.bytes(), 0);
    }
}
