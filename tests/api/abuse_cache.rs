//! The cache under abuse: nothing a client does grows Redis without
//! end, a Redis outage does not become a PostgreSQL stampede, and a fresh
//! instance serves from the cache at once.
//!
//! Redis is measured from Redis itself: keys and their TTLs under the test's
//! prefix (`SCAN` + `TTL`), and on a private `redis-server` `DBSIZE` and
//! `INFO memory`.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;

use crate::support::*;

fn redis_url_of(addr: SocketAddr) -> String {
    format!("redis://{addr}")
}

/// `TTL` of every key under `prefix`, by key.
async fn ttls(con: &mut TestRedis, prefix: &str) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for key in scan_keys(con, prefix).await {
        let ttl: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(con)
            .await
            .expect("TTL");
        // -2: the key expired between SCAN and TTL.
        if ttl != -2 {
            out.push((key, ttl));
        }
    }
    out
}

async fn info_used_memory(con: &mut TestRedis) -> u64 {
    info_field(con, "memory", "used_memory")
        .await
        .and_then(|v| v.parse().ok())
        .expect("used_memory in INFO")
}

async fn dbsize(con: &mut TestRedis) -> u64 {
    redis::cmd("DBSIZE").query_async(con).await.expect("DBSIZE")
}

/// Reads that run `concurrency` at a time.
async fn read_all(app: &TestApp, paths: &[String], concurrency: usize) -> Vec<Fetched> {
    let mut out = Vec::new();
    for chunk in paths.chunks(concurrency) {
        out.extend(join_all(chunk.iter().map(|p| fetch(app, p))).await);
    }
    out
}

/// Reads of ids and names that exist nowhere, of every read kind.
fn missing_reads(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let id = 9_000_000 + i as i64;
            match i % 6 {
                0 => paths::user(id),
                1 => paths::link(id),
                2 => paths::social(id),
                3 => paths::profile(format!("nobody_{i}")),
                4 => paths::links(id),
                _ => paths::socials(id),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_a_workload_leaves_expires_and_counters_outlive_their_entries() {
    let app = spawn_cached().await;
    let owner = Owner::create(&app, 2, 2).await;
    warm_all(&app, &owner.own_reads()).await;
    let response = app
        .update_user(owner.id(), Some(owner.token()), &json!({"bio": "bumped"}))
        .await;
    expect_written(response, 200).await;
    warm_all(&app, &owner.own_reads()).await;
    read_all(&app, &missing_reads(60), 12).await;

    let ttl = app.settings.cache_ttl.as_secs() as i64;
    let mut redis = redis_for(&app.settings).await;
    // Every key under CACHE_PREFIX (rate-limit windows too); counters are
    // the cache's, under its epoch's prefix.
    let prefix = app.key_prefix().await;
    let keys = ttls(&mut redis, &app.settings.cache_prefix).await;
    assert!(keys.len() > 20, "the workload stored entries: {keys:?}");
    let forever: Vec<_> = keys.iter().filter(|(_, t)| *t < 0).collect();
    assert!(forever.is_empty(), "keys without a TTL: {forever:?}");
    for (key, t) in &keys {
        let bound = if is_counter(&prefix, key) {
            2 * ttl
        } else {
            ttl
        };
        assert!(*t <= bound, "{key} lives {t} s, more than {bound} s");
    }
    // A counter that a write bumped outlives every entry stored under it.
    let counter = format!("{}:ver:{{profile:{}}}", prefix, owner.username);
    let (_, counter_ttl) = keys
        .iter()
        .find(|(k, _)| *k == counter)
        .unwrap_or_else(|| panic!("{counter} among {keys:?}"));
    assert!(*counter_ttl > ttl, "{counter} lives {counter_ttl} s only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_things_that_do_not_exist_leave_nothing_that_outlives_the_negative_ttl() {
    let negative_ttl = 30;
    let app = spawn_cached_with(|s| s.cache_negative_ttl = Duration::from_secs(negative_ttl)).await;
    let reads = missing_reads(2_400);
    let answers = read_all(&app, &reads, 24).await;
    assert!(
        answers.iter().all(|f| f.status == 404),
        "every read is a 404"
    );

    let mut redis = redis_for(&app.settings).await;
    // Every key under CACHE_PREFIX (rate-limit windows too); counters are
    // the cache's, under its epoch's prefix.
    let prefix = app.key_prefix().await;
    let keys = ttls(&mut redis, &app.settings.cache_prefix).await;
    let counters = keys.iter().filter(|(k, _)| is_counter(&prefix, k)).count();
    let outliving: Vec<_> = keys
        .iter()
        .filter(|(_, t)| *t < 0 || *t > negative_ttl as i64)
        .collect();
    eprintln!(
        "2,400 reads of missing things: {} keys ({counters} counters), {} without a TTL or past {negative_ttl} s",
        keys.len(),
        outliving.len()
    );
    assert!(
        outliving.is_empty(),
        "{} of {} keys outlive {negative_ttl} s, e.g. {:?}",
        outliving.len(),
        keys.len(),
        outliving.iter().take(5).collect::<Vec<_>>()
    );
    // The 404s are cached meanwhile: a repeat is a HIT.
    assert_eq!(fetch(&app, &reads[0]).await.x_cache, "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_pages_and_searches_are_capped_per_namespace_version() {
    let cap = 20;
    let redis = RedisServer::start().await;
    let app = spawn_cached_with(|s| {
        s.redis_url = redis.url();
        s.cache_max_entries_per_version = cap;
    })
    .await;
    let owner = Owner::create(&app, 1, 1).await;
    warm_all(&app, &owner.own_reads()).await;
    let mut con = redis_connection(&redis.url()).await;
    let keys_before = dbsize(&mut con).await;
    let memory_before = info_used_memory(&mut con).await;

    let made_up: Vec<String> = (0..600)
        .map(|i| match i % 3 {
            0 => format!("{}?page={}", paths::links(owner.id()), i + 2),
            1 => format!("{}?page=1&limit={}", paths::links(owner.id()), i % 100 + 1),
            _ => format!(
                "{}&page={}",
                paths::user_search(format!("term{i}")),
                i % 50 + 1
            ),
        })
        .collect();
    let answers = read_all(&app, &made_up, 24).await;
    assert!(
        answers.iter().all(|f| f.status == 200),
        "every read is a 200"
    );

    let grown = dbsize(&mut con).await - keys_before;
    let memory_after = info_used_memory(&mut con).await;
    eprintln!(
        "600 made-up pages and searches: {grown} new keys, used_memory {memory_before} -> {memory_after} bytes"
    );
    // Three namespaces ({user:id}, and the users list's {users} and
    // {users_added}), each at most `cap` entries and its count; a few more
    // may come from counters that a read re-created.
    assert!(
        grown <= 3 * (cap + 1) + 4,
        "600 made-up reads added {grown} keys to Redis (cap {cap} per namespace version)"
    );
    // The one-per-namespace reads are never capped: the profile still caches.
    let profile = owner.profile_path();
    assert_eq!(fetch(&app, &profile).await.x_cache, "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_reads_while_redis_is_cut_costs_a_few_postgres_loads_not_one_each() {
    let redis = RedisServer::start().await;
    let proxy = TcpProxy::start(redis.addr()).await;
    let redis_url = redis_url_of(proxy.addr());
    let app = spawn_cached_with(|s| s.redis_url = redis_url).await;
    let owner = Owner::create(&app, 3, 2).await;
    let path = owner.profile_path();
    warm(&app, &path).await;

    proxy.cut();
    // The first read after the cut pays the timeout and opens the breaker.
    assert_eq!(fetch(&app, &path).await.x_cache, "BYPASS");
    let loads = [("namespace", "profile")];
    let before = app
        .metric_sum("linkhub_cache_bypass_loads_total", &loads)
        .await;
    // "At the same moment", whatever the machine's load: the first read's
    // load waits on a table lock, so every other read arrives while it runs.
    // Without coalescing each of them would load (and wait) too.
    let lock = TableLock::take(&app.database_url, "links").await;
    let burst = tokio::spawn({
        let app = app.clone();
        let path = path.clone();
        async move { join_all((0..100).map(|_| fetch(&app, &path))).await }
    });
    until_sessions_wait_for_a_lock(&app.database_url, 1).await;
    // Time for the other 99 requests to reach the server; one that comes
    // later than this costs at most one more load, not a failure.
    tokio::time::sleep(Duration::from_millis(500)).await;
    lock.release().await;
    let answers = burst.await.expect("the burst of reads");
    let after = app
        .metric_sum("linkhub_cache_bypass_loads_total", &loads)
        .await;
    for answer in &answers {
        assert_eq!(answer.status, 200);
        assert_eq!(answer.x_cache, "BYPASS");
        assert_eq!(answer.body["data"]["user"]["bio"], "bio-0");
    }
    let made = after - before;
    eprintln!("100 simultaneous reads while Redis is cut: {made} PostgreSQL loads");
    assert!(
        (1.0..=10.0).contains(&made),
        "100 simultaneous BYPASS reads made {made} PostgreSQL loads"
    );
}

/// Read-your-writes through the bypass coalescing: read A loads while a write
/// is acknowledged; read B, which started after the write, must not share A's
/// load (which read PostgreSQL before the write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_acknowledged_between_two_overlapping_bypass_reads_is_seen_by_the_later_one() {
    let redis = RedisServer::start().await;
    let proxy = TcpProxy::start(redis.addr()).await;
    let redis_url = redis_url_of(proxy.addr());
    let app = spawn_cached_with(|s| {
        s.redis_url = redis_url;
        s.db_statement_timeout = Duration::from_secs(30);
    })
    .await;
    let owner = Owner::create(&app, 1, 1).await;
    let path = owner.profile_path();
    proxy.cut();
    assert_eq!(fetch(&app, &path).await.x_cache, "BYPASS");

    // A reads the user row, then waits on the links table.
    let lock = TableLock::take(&app.database_url, "links").await;
    let read_a = tokio::spawn({
        let (client, url) = (app.client.clone(), app.url(&path));
        async move { client.get(url).send().await.expect("read A") }
    });
    until_sessions_wait_for_a_lock(&app.database_url, 1).await;

    let response = app
        .update_user(
            owner.id(),
            Some(owner.token()),
            &json!({"bio": "written while A loads"}),
        )
        .await;
    expect_written(response, 200).await;

    let read_b = tokio::spawn({
        let (client, url) = (app.client.clone(), app.url(&path));
        async move { client.get(url).send().await.expect("read B") }
    });
    // B's request reaches the server and queues (it may not load while A
    // holds the lock); no assertion rests on this wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    lock.release().await;

    let a = expect_data(read_a.await.expect("read A")).await;
    let b = expect_data(read_b.await.expect("read B")).await;
    assert_eq!(a["user"]["bio"], "bio-0", "A started before the write");
    assert_eq!(
        b["user"]["bio"], "written while A loads",
        "B started after the write was acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_instance_replays_the_outbox_before_it_answers_and_hits_from_its_second_read() {
    let redis = RedisServer::start().await;
    let proxy = TcpProxy::start(redis.addr()).await;
    let first = spawn_cached_with(|s| s.redis_url = redis_url_of(proxy.addr())).await;
    let owner = Owner::create(&first, 1, 1).await;
    warm(&first, &owner.profile_path()).await;
    // A write whose bump stays owed in the outbox: its Redis is cut.
    proxy.cut();
    let response = first
        .update_user(
            owner.id(),
            Some(owner.token()),
            &json!({"bio": "owed at the restart"}),
        )
        .await;
    expect_written(response, 200).await;
    assert!(
        query_strings(
            &first.database_url,
            "SELECT count(*)::text AS value FROM cache_outbox"
        )
        .await[0]
            != "0",
        "the write's bump is owed"
    );

    // A fresh instance on the same database and Redis, which it reaches.
    let fresh = spawn_app_on(&first.database_url, &first.settings.cache_prefix, |s| {
        s.redis_url = redis.url();
        s.redis_timeout = Duration::from_millis(PATIENT_REDIS_TIMEOUT_MS);
    })
    .await;
    let ready = expect_json(fresh.readyz().await, 200).await;
    assert_eq!(ready["cache"], "ok", "{ready}");
    let path = owner.profile_path();
    let first_read = fetch(&fresh, &path).await;
    let second_read = fetch(&fresh, &path).await;
    assert_eq!(
        (first_read.x_cache.as_str(), second_read.x_cache.as_str()),
        ("MISS", "HIT")
    );
    assert_eq!(
        second_read.body["data"]["user"]["bio"], "owed at the restart",
        "the owed bump was replayed before the first read"
    );
}
