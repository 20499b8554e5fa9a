//! Bumps: moving namespaces' counters past every version handed out, so
//! that no entry stored before a write is reachable after it (`BUMP`).
//!
//! A bump is delivered only once it would survive a failover: where the
//! counter's shard has a live replica (the [`Topology`] `scan.rs` last
//! read), the bump and a `WAIT 1 <REDIS_TIMEOUT_MS / 2>` go to the slot's
//! master as one pipeline, so the `WAIT` runs on the very connection that
//! sent the bump (on a fresh one it would have nothing to wait for), and no
//! acknowledgement is [`StoreError::NotReplicated`]: the caller owes the
//! bump. Bumps use a connection of their own: a `WAIT` that waits blocks its
//! connection, and the reads must not queue behind it.

use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Value};

use super::clock::fresh_counter_from_time;
use super::{Shared, Store, StoreError, StoreResult};
use crate::cache::keys;
use crate::cache::topology::Topology;
use crate::namespace::Namespace;

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
pub(super) const BUMP: &str = concat!(
    fresh_counter_from_time!(),
    "local v = tonumber(redis.call('GET', KEYS[1]))\n",
    "if v and v >= now then fresh = string.format('%.0f', v + 1) end\n",
    "redis.call('SET', KEYS[1], fresh, 'EX', ARGV[1])\n",
    "return fresh\n",
);

impl Store {
    /// Bumps the counters of `namespaces` (under the current epoch, and the
    /// previous one right after a move: `epoch.rs`) and answers once each would survive
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
            let prefixes: Vec<String> = self
                .epoch
                .bumped()
                .into_iter()
                .map(|epoch| self.prefix_of(epoch))
                .collect();
            let keys: Vec<String> = namespaces
                .iter()
                .flat_map(|ns| prefixes.iter().map(move |p| keys::version_key(p, ns)))
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
    pub(super) fn topology(&self) -> Option<std::sync::Arc<Topology>> {
        self.topology
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}
