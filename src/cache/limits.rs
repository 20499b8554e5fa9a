//! Attempt windows shared by every instance (the login throttle's Redis
//! part): a counter per key that lives exactly one window (`PEXPIRE` set by
//! the attempt that opened it), so nothing here outlives the window.
//!
//! Keys are `<prefix>:limit:<hex digest>`: the caller hands a digest, never
//! the raw value (a login may be an email), and the keys sit outside every
//! SCAN pattern of the cache. Reserving is one script, so a burst of
//! simultaneous attempts on many instances cannot pass the limit between a
//! read and a write.

use std::sync::LazyLock;

use redis::Script;

use super::Cache;
use super::store::{Store, StoreResult};

/// Takes a place in the window of `KEYS[1]` unless `ARGV[1]` places are
/// taken already; the window (`ARGV[2]` ms) starts with its first place.
/// Answers `{1, 0}` when admitted, `{0, ms left}` when refused. A key found
/// without a TTL (a lost `PEXPIRE`) gets one, so none lives forever.
const RESERVE: &str = "\
local taken = tonumber(redis.call('GET', KEYS[1]) or '0')
local left = redis.call('PTTL', KEYS[1])
if taken >= tonumber(ARGV[1]) then
  if left < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]); left = tonumber(ARGV[2]) end
  return {0, left}
end
redis.call('INCR', KEYS[1])
if left < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {1, 0}
";

/// Gives a place back. `DECR` keeps the key's TTL; a window that already
/// ended is not re-created (a bare `DECR` would make a key without TTL).
const RELEASE: &str = "\
local taken = tonumber(redis.call('GET', KEYS[1]) or '0')
if taken > 0 then redis.call('DECR', KEYS[1]) end
return taken
";

/// How many ms the full window of `KEYS[1]` (at least `ARGV[1]` places
/// taken) has left; `0` when it is not full. Takes nothing.
const FULL_FOR: &str = "\
local taken = tonumber(redis.call('GET', KEYS[1]) or '0')
if taken < tonumber(ARGV[1]) then return 0 end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then return 0 end
return left
";

static RESERVE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RESERVE));
static FULL_FOR_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(FULL_FOR));
static RELEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE));

/// What Redis said about an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// The window is full for this many more milliseconds.
    Refused {
        retry_after_ms: u64,
    },
}

/// The key of a window: the caller's digest, hex-encoded.
pub fn limit_key(prefix: &str, digest: &[u8]) -> String {
    format!("{prefix}:limit:{}", hex::encode(digest))
}

impl Cache {
    /// Takes a place in the shared window of `digest` (at most `max`, the
    /// window `window_ms` long). `None` when Redis cannot be used now (the
    /// cache is off, the breaker is open, or the script failed, which opens
    /// it): the caller falls back to its own limiter.
    pub async fn reserve_attempt(
        &self,
        digest: &[u8],
        max: u32,
        window_ms: u64,
    ) -> Option<Admission> {
        if !self.enabled || !self.breaker.lets_through() {
            return None;
        }
        let key = limit_key(self.store.prefix(), digest);
        match self.store.reserve(&key, max, window_ms).await {
            Ok(admission) => Some(admission),
            Err(e) => {
                self.redis_failed("login throttle", &e);
                None
            }
        }
    }

    /// How long the shared window of `digest` stays full (at least `max`
    /// places taken); zero when it is not full or Redis cannot be asked. An
    /// attempt the local window refused asks this, so that its `Retry-After`
    /// covers the shared window too, which may have opened earlier, on
    /// another instance.
    pub async fn attempt_window_full_for(&self, digest: &[u8], max: u32) -> std::time::Duration {
        if !self.enabled || !self.breaker.lets_through() {
            return std::time::Duration::ZERO;
        }
        let key = limit_key(self.store.prefix(), digest);
        match self.store.full_for(&key, max).await {
            Ok(ms) => std::time::Duration::from_millis(ms),
            Err(e) => {
                self.redis_failed("login throttle", &e);
                std::time::Duration::ZERO
            }
        }
    }

    /// Gives back a place [`Cache::reserve_attempt`] took; `false` when Redis
    /// did not take it (the place then ends with its window).
    pub async fn release_attempt(&self, digest: &[u8]) -> bool {
        let key = limit_key(self.store.prefix(), digest);
        match self.store.release(&key).await {
            Ok(()) => true,
            Err(e) => {
                self.redis_failed("login throttle release", &e);
                false
            }
        }
    }
}

impl Store {
    async fn reserve(&self, key: &str, max: u32, window_ms: u64) -> StoreResult<Admission> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            let (admitted, left_ms): (i64, i64) = RESERVE_SCRIPT
                .key(key)
                .arg(max)
                .arg(window_ms)
                .invoke_async(&mut conn)
                .await?;
            Ok(if admitted == 1 {
                Admission::Admitted
            } else {
                Admission::Refused {
                    retry_after_ms: u64::try_from(left_ms).unwrap_or(window_ms),
                }
            })
        })
        .await
    }

    async fn full_for(&self, key: &str, max: u32) -> StoreResult<u64> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            let left_ms: i64 = FULL_FOR_SCRIPT
                .key(key)
                .arg(max)
                .invoke_async(&mut conn)
                .await?;
            Ok(u64::try_from(left_ms).unwrap_or(0))
        })
        .await
    }

    async fn release(&self, key: &str) -> StoreResult<()> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            let _: i64 = RELEASE_SCRIPT.key(key).invoke_async(&mut conn).await?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_keys_hold_the_digest_only_outside_entry_patterns() {
        let key = limit_key("lh", &[0xab, 0x01]);
        assert_eq!(key, "lh:limit:ab01");
        assert!(
            !key.contains('{'),
            "entry patterns all start with a hash tag"
        );
    }
}
