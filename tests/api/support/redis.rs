//! Looking at the Redis an app uses, one node or a cluster: the test's own key
//! space (SCAN on every master), DUMP/RESTORE of entries, version counters.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

/// A test's view of the Redis an app uses: one node, or a cluster (key
/// commands routed by slot, SCAN run on every master).
pub enum TestRedis {
    Single(MultiplexedConnection),
    Cluster {
        routed: redis::cluster_async::ClusterConnection,
        masters: Vec<MultiplexedConnection>,
    },
}

impl redis::aio::ConnectionLike for TestRedis {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster { routed, .. } => routed.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster { routed, .. } => routed.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// The Redis `settings` point the app at: the cluster when
/// `REDIS_CLUSTER_URLS` is set, else `REDIS_URL`.
pub async fn redis_for(settings: &linkhub::config::Settings) -> TestRedis {
    if settings.redis_cluster_urls.is_empty() {
        return redis_connection(&settings.redis_url).await;
    }
    let routed = redis::cluster::ClusterClient::new(settings.redis_cluster_urls.clone())
        .expect("cluster urls")
        .get_async_connection()
        .await
        .expect("cannot connect to the redis cluster");
    let mut seed = single_node(&settings.redis_cluster_urls[0]).await;
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut seed)
        .await
        .expect("CLUSTER NODES");
    let mut masters = Vec::new();
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() > 2 && fields[2].contains("master") && !fields[2].contains("fail") {
            let address = fields[1].split('@').next().expect("node address");
            masters.push(single_node(&format!("redis://{address}")).await);
        }
    }
    TestRedis::Cluster { routed, masters }
}

/// One Redis node.
pub async fn redis_connection(url: &str) -> TestRedis {
    TestRedis::Single(single_node(url).await)
}

async fn single_node(url: &str) -> MultiplexedConnection {
    let client = redis::Client::open(url).expect("redis url");
    let config = AsyncConnectionConfig::new()
        .set_response_timeout(Some(Duration::from_secs(10)))
        .set_connection_timeout(Some(Duration::from_secs(5)));
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to redis at {url}: {e}"))
}

fn glob_escape(text: &str) -> String {
    let mut escaped = String::new();
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Every key whose name starts with `<prefix>:`, sorted.
pub async fn scan_keys(con: &mut TestRedis, prefix: &str) -> Vec<String> {
    scan_match(con, &format!("{}:*", glob_escape(prefix))).await
}

/// Every version counter key (`<prefix>:ver:*`), sorted.
pub async fn counter_keys(con: &mut TestRedis, prefix: &str) -> Vec<String> {
    scan_match(con, &format!("{}:ver:*", glob_escape(prefix))).await
}

async fn scan_match(con: &mut TestRedis, pattern: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let nodes: Vec<&mut MultiplexedConnection> = match con {
        TestRedis::Single(c) => vec![c],
        TestRedis::Cluster { masters, .. } => masters.iter_mut().collect(),
    };
    for node in nodes {
        let mut cursor: u64 = 0;
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(node)
                .await
                .expect("SCAN");
            keys.extend(batch);
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

pub fn is_counter(prefix: &str, key: &str) -> bool {
    key.starts_with(&format!("{prefix}:ver:"))
}

/// A cache entry key `<prefix>:{<ns>}:<version>:<query>` split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryKey {
    pub namespace: String,
    pub version: u64,
    pub query: String,
}

pub fn parse_entry_key(prefix: &str, key: &str) -> Option<EntryKey> {
    let rest = key.strip_prefix(prefix)?.strip_prefix(":{")?;
    let close = rest.find("}:")?;
    let namespace = rest[..close].to_string();
    let rest = &rest[close + 2..];
    let colon = rest.find(':')?;
    let version = rest[..colon].parse().ok()?;
    Some(EntryKey {
        namespace,
        version,
        query: rest[colon + 1..].to_string(),
    })
}

pub fn entry_key(prefix: &str, key: &EntryKey) -> String {
    format!(
        "{prefix}:{{{}}}:{}:{}",
        key.namespace, key.version, key.query
    )
}

/// One key as `DUMP` serialised it, with its remaining TTL.
#[derive(Debug, Clone)]
pub struct DumpedKey {
    pub key: String,
    pub payload: Vec<u8>,
    /// `PTTL`: -1 for no TTL.
    pub pttl_ms: i64,
}

/// DUMPs every key of the prefix (counters included).
pub async fn snapshot(con: &mut TestRedis, prefix: &str) -> Vec<DumpedKey> {
    let mut dumped = Vec::new();
    for key in scan_keys(con, prefix).await {
        let payload: Option<Vec<u8>> = redis::cmd("DUMP")
            .arg(&key)
            .query_async(con)
            .await
            .expect("DUMP");
        let pttl_ms: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(con)
            .await
            .expect("PTTL");
        if let Some(payload) = payload {
            dumped.push(DumpedKey {
                key,
                payload,
                pttl_ms,
            });
        }
    }
    dumped
}

/// RESTOREs `payload` under `key` (REPLACE) with a TTL of one minute.
pub async fn restore_as(con: &mut TestRedis, key: &str, payload: &[u8]) {
    restore_with_ttl(con, key, payload, 60_000).await;
}

async fn restore_with_ttl(con: &mut TestRedis, key: &str, payload: &[u8], ttl_ms: i64) {
    let () = redis::cmd("RESTORE")
        .arg(key)
        .arg(ttl_ms)
        .arg(payload)
        .arg("REPLACE")
        .query_async(con)
        .await
        .unwrap_or_else(|e| panic!("RESTORE {key}: {e}"));
}

/// Puts back every cache entry of the snapshot that is gone now, as if the
/// background SCAN had missed it. Counters are never touched. Returns the keys
/// put back.
pub async fn restore_deleted_entries(
    con: &mut TestRedis,
    prefix: &str,
    snapshot: &[DumpedKey],
) -> Vec<String> {
    let mut restored = Vec::new();
    for dumped in snapshot {
        if is_counter(prefix, &dumped.key) {
            continue;
        }
        let exists: i64 = redis::cmd("EXISTS")
            .arg(&dumped.key)
            .query_async(con)
            .await
            .expect("EXISTS");
        if exists == 0 {
            // Back with the TTL it had (an entry without one gets a minute).
            let ttl_ms = if dumped.pttl_ms > 0 {
                dumped.pttl_ms
            } else {
                60_000
            };
            restore_with_ttl(con, &dumped.key, &dumped.payload, ttl_ms).await;
            restored.push(dumped.key.clone());
        }
    }
    restored
}

/// The counters of the prefix and their values.
pub async fn counters(con: &mut TestRedis, prefix: &str) -> BTreeMap<String, u64> {
    let mut values = BTreeMap::new();
    for key in counter_keys(con, prefix).await {
        let value: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(con)
            .await
            .expect("GET counter");
        if let Some(value) = value {
            let number = value
                .parse()
                .unwrap_or_else(|_| panic!("counter {key} holds {value:?}, not a number"));
            values.insert(key, number);
        }
    }
    values
}

pub async fn del_keys(con: &mut TestRedis, keys: &[String]) {
    for key in keys {
        let _: i64 = redis::cmd("DEL")
            .arg(key)
            .query_async(con)
            .await
            .expect("DEL");
    }
}

/// The value of `field` in the `section` of `INFO` (as Redis prints it), if listed.
pub async fn info_field(con: &mut TestRedis, section: &str, field: &str) -> Option<String> {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(con)
        .await
        .unwrap_or_else(|e| panic!("INFO {section}: {e}"));
    info.lines().find_map(|line| {
        let value = line.strip_prefix(field)?.strip_prefix(':')?;
        Some(value.trim().to_owned())
    })
}
