//! Shared support for the cache tests: fetching a public read with its cache
//! headers, comparing it with the truth (an instance of the same database with
//! the cache disabled), building a user with links and socials, and looking at
//! the test's own Redis key space (SCAN, DUMP, RESTORE, counters).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use linkhub::config::Settings;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use serde_json::{Value, json};

use crate::helpers::{
    RegisteredUser, TestApp, expect_json, header, spawn_app_on, spawn_app_with, unique_name,
};

/// One answer to a public GET, with the headers the cache tests look at.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub path: String,
    pub status: u16,
    pub x_cache: String,
    pub etag: Option<String>,
    pub cache_control: Option<String>,
    pub text: String,
    /// The JSON body (`Null` when the body is empty).
    pub body: Value,
    pub elapsed: Duration,
}

pub async fn fetch(app: &TestApp, path: &str) -> Fetched {
    fetch_with(app, path, None).await
}

pub async fn fetch_with(app: &TestApp, path: &str, if_none_match: Option<&str>) -> Fetched {
    let started = Instant::now();
    let mut request = app.client.get(app.url(path));
    if let Some(etag) = if_none_match {
        request = request.header("If-None-Match", etag);
    }
    let response = request.send().await.expect("GET failed");
    let status = response.status().as_u16();
    let x_cache = header(&response, "x-cache").unwrap_or_default();
    let etag = header(&response, "etag");
    let cache_control = header(&response, "cache-control");
    let text = response.text().await.expect("response body");
    let elapsed = started.elapsed();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("GET {path}: body is not JSON ({e}): {text:?}"))
    };
    Fetched {
        path: path.to_string(),
        status,
        x_cache,
        etag,
        cache_control,
        text,
        body,
        elapsed,
    }
}

/// Reads `path` until it is served from the cache: a `200` must be a `HIT` by
/// the second GET at the latest (a `404` may or may not be cached). A `BYPASS`
/// (the breaker of an instance with a short Redis timeout opened on a loaded
/// machine) starts the count again, for at most 5 s. Returns the last answer.
pub async fn warm(app: &TestApp, path: &str) -> Fetched {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut previous: Option<Fetched> = None;
    loop {
        let got = fetch(app, path).await;
        match got.x_cache.as_str() {
            "HIT" => return got,
            "BYPASS" => {
                assert!(
                    Instant::now() < deadline,
                    "GET {path}: still BYPASS after 5 s, the cache is not in use"
                );
                previous = None;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            _ => {}
        }
        if let Some(first) = previous {
            assert_eq!(
                (got.status, &got.body),
                (first.status, &first.body),
                "GET {path}: the answer changed between two reads with no write"
            );
            assert_ne!(
                got.status, 200,
                "GET {path}: the second read of a 200 must be a cache HIT (both were {:?})",
                got.x_cache
            );
            return got;
        }
        previous = Some(got);
    }
}

pub async fn warm_all(app: &TestApp, paths: &[String]) {
    for path in paths {
        warm(app, path).await;
    }
}

/// Waits until the app serves reads from Redis (`/readyz` says `"cache": "ok"`):
/// the breaker starts open until the outbox has been replayed.
pub async fn wait_cache_ok(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = app.get("/readyz").await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status == 200 && body["cache"] == "ok" {
            // The owed-bump listener connects at start-up too and then asks
            // for one more outbox replay (a recovery tick, 200 ms, later);
            // let it pass so that it does not bump what the test warms.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the cache did not become ready within 10 s: /readyz answers {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `REDIS_TIMEOUT_MS` for the tests that are not about Redis faults: long
/// enough that a loaded test machine never trips the circuit breaker (which
/// would turn the HITs and MISSes those tests assert into BYPASS).
pub const PATIENT_REDIS_TIMEOUT_MS: u64 = 2000;

/// [`spawn_app_with`] with a patient Redis timeout, once the cache is in use.
pub async fn spawn_cached_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let app = spawn_app_with(|s| {
        s.redis_timeout = Duration::from_millis(PATIENT_REDIS_TIMEOUT_MS);
        configure(s);
    })
    .await;
    wait_cache_ok(&app).await;
    app
}

pub async fn spawn_cached() -> TestApp {
    spawn_cached_with(|_| {}).await
}

/// An instance on the same database, its own key space and the cache disabled:
/// every read it answers comes straight from PostgreSQL.
pub async fn spawn_truth(app: &TestApp) -> TestApp {
    spawn_app_on(
        &app.database_url,
        &unique_name("truth"),
        |s: &mut Settings| {
            s.cache_enabled = false;
        },
    )
    .await
}

/// GETs `path` on `app`, then on `truth`, and asserts the same status and body
/// (the cached answer is the database's). Returns `app`'s answer.
pub async fn assert_fresh(app: &TestApp, truth: &TestApp, path: &str, context: &str) -> Fetched {
    let got = fetch(app, path).await;
    let want = fetch(truth, path).await;
    assert_eq!(
        want.x_cache, "BYPASS",
        "the truth instance must not use the cache (GET {path})"
    );
    assert_eq!(
        (got.status, &got.body),
        (want.status, &want.body),
        "{context}: GET {path} answered stale data (X-Cache: {}); database says {} {}",
        got.x_cache,
        want.status,
        want.text
    );
    got
}

/// [`assert_fresh`] for every path; the paths in `affected` must also be `MISS`.
pub async fn assert_all_fresh(
    app: &TestApp,
    truth: &TestApp,
    paths: &[String],
    affected: &[String],
    context: &str,
) {
    let mut seen = std::collections::HashSet::new();
    for path in paths {
        // A path listed twice would be a HIT the second time.
        if !seen.insert(path) {
            continue;
        }
        let got = assert_fresh(app, truth, path, context).await;
        if affected.contains(path) {
            assert_eq!(
                got.x_cache, "MISS",
                "{context}: GET {path} was just changed by the write: the next read must be a MISS"
            );
        }
    }
}

/// A registered user with links and socials, and every public read about it.
pub struct Owner {
    pub user: RegisteredUser,
    pub username: String,
    pub links: Vec<i64>,
    pub socials: Vec<i64>,
}

impl Owner {
    /// Registers a user with a name and bio, `links` links and `socials` socials.
    pub async fn create(app: &TestApp, links: usize, socials: usize) -> Owner {
        let user = app.register_user().await;
        let response = app
            .patch_json(
                &format!("/api/v1/users/{}", user.id),
                Some(&user.token),
                &json!({"name": format!("Name {}", user.username), "bio": "bio-0"}),
            )
            .await;
        expect_json(response, 200).await;
        let mut owner = Owner {
            username: user.username.clone(),
            user,
            links: Vec::new(),
            socials: Vec::new(),
        };
        for i in 0..links {
            owner.add_link(app, &format!("link {i}")).await;
        }
        for i in 0..socials {
            owner.add_social(app, &format!("net{i}")).await;
        }
        owner
    }

    pub fn id(&self) -> i64 {
        self.user.id
    }

    pub fn token(&self) -> &str {
        &self.user.token
    }

    pub async fn add_link(&mut self, app: &TestApp, title: &str) -> i64 {
        let response = app
            .post_json(
                &format!("/api/v1/users/{}/links", self.id()),
                Some(self.token()),
                &json!({"title": title, "url": format!("https://example.com/{}", self.links.len())}),
            )
            .await;
        let body = expect_json(response, 201).await;
        let id = body["data"]["id"].as_i64().expect("link id");
        self.links.push(id);
        id
    }

    pub async fn add_social(&mut self, app: &TestApp, platform: &str) -> i64 {
        let response = app
            .post_json(
                &format!("/api/v1/users/{}/socials", self.id()),
                Some(self.token()),
                &json!({"platform": platform, "url": format!("https://{platform}.example.com/{}", self.username)}),
            )
            .await;
        let body = expect_json(response, 201).await;
        let id = body["data"]["id"].as_i64().expect("social id");
        self.socials.push(id);
        id
    }

    pub async fn patch_user(&self, app: &TestApp, body: Value) -> Value {
        let response = app
            .patch_json(
                &format!("/api/v1/users/{}", self.id()),
                Some(self.token()),
                &body,
            )
            .await;
        expect_json(response, 200).await
    }

    pub fn user_path(&self) -> String {
        format!("/api/v1/users/{}", self.id())
    }

    pub fn profile_path(&self) -> String {
        format!("/api/v1/profiles/{}", self.username)
    }

    pub fn links_path(&self) -> String {
        format!("/api/v1/users/{}/links", self.id())
    }

    pub fn socials_path(&self) -> String {
        format!("/api/v1/users/{}/socials", self.id())
    }

    pub fn search_path(&self) -> String {
        format!("/api/v1/users?search={}", self.username)
    }

    /// The reads about this user alone (no global list).
    pub fn own_reads(&self) -> Vec<String> {
        let mut paths = vec![
            self.user_path(),
            self.profile_path(),
            self.links_path(),
            format!("{}?page=1&limit=2", self.links_path()),
            self.socials_path(),
        ];
        paths.extend(self.links.iter().map(|id| format!("/api/v1/links/{id}")));
        paths.extend(
            self.socials
                .iter()
                .map(|id| format!("/api/v1/socials/{id}")),
        );
        paths
    }

    /// Every read that shows this user: its own and the user lists.
    pub fn all_reads(&self) -> Vec<String> {
        let mut paths = self.own_reads();
        paths.extend(list_reads());
        paths.push(self.search_path());
        paths
    }
}

/// The global user-list reads.
pub fn list_reads() -> Vec<String> {
    vec![
        "/api/v1/users".to_string(),
        "/api/v1/users?limit=100".to_string(),
        "/api/v1/users?search=name&limit=100".to_string(),
    ]
}

// ---------------------------------------------------------------------------
// Redis inspection
// ---------------------------------------------------------------------------

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
