//! Commands sent to a chosen node rather than routed by key: `SCAN` is per
//! node on a cluster, so the janitor's walk visits every master in turn; and
//! the topology the bumps rely on is read from `CLUSTER NODES` and each
//! master's `INFO`. Both read the masters anew each time, so moved slots and
//! failovers are followed. A master is reached through one of its slots,
//! never by address: a node announced by host name (`cluster-announce-hostname`)
//! is known to the cluster client by that name, not by the IP `CLUSTER
//! NODES` also shows. Parsing that text is `topology.rs`'s part; what a
//! change of master means is `recovery.rs`'s.

use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Value};

use super::connections::Backend;
use super::{Shared, Store, StoreError, StoreResult};
use crate::cache::topology::Topology;

/// A `SCAN` walk over one node or every master of a cluster.
pub struct KeyScan {
    /// Masters still to walk, by one of their slots (the last one is
    /// current); `None` is "the node".
    nodes: Vec<Option<u16>>,
    cursor: u64,
    pattern: String,
    count: usize,
}

impl Store {
    /// Reads the masters, their slots, live replicas and run ids anew and
    /// keeps them for the bumps; answers whether the masters changed since
    /// the last read (a failover, a resharding, a restart). The first read
    /// is no change.
    pub async fn refresh_topology(&self) -> StoreResult<bool> {
        let fresh = match &self.backend {
            Backend::Single { .. } => {
                let info: String = self
                    .bounded_on(&self.control, async {
                        let mut conn = self.conn_in(&self.control).await?;
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
                let nodes = self.cluster_nodes(&self.control).await?;
                let mut topology = Topology::cluster(&nodes);
                if topology.masters.is_empty() {
                    return Err(StoreError::Protocol(
                        "CLUSTER NODES lists no master".to_owned(),
                    ));
                }
                for master in &mut topology.masters {
                    let mut info_server = redis::cmd("INFO");
                    info_server.arg("server");
                    let info: String = self
                        .query_on(&self.control, Some(master.first_slot()), info_server)
                        .await?;
                    master.run_id = Topology::single(&info).masters[0].run_id.clone();
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
            .scan_step(*node, scan.cursor, &scan.pattern, scan.count)
            .await?;
        scan.cursor = next;
        if next == 0 {
            scan.nodes.pop();
        }
        Ok(Some(keys))
    }

    async fn scan_step(
        &self,
        node: Option<u16>,
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
        self.query_on(self.connections.slot(), node, cmd).await
    }

    /// `cmd` on the master of `slot` on a cluster, or where the connection
    /// sends it (`None`, or a single node), over the connection kept in `kept`.
    async fn query_on<T: redis::FromRedisValue>(
        &self,
        kept: &std::sync::RwLock<Option<Shared>>,
        slot: Option<u16>,
        cmd: Cmd,
    ) -> StoreResult<T> {
        self.bounded_on(kept, async {
            let mut conn = self.conn_in(kept).await?;
            let reply = match (&mut conn, slot) {
                (Shared::Cluster(c), Some(slot)) => {
                    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(
                        Route::new(slot, SlotAddr::Master),
                    ));
                    c.route_command(cmd, routing).await?
                }
                _ => cmd.query_async::<Value>(&mut conn).await?,
            };
            redis::from_redis_value(reply).map_err(|e| StoreError::Protocol(e.to_string()))
        })
        .await
    }

    /// `CLUSTER NODES` as the node the cluster connection kept in `kept` asks answers it.
    async fn cluster_nodes(&self, kept: &std::sync::RwLock<Option<Shared>>) -> StoreResult<String> {
        self.bounded_on(kept, async {
            let mut conn = self.conn_in(kept).await?;
            Ok(redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut conn)
                .await?)
        })
        .await
    }

    /// One slot of each of the cluster's masters, from `CLUSTER NODES`, read
    /// anew for each pass so moved slots and failovers are followed.
    async fn masters(&self) -> StoreResult<Vec<u16>> {
        let masters =
            Topology::cluster(&self.cluster_nodes(self.connections.slot()).await?).master_slots();
        if masters.is_empty() {
            return Err(StoreError::Protocol(
                "CLUSTER NODES lists no master".to_owned(),
            ));
        }
        Ok(masters)
    }
}
