//! Reads and stores of entries: the lookup that answers a namespace's
//! version and the entry under it in one round trip, the store that keeps an
//! entry only while its version is current (and counts and indexes it), plain
//! `GET`s of counters and entries, and `UNLINK`. Each script sits beside the
//! method that runs it; every command goes over the calling thread's
//! connection (`connections.rs`), bounded.

use std::time::Duration;

use super::clock::fresh_counter_from_time;
use super::{Store, StoreError, StoreResult};
use crate::cache::keys;
use crate::cache::topology::hash_tag;
use crate::namespace::Namespace;

/// Reads a namespace's version — re-creating a missing counter from the Redis
/// clock — and the entry stored under it, in one round trip. The entry key is
/// derived from the version inside the script; it shares the counter's hash
/// tag, so the script touches a single slot on a cluster too.
///
/// A counter a read creates lives `ARGV[3]` seconds (the negative TTL): the
/// read may be of something that does not exist, and such a read must leave
/// nothing that outlives a TTL. Storing a found entry, or a bump, extends it.
///
/// A found entry comes with its remaining TTL in milliseconds, which a copy
/// kept in process (the near cache) must not outlive.
pub(super) const LOOKUP: &str = concat!(
    "local v = redis.call('GET', KEYS[1])\n",
    "if not v then\n",
    fresh_counter_from_time!(),
    "  redis.call('SET', KEYS[1], fresh, 'EX', ARGV[3])\n",
    "  v = fresh\n",
    "end\n",
    "local k = ARGV[1] .. v .. ':' .. ARGV[2]\n",
    "local e = redis.call('GET', k)\n",
    "if not e then return {v, false, false} end\n",
    "return {v, e, redis.call('PTTL', k)}\n",
);

/// Stores an entry under the version its read took (`ARGV[1]`), with its TTL
/// (`ARGV[3]`), unless:
/// - the counter (`KEYS[2]`) no longer holds that version: nobody could ask
///   for the entry again, so it would only take memory until its TTL;
/// - the entry is one of the reads a client can make up without end (a page,
///   a search: `ARGV[5]` > 0) and that many were stored already under this
///   version within the count's lifetime (`KEYS[3]`, a key of the version).
///
/// Then the counter is made to live at least `ARGV[4]` seconds, so that it
/// outlives the entry. The entry (`ARGV[6]`), and the count when this entry
/// started it (`ARGV[7]`), go into the namespace's index (`KEYS[4]`, scored
/// by version), so that a bump's purge finds them without a SCAN
/// (`index.rs`); the index is made to live at least as long as the entry, so
/// it expires with the last of its entries and never outlives them by more
/// than a TTL. An index holds at most `ARGV[8]` members: past that the
/// oldest versions' go first (their entries still expire, and the janitor
/// finds them if they are stale), so made-up reads under one version that
/// is never bumped cannot grow an index without end. Touches one hash tag
/// only.
pub(super) const STORE: &str = "\
local v = redis.call('GET', KEYS[2])
if v ~= ARGV[1] then return 0 end
local cap = tonumber(ARGV[5])
if cap > 0 then
  local n = redis.call('INCR', KEYS[3])
  if n == 1 then
    redis.call('EXPIRE', KEYS[3], ARGV[3])
    redis.call('ZADD', KEYS[4], ARGV[1], ARGV[7])
  end
  if n > cap then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
if redis.call('TTL', KEYS[2]) < tonumber(ARGV[4]) then
  redis.call('EXPIRE', KEYS[2], ARGV[4])
end
redis.call('ZADD', KEYS[4], ARGV[1], ARGV[6])
local over = redis.call('ZCARD', KEYS[4]) - tonumber(ARGV[8])
if over > 0 then redis.call('ZREMRANGEBYRANK', KEYS[4], 0, over - 1) end
if redis.call('TTL', KEYS[4]) < tonumber(ARGV[3]) then
  redis.call('EXPIRE', KEYS[4], ARGV[3])
end
return 1
";

/// Members a namespace's index keeps at most (see [`STORE`]): five times
/// what the default cap lets two count lifetimes store, so only a namespace
/// read with made-up queries for hours without a write ever reaches it.
const INDEX_MAX_MEMBERS: u64 = 10_000;

/// How one entry is to be stored: see [`STORE`].
pub struct StoreEntry<'a> {
    /// The prefix, with its epoch, that the read's lookup used: the entry is
    /// kept in that epoch, whatever this instance has adopted since.
    pub prefix: &'a str,
    /// The namespace whose counter decides whether the entry is kept.
    pub ns: &'a Namespace,
    /// The version the read took before it loaded.
    pub version: &'a str,
    /// What was read, within the namespace: the last part of the entry's key.
    pub query: &'a str,
    /// The serialized entry.
    pub value: &'a [u8],
    /// How long the entry lives (`SET .. EX`).
    pub ttl_secs: u64,
    /// The counter is made to live at least this long.
    pub counter_ttl_secs: u64,
    /// At most this many such entries per version and count lifetime; 0: no cap.
    pub cap: u64,
}

/// What a lookup found.
pub struct Lookup {
    /// The namespace's version at the time of the lookup.
    pub version: String,
    /// The serialized entry, when one is stored under that version.
    pub entry: Option<Vec<u8>>,
    /// How long the entry has left to live (`None`: no entry, or no TTL).
    pub entry_ttl: Option<Duration>,
}

impl Store {
    /// One round trip: the namespace's version and the entry under it, in
    /// the epoch `prefix` names ([`Store::cache_prefix`], taken once per read).
    pub async fn lookup(&self, prefix: &str, ns: &Namespace, query: &str) -> StoreResult<Lookup> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            let (version, entry, ttl_ms): (String, Option<Vec<u8>>, Option<i64>) = self
                .lookup
                .key(keys::version_key(prefix, ns))
                .arg(keys::entry_prefix(prefix, ns))
                .arg(query)
                .arg(self.created_counter_ttl_secs)
                .invoke_async(&mut conn)
                .await?;
            let entry_ttl = ttl_ms
                .and_then(|ms| u64::try_from(ms).ok())
                .map(Duration::from_millis);
            Ok(Lookup {
                version,
                entry,
                entry_ttl,
            })
        })
        .await
    }

    /// The version the counter `counter_key` holds, without creating a
    /// missing one: one `GET` of a few bytes (`None` when it is missing).
    pub async fn version(&self, counter_key: &str) -> StoreResult<Option<u64>> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            Ok(redis::cmd("GET")
                .arg(counter_key)
                .query_async(&mut conn)
                .await?)
        })
        .await
    }

    /// The entry stored under `key`, if any.
    pub async fn get(&self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            let entry: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(&mut conn).await?;
            Ok(entry)
        })
        .await
    }

    /// Stores an entry with its TTL (`SET .. EX`) under the rules of
    /// [`STORE`]; returns whether it was stored.
    pub async fn store_entry(&self, entry: StoreEntry<'_>) -> StoreResult<bool> {
        let prefix = entry.prefix;
        self.bounded(async {
            let mut conn = self.conn().await?;
            let stored: i64 = self
                .store
                .key(keys::entry_key(
                    prefix,
                    entry.ns,
                    entry.version,
                    entry.query,
                ))
                .key(keys::version_key(prefix, entry.ns))
                .key(keys::stored_count_key(prefix, entry.ns, entry.version))
                .key(keys::index_key(prefix, entry.ns))
                .arg(entry.version)
                .arg(entry.value)
                .arg(entry.ttl_secs)
                .arg(entry.counter_ttl_secs)
                .arg(entry.cap)
                .arg(keys::index_member(entry.version, entry.query))
                .arg(keys::index_member(entry.version, keys::STORED_COUNT_QUERY))
                .arg(INDEX_MAX_MEMBERS)
                .invoke_async(&mut conn)
                .await?;
            Ok(stored == 1)
        })
        .await
    }

    /// Current versions of `namespaces` (`None` where the counter is missing).
    /// Each [`Store::version`] is bounded, and they go out together over the
    /// same multiplexed connection.
    pub async fn versions(&self, namespaces: &[Namespace]) -> StoreResult<Vec<Option<u64>>> {
        let prefix = self.cache_prefix();
        let prefix = &prefix;
        let calls = namespaces
            .iter()
            .map(|ns| async move { self.version(&keys::version_key(prefix, ns)).await });
        futures_util::future::try_join_all(calls).await
    }

    /// Removes keys without blocking Redis on large values (`UNLINK`), one
    /// command per hash tag so that every command stays in one slot.
    pub async fn unlink(&self, keys: &[String]) -> StoreResult<usize> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut by_tag: std::collections::BTreeMap<&str, Vec<&String>> =
            std::collections::BTreeMap::new();
        for key in keys {
            by_tag.entry(hash_tag(key)).or_default().push(key);
        }
        self.bounded(async {
            let conn = self.conn().await?;
            let calls = by_tag.into_values().map(|group| {
                let mut shared = conn.clone();
                async move {
                    let removed: usize = redis::cmd("UNLINK")
                        .arg(group)
                        .query_async(&mut shared)
                        .await?;
                    Ok::<_, StoreError>(removed)
                }
            });
            Ok(futures_util::future::try_join_all(calls)
                .await?
                .into_iter()
                .sum())
        })
        .await
    }
}
