//! The namespace index: what lets a bump's stale entries be removed without
//! a pass over the keyspace. `STORE` (`store/reads.rs`) adds every entry it stores
//! (and a version's `stored` count) to `<prefix>:idx:{<namespace>}`, a sorted
//! set of `<version>:<query>` scored by version; after a bump, [`Store::purge_index`]
//! removes the members scored below the namespace's current version and
//! their keys. The index, the counter and the entries share the namespace's
//! hash tag, so each script runs on one slot of a cluster, and its cost is
//! what the namespace holds, however many keys Redis holds besides.
//!
//! Scores are versions: microsecond timestamps, about 2^51, exact in the
//! double a sorted set scores with (integers up to 2^53 are).

use redis::Script;

use super::keys;
use super::store::{Store, StoreResult};
use crate::namespace::Namespace;

/// Index members one purge call removes at most: bounds the time one script
/// holds Redis (a `UNLINK` of 1000 small keys and a `ZREM` of their members
/// take well under a millisecond).
const PURGE_BATCH: usize = 1000;

/// Calls of [`PURGE`] per namespace and purge at most. An index holds at most
/// `INDEX_MAX_MEMBERS` (10,000) members, so this is never reached; it only
/// bounds a loop that a misbehaving server could otherwise keep going.
const PURGE_ROUNDS: usize = 32;

/// Removes, from the index `KEYS[1]`, at most `ARGV[2]` members scored below
/// the version the counter `KEYS[2]` holds, and unlinks their keys
/// (`ARGV[1]` .. member). The counter is read in the script, so a read that
/// stores under the new version meanwhile is never removed. A missing counter
/// (lost, evicted, expired) comes back from the clock above every version it
/// held (rule 3), so then every member is unreachable and goes. Answers
/// `{members removed, keys unlinked}`; the caller calls again while a full
/// batch was removed.
const PURGE: &str = "\
local v = redis.call('GET', KEYS[2])
local members
if v then
  members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. v, 'LIMIT', 0, tonumber(ARGV[2]))
else
  members = redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1)
end
if #members == 0 then return {0, 0} end
local entries = {}
for i, member in ipairs(members) do entries[i] = ARGV[1] .. member end
local unlinked = redis.call('UNLINK', unpack(entries))
redis.call('ZREM', KEYS[1], unpack(members))
return {#members, unlinked}
";

/// Unlinks the entries `ARGV[1]` .. `ARGV[2..]` of one namespace and removes
/// them from its index `KEYS[1]`: the janitor's removal of stale entries it
/// found by SCAN, which the index may still list. Answers the keys unlinked.
const FORGET: &str = "\
local entries = {}
for i = 2, #ARGV do entries[i - 1] = ARGV[1] .. ARGV[i] end
local unlinked = redis.call('UNLINK', unpack(entries))
redis.call('ZREM', KEYS[1], unpack(ARGV, 2))
return unlinked
";

/// What one namespace's index purge removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    /// Index members removed (stale entries and `stored` counts, whether
    /// their keys still existed or had expired).
    pub members: u64,
    /// Keys that still existed and were unlinked.
    pub unlinked: u64,
}

/// The compiled scripts, built once per process (a [`Script`] hashes its
/// text when made).
pub(super) struct IndexScripts {
    purge: Script,
    forget: Script,
}

impl Default for IndexScripts {
    fn default() -> Self {
        Self {
            purge: Script::new(PURGE),
            forget: Script::new(FORGET),
        }
    }
}

impl Store {
    /// Removes the entries of `ns` older than its current version through
    /// its index, [`PURGE_BATCH`] at a time; one slot, no SCAN.
    pub(super) async fn purge_index(
        &self,
        scripts: &IndexScripts,
        ns: &Namespace,
    ) -> StoreResult<Purged> {
        let prefix = self.cache_prefix();
        let index = keys::index_key(&prefix, ns);
        let counter = keys::version_key(&prefix, ns);
        let entry_prefix = keys::entry_prefix(&prefix, ns);
        let mut purged = Purged::default();
        for _ in 0..PURGE_ROUNDS {
            let (members, unlinked): (u64, u64) = self
                .bounded(async {
                    let mut conn = self.conn().await?;
                    Ok(scripts
                        .purge
                        .key(&index)
                        .key(&counter)
                        .arg(&entry_prefix)
                        .arg(PURGE_BATCH)
                        .invoke_async(&mut conn)
                        .await?)
                })
                .await?;
            purged.members += members;
            purged.unlinked += unlinked;
            if members < PURGE_BATCH as u64 {
                break;
            }
        }
        Ok(purged)
    }

    /// Unlinks entries of `ns` named by their index members
    /// (`<version>:<query>`) and removes those members from the index;
    /// answers how many keys still existed.
    pub(super) async fn forget(
        &self,
        scripts: &IndexScripts,
        ns: &Namespace,
        members: &[&str],
    ) -> StoreResult<u64> {
        if members.is_empty() {
            return Ok(0);
        }
        self.bounded(async {
            let mut conn = self.conn().await?;
            let prefix = self.cache_prefix();
            let mut call = scripts.forget.key(keys::index_key(&prefix, ns));
            call.arg(keys::entry_prefix(&prefix, ns));
            for member in members {
                call.arg(*member);
            }
            Ok(call.invoke_async(&mut conn).await?)
        })
        .await
    }
}
