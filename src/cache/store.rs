//! Redis commands. Nothing above this file builds a command; nothing in this
//! file decides policy (when to trust, when to bypass): that is `mod.rs`.

use std::time::Duration;

use deadpool_redis::{Pool, Runtime};
use redis::{AsyncConnectionConfig, Script};

use super::keys::{self, Namespace};

/// Reads a namespace's version — re-creating a missing counter from the Redis
/// clock in microseconds, a value no counter of that namespace has held — and
/// the entry stored under it, in one round trip. The entry key is derived from
/// the version inside the script; it shares the counter's hash tag, so the
/// script touches a single slot on a cluster too.
const LOOKUP: &str = r"
local v = redis.call('GET', KEYS[1])
if not v then
  local t = redis.call('TIME')
  local fresh = t[1] .. string.format('%06d', tonumber(t[2]))
  if redis.call('SET', KEYS[1], fresh, 'NX') then v = fresh else v = redis.call('GET', KEYS[1]) end
end
return {v, redis.call('GET', ARGV[1] .. v .. ':' .. ARGV[2])}
";

/// Bumps one counter. A missing counter is re-created from the clock instead
/// of `INCR`'s 1, so versions of lost counters are never used twice.
const BUMP: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return redis.call('INCR', KEYS[1])
end
local t = redis.call('TIME')
local fresh = t[1] .. string.format('%06d', tonumber(t[2]))
redis.call('SET', KEYS[1], fresh)
return tonumber(fresh)
";

/// What a lookup found.
pub struct Lookup {
    /// The namespace's version at the time of the lookup.
    pub version: String,
    /// The serialized entry, when one is stored under that version.
    pub entry: Option<Vec<u8>>,
}

/// The Redis side of the cache: a pool of multiplexed connections with short
/// timeouts, and the scripts.
pub struct Store {
    pool: Pool,
    prefix: String,
    lookup: Script,
    bump: Script,
    timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis pool: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis answered something unexpected: {0}")]
    Protocol(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl Store {
    /// Connecting, waiting for a pooled connection and every command are
    /// bounded by `timeout`: an unreachable Redis costs a request that long at
    /// most (and the circuit breaker makes it cost that once).
    pub fn new(
        url: &str,
        prefix: &str,
        pool_size: usize,
        timeout: Duration,
    ) -> Result<Self, String> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let manager =
            deadpool_redis::Manager::new_with_config(url, config).map_err(|e| e.to_string())?;
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            pool,
            prefix: prefix.to_owned(),
            lookup: Script::new(LOOKUP),
            bump: Script::new(BUMP),
            timeout,
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn pool_status(&self) -> deadpool_redis::Status {
        self.pool.status()
    }

    /// Bounds a whole operation, pool wait included.
    async fn bounded<T>(&self, op: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        tokio::time::timeout(self.timeout * 2, op)
            .await
            .unwrap_or(Err(StoreError::Timeout(self.timeout * 2)))
    }

    pub async fn ping(&self) -> StoreResult<()> {
        self.bounded(async {
            let mut conn = self.pool.get().await?;
            let _: String = redis::cmd("PING").query_async(&mut conn).await?;
            Ok(())
        })
        .await
    }

    /// One round trip: the namespace's version and the entry under it.
    pub async fn lookup(&self, ns: &Namespace, query: &str) -> StoreResult<Lookup> {
        self.bounded(async {
            let mut conn = self.pool.get().await?;
            let (version, entry): (String, Option<Vec<u8>>) = self
                .lookup
                .key(keys::version_key(&self.prefix, ns))
                .arg(keys::entry_prefix(&self.prefix, ns))
                .arg(query)
                .invoke_async(&mut conn)
                .await?;
            Ok(Lookup { version, entry })
        })
        .await
    }

    /// Stores an entry with its TTL (`SET .. EX`).
    pub async fn put(&self, key: &str, value: &[u8], ttl_secs: u64) -> StoreResult<()> {
        self.bounded(async {
            let mut conn = self.pool.get().await?;
            let () = redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("EX")
                .arg(ttl_secs)
                .query_async(&mut conn)
                .await?;
            Ok(())
        })
        .await
    }

    /// Bumps the counters of `namespaces`: one script call per namespace (each
    /// counter has its own slot on a cluster), sent together over one
    /// multiplexed connection.
    pub async fn bump(&self, namespaces: &[Namespace]) -> StoreResult<()> {
        self.bounded(async {
            let conn = self.pool.get().await?;
            let calls = namespaces.iter().map(|ns| {
                let mut conn = conn.clone();
                async move {
                    let _: i64 = self
                        .bump
                        .key(keys::version_key(&self.prefix, ns))
                        .invoke_async(&mut conn)
                        .await?;
                    Ok::<_, StoreError>(())
                }
            });
            futures_util::future::try_join_all(calls).await?;
            drop(conn);
            Ok(())
        })
        .await
    }

    /// Current versions of `namespaces` (`None` where the counter is missing).
    pub async fn versions(&self, namespaces: &[Namespace]) -> StoreResult<Vec<Option<u64>>> {
        self.bounded(async {
            let conn = self.pool.get().await?;
            let calls = namespaces.iter().map(|ns| {
                let mut conn = conn.clone();
                async move {
                    let v: Option<u64> = redis::cmd("GET")
                        .arg(keys::version_key(&self.prefix, ns))
                        .query_async(&mut conn)
                        .await?;
                    Ok::<_, StoreError>(v)
                }
            });
            let versions = futures_util::future::try_join_all(calls).await?;
            drop(conn);
            Ok(versions)
        })
        .await
    }

    /// One SCAN step over the node this connection reaches: `(next cursor, keys)`.
    /// Kept as a single-node primitive so a cluster version can run it on
    /// every master.
    pub async fn scan_step(
        &self,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> StoreResult<(u64, Vec<String>)> {
        self.bounded(async {
            let mut conn = self.pool.get().await?;
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(count)
                .query_async(&mut conn)
                .await?;
            Ok((next, keys))
        })
        .await
    }

    /// Removes keys without blocking Redis on large values (`UNLINK`).
    pub async fn unlink(&self, keys: &[String]) -> StoreResult<usize> {
        if keys.is_empty() {
            return Ok(0);
        }
        self.bounded(async {
            let mut conn = self.pool.get().await?;
            let removed: usize = redis::cmd("UNLINK")
                .arg(keys)
                .query_async(&mut conn)
                .await?;
            Ok(removed)
        })
        .await
    }
}
