//! Redis commands. Nothing above this room builds a command; nothing in it
//! decides policy (when to trust, when to bypass): that is `cache/mod.rs`.
//!
//! This file is the room's front door: the [`Store`] every command goes
//! through, its errors, and what the rest of the cache imports. The files
//! behind it hold one role each, with the Lua script beside the code that
//! runs it:
//!
//! - `connections.rs`: where Redis is (one node or a cluster), the per-thread
//!   connection slots, kept connections, and the bound that drops a failed
//!   one so the next command reconnects;
//! - `reads.rs`: the lookup of a version and its entry, the conditional
//!   store of an entry, plain `GET`s of counters and entries, `UNLINK`;
//! - `bumps.rs`: bumping counters, each bump followed by a `WAIT` for every
//!   replica that could be promoted, and which shards lag;
//! - `scan.rs`: commands sent to one chosen node: the `SCAN` walk over every
//!   master, and the `CLUSTER NODES` / `INFO` reads of the topology the
//!   bumps rely on;
//! - `clock.rs`: the Lua snippet that turns the Redis clock into a counter
//!   value, shared by the lookup's and the bump's scripts (rule 3).
//!
//! A bump counts once every replica that a failover could promote
//! acknowledges it (`WAIT`), or, where the shard has no replica, once the
//! master has it; [`Store::bump`] answers which namespaces did not count
//! (their shard's replicas lag, or their slot was moving), and the caller
//! owes those (`bumps.rs`).
//!
//! A slot being migrated (`ASK`, `TRYAGAIN`, `MOVED`, a script touching a
//! key that already left) is not Redis failing: [`StoreError::is_slot_moving`]
//! tells it apart, so the caller bypasses that one read or owes that one
//! bump without opening the breaker.

mod bumps;
mod clock;
mod connections;
mod reads;
mod scan;

use std::sync::Arc;
use std::time::Duration;

use redis::Script;

use self::bumps::Lagging;
use self::connections::{Backend, BumpConnections, Connections};
use super::epoch::CacheEpoch;
use super::topology::Topology;
use crate::config::RedisTopology;

pub use self::bumps::Bumped;
pub use self::connections::ConnectionsStatus;
pub(in crate::cache) use self::connections::Shared;
pub use self::reads::{Lookup, StoreEntry};
pub use self::scan::KeyScan;

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
    /// Recovery's connection for the topology reads (`CLUSTER NODES`,
    /// `INFO`), kept apart from the reads' ones: behind thousands of purges
    /// queued on a slow link, a topology read outlasted its bound and the
    /// replay never started.
    control: std::sync::RwLock<Option<Shared>>,
    /// The bumps' connections, one held by each bump alone: a `WAIT` that
    /// waits blocks its connection, and neither the reads nor other bumps
    /// may queue behind it (`bumps.rs`).
    bumps: BumpConnections,
    /// The shards whose replicas did not acknowledge lately (`bumps.rs`).
    lagging: Lagging,
    /// The masters, their slots and live replicas, as last read by
    /// [`Store::refresh_topology`]; `None` until then (every bump waits).
    topology: std::sync::RwLock<Option<std::sync::Arc<Topology>>>,
    /// The `WAIT` timeout: half of `REDIS_TIMEOUT_MS`. It is paid only when
    /// no replica acknowledges: a replica that has the bump answers at once.
    replica_wait: Duration,
    prefix: String,
    /// The cache epoch this process builds keys with (see [`Store::cache_prefix`]).
    epoch: Arc<CacheEpoch>,
    lookup: Script,
    store: Script,
    timeout: Duration,
    /// TTL of a counter a read creates (see `LOOKUP` in `reads.rs`).
    created_counter_ttl_secs: u64,
    /// TTL a bump gives a counter.
    counter_ttl_secs: u64,
}

/// Why a command failed. Every variant but [`StoreError::NotReplicated`]
/// also drops the connection it failed on (see [`Store::bounded`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis refused the command, or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The operation, connecting included, took longer than its bound, or
    /// the redis crate cut a command by its own response timeout (a slow
    /// link; see `connections.rs`).
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// A reply of a shape the command never gives (a script's, `CLUSTER NODES`).
    #[error("redis answered something unexpected: {0}")]
    Protocol(String),
    /// The bumps of `namespaces` did not count: a replica of their shard did
    /// not acknowledge them within half of `REDIS_TIMEOUT_MS` (a failover
    /// could lose them), or their slot was moving. Only [`deliver`]
    /// answers it; the server's callers get a [`Bumped`].
    ///
    /// [`deliver`]: crate::cache::deliver
    #[error("the bumps of {namespaces} namespace(s) did not count: {reason}")]
    NotReplicated { namespaces: usize, reason: String },
}

impl StoreError {
    /// Whether this is a slot moving between masters (a resharding), not
    /// Redis failing: the cluster answers `ASK`/`MOVED`/`TRYAGAIN`, or a
    /// script's key already left the node. The redis crate follows such
    /// redirections for single commands; what still ends here is a read to
    /// bypass or a bump to owe, never a reason to open the breaker.
    pub fn is_slot_moving(&self) -> bool {
        match self {
            Self::Redis(e) => redis_slot_moving(e),
            _ => false,
        }
    }
}

/// See [`StoreError::is_slot_moving`].
fn redis_slot_moving(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    matches!(
        e.kind(),
        ErrorKind::Server(
            ServerErrorKind::Ask | ServerErrorKind::Moved | ServerErrorKind::TryAgain
        )
    ) || e.to_string().contains("non local key")
}

/// What every command of the store answers.
pub type StoreResult<T> = Result<T, StoreError>;

impl Store {
    /// A store for the Redis `topology` names (one node or a cluster), its
    /// keys under `prefix`, with at most `pool_size` connections for the
    /// reads (`REDIS_POOL_SIZE`) and one for the bumps; with `ca_file`
    /// (`REDIS_CA_FILE`) a server's certificate is checked against that CA
    /// instead of the system roots. Nothing connects yet: the first command
    /// does. Connecting and every command are bounded by `timeout`: an
    /// unreachable Redis costs a request that long at most (and the circuit
    /// breaker makes it cost that once).
    pub fn new(
        topology: &RedisTopology,
        prefix: &str,
        epoch: Arc<CacheEpoch>,
        pool_size: usize,
        timeout: Duration,
        ca_file: Option<&std::path::Path>,
        lifetimes: CounterLifetimes,
    ) -> Result<Self, String> {
        Ok(Self {
            backend: Backend::new(topology, timeout, ca_file)?,
            connections: Connections::new(pool_size),
            control: std::sync::RwLock::new(None),
            bumps: BumpConnections::new(),
            lagging: Lagging::default(),
            topology: std::sync::RwLock::new(None),
            // A bump and its WAIT are one operation, bounded like any other
            // (twice the timeout): the WAIT gets half of the timeout, and the
            // bump's own round trip is left the rest.
            replica_wait: timeout / 2,
            prefix: prefix.to_owned(),
            epoch,
            lookup: Script::new(reads::LOOKUP),
            store: Script::new(reads::STORE),
            timeout,
            created_counter_ttl_secs: lifetimes.created_by_read.as_secs().max(1),
            counter_ttl_secs: lifetimes.bumped.as_secs().max(1),
        })
    }

    /// The prefix every key of this store starts with (`CACHE_PREFIX`).
    /// Rate-limit windows live right under it: they outlast epoch moves.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The prefix of every cache key (counters, indexes, entries):
    /// `<CACHE_PREFIX>:e<epoch>`. Moving the epoch makes every key built
    /// under the older one unreachable at once (`cache/epoch.rs`).
    pub fn cache_prefix(&self) -> String {
        self.prefix_of(self.epoch.get())
    }

    fn prefix_of(&self, epoch: i64) -> String {
        format!("{}:e{epoch}", self.prefix)
    }

    /// The run ids of the masters as last read by [`Store::refresh_topology`],
    /// sorted and comma-separated: which Redis processes hold the cache now.
    /// `None` until the topology was read, or when a master's run id is unknown.
    pub fn master_runs(&self) -> Option<String> {
        let topology = self.topology()?;
        let mut runs = topology
            .masters
            .iter()
            .map(|m| m.run_id.clone())
            .collect::<Option<Vec<String>>>()?;
        runs.sort();
        Some(runs.join(","))
    }

    /// `host:port` of each master as it announces itself, as last read by
    /// [`Store::refresh_topology`] (for logs).
    pub fn master_addresses(&self) -> String {
        self.topology()
            .map(|t| {
                t.addresses()
                    .iter()
                    .map(|(host, port)| format!("{host}:{port}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    }

    /// `REDIS_TIMEOUT_MS`: what one command may take; twice it bounds a
    /// whole operation, connecting included.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// TTL a bump gives a counter, in seconds.
    pub fn counter_ttl_secs(&self) -> u64 {
        self.counter_ttl_secs
    }
}
