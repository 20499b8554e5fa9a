//! Connections to Redis: where it is (one node or a cluster), the reads'
//! per-thread connection slots, the bumps' connections (each held by one
//! bump at a time: [`BumpConnections`]), and the
//! bound on every operation, which drops a connection a command failed on so
//! that the next command reconnects. There is no pool and no checkout: a
//! connection is multiplexed, kept until it fails, and opened on the thread
//! that uses it (see [`Connections`] for the measurement behind that).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisFuture, Value};

use super::{Store, StoreError, StoreResult};
use crate::cache::tls;
use crate::config::RedisTopology;

/// Where the cache lives: one node, or a Redis Cluster, and how to open a
/// connection to it.
pub(super) enum Backend {
    Single {
        client: redis::Client,
        config: AsyncConnectionConfig,
    },
    Cluster {
        client: redis::cluster::ClusterClient,
    },
}

impl Backend {
    /// The client for `topology`, connecting and answering within `timeout`;
    /// nothing connects yet. `ca_file`: see [`Store::new`].
    pub(super) fn new(
        topology: &RedisTopology,
        timeout: Duration,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, String> {
        Ok(match topology {
            RedisTopology::Single(url) => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout));
                let node = tls::node_connection_info(url, ca_file)?;
                Self::Single {
                    client: redis::Client::open(node).map_err(|e| e.to_string())?,
                    config,
                }
            }
            RedisTopology::Cluster(urls) => Self::Cluster {
                client: tls::cluster_client(urls, ca_file, timeout)?,
            },
        })
    }

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
pub(super) struct Connections {
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
    pub(super) fn new(size: usize) -> Self {
        Self {
            slots: (0..size.max(1))
                .map(|_| std::sync::RwLock::new(None))
                .collect(),
            id: CONNECTIONS_IDS.fetch_add(1, Ordering::Relaxed),
            threads: AtomicUsize::new(0),
        }
    }

    /// The calling thread's slot.
    pub(super) fn slot(&self) -> &std::sync::RwLock<Option<Shared>> {
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

    /// Empties every slot: each thread opens a new connection on its next
    /// command (one in flight on a dropped one still gets its answer).
    fn forget_all(&self) {
        for slot in &self.slots {
            *slot
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        }
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
    /// Slots that hold a connection now.
    pub open: usize,
    /// Slots there are: `REDIS_POOL_SIZE`.
    pub max: usize,
}

/// The bumps' connections. A bump holds one alone, from its first command
/// to its `WAIT`'s answer: Redis blocks a connection for as long as its
/// `WAIT` waits, and a `WAIT` answers for every write its connection sent.
/// On one shared connection a replica that stopped acknowledging made each
/// bump queue behind the `WAIT`s before it, so sixteen writers turned half a
/// Redis timeout into eight, and the bound opened the breaker for every
/// shard. Connections are opened when more bumps run at once than there are
/// idle ones, kept after a bump that got its answers, and dropped after one
/// that failed (or was cut by its bound: it may still be blocked).
pub(super) struct BumpConnections {
    idle: std::sync::Mutex<Vec<Shared>>,
    /// At most [`BUMP_CONNECTIONS`] bumps hold a connection at once.
    permits: tokio::sync::Semaphore,
}

/// Bumps under way at once per process. A bump that finds none free waits
/// (within its bound); a writer's bump holds one for a round trip, or half a
/// Redis timeout at most when a shard just started to lag (`bumps.rs`).
/// On a cluster each holds a connection per master.
const BUMP_CONNECTIONS: usize = 16;

impl BumpConnections {
    pub(super) fn new() -> Self {
        Self {
            idle: std::sync::Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(BUMP_CONNECTIONS),
        }
    }

    /// Drops the idle connections (those held now are dropped or kept by
    /// their bumps as usual).
    fn forget_idle(&self) {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }
}

/// A bump's connection, its own until [`HeldConnection::keep`] gives it
/// back; dropped otherwise.
pub(super) struct HeldConnection<'a> {
    pub(super) conn: Shared,
    pool: &'a BumpConnections,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl HeldConnection<'_> {
    /// Every command sent on it got its answer: the next bump may use it.
    pub(super) fn keep(self) {
        self.pool
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(self.conn);
    }
}

/// A handle on a connection that commands are sent through. Commands
/// are routed by key (on a cluster, by the key's hash slot), so everything
/// above this type is written once for both topologies; clones send
/// concurrently over the same multiplexed connection.
#[derive(Clone)]
pub(in crate::cache) enum Shared {
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

impl Store {
    /// How many connections the reads hold now, out of how many they may.
    pub fn connections_status(&self) -> ConnectionsStatus {
        ConnectionsStatus {
            open: self.connections.open(),
            max: self.connections.slots.len(),
        }
    }

    /// The calling thread's connection, opened now when it has none.
    pub(in crate::cache) async fn conn(&self) -> StoreResult<Shared> {
        kept_or_new(self.connections.slot(), || self.backend.open()).await
    }

    /// Forgets every connection to a single node kept for later: the reads'
    /// slots, the bumps' idle ones and recovery's own. Recovery calls it
    /// once per outage: a connection kept from before an outage is dead
    /// more often than not, and each one found dead by use would fail an
    /// attempt of its own (with the idle bump connections cut by a network
    /// fault, the replay failed on one after another, a tick of 200 ms
    /// each, and Redis was trusted again about 2 s after it came back), or,
    /// among the reads' slots, trip the breaker again right after it
    /// closed. A cluster connection repairs its node connections itself,
    /// and a new one must discover the cluster again: those are kept.
    pub fn forget_connections(&self) {
        if matches!(self.backend, Backend::Cluster { .. }) {
            return;
        }
        self.connections.forget_all();
        self.bumps.forget_idle();
        *self
            .control
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }

    /// The connection kept in `slot`, opened now when it holds none.
    pub(super) async fn conn_in(
        &self,
        slot: &std::sync::RwLock<Option<Shared>>,
    ) -> StoreResult<Shared> {
        kept_or_new(slot, || self.backend.open()).await
    }

    /// A bump's own connection: an idle one, or a new one (never a reads'
    /// connection); waits while [`BUMP_CONNECTIONS`] bumps hold theirs.
    pub(super) async fn bump_conn(&self) -> StoreResult<HeldConnection<'_>> {
        let permit =
            self.bumps.permits.acquire().await.map_err(|_| {
                StoreError::Protocol("the bumps' connections are closed".to_owned())
            })?;
        let idle = self
            .bumps
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.backend.open().await?,
        };
        Ok(HeldConnection {
            conn,
            pool: &self.bumps,
            _permit: permit,
        })
    }

    /// Bounds an operation that holds its own connections (a bump): twice
    /// the timeout, connecting included.
    pub(super) async fn within<T>(
        &self,
        op: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        self.timed(op).await
    }

    /// `op` within twice the timeout; a command the redis crate cut by its
    /// own response timeout is a [`StoreError::Timeout`] too, not a Redis
    /// failure of another kind: callers tell "Redis is slow" (a slow link, a
    /// step too large) from "Redis refused" by that variant alone.
    async fn timed<T>(&self, op: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
        match tokio::time::timeout(self.timeout * 2, op).await {
            Ok(Err(StoreError::Redis(e))) if e.is_timeout() => {
                Err(StoreError::Timeout(self.timeout))
            }
            Ok(result) => result,
            Err(_) => Err(StoreError::Timeout(self.timeout * 2)),
        }
    }

    /// Bounds a whole operation, connecting included. A failure drops the
    /// calling thread's connection: its next command opens a new one.
    pub(in crate::cache) async fn bounded<T>(
        &self,
        op: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        self.bounded_on(self.connections.slot(), op).await
    }

    /// [`Store::bounded`] for an operation on the connection kept in `kept`.
    pub(super) async fn bounded_on<T>(
        &self,
        kept: &std::sync::RwLock<Option<Shared>>,
        op: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let result = self.timed(op).await;
        // A slot that moved is no fault of the connection.
        if result.as_ref().is_err_and(|e| !e.is_slot_moving()) {
            *kept
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        }
        result
    }

    /// One `PING` round trip on the calling thread's connection: whether Redis answers.
    pub async fn ping(&self) -> StoreResult<()> {
        self.bounded(async {
            let mut conn = self.conn().await?;
            let _: String = redis::cmd("PING").query_async(&mut conn).await?;
            Ok(())
        })
        .await
    }
}
