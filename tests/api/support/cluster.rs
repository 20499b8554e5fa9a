//! A private Redis Cluster (three masters, by default one replica each; see
//! [`Layout`]) on free loopback ports, for the failover and topology tests:
//! it can break replication links, kill masters and let replicas take over,
//! without touching the shared Redis or any other test's servers.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::proxy::{RedisOptions, RedisServer};
use super::redis::{TestRedis, info_field, redis_connection};

/// One node: its server process and its cluster node id.
pub struct ClusterNode {
    pub server: RedisServer,
    pub id: String,
}

/// Three masters, each with `replicas` replicas; every node keeps its
/// `nodes.conf` in a directory of its own, removed when the cluster is dropped.
pub struct ReplicatedCluster {
    pub masters: Vec<ClusterNode>,
    /// Every replica; `replica_of[i]` is the index of the master `replicas[i]`
    /// replicates (with one replica each, `replicas[i]` replicates `masters[i]`).
    pub replicas: Vec<ClusterNode>,
    pub replica_of: Vec<usize>,
    _dir: ScratchDir,
}

/// How a [`ReplicatedCluster`] is laid out.
#[derive(Debug, Clone, Copy)]
pub struct Layout {
    /// Replicas per master.
    pub replicas: usize,
    /// Every node announces this host name and is addressed by it
    /// (`cluster-announce-hostname`, `cluster-preferred-endpoint-type hostname`).
    pub hostname: Option<&'static str>,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            replicas: 1,
            hostname: None,
        }
    }
}

/// A directory removed when dropped.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    /// A new empty directory under the system's temporary directory.
    pub fn new(prefix: &str) -> ScratchDir {
        let dir = std::env::temp_dir().join(super::names::unique_name(prefix));
        std::fs::create_dir_all(&dir).expect("create a scratch directory");
        ScratchDir(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl ReplicatedCluster {
    pub async fn start() -> ReplicatedCluster {
        Self::start_with(Layout::default()).await
    }

    pub async fn start_with(layout: Layout) -> ReplicatedCluster {
        // Removed when dropped, also when a step below panics.
        let dir = ScratchDir(std::env::temp_dir().join(format!(
            "linkhub-failover-{}",
            super::names::unique_name("c")
        )));
        let mut servers = Vec::new();
        let nodes = 3 * (1 + layout.replicas);
        for n in 0..nodes {
            let node_dir = dir.0.join(format!("node{n}"));
            std::fs::create_dir_all(&node_dir).expect("create the node's directory");
            // The cluster bus would be port + 10000, which nobody checked is
            // free: give it a port of its own.
            let bus_port = linkhub_harness::free_port();
            let mut options = RedisOptions::new()
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                .args(["--cluster-port", &bus_port.to_string()])
                .args(["--enable-debug-command", "local"])
                .arg("--dir")
                .arg(node_dir.as_os_str());
            if let Some(hostname) = layout.hostname {
                options = options
                    .args(["--cluster-announce-hostname", hostname])
                    .args(["--cluster-preferred-endpoint-type", "hostname"]);
            }
            let server = options.start().await.expect("start a cluster node");
            servers.push(server);
        }
        let addresses: Vec<String> = servers
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        let mut create = vec!["--cluster", "create"];
        create.extend(addresses.iter().map(String::as_str));
        let replicas = layout.replicas.to_string();
        create.extend(["--cluster-replicas", &replicas, "--cluster-yes"]);
        cli(servers[0].port(), &create);

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = servers
                .iter()
                .all(|s| cli(s.port(), &["cluster", "info"]).contains("cluster_state:ok"));
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "the cluster never became ok");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // Which node is whose replica, as the cluster itself says once the
        // replicas' roles have spread over the bus to every node (the app
        // may ask any of them).
        let (masters, replica_of) = loop {
            let nodes = cli(servers[0].port(), &["cluster", "nodes"]);
            let (masters, replica_of) = roles(&nodes);
            let everywhere = servers.iter().all(|s| {
                let (m, r) = roles(&cli(s.port(), &["cluster", "nodes"]));
                m.len() == 3 && r.len() == 3 * layout.replicas
            });
            if everywhere {
                break (masters, replica_of);
            }
            assert!(
                Instant::now() < deadline,
                "the replicas never showed up: {nodes}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let mut take = |port: u16, id: String| {
            let at = servers
                .iter()
                .position(|s| s.port() == port)
                .expect("a node of ours");
            ClusterNode {
                server: servers.remove(at),
                id,
            }
        };
        let mut ordered_masters = Vec::new();
        let mut ordered_replicas = Vec::new();
        let mut ordered_replica_of = Vec::new();
        for (index, (id, port)) in masters.iter().enumerate() {
            ordered_masters.push(take(*port, id.clone()));
            for (replica_id, replica_port, _) in
                replica_of.iter().filter(|(_, _, master)| master == id)
            {
                ordered_replicas.push(take(*replica_port, replica_id.clone()));
                ordered_replica_of.push(index);
            }
        }
        let cluster = ReplicatedCluster {
            masters: ordered_masters,
            replicas: ordered_replicas,
            replica_of: ordered_replica_of,
            _dir: dir,
        };
        cluster.wait_replication_links("up").await;
        cluster
    }

    /// Every node's URL: masters first. The app gets all of them, so that its
    /// cluster client still finds the cluster once every master is gone.
    pub fn urls(&self) -> Vec<String> {
        self.masters
            .iter()
            .chain(&self.replicas)
            .map(|n| n.server.url())
            .collect()
    }

    /// Breaks each replica's replication link while the cluster bus and the
    /// clients are untouched (how a lost bump shows up in practice): the replica now
    /// authenticates to its master as a user that does not exist, and its
    /// current link is closed, so every reconnection fails at `AUTH`. The
    /// cluster still sees the replica alive (gossip runs on the bus), so it
    /// can take over; it just never receives another write.
    pub async fn break_replication_links(&self) {
        let all: Vec<usize> = (0..self.replicas.len()).collect();
        self.break_replication_links_of(&all).await;
    }

    /// [`ReplicatedCluster::break_replication_links`] for the replicas
    /// `replicas[i]` for each `i` in `which` only.
    pub async fn break_replication_links_of(&self, which: &[usize]) {
        for &i in which {
            let port = self.replicas[i].server.port();
            cli(port, &["config", "set", "masteruser", "linkhub-nobody"]);
            cli(port, &["config", "set", "masterauth", "wrong-password"]);
            cli(port, &["client", "kill", "type", "master"]);
        }
        self.wait_replication_links_of(which, "down").await;
        // Reconnections are retried every second: they must keep failing.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        self.wait_replication_links_of(which, "down").await;
    }

    /// Lets the replicas `replicas[i]` (`i` in `which`) authenticate again,
    /// and waits until their links are up (a partial resync, or a full one).
    pub async fn heal_replication_links_of(&self, which: &[usize]) {
        for &i in which {
            let port = self.replicas[i].server.port();
            cli(port, &["config", "set", "masteruser", ""]);
            cli(port, &["config", "set", "masterauth", ""]);
        }
        self.wait_replication_links_of(which, "up").await;
    }

    /// Waits until every replica's `master_link_status` is `status`.
    async fn wait_replication_links(&self, status: &str) {
        let all: Vec<usize> = (0..self.replicas.len()).collect();
        self.wait_replication_links_of(&all, status).await;
    }

    /// Waits until the `master_link_status` of `replicas[i]`, `i` in `which`, is `status`.
    async fn wait_replication_links_of(&self, which: &[usize], status: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for replica in which.iter().map(|&i| &self.replicas[i]) {
            let mut con = redis_connection(&replica.server.url()).await;
            loop {
                let link = info_field(&mut con, "replication", "master_link_status").await;
                if link.as_deref() == Some(status) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "replica {} never had its link {status} (it says {link:?})",
                    replica.server.port()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Kills every master (SIGKILL: whatever it did not ship is lost).
    pub fn kill_masters(&mut self) {
        for master in &mut self.masters {
            master.server.kill();
        }
    }

    /// `CLUSTER FAILOVER TAKEOVER` on every replica (no agreement from the
    /// dead masters needed), then waits until each says it is a master.
    pub async fn take_over(&self) {
        for replica in &self.replicas {
            cli(replica.server.port(), &["cluster", "failover", "takeover"]);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for replica in &self.replicas {
            let mut con = redis_connection(&replica.server.url()).await;
            while info_field(&mut con, "replication", "role").await.as_deref() != Some("master") {
                assert!(
                    Instant::now() < deadline,
                    "replica {} did not take over",
                    replica.server.port()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// The inclusive slot ranges `masters[master]` serves, as it says.
    pub fn slots_of(&self, master: usize) -> Vec<(u16, u16)> {
        let node = &self.masters[master];
        let nodes = cli(node.server.port(), &["cluster", "nodes"]);
        let line = nodes
            .lines()
            .find(|l| l.starts_with(&node.id))
            .expect("the master lists itself");
        line.split_whitespace()
            .skip(8)
            .filter(|s| !s.starts_with('['))
            .map(|s| match s.split_once('-') {
                Some((a, b)) => (a.parse().expect("slot"), b.parse().expect("slot")),
                None => {
                    let n = s.parse().expect("slot");
                    (n, n)
                }
            })
            .collect()
    }

    /// The index of the master serving the hash slot of `tag` (a key's hash tag).
    pub fn master_of_tag(&self, tag: &str) -> usize {
        let slot: u16 = cli(self.masters[0].server.port(), &["cluster", "keyslot", tag])
            .trim()
            .parse()
            .expect("CLUSTER KEYSLOT answers a number");
        (0..self.masters.len())
            .find(|&m| {
                self.slots_of(m)
                    .iter()
                    .any(|&(a, b)| (a..=b).contains(&slot))
            })
            .expect("some master serves every slot")
    }

    /// A connection to one node, for looking at it.
    pub async fn node(&self, node: &ClusterNode) -> TestRedis {
        redis_connection(&node.server.url()).await
    }
}

impl Drop for ReplicatedCluster {
    fn drop(&mut self) {
        for node in self.masters.iter_mut().chain(self.replicas.iter_mut()) {
            node.server.kill();
        }
    }
}

/// Masters serving slots as `(id, port)`, and replicas as `(id, port, master id)`,
/// from `CLUSTER NODES`.
#[allow(clippy::type_complexity)]
fn roles(nodes: &str) -> (Vec<(String, u16)>, Vec<(String, u16, String)>) {
    let mut masters = Vec::new();
    let mut replicas = Vec::new();
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 8 {
            continue;
        }
        let port: u16 = fields[1]
            .split('@')
            .next()
            .and_then(|a| a.rsplit_once(':'))
            .and_then(|(_, p)| p.parse().ok())
            .expect("node port");
        if fields[2].contains("master") && fields.len() > 8 {
            masters.push((fields[0].to_owned(), port));
        } else if fields[2].contains("slave") {
            replicas.push((fields[0].to_owned(), port, fields[3].to_owned()));
        }
    }
    (masters, replicas)
}

/// `redis-cli -p <port> <args>`; panics unless it succeeds.
pub fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run redis-cli");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success() && !stdout.starts_with("ERR"),
        "redis-cli -p {port} {args:?}: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
