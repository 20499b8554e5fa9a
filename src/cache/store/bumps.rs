//! Bumps: moving namespaces' counters past every version handed out, so
//! that no entry stored before a write is reachable after it (`BUMP`).
//!
//! A bump counts only once it would survive a failover: the counters of one
//! master go to it as one pipeline ending with `WAIT <n> <REDIS_TIMEOUT_MS /
//! 2>`, where `n` is every replica the cluster lists for that master (the
//! [`Topology`] `scan.rs` last read; `topology.rs` says why every one, a
//! failed one too). The `WAIT` runs on the very connection that sent the
//! bumps (on another it would have nothing to wait for), and each bump holds
//! its connection alone (`connections.rs`), so one slow `WAIT` delays no
//! other bump. Fewer acknowledgements leave that master's namespaces
//! undelivered: [`Bumped::undelivered`], which the caller owes — only
//! those; the other masters' bumps counted.
//!
//! **A lagging shard costs one wait, not one per write.** A master whose
//! replicas did not acknowledge is marked lagging for [`LAGGING_FOR`]:
//! writers' bumps to it go without a `WAIT` and are answered undelivered at
//! once (so a write never waits on a sick replica twice in a row), while
//! recovery's replays keep waiting (`probe`), and the first one acknowledged
//! clears the mark. Nothing is trusted meanwhile that a `WAIT` did not
//! confirm: an undelivered bump is owed, its namespaces read with BYPASS.
//!
//! **A slot being migrated is followed**: a master's pipeline that meets
//! `ASK` (a key already moved to the importing node) or `MOVED` (the move is
//! over) is split until the key that moves goes alone, and the cluster
//! client follows that one's redirection, `WAIT` included
//! ([`Store::bump_on_cluster`]); a bump answered `ASK`/`MOVED` on its own is
//! sent again to the node named, with `ASKING`, and waited for there. One
//! that still does not land is undelivered, never a Redis failure.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Value};

use super::clock::fresh_counter_from_time;
use super::{Shared, Store, StoreError, StoreResult};
use crate::cache::keys;
use crate::cache::topology::Topology;
use crate::namespace::Namespace;

/// How long a master whose replicas did not acknowledge a bump is taken to
/// lag: writers' bumps to it do not wait for a `WAIT` meanwhile (recovery's
/// do, and clear the mark). A writer tries again after it, so a replica that
/// healed without recovery noticing costs at most this much BYPASS.
pub const LAGGING_FOR: Duration = Duration::from_secs(1);

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

/// What a bump delivered: every namespace but [`Bumped::undelivered`].
#[derive(Debug, Default)]
pub struct Bumped {
    /// Namespaces whose bump did not count (their shard's replicas did not
    /// acknowledge, or it is lagging, or their slot kept moving): owed.
    pub undelivered: Vec<Namespace>,
    /// Why, for the log (empty when everything counted).
    pub reason: String,
}

impl Bumped {
    /// Everything counted.
    pub fn delivered_all(&self) -> bool {
        self.undelivered.is_empty()
    }
}

/// The masters (by node id; `""` for a single node) whose replicas did not
/// acknowledge lately, and until when they are taken to lag.
#[derive(Default)]
pub(super) struct Lagging(std::sync::Mutex<HashMap<String, Instant>>);

impl Lagging {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn is_lagging(&self, master: &str) -> bool {
        let mut lagging = self.lock();
        match lagging.get(master) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                lagging.remove(master);
                false
            }
            None => false,
        }
    }

    fn mark(&self, master: &str) {
        self.lock()
            .insert(master.to_owned(), Instant::now() + LAGGING_FOR);
    }

    fn clear(&self, master: &str) {
        self.lock().remove(master);
    }
}

/// One master's share of a bump: its counters, and which namespace each is of.
struct Group<'k> {
    /// The node id of the master, as the topology knows it (`None`: unknown).
    master: Option<String>,
    /// Replicas to wait for.
    replicas: usize,
    /// `(index into the namespaces, counter key)`.
    keys: Vec<(usize, &'k str)>,
}

/// How a group's pipeline ended.
enum GroupOutcome {
    /// Every bump landed and was acknowledged as asked.
    Counted,
    /// The bumps landed, not enough replicas acknowledged (or none was asked).
    Unacknowledged(String),
}

impl Store {
    /// Bumps the counters of `namespaces` (under the current epoch, and the
    /// previous one right after a move: `epoch.rs`) and answers which did not
    /// count (see the module header). One pipeline per master (as the last
    /// topology read says), each ending with one `WAIT`, go out together over
    /// the bump's own connection. `probe`: wait for the replicas even of a
    /// master marked lagging (recovery), which clears the mark when they
    /// acknowledge. An error is Redis failing (a slot moving is not one).
    pub async fn bump(&self, namespaces: &[Namespace], probe: bool) -> StoreResult<Bumped> {
        if namespaces.is_empty() {
            return Ok(Bumped::default());
        }
        let topology = self.topology();
        let prefixes: Vec<String> = self
            .epoch
            .bumped()
            .into_iter()
            .map(|epoch| self.prefix_of(epoch))
            .collect();
        let keys: Vec<(usize, String)> = namespaces
            .iter()
            .enumerate()
            .flat_map(|(i, ns)| prefixes.iter().map(move |p| (i, keys::version_key(p, ns))))
            .collect();
        let groups = group_by_master(topology.as_deref(), &keys);
        self.within(async {
            let held = self.bump_conn().await?;
            let calls = groups.iter().map(|group| {
                let conn = held.conn.clone();
                async move {
                    let master = group.master.clone().unwrap_or_default();
                    let wait = group.replicas > 0 && (probe || !self.lagging.is_lagging(&master));
                    let outcome = self.bump_group(conn, group, wait).await?;
                    match &outcome {
                        GroupOutcome::Counted if wait => self.lagging.clear(&master),
                        GroupOutcome::Counted => {}
                        GroupOutcome::Unacknowledged(_) if wait => self.lagging.mark(&master),
                        GroupOutcome::Unacknowledged(_) => {}
                    }
                    Ok::<_, StoreError>((group, outcome))
                }
            });
            let outcomes = futures_util::future::try_join_all(calls).await?;
            held.keep();
            let mut bumped = Bumped::default();
            let mut undelivered = vec![false; namespaces.len()];
            for (group, outcome) in outcomes {
                if let GroupOutcome::Unacknowledged(reason) = outcome {
                    for (i, _) in &group.keys {
                        undelivered[*i] = true;
                    }
                    if bumped.reason.is_empty() {
                        bumped.reason = reason;
                    }
                }
            }
            bumped.undelivered = namespaces
                .iter()
                .zip(undelivered)
                .filter(|(_, u)| *u)
                .map(|(ns, _)| ns.clone())
                .collect();
            Ok(bumped)
        })
        .await
    }

    /// One master's pipeline: its bumps, then (with `wait`) one `WAIT` (a
    /// `WAIT` blocks the connection, so one per master, not per counter).
    /// On a cluster, a pipeline the crate could not place (see
    /// [`Store::bump_on_cluster`]) is split until each part lands.
    async fn bump_group(
        &self,
        mut conn: Shared,
        group: &Group<'_>,
        wait: bool,
    ) -> StoreResult<GroupOutcome> {
        let keys: Vec<&str> = group.keys.iter().map(|(_, key)| *key).collect();
        match &mut conn {
            Shared::Single(single) => {
                let pipe = self.bump_pipeline(&keys, group.replicas, wait);
                let replies: Vec<Value> = pipe.query_async(single).await?;
                self.bump_replies(&mut conn, &keys, replies, group.replicas, wait)
                    .await
            }
            Shared::Cluster(_) => {
                self.bump_on_cluster(&mut conn, &keys, group.replicas, wait)
                    .await
            }
        }
    }

    /// The bumps of `keys` (one master's, as the last topology read says)
    /// and their `WAIT`, as one pipeline routed by the first key.
    ///
    /// The crate follows a redirection of a pipeline as a whole: when one
    /// key's slot is migrating, `ASK` sends every bump to the importing node
    /// (with one `ASKING`, good for the first command only), whose `MOVED`
    /// sends them back, until its tries run out and the redirection is the
    /// answer. Then the keys are split in two and each half is sent on its
    /// own, down to one key, whose pipeline the crate does follow (its `WAIT`
    /// then waits on the node the bump landed on). Before, the group went to
    /// the node named whole, and every bump of a key that was not moving was
    /// owed; and the crate's tries outlasted the bound, a timeout that
    /// opened the breaker.
    fn bump_on_cluster<'a>(
        &'a self,
        conn: &'a mut Shared,
        keys: &'a [&'a str],
        replicas: usize,
        wait: bool,
    ) -> futures_util::future::BoxFuture<'a, StoreResult<GroupOutcome>> {
        Box::pin(async move {
            let Shared::Cluster(cluster) = &mut *conn else {
                return Err(StoreError::Protocol(
                    "a cluster bump on a single node's connection".to_owned(),
                ));
            };
            let pipe = self.bump_pipeline(keys, replicas, wait);
            let count = pipe.len();
            let route = SingleNodeRoutingInfo::SpecificNode(Route::with_key(
                keys[0].as_bytes(),
                SlotAddr::Master,
            ));
            match cluster.route_pipeline(pipe, 0, count, route).await {
                Ok(replies) => self.bump_replies(conn, keys, replies, replicas, wait).await,
                Err(e) if super::redis_slot_moving(&e) && keys.len() > 1 => {
                    let (first, second) = keys.split_at(keys.len() / 2);
                    let first = self.bump_on_cluster(conn, first, replicas, wait).await?;
                    let second = self.bump_on_cluster(conn, second, replicas, wait).await?;
                    Ok(match (first, second) {
                        (GroupOutcome::Unacknowledged(reason), _)
                        | (_, GroupOutcome::Unacknowledged(reason)) => {
                            GroupOutcome::Unacknowledged(reason)
                        }
                        _ => GroupOutcome::Counted,
                    })
                }
                Err(e) if super::redis_slot_moving(&e) => Ok(GroupOutcome::Unacknowledged(
                    format!("the slot of {} is moving: {e}", keys[0]),
                )),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// The bumps of `keys`, then (with `wait`) a `WAIT` for `replicas`.
    fn bump_pipeline(&self, keys: &[&str], replicas: usize, wait: bool) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.add_command(self.bump_command(key));
        }
        if wait {
            pipe.add_command(self.wait_command(replicas));
        }
        pipe
    }

    /// What the replies of [`Store::bump_pipeline`] say: bumps answered
    /// `ASK`/`MOVED` one by one are sent to the node named (see the module
    /// header), and the `WAIT`'s count decides whether the rest counted.
    async fn bump_replies(
        &self,
        conn: &mut Shared,
        keys: &[&str],
        replies: Vec<Value>,
        replicas: usize,
        wait: bool,
    ) -> StoreResult<GroupOutcome> {
        let mut replies = replies.into_iter();
        let acks = if wait { replies.next_back() } else { None };
        // Bumps redirected, by the node to send them to: `(asking, key)`.
        let mut redirected: Vec<(String, bool, &str)> = Vec::new();
        for (reply, key) in replies.zip(keys) {
            if let Err(e) = reply.extract_error() {
                match (e.kind(), e.redirect_node()) {
                    (redis::ErrorKind::Server(redis::ServerErrorKind::Ask), Some((node, _))) => {
                        redirected.push((node.to_owned(), true, *key))
                    }
                    (redis::ErrorKind::Server(redis::ServerErrorKind::Moved), Some((node, _))) => {
                        redirected.push((node.to_owned(), false, *key))
                    }
                    _ if super::redis_slot_moving(&e) => {
                        return Ok(GroupOutcome::Unacknowledged(format!(
                            "the slot of {key} is moving: {e}"
                        )));
                    }
                    _ => return Err(e.into()),
                }
            }
        }
        let mut outcome = match acks {
            None if wait => {
                return Err(StoreError::Protocol("WAIT gave no answer".to_owned()));
            }
            // No replica to wait for: the master's answer is all there is.
            None if replicas == 0 => GroupOutcome::Counted,
            // A lagging master's bumps, sent without a `WAIT` (see the header).
            None => GroupOutcome::Unacknowledged(format!(
                "the replicas of the master of {} lag",
                keys[0]
            )),
            Some(acks) => self.acknowledged(acks, replicas, keys[0])?,
        };
        if !redirected.is_empty() {
            let Shared::Cluster(cluster) = conn else {
                return Err(StoreError::Protocol(
                    "a single node redirected a bump".to_owned(),
                ));
            };
            let again = self.bump_redirected(cluster, &redirected, replicas).await?;
            if let GroupOutcome::Unacknowledged(_) = again {
                outcome = again;
            }
        }
        Ok(outcome)
    }

    /// Sends redirected bumps to the nodes named, each node's as one
    /// pipeline (`ASKING` before each bump an `ASK` sent), then `WAIT`s for
    /// `replicas` there (the importing master's replicas are not in the view
    /// yet: as many as the exporting one's).
    async fn bump_redirected(
        &self,
        cluster: &mut redis::cluster_async::ClusterConnection,
        redirected: &[(String, bool, &str)],
        replicas: usize,
    ) -> StoreResult<GroupOutcome> {
        let mut nodes: Vec<&str> = redirected.iter().map(|(n, _, _)| n.as_str()).collect();
        nodes.sort_unstable();
        nodes.dedup();
        let mut outcome = GroupOutcome::Counted;
        for node in nodes {
            let Some((host, port)) = node
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
            else {
                return Err(StoreError::Protocol(format!("a redirection to {node}")));
            };
            let mut pipe = redis::pipe();
            for (_, asking, key) in redirected.iter().filter(|(n, _, _)| n.as_str() == node) {
                if *asking {
                    pipe.add_command(redis::cmd("ASKING"));
                }
                pipe.add_command(self.bump_command(key));
            }
            if replicas > 0 {
                pipe.add_command(self.wait_command(replicas));
            }
            let count = pipe.len();
            let route = SingleNodeRoutingInfo::ByAddress {
                host: host.to_owned(),
                port,
            };
            let replies = match cluster.route_pipeline(pipe, 0, count, route).await {
                Ok(replies) => replies,
                // A node the client has no connection to yet, or one that
                // moved the slot on: owed, and the next replay tries again.
                Err(e)
                    if e.kind() == redis::ErrorKind::ClusterConnectionNotFound
                        || super::redis_slot_moving(&e) =>
                {
                    return Ok(GroupOutcome::Unacknowledged(format!(
                        "a bump redirected to {node}: {e}"
                    )));
                }
                Err(e) => return Err(e.into()),
            };
            let mut replies = replies.into_iter();
            let acks = if replicas > 0 {
                replies.next_back()
            } else {
                None
            };
            for reply in replies {
                if let Err(e) = reply.extract_error() {
                    if super::redis_slot_moving(&e) {
                        return Ok(GroupOutcome::Unacknowledged(format!(
                            "a bump redirected to {node} was redirected again: {e}"
                        )));
                    }
                    return Err(e.into());
                }
            }
            if let Some(acks) = acks
                && let GroupOutcome::Unacknowledged(reason) =
                    self.acknowledged(acks, replicas, node)?
            {
                outcome = GroupOutcome::Unacknowledged(reason);
            }
        }
        Ok(outcome)
    }

    /// `EVAL` of [`BUMP`] on `key`: the script text each time (a pipeline
    /// cannot fall back from `EVALSHA` on `NOSCRIPT`; Redis caches the
    /// compiled script by its digest, so this costs only the bytes).
    fn bump_command(&self, key: &str) -> Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(BUMP).arg(1).arg(key).arg(self.counter_ttl_secs);
        cmd
    }

    /// `WAIT <replicas> <ms>`: that many replicas have every write this
    /// connection sent.
    fn wait_command(&self, replicas: usize) -> Cmd {
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(replicas)
            .arg(self.replica_wait.as_millis().max(1) as u64);
        cmd
    }

    /// Whether a `WAIT`'s reply `acks` counts `replicas`.
    fn acknowledged(&self, acks: Value, replicas: usize, what: &str) -> StoreResult<GroupOutcome> {
        let acks: i64 = redis::from_redis_value(acks.extract_error()?)
            .map_err(|e| StoreError::Protocol(e.to_string()))?;
        if usize::try_from(acks).unwrap_or(0) < replicas {
            return Ok(GroupOutcome::Unacknowledged(format!(
                "{acks} of {replicas} replica(s) of the master of {what} acknowledged within {:?}",
                self.replica_wait
            )));
        }
        Ok(GroupOutcome::Counted)
    }

    /// The last topology read, if any.
    pub(super) fn topology(&self) -> Option<std::sync::Arc<Topology>> {
        self.topology
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// The keys grouped by the master that serves them, as `topology` says:
/// one group for a single node; on a cluster, keys whose master the view
/// does not know go one by one, each waiting for as many replicas as the
/// master with most has. No topology read yet: every key waits for one.
fn group_by_master<'k>(topology: Option<&Topology>, keys: &'k [(usize, String)]) -> Vec<Group<'k>> {
    let mut groups: Vec<Group<'k>> = Vec::new();
    for (i, key) in keys {
        let master = topology.and_then(|t| t.master_of(key));
        let replicas = topology.map_or(1, |t| t.replicas_for(key));
        let id = match (topology, master) {
            (Some(t), Some(m)) => Some(t.masters[m].id.clone()),
            _ => None,
        };
        match groups.iter_mut().find(|g| id.is_some() && g.master == id) {
            Some(group) => group.keys.push((*i, key.as_str())),
            None => groups.push(Group {
                master: id,
                replicas,
                keys: vec![(*i, key.as_str())],
            }),
        }
    }
    groups
}
