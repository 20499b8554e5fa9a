//! Redis commands. Nothing above this file builds a command; nothing in this
//! file decides policy (when to trust, when to bypass): that is `mod.rs`.
//!
//! A bump is delivered only once it would survive a failover (issue 11):
//! where the counter's shard has a live replica ([`Topology`]), the bump and
//! a `WAIT 1 <REDIS_TIMEOUT_MS / 2>` go to the slot's master as one
//! pipeline, so the `WAIT` runs on the very connection that sent the bump
//! (on a fresh one it would have nothing to wait for), and no acknowledgement
//! is [`StoreError::NotReplicated`]: the caller owes the bump. Bumps use a
//! connection of their own: a `WAIT` that waits blocks its connection, and
//! the reads must not queue behind it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, Script, Value};

use super::keys;
use super::topology::Topology;
use crate::config::RedisTopology;
use crate::namespace::Namespace;

/// Lua that sets `now` to the Redis clock in microseconds, and `fresh` to it
/// as a counter value: above any value a counter held before it went missing
/// (rule 3). Written once, composed into both scripts below. (A Lua number
/// holds integers up to 2^53 exactly; microseconds since 1970 are about 2^51.)
macro_rules! fresh_counter_from_time {
    () => {
        "local t = redis.call('TIME')\n\
         local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n\
         local fresh = string.format('%.0f', now)\n"
    };
}

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
const LOOKUP: &str = concat!(
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

/// Bumps one counter to `max(counter + 1, TIME in µs)` and gives it its full
/// lifetime (`ARGV[1]` seconds) again. A missing counter — lost, evicted or
/// expired: one path for all three — comes back from the clock, so versions
/// of lost counters are never used twice (rule 3).
///
/// Not `INCR`: after a failover the promoted master's counter may be behind
/// the old master's (the bumps it lacks are owed and replayed), and an `INCR`
/// from there would hand out again versions the old master gave out, under
/// which a read may have stored an entry on the new master that predates a
/// write. The clock is ahead of every version handed out before the failover
/// (assuming the masters' clocks agree within the time a failover takes), so
/// the replay's bump is a version never used. `docs/protocol-model.md`, "What
/// the model revealed", has the trace.
const BUMP: &str = concat!(
    fresh_counter_from_time!(),
    "local v = tonumber(redis.call('GET', KEYS[1]))\n",
    "if v and v >= now then fresh = string.format('%.0f', v + 1) end\n",
    "redis.call('SET', KEYS[1], fresh, 'EX', ARGV[1])\n",
    "return fresh\n",
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
const STORE: &str = "\
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
    pub ns: &'a Namespace,
    /// The version the read took before it loaded.
    pub version: &'a str,
    pub query: &'a str,
    pub value: &'a [u8],
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

/// Where the cache lives: one node, or a Redis Cluster, and how to open a
/// connection to it.
enum Backend {
    Single {
        client: redis::Client,
        config: AsyncConnectionConfig,
    },
    Cluster {
        client: redis::cluster::ClusterClient,
    },
}

impl Backend {
    /// A new multiplexed connection. Its driver task runs on the runtime of
    /// the thread that opens it, so a worker that opens its own sends and
    /// reads replies without crossing threads.
    async fn open(&self) -> StoreResult<Shared> {
        Ok(match self {
            Self::Single { client, config } => Shared::Single(
                client
                    .get_multiplexed_async_connection_with_config(config)
                    .await?,
            ),
            Self::Cluster { client } => Shared::Cluster(client.get_async_connection().await?),
        })
    }
}

/// The reads' connections: `REDIS_POOL_SIZE` slots, each holding one
/// multiplexed connection or none. Each thread that sends commands (an
/// actix worker, the runtime of the background tasks) is given a slot of
/// its own the first time, while there are slots left; after that, threads
/// share slots in turn. A slot's connection is opened by the thread that
/// needed it, so its replies are read on that thread: one connection shared
/// by every worker made each reply cross threads, a task switch and a
/// wake-up per command (45 % of a cached read's time was in the kernel).
struct Connections {
    slots: Box<[std::sync::RwLock<Option<Shared>>]>,
    /// Tells this set apart in [`SLOT_OF_THREAD`] (a process, a test, may run several).
    id: usize,
    /// How many threads were given a slot.
    threads: AtomicUsize,
}

/// Distinct ids for [`Connections`].
static CONNECTIONS_IDS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// `(set id, slot)`: the slot this thread was given in each set it used.
    static SLOT_OF_THREAD: std::cell::RefCell<Vec<(usize, usize)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

impl Connections {
    fn new(size: usize) -> Self {
        Self {
            slots: (0..size.max(1))
                .map(|_| std::sync::RwLock::new(None))
                .collect(),
            id: CONNECTIONS_IDS.fetch_add(1, Ordering::Relaxed),
            threads: AtomicUsize::new(0),
        }
    }

    /// The calling thread's slot.
    fn slot(&self) -> &std::sync::RwLock<Option<Shared>> {
        let index = SLOT_OF_THREAD.with(|given| {
            let mut given = given.borrow_mut();
            if let Some(&(_, slot)) = given.iter().find(|(id, _)| *id == self.id) {
                return slot;
            }
            let slot = self.threads.fetch_add(1, Ordering::Relaxed) % self.slots.len();
            given.push((self.id, slot));
            slot
        });
        &self.slots[index]
    }

    /// Connections open now.
    fn open(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| {
                slot.read()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .is_some()
            })
            .count()
    }
}

impl Drop for Connections {
    /// Forgets this set in the calling thread's list (other threads keep a
    /// few bytes for it until they end).
    fn drop(&mut self) {
        let _ = SLOT_OF_THREAD.try_with(|given| {
            given.borrow_mut().retain(|(id, _)| *id != self.id);
        });
    }
}

/// How many connections the reads hold, and may hold (`REDIS_POOL_SIZE`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionsStatus {
    pub open: usize,
    pub max: usize,
}

/// A handle on a connection that commands are sent through. Commands
/// are routed by key (on a cluster, by the key's hash slot), so everything
/// above this type is written once for both topologies; clones send
/// concurrently over the same multiplexed connection.
#[derive(Clone)]
pub(super) enum Shared {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl ConnectionLike for Shared {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// The connection kept in `slot`, or, when there is none, one that `open`
/// makes, which is kept there from then on (a failure empties the slot: see
/// [`Store::bounded`]).
async fn kept_or_new<F, Fut>(
    slot: &std::sync::RwLock<Option<Shared>>,
    open: F,
) -> StoreResult<Shared>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = StoreResult<Shared>>,
{
    let kept = slot
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone();
    if let Some(conn) = kept {
        return Ok(conn);
    }
    let conn = open().await?;
    *slot
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(conn.clone());
    Ok(conn)
}

/// A `SCAN` walk over one node or every master of a cluster.
pub struct KeyScan {
    /// Nodes still to walk (the last one is current); `None` is "the node".
    nodes: Vec<Option<(String, u16)>>,
    cursor: u64,
    pattern: String,
    count: usize,
}

/// How long version counters live: every counter expires (nothing linkhub
/// keeps in Redis lives forever); an expired one comes back like a lost one.
#[derive(Debug, Clone, Copy)]
pub struct CounterLifetimes {
    /// A counter a read creates: the read may be of something that does not exist.
    pub created_by_read: Duration,
    /// A counter after a bump (and after an entry is stored under it).
    pub bumped: Duration,
}

/// The Redis side of the cache: multiplexed connections with short
/// timeouts, and the scripts.
pub struct Store {
    backend: Backend,
    /// The reads' connections, one per thread while there are enough (see
    /// [`Connections`]). A connection is kept until a command on it fails;
    /// there is no checkout per command (deadpool-redis's `PING` on each
    /// checkout doubled the round trips of a HIT).
    connections: Connections,
    /// The bumps' connection (see the module header), kept the same way.
    bumps: std::sync::RwLock<Option<Shared>>,
    /// The masters, their slots and live replicas, as last read by
    /// [`Store::refresh_topology`]; `None` until then (every bump waits).
    topology: std::sync::RwLock<Option<std::sync::Arc<Topology>>>,
    /// The `WAIT` timeout: half of `REDIS_TIMEOUT_MS`. It is paid only when
    /// no replica acknowledges: a replica that has the bump answers at once.
    replica_wait: Duration,
    prefix: String,
    lookup: Script,
    store: Script,
    timeout: Duration,
    /// TTL of a counter a read creates (see [`LOOKUP`]).
    created_counter_ttl_secs: u64,
    /// TTL a bump gives a counter.
    counter_ttl_secs: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("redis answered something unexpected: {0}")]
    Protocol(String),
    /// The master took the bump of `key`, but no replica acknowledged it
    /// within half of `REDIS_TIMEOUT_MS`: a failover could lose it, so it is owed.
    #[error("no replica acknowledged the bump of {key} within {waited:?}")]
    NotReplicated { key: String, waited: Duration },
}

pub type StoreResult<T> = Result<T, StoreError>;

impl Store {
    /// Connecting and every command are
    /// bounded by `timeout`: an unreachable Redis costs a request that long at
    /// most (and the circuit breaker makes it cost that once).
    pub fn new(
        topology: &RedisTopology,
        prefix: &str,
        pool_size: usize,
        timeout: Duration,
        ca_file: Option<&std::path::Path>,
        lifetimes: CounterLifetimes,
    ) -> Result<Self, String> {
        let backend = match topology {
            RedisTopology::Single(url) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout));
                let node = super::tls::node_connection_info(url, ca_file)?;
                Backend::Single {
                    client: redis::Client::open(node).map_err(|e| e.to_string())?,
                    config,
                }
            }
            RedisTopology::Cluster(urls) => Backend::Cluster {
                client: super::tls::cluster_client(urls, ca_file, timeout)?,
            },
        };
        Ok(Self {
            backend,
            connections: Connections::new(pool_size),
            bumps: std::sync::RwLock::new(None),
            topology: std::sync::RwLock::new(None),
            // A bump and its WAIT are one operation, bounded like any other
            // (twice the timeout): the WAIT gets half of the timeout, and the
            // bump's own round trip is left the rest.
            replica_wait: timeout / 2,
            prefix: prefix.to_owned(),
            lookup: Script::new(LOOKUP),
            store: Script::new(STORE),
            timeout,
            created_counter_ttl_secs: lifetimes.created_by_read.as_secs().max(1),
            counter_ttl_secs: lifetimes.bumped.as_secs().max(1),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn connections_status(&self) -> ConnectionsStatus {
        ConnectionsStatus {
            open: self.connections.open(),
            max: self.connections.slots.len(),
        }
    }

    /// The calling thread's connection, opened now when it has none.
    pub(super) async fn conn(&self) -> StoreResult<Shared> {
        kept_or_new(self.connections.slot(), || self.backend.open()).await
    }

    /// The bumps' kept connection, or a new one (never a reads' connection).
    async fn bump_conn(&self) -> StoreResult<Shared> {
        kept_or_new(&self.bumps, || self.backend.open()).await
    }

    /// Bounds a whole operation, connecting included. A failure drops the
    /// calling thread's connection: its next command opens a new one.
    pub(super) async fn bounded<T>(
        &self,
        op: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        self.bounded_on(self.connections.slot(), op).await
    }

    /// [`Store::bounded`] for an operation on the connection kept in `kept`.
    async fn bounded_on<T>(
        &self,
        kept: &std::sync::RwLock<Option<Shared>>,
        op: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let result = tokio::time::timeout(self.timeout * 2, op)
            .await
            .unwrap_or(Err(StoreError::Timeout(self.timeout * 2)));
        // A replica that did not acknowledge in time is no fault of the connection.
        if result
            .as_ref()
            .is_err_and(|e| !matches!(e, StoreError::NotReplicated { .. }))
        {
            *kept
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        }
        result
    }

    pub async fn ping(&self) -> StoreResult<()> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            let _: String = redis::cmd("PING").query_async(&mut conn).await?;
            Ok(())
        })
        .await
    }

    /// One round trip: the namespace's version and the entry under it.
    pub async fn lookup(&self, ns: &Namespace, query: &str) -> StoreResult<Lookup> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            let (version, entry, ttl_ms): (String, Option<Vec<u8>>, Option<i64>) = self
                .lookup
                .key(keys::version_key(&self.prefix, ns))
                .arg(keys::entry_prefix(&self.prefix, ns))
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
        self.bounded(async {
            let mut conn = self.conn().await?;
            let stored: i64 = self
                .store
                .key(keys::entry_key(
                    &self.prefix,
                    entry.ns,
                    entry.version,
                    entry.query,
                ))
                .key(keys::version_key(&self.prefix, entry.ns))
                .key(keys::stored_count_key(
                    &self.prefix,
                    entry.ns,
                    entry.version,
                ))
                .key(keys::index_key(&self.prefix, entry.ns))
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

    /// TTL a bump gives a counter, in seconds.
    pub fn counter_ttl_secs(&self) -> u64 {
        self.counter_ttl_secs
    }

    /// Bumps the counters of `namespaces` and answers once each would survive
    /// a failover (see the module header): [`StoreError::NotReplicated`] when
    /// a shard with a live replica did not confirm one in time. On a cluster
    /// one pipeline per master (as the last topology read says) goes to it,
    /// ending with one `WAIT`; on one node a single pipeline does. The
    /// pipelines go out together over the bumps' multiplexed connection.
    pub async fn bump(&self, namespaces: &[Namespace]) -> StoreResult<()> {
        if namespaces.is_empty() {
            return Ok(());
        }
        let topology = self.topology();
        let must_wait = |key: &str| topology.as_ref().is_none_or(|t| t.has_live_replica(key));
        self.bounded_on(&self.bumps, async {
            let conn = self.bump_conn().await?;
            let keys: Vec<String> = namespaces
                .iter()
                .map(|ns| keys::version_key(&self.prefix, ns))
                .collect();
            match conn {
                Shared::Single(mut single) => {
                    let wait = must_wait("");
                    let mut pipe = redis::pipe();
                    for key in &keys {
                        pipe.add_command(self.bump_command(key));
                    }
                    if wait {
                        pipe.add_command(self.wait_command());
                    }
                    let replies: Vec<Value> = pipe.query_async(&mut single).await?;
                    self.check_bumps(replies, wait, &keys[0])
                }
                Shared::Cluster(cluster) => {
                    // One pipeline per master: its counters' bumps, then one
                    // WAIT (a WAIT blocks the connection, so one per master,
                    // not per counter). Keys whose master the view does not
                    // know go one by one.
                    let mut groups: Vec<(Option<usize>, Vec<&String>)> = Vec::new();
                    for key in &keys {
                        let master = topology.as_ref().and_then(|t| t.master_of(key));
                        match groups
                            .iter_mut()
                            .find(|(m, _)| master.is_some() && *m == master)
                        {
                            Some((_, group)) => group.push(key),
                            None => groups.push((master, vec![key])),
                        }
                    }
                    let calls = groups.into_iter().map(|(_, group)| {
                        let mut cluster = cluster.clone();
                        let wait = must_wait(group[0]);
                        async move {
                            let mut pipe = redis::pipe();
                            for key in &group {
                                pipe.add_command(self.bump_command(key));
                            }
                            if wait {
                                pipe.add_command(self.wait_command());
                            }
                            let count = pipe.len();
                            // Every key of the group is the same master's.
                            let route = SingleNodeRoutingInfo::SpecificNode(Route::with_key(
                                group[0].as_bytes(),
                                SlotAddr::Master,
                            ));
                            let replies = cluster.route_pipeline(pipe, 0, count, route).await?;
                            self.check_bumps(replies, wait, group[0])
                        }
                    });
                    futures_util::future::try_join_all(calls).await?;
                    Ok(())
                }
            }
        })
        .await
    }

    /// `EVAL` of [`BUMP`] on `key`: the script text each time (a pipeline
    /// cannot fall back from `EVALSHA` on `NOSCRIPT`; Redis caches the
    /// compiled script by its digest, so this costs only the bytes).
    fn bump_command(&self, key: &str) -> Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(BUMP).arg(1).arg(key).arg(self.counter_ttl_secs);
        cmd
    }

    /// `WAIT 1 <ms>`: at least one replica has every write this connection sent.
    fn wait_command(&self) -> Cmd {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(1).arg(self.replica_wait.as_millis().max(1) as u64);
        cmd
    }

    /// The bumps' replies must be counter values; with a `WAIT`, its reply
    /// (the last) must count a replica.
    fn check_bumps(&self, replies: Vec<Value>, waited: bool, key: &str) -> StoreResult<()> {
        let mut replies = replies.into_iter();
        let acks = if waited { replies.next_back() } else { None };
        for reply in replies {
            reply.extract_error()?;
        }
        let Some(acks) = acks else {
            return Ok(());
        };
        let acks: i64 = redis::from_redis_value(acks.extract_error()?)
            .map_err(|e| StoreError::Protocol(e.to_string()))?;
        if acks < 1 {
            return Err(StoreError::NotReplicated {
                key: key.to_owned(),
                waited: self.replica_wait,
            });
        }
        Ok(())
    }

    /// The last topology read, if any.
    fn topology(&self) -> Option<std::sync::Arc<Topology>> {
        self.topology
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reads the masters, their slots, live replicas and run ids anew and
    /// keeps them for the bumps; answers whether the masters changed since
    /// the last read (a failover, a resharding, a restart). The first read
    /// is no change.
    pub async fn refresh_topology(&self) -> StoreResult<bool> {
        let fresh = match &self.backend {
            Backend::Single { .. } => {
                let info: String = self
                    .bounded(async {
                        let mut conn = self.conn().await?;
                        let (server, replication): (String, String) = redis::pipe()
                            .cmd("INFO")
                            .arg("server")
                            .cmd("INFO")
                            .arg("replication")
                            .query_async(&mut conn)
                            .await?;
                        Ok(server + &replication)
                    })
                    .await?;
                Topology::single(&info)
            }
            Backend::Cluster { .. } => {
                let nodes = self.cluster_nodes().await?;
                let mut topology = Topology::cluster(&nodes);
                if topology.masters.is_empty() {
                    return Err(StoreError::Protocol(
                        "CLUSTER NODES lists no master".to_owned(),
                    ));
                }
                for master in &mut topology.masters {
                    if let Some(address) = &master.address {
                        let mut info_server = redis::cmd("INFO");
                        info_server.arg("server");
                        let info: String = self.query_on(Some(address), info_server).await?;
                        master.run_id = Topology::single(&info).masters[0].run_id.clone();
                    }
                }
                topology
            }
        };
        let fresh = std::sync::Arc::new(fresh);
        let before = self
            .topology
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .replace(std::sync::Arc::clone(&fresh));
        Ok(before.is_some_and(|before| fresh.masters_changed(&before)))
    }

    /// Current versions of `namespaces` (`None` where the counter is missing).
    /// Each [`Store::version`] is bounded, and they go out together over the
    /// same multiplexed connection.
    pub async fn versions(&self, namespaces: &[Namespace]) -> StoreResult<Vec<Option<u64>>> {
        let calls = namespaces
            .iter()
            .map(|ns| async move { self.version(&keys::version_key(&self.prefix, ns)).await });
        futures_util::future::try_join_all(calls).await
    }

    /// Starts walking every key matching `pattern` with `SCAN` (never
    /// `KEYS`). On a cluster SCAN is per node, so the walk visits every
    /// master in turn; the masters are read anew for each walk, so moved slots
    /// and failovers are followed.
    pub async fn scan(&self, pattern: &str, count: usize) -> StoreResult<KeyScan> {
        let nodes = match &self.backend {
            Backend::Single { .. } => vec![None],
            Backend::Cluster { .. } => self.masters().await?.into_iter().map(Some).collect(),
        };
        Ok(KeyScan {
            nodes,
            cursor: 0,
            pattern: pattern.to_owned(),
            count,
        })
    }

    /// The next batch of a walk; `None` once every node is done.
    pub async fn scan_next(&self, scan: &mut KeyScan) -> StoreResult<Option<Vec<String>>> {
        let Some(node) = scan.nodes.last() else {
            return Ok(None);
        };
        let (next, keys) = self
            .scan_step(node.as_ref(), scan.cursor, &scan.pattern, scan.count)
            .await?;
        scan.cursor = next;
        if next == 0 {
            scan.nodes.pop();
        }
        Ok(Some(keys))
    }

    async fn scan_step(
        &self,
        node: Option<&(String, u16)>,
        cursor: u64,
        pattern: &str,
        count: usize,
    ) -> StoreResult<(u64, Vec<String>)> {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(count);
        self.query_on(node, cmd).await
    }

    /// `cmd` on one `node` of a cluster, or where the connection sends it
    /// (`None`, or a single node).
    async fn query_on<T: redis::FromRedisValue>(
        &self,
        node: Option<&(String, u16)>,
        cmd: Cmd,
    ) -> StoreResult<T> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            let reply = match (&mut conn, node) {
                (Shared::Cluster(c), Some((host, port))) => {
                    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: host.clone(),
                        port: *port,
                    });
                    c.route_command(cmd, routing).await?
                }
                _ => cmd.query_async::<Value>(&mut conn).await?,
            };
            redis::from_redis_value(reply).map_err(|e| StoreError::Protocol(e.to_string()))
        })
        .await
    }

    /// `CLUSTER NODES` as the node the cluster connection asks answers it.
    async fn cluster_nodes(&self) -> StoreResult<String> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            Ok(redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut conn)
                .await?)
        })
        .await
    }

    /// The cluster's masters as `(host, port)`, from `CLUSTER NODES`, read
    /// anew for each pass so moved slots and failovers are followed.
    async fn masters(&self) -> StoreResult<Vec<(String, u16)>> {
        let masters = Topology::cluster(&self.cluster_nodes().await?).addresses();
        if masters.is_empty() {
            return Err(StoreError::Protocol(
                "CLUSTER NODES lists no master".to_owned(),
            ));
        }
        Ok(masters)
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

/// The part of a key Redis Cluster hashes: the first non-empty `{…}`, else the key.
fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_snippet_is_in_both_scripts_once() {
        for script in [LOOKUP, BUMP] {
            assert_eq!(script.matches("redis.call('TIME')").count(), 1, "{script}");
        }
    }

    #[test]
    fn hash_tags_follow_redis_cluster_rules() {
        assert_eq!(hash_tag("lh:{user:1}:5:user"), "user:1");
        assert_eq!(hash_tag("lh:ver:{user:1}"), "user:1");
        assert_eq!(hash_tag("plain"), "plain");
        assert_eq!(hash_tag("a{}b"), "a{}b");
    }

    #[test]
    fn masters_are_read_from_cluster_nodes() {
        let nodes = "\
07c3 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
67ed 127.0.0.1:7002@17002 master - 0 1 2 connected 5461-10922
292f 127.0.0.1:7004@17004 slave 07c3 0 1 1 connected
6ec2 127.0.0.1:7003@17003 master,fail - 0 1 3 disconnected
";
        assert_eq!(
            Topology::cluster(nodes).addresses(),
            vec![
                ("127.0.0.1".to_owned(), 7001),
                ("127.0.0.1".to_owned(), 7002)
            ]
        );
    }
}
