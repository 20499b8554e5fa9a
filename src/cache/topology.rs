//! What the cache knows of the Redis it writes to: which masters
//! hold which slots, how many replicas each has, and each master's run id.
//! Two decisions rest on it:
//!
//! - **how many replicas a bump waits for** (`WAIT <n>`): every replica the
//!   cluster lists for the master of the counter's slot, whatever its state.
//!   Any of them may win an election (the rank by replication offset only
//!   delays the others, and with `cluster-replica-validity-factor` 0 even a
//!   long-disconnected one is eligible), and a replica marked `fail` may come
//!   back and be promoted: so a bump counts only once *every* listed replica
//!   has it, and one a sick or failed replica lacks is owed (`store/bumps.rs`).
//!   Only a replica still in `handshake` (or without an address) is not
//!   counted: it has not joined, and when it does its first full sync brings
//!   it everything. A shard with no replica at all has nothing to fail over
//!   to: the master's answer is all there is to wait for (if it dies, its
//!   keys die with it, counters too, and a missing counter comes back from
//!   the clock, rule 3). A replica removed for good must be forgotten
//!   (`CLUSTER FORGET`): until then its shard's bumps are owed;
//! - **whether a failover happened**: a master of the last view that is no
//!   longer a master serving slots, or whose run id changed, was replaced (a
//!   failover, a restart, perhaps from an older snapshot): the new master may
//!   lack bumps the old one counted, so the breaker opens and recovery
//!   replays the outbox on it before it is trusted. Slots moving between
//!   masters that stay (a resharding with `MIGRATE`) are no change: the keys
//!   travel with their values, counters included.
//!
//! Nodes are known by what they announce: a node announced by host name
//! (`cluster-announce-hostname`) is addressed by that name, and commands for
//! one master are routed by one of its slots, never by an address the client
//! may know under another name.
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
    /// `(host, port)` as it announces itself: its host name when it
    /// announces one, else its IP (`None` for a single node). For logs and
    /// tests; commands are routed by [`Master::first_slot`].
    pub address: Option<(String, u16)>,
    /// Inclusive slot ranges it serves.
    pub slots: Vec<(u16, u16)>,
    /// Replicas of it that a failover could promote, now or once they
    /// return: every listed one, failed or suspected too (see the header).
    pub replicas: usize,
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
                replicas: field("connected_slaves")
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

    /// One slot of every master, in node id order: a command routed to a
    /// slot's master reaches that node under whatever name the cluster
    /// client knows it by.
    pub fn master_slots(&self) -> Vec<u16> {
        self.masters.iter().map(Master::first_slot).collect()
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
                // `ip:port@cport[,hostname]`: the host name when announced.
                let (endpoint, hostname) = match fields[1].split_once(',') {
                    Some((endpoint, hostname)) => (endpoint, Some(hostname)),
                    None => (fields[1], None),
                };
                let address = endpoint
                    .split('@')
                    .next()
                    .and_then(|a| a.rsplit_once(':'))
                    .and_then(|(ip, port)| {
                        let host = hostname.filter(|h| !h.is_empty()).unwrap_or(ip);
                        Some((host.to_owned(), port.parse().ok()?))
                    });
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
        // this node's view only.
        let failing = |flags: &[&str]| {
            flags
                .iter()
                .any(|f| matches!(*f, "fail" | "noaddr" | "handshake"))
        };
        // A replica, failed or suspected or not, may be promoted (now, or
        // once it returns): a bump waits for it (see the module header).
        let joined = |flags: &[&str]| !flags.iter().any(|f| matches!(*f, "noaddr" | "handshake"));
        let mut masters: Vec<Master> = lines
            .iter()
            .filter(|l| l.flags.contains(&"master") && !failing(&l.flags) && !l.slots.is_empty())
            .map(|l| Master {
                id: l.id.to_owned(),
                address: l.address.clone(),
                slots: l.slots.clone(),
                replicas: lines
                    .iter()
                    .filter(|r| {
                        r.master == l.id
                            && (r.flags.contains(&"slave") || r.flags.contains(&"replica"))
                            && joined(&r.flags)
                    })
                    .count(),
                run_id: None,
            })
            .collect();
        masters.sort_by(|a, b| a.id.cmp(&b.id));
        Self { masters }
    }

    /// How many replicas a write to `key` waits for: every replica of its
    /// slot's master. A slot no known master serves (the view is behind a
    /// resharding) waits for as many as the master with most has, which is
    /// never too few.
    pub fn replicas_for(&self, key: &str) -> usize {
        match self.master_of(key) {
            Some(m) => self.masters[m].replicas,
            None => self.masters.iter().map(|m| m.replicas).max().unwrap_or(1),
        }
    }

    /// The index in [`Topology::masters`] of the master serving `key`'s slot.
    pub fn master_of(&self, key: &str) -> Option<usize> {
        let slot = key_slot(key);
        self.masters
            .iter()
            .position(|m| m.slots.iter().any(|&(a, b)| (a..=b).contains(&slot)))
    }

    /// Whether a master of `before` was replaced in `self`: it no longer
    /// serves slots (a failover, a removal) or it restarted (its run id
    /// changed). Replicas coming and going, slots moving between masters
    /// that stay (a resharding), and masters joining are no replacement:
    /// nothing acknowledged can be missing from them (see the header).
    pub fn masters_changed(&self, before: &Topology) -> bool {
        before.masters.iter().any(|old| {
            !self
                .masters
                .iter()
                .any(|new| new.id == old.id && new.run_id == old.run_id)
        })
    }
}

impl Master {
    /// A slot to reach it by: the first of its widest range (every master
    /// in a [`Topology`] serves one). Not a slot it just received in a
    /// resharding, which the cluster client's map may not know yet.
    pub fn first_slot(&self) -> u16 {
        self.slots
            .iter()
            .max_by_key(|&&(a, b)| (b - a, std::cmp::Reverse(a)))
            .map_or(0, |&(a, _)| a)
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
    fn every_listed_replica_is_counted_failed_or_not() {
        let topology = Topology::cluster(NODES);
        let replicas: Vec<(&str, usize)> = topology
            .masters
            .iter()
            .map(|m| (m.id.as_str(), m.replicas))
            .collect();
        // A suspected (`fail?`) replica counts, and so does a failed one: it
        // may come back and be promoted. One in `handshake` has not joined.
        assert_eq!(replicas, vec![("07c3", 2), ("67ed", 1), ("ab12", 0)]);
        // slot 12182 is ab12's, which has no replica.
        assert_eq!(topology.replicas_for("foo"), 0);
        let joining = Topology::cluster(&format!(
            "{NODES}7a7a 127.0.0.1:7007@17007 slave,handshake ab12 0 1 3 connected\n"
        ));
        assert_eq!(joining.replicas_for("foo"), 0);
        assert_eq!(
            topology.replicas_for("lh:ver:{a}"),
            if key_slot("a") <= 5460 {
                2
            } else if key_slot("a") <= 10922 {
                1
            } else {
                0
            }
        );
    }

    #[test]
    fn nodes_announced_by_host_name_are_addressed_by_it() {
        let nodes = "\
07c3 10.0.0.1:6379@16379,redis-0.cache.svc myself,master - 0 0 1 connected 0-8191
67ed 10.0.0.2:6379@16379,redis-1.cache.svc master - 0 1 2 connected 8192-16383
292f 10.0.0.3:6379@16379, slave 07c3 0 1 1 connected
";
        let topology = Topology::cluster(nodes);
        assert_eq!(
            topology.addresses(),
            vec![
                ("redis-0.cache.svc".to_owned(), 6379),
                ("redis-1.cache.svc".to_owned(), 6379)
            ]
        );
        assert_eq!(topology.master_slots(), vec![0, 8192]);
        let received =
            Topology::cluster(&nodes.replace("connected 0-8191", "connected 9000 0-8191"));
        assert_eq!(received.master_slots(), vec![0, 8192]);
        assert_eq!(topology.masters[0].replicas, 1);
    }

    #[test]
    fn a_replaced_master_is_a_change_a_lost_replica_or_a_resharding_is_not() {
        let before = Topology::cluster(NODES);
        let replica_gone = Topology::cluster(&NODES.replace("slave 07c3", "slave,fail 07c3"));
        assert!(!replica_gone.masters_changed(&before));
        let suspected = Topology::cluster(&NODES.replace(
            "67ed 127.0.0.1:7002@17002 master",
            "67ed 127.0.0.1:7002@17002 master,fail?",
        ));
        assert!(!suspected.masters_changed(&before));
        // Slots 0-99 moved from 07c3 to 67ed (MIGRATE), both still masters.
        let resharded = Topology::cluster(
            &NODES
                .replace("connected 0-5460", "connected 100-5460")
                .replace("connected 5461-10922", "connected 0-99 5461-10922"),
        );
        assert!(!resharded.masters_changed(&before));
        let promoted = Topology::cluster(
            "\
07c3 127.0.0.1:7001@17001 master,fail - 0 0 1 disconnected
292f 127.0.0.1:7004@17004 myself,master - 0 1 4 connected 0-5460
67ed 127.0.0.1:7002@17002 master - 0 1 2 connected 5461-10922
ab12 127.0.0.1:7003@17003 master - 0 1 3 connected 10923-16383
",
        );
        assert!(promoted.masters_changed(&before));
        // The old master came back as a replica of the new one: still a change.
        let demoted = Topology::cluster(
            "\
07c3 127.0.0.1:7001@17001 slave 292f 0 0 1 connected
292f 127.0.0.1:7004@17004 myself,master - 0 1 4 connected 0-5460
67ed 127.0.0.1:7002@17002 master - 0 1 2 connected 5461-10922
ab12 127.0.0.1:7003@17003 master - 0 1 3 connected 10923-16383
",
        );
        assert!(demoted.masters_changed(&before));
    }

    #[test]
    fn a_single_node_is_read_from_info() {
        let info =
            "# Server\r\nrun_id:abc\r\n# Replication\r\nrole:master\r\nconnected_slaves:2\r\n";
        let topology = Topology::single(info);
        assert_eq!(topology.replicas_for("anything"), 2);
        assert_eq!(topology.masters[0].run_id.as_deref(), Some("abc"));
        let restarted = Topology::single(&info.replace("abc", "def"));
        assert!(restarted.masters_changed(&topology));
        assert_eq!(Topology::single("connected_slaves:0").replicas_for("x"), 0);
    }
}
