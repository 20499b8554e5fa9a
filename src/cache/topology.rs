//! What the cache knows of the Redis it writes to: which masters
//! hold which slots, which of them have a replica that is alive, and each
//! master's run id. Two decisions rest on it:
//!
//! - **whether a bump must wait for a replica** (`WAIT`): only where the
//!   master of the counter's slot has a live replica, since a failover would
//!   promote that replica, and a bump it lacks would be lost. A shard with no
//!   live replica has nothing to fail over to: the master's answer is all
//!   there is to wait for (if it dies, its keys die with it, counters too,
//!   and a missing counter comes back from the clock, rule 3);
//! - **whether a failover happened**: a master whose slots or node id or run
//!   id changed is a new master, which may lack bumps the old one counted
//!   before it died (or, restarted from an older snapshot, hold counters and
//!   entries from before them), so the breaker opens and recovery replays the
//!   outbox on it before it is trusted.
//!
//! Parsing only: `store/scan.rs` fetches the text (`CLUSTER NODES`, `INFO`),
//! `recovery.rs` decides what a change means. Also here: how Redis Cluster
//! maps a key to its slot (the hash tag and the CRC16 of it), which the
//! store groups its commands by.

/// Redis Cluster's 16384 hash slots.
const SLOTS: u16 = 16384;

/// One master and what the cache needs to know of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    /// The cluster node id (empty for a single node).
    pub id: String,
    /// `(host, port)` for routing a command to it (`None` for a single node).
    pub address: Option<(String, u16)>,
    /// Inclusive slot ranges it serves.
    pub slots: Vec<(u16, u16)>,
    /// Replicas of it the cluster has not marked failed: the ones a failover
    /// could promote.
    pub live_replicas: usize,
    /// `run_id` from `INFO server`; it changes when the process restarts.
    pub run_id: Option<String>,
}

/// Every master, sorted by node id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// The masters that serve slots and are not marked failed.
    pub masters: Vec<Master>,
}

impl Topology {
    /// A single node: its replicas and run id from `INFO replication` and `INFO server`.
    pub fn single(info: &str) -> Self {
        let field = |name: &str| {
            info.lines().find_map(|line| {
                let value = line.strip_prefix(name)?.strip_prefix(':')?;
                Some(value.trim().to_owned())
            })
        };
        Self {
            masters: vec![Master {
                id: String::new(),
                address: None,
                slots: vec![(0, SLOTS - 1)],
                live_replicas: field("connected_slaves")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
                run_id: field("run_id"),
            }],
        }
    }

    /// `(host, port)` of every master, in node id order (none for a single node).
    pub fn addresses(&self) -> Vec<(String, u16)> {
        self.masters
            .iter()
            .filter_map(|master| master.address.clone())
            .collect()
    }

    /// A cluster, from `CLUSTER NODES`:
    /// `<id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <state> <slot>…`.
    /// Masters the cluster marked failed, or serving no slot, are left out:
    /// no command goes to them.
    pub fn cluster(nodes: &str) -> Self {
        struct Line<'a> {
            id: &'a str,
            address: Option<(String, u16)>,
            flags: Vec<&'a str>,
            master: &'a str,
            slots: Vec<(u16, u16)>,
        }
        let lines: Vec<Line<'_>> = nodes
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                if fields.len() < 8 {
                    return None;
                }
                let address = fields[1]
                    .split(['@', ','])
                    .next()
                    .and_then(|a| a.rsplit_once(':'))
                    .and_then(|(host, port)| Some((host.to_owned(), port.parse().ok()?)));
                let slots = fields[8..]
                    .iter()
                    // `[slot->-node]` / `[slot-<-node]`: a slot being moved, still served here.
                    .filter(|s| !s.starts_with('['))
                    .filter_map(|s| match s.split_once('-') {
                        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                        None => s.parse().ok().map(|n| (n, n)),
                    })
                    .collect();
                Some(Line {
                    id: fields[0],
                    address,
                    flags: fields[2].split(',').collect(),
                    master: fields[3],
                    slots,
                })
            })
            .collect();
        // `fail` is the cluster's verdict. `fail?` is one node's suspicion
        // (a busy node, a slow link): a master it flags still serves its
        // slots, and leaving it out would look like a change of master from
        // this node's view only; a replica it flags may still be promoted,
        // so a bump waits for it (if it is really gone, the bump is owed).
        let failing = |flags: &[&str]| {
            flags
                .iter()
                .any(|f| matches!(*f, "fail" | "noaddr" | "handshake"))
        };
        let mut masters: Vec<Master> = lines
            .iter()
            .filter(|l| l.flags.contains(&"master") && !failing(&l.flags) && !l.slots.is_empty())
            .map(|l| Master {
                id: l.id.to_owned(),
                address: l.address.clone(),
                slots: l.slots.clone(),
                live_replicas: lines
                    .iter()
                    .filter(|r| {
                        r.master == l.id
                            && (r.flags.contains(&"slave") || r.flags.contains(&"replica"))
                            && !failing(&r.flags)
                    })
                    .count(),
                run_id: None,
            })
            .collect();
        masters.sort_by(|a, b| a.id.cmp(&b.id));
        Self { masters }
    }

    /// Whether a write to `key` must wait for a replica: its slot's master
    /// has a live one. A slot no known master serves (the view is behind a
    /// resharding) waits, which is never wrong, only slower.
    pub fn has_live_replica(&self, key: &str) -> bool {
        self.master_of(key)
            .is_none_or(|m| self.masters[m].live_replicas > 0)
    }

    /// The index in [`Topology::masters`] of the master serving `key`'s slot.
    pub fn master_of(&self, key: &str) -> Option<usize> {
        let slot = key_slot(key);
        self.masters
            .iter()
            .position(|m| m.slots.iter().any(|&(a, b)| (a..=b).contains(&slot)))
    }

    /// Whether `self` has other masters than `before`: a failover, a
    /// resharding or a restart. Replicas coming and going are not a change
    /// of master.
    pub fn masters_changed(&self, before: &Topology) -> bool {
        let identity = |t: &Topology| {
            t.masters
                .iter()
                .map(|m| (m.id.clone(), m.slots.clone(), m.run_id.clone()))
                .collect::<Vec<_>>()
        };
        identity(self) != identity(before)
    }
}

/// The hash slot of `key` as Redis Cluster computes it: CRC16 (XMODEM) of
/// its [`hash_tag`], modulo 16384.
pub fn key_slot(key: &str) -> u16 {
    crc16_xmodem(hash_tag(key).as_bytes()) % SLOTS
}

/// The part of a key Redis Cluster hashes: the first non-empty `{…}`, else the key.
pub fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_slots_match_redis_cluster() {
        // `CLUSTER KEYSLOT` answers these.
        assert_eq!(key_slot("foo"), 12182);
        assert_eq!(key_slot("123456789"), 12739);
        assert_eq!(key_slot("lh:ver:{user:1}"), key_slot("user:1"));
        assert_eq!(key_slot("a{}b"), crc16_xmodem(b"a{}b") % SLOTS);
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

    const NODES: &str = "\
07c3 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460
67ed 127.0.0.1:7002@17002 master - 0 1 2 connected 5461-10922
ab12 127.0.0.1:7003@17003 master - 0 1 3 connected 10923-16383
292f 127.0.0.1:7004@17004 slave 07c3 0 1 1 connected
5e5e 127.0.0.1:7005@17005 slave,fail 67ed 0 1 2 disconnected
9a9a 127.0.0.1:7006@17006 slave,fail? 07c3 0 1 2 connected
";

    #[test]
    fn live_replicas_are_counted_per_master() {
        let topology = Topology::cluster(NODES);
        let replicas: Vec<(&str, usize)> = topology
            .masters
            .iter()
            .map(|m| (m.id.as_str(), m.live_replicas))
            .collect();
        // A suspected (`fail?`) replica still counts; a failed one does not.
        assert_eq!(replicas, vec![("07c3", 2), ("67ed", 0), ("ab12", 0)]);
        // slot 12182 is ab12's, which has no replica.
        assert!(!topology.has_live_replica("foo"));
        assert_eq!(
            topology.has_live_replica("lh:ver:{a}"),
            key_slot("a") <= 5460
        );
    }

    #[test]
    fn a_promoted_replica_is_a_change_of_master_a_lost_replica_is_not() {
        let before = Topology::cluster(NODES);
        let replica_gone = Topology::cluster(&NODES.replace("slave 07c3", "slave,fail 07c3"));
        assert!(!replica_gone.masters_changed(&before));
        let suspected = Topology::cluster(&NODES.replace(
            "67ed 127.0.0.1:7002@17002 master",
            "67ed 127.0.0.1:7002@17002 master,fail?",
        ));
        assert!(!suspected.masters_changed(&before));
        let promoted = Topology::cluster(
            "\
07c3 127.0.0.1:7001@17001 master,fail - 0 0 1 disconnected
292f 127.0.0.1:7004@17004 myself,master - 0 1 4 connected 0-5460
67ed 127.0.0.1:7002@17002 master - 0 1 2 connected 5461-10922
ab12 127.0.0.1:7003@17003 master - 0 1 3 connected 10923-16383
",
        );
        assert!(promoted.masters_changed(&before));
    }

    #[test]
    fn a_single_node_is_read_from_info() {
        let info =
            "# Server\r\nrun_id:abc\r\n# Replication\r\nrole:master\r\nconnected_slaves:2\r\n";
        let topology = Topology::single(info);
        assert!(topology.has_live_replica("anything"));
        assert_eq!(topology.masters[0].run_id.as_deref(), Some("abc"));
        let restarted = Topology::single(&info.replace("abc", "def"));
        assert!(restarted.masters_changed(&topology));
        assert!(!Topology::single("connected_slaves:0").has_live_replica("x"));
    }
}
