//! Read-your-writes where a plain "delete the keys with SCAN, rely on the TTL"
//! cache breaks: SCAN missing keys, version counters lost, Redis unreachable
//! during writes (on one or two instances), Redis restarted empty, readers
//! racing writers on a slow database.
//!
//! Every check compares the cached instance with a second instance on the same
//! database and the cache disabled (the truth).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{Value, json};

use crate::support::*;

/// The writes the scenarios below go through, one per kind.
#[derive(Debug, Clone, Copy)]
enum Write {
    PatchBio,
    PatchName,
    Rename,
    AddLink,
    PatchLink,
    DeleteLink,
    AddSocial,
    PatchSocial,
    DeleteSocial,
}

/// The writes of the counter-loss scenarios (each round is costly: every read
/// is checked twice against the truth): one per kind of namespace set.
const SOME_WRITES: [Write; 4] = [
    Write::PatchBio,
    Write::AddLink,
    Write::DeleteSocial,
    Write::Rename,
];

const ALL_WRITES: [Write; 9] = [
    Write::PatchBio,
    Write::AddLink,
    Write::PatchLink,
    Write::AddSocial,
    Write::PatchSocial,
    Write::PatchName,
    Write::DeleteLink,
    Write::DeleteSocial,
    Write::Rename,
];

/// Performs `write` for `owner` on `app` (asserting a 2xx answer); a rename
/// remembers the old profile path in `gone`.
async fn perform(
    app: &TestApp,
    owner: &mut Owner,
    write: Write,
    round: usize,
    gone: &mut Vec<String>,
) {
    match write {
        Write::PatchBio => {
            owner
                .patch_user(app, json!({"bio": format!("bio-{round}")}))
                .await;
        }
        Write::PatchName => {
            owner
                .patch_user(app, json!({"name": format!("Changed {round}")}))
                .await;
        }
        Write::Rename => {
            gone.push(owner.profile_path());
            let to = unique_name("moved");
            owner.patch_user(app, json!({"username": to})).await;
            owner.username = to;
        }
        Write::AddLink => {
            owner.add_link(app, &format!("link of round {round}")).await;
        }
        Write::PatchLink => {
            let id = *owner.links.first().expect("a link to patch");
            let response = app
                .update_link(
                    id,
                    Some(owner.token()),
                    &json!({"title": format!("title {round}"), "position": round}),
                )
                .await;
            expect_json(response, 200).await;
        }
        Write::DeleteLink => {
            let id = owner.links.remove(0);
            gone.push(paths::link(id));
            let response = app.delete_link(id, Some(owner.token())).await;
            assert_eq!(response.status().as_u16(), 204, "DELETE link");
        }
        Write::AddSocial => {
            owner.add_social(app, &format!("net_r{round}")).await;
        }
        Write::PatchSocial => {
            let id = *owner.socials.first().expect("a social to patch");
            let response = app
                .update_social(
                    id,
                    Some(owner.token()),
                    &json!({"url": format!("https://s.example.com/{round}")}),
                )
                .await;
            expect_json(response, 200).await;
        }
        Write::DeleteSocial => {
            let id = owner.socials.remove(0);
            gone.push(paths::social(id));
            let response = app.delete_social(id, Some(owner.token())).await;
            assert_eq!(response.status().as_u16(), 204, "DELETE social");
        }
    }
}

fn reads_of(owner: &Owner, gone: &[String]) -> Vec<String> {
    let mut paths = owner.all_reads();
    paths.extend(gone.iter().cloned());
    paths
}

/// Every path fresh, twice in a row (the first pass fills the cache again, the
/// second reads what it filled).
async fn assert_fresh_twice(app: &TestApp, truth: &TestApp, paths: &[String], context: &str) {
    for pass in 0..2 {
        for path in paths {
            assert_fresh(app, truth, path, &format!("{context} (pass {pass})")).await;
        }
    }
}

/// Copies of each snapshot entry under the versions a counter re-created from
/// scratch would wrongly reuse: 0, 1, 2 and the few right after the old one.
async fn forge_stale_versions(
    con: &mut TestRedis,
    prefix: &str,
    snapshot: &[DumpedKey],
) -> Vec<u64> {
    let mut used = Vec::new();
    for dumped in snapshot {
        let Some(parsed) = parse_entry_key(prefix, &dumped.key) else {
            continue;
        };
        for version in [
            0,
            1,
            2,
            parsed.version + 1,
            parsed.version + 2,
            parsed.version + 3,
        ] {
            let forged = EntryKey {
                version,
                ..parsed.clone()
            };
            restore_as(con, &entry_key(prefix, &forged), &dumped.payload).await;
            used.push(version);
        }
    }
    used
}

fn entries_of(prefix: &str, snapshot: &[DumpedKey]) -> usize {
    snapshot
        .iter()
        .filter(|d| !is_counter(prefix, &d.key))
        .count()
}

// ---------------------------------------------------------------------------
// Keys the SCAN missed
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_5_keys_the_scan_missed_stay_unreachable() {
    let app = spawn_cached().await;
    let truth = spawn_truth(&app).await;
    let prefix = app.key_prefix().await;
    let mut con = redis_for(&app.settings).await;
    let mut owner = Owner::create(&app, 2, 2).await;
    let other = Owner::create(&app, 1, 1).await;
    let mut gone = Vec::new();
    let mut restored_total = 0;

    for (round, write) in ALL_WRITES.into_iter().enumerate() {
        let mut reads = reads_of(&owner, &gone);
        reads.extend(other.own_reads());
        warm_all(&app, &reads).await;
        let before = snapshot(&mut con, &prefix).await;
        assert!(
            entries_of(&prefix, &before) > 0,
            "warm reads cached nothing"
        );

        perform(&app, &mut owner, write, round + 1, &mut gone).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Whatever the write's background purge deleted comes back, as if
        // the purge (index or janitor SCAN) had missed it.
        let restored = restore_deleted_entries(&mut con, &prefix, &before).await;
        restored_total += restored.len();

        let mut reads = reads_of(&owner, &gone);
        reads.extend(other.own_reads());
        let context = format!("after {write:?} with the deleted keys put back ({restored:?})");
        assert_fresh_twice(&app, &truth, &reads, &context).await;
    }
    assert!(
        restored_total > 0,
        "no write purged any stale entry within 300 ms: the test could not check anything"
    );
}

// A write's purge never SCANs: it removes through the namespace's index, at
// a cost that does not grow with what Redis holds. `invalidation.rs` checks
// that at a million unrelated keys, and the budgeted janitor SCAN that backs
// the index up.

// ---------------------------------------------------------------------------
// Version counters lost
// ---------------------------------------------------------------------------

/// Counters re-created after a loss must be new versions: larger than any
/// version issued before (and so never 0 or 1).
fn assert_counters_recreated(
    old: &BTreeMap<String, u64>,
    new: &BTreeMap<String, u64>,
    forged: &[u64],
    context: &str,
) {
    assert!(
        !new.is_empty(),
        "{context}: no version counter after the reads"
    );
    for (key, value) in new {
        assert!(
            *value > 1_000_000_000,
            "{context}: counter {key} was re-created as {value}; it must come from the Redis clock"
        );
        assert!(
            !forged.contains(value),
            "{context}: counter {key} re-created as an already used version {value}"
        );
        if let Some(previous) = old.get(key) {
            assert!(
                value > previous,
                "{context}: counter {key} re-created as {value}, not above the lost {previous}"
            );
        }
    }
}

/// When every version counter vanishes (eviction, a FLUSH of the wrong keys,
/// ...), relative to a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CounterLoss {
    /// After the write's bump: stale entries sit under the versions a naive
    /// re-creation would reuse.
    AfterWrite,
    /// Before the write: its INCR finds nothing to bump.
    BeforeWrite,
}

/// Each write of [`SOME_WRITES`] with every counter lost `when`, and the
/// deleted entries put back, forged under the versions a counter re-created
/// from scratch would reuse: every read stays fresh and every re-created
/// counter is above what it was (rule 3).
async fn counters_lost(when: CounterLoss) {
    let app = spawn_cached().await;
    let truth = spawn_truth(&app).await;
    let prefix = app.key_prefix().await;
    let mut con = redis_for(&app.settings).await;
    let mut owner = Owner::create(&app, 2, 2).await;
    let mut gone = Vec::new();

    for (round, write) in SOME_WRITES.into_iter().enumerate() {
        let reads = reads_of(&owner, &gone);
        warm_all(&app, &reads).await;
        let before = snapshot(&mut con, &prefix).await;
        let old_counters = if when == CounterLoss::BeforeWrite {
            let old_counters = counters(&mut con, &prefix).await;
            delete_every_counter(&mut con, &prefix).await;
            old_counters
        } else {
            BTreeMap::new()
        };
        perform(&app, &mut owner, write, round + 1, &mut gone).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let old_counters = if when == CounterLoss::AfterWrite {
            let old_counters = counters(&mut con, &prefix).await;
            restore_deleted_entries(&mut con, &prefix, &before).await;
            delete_every_counter(&mut con, &prefix).await;
            old_counters
        } else {
            restore_deleted_entries(&mut con, &prefix, &before).await;
            old_counters
        };
        let forged = forge_stale_versions(&mut con, &prefix, &before).await;

        let reads = reads_of(&owner, &gone);
        let context = match when {
            CounterLoss::AfterWrite => format!("after {write:?}, then the loss of every counter"),
            CounterLoss::BeforeWrite => format!("after the loss of every counter, then {write:?}"),
        };
        assert_fresh_twice(&app, &truth, &reads, &context).await;
        let new_counters = counters(&mut con, &prefix).await;
        assert_counters_recreated(&old_counters, &new_counters, &forged, &context);
    }
}

/// Deletes every version counter of the prefix, asserting there was one.
async fn delete_every_counter(con: &mut TestRedis, prefix: &str) {
    let counter_names = counter_keys(con, prefix).await;
    assert!(
        !counter_names.is_empty(),
        "no version counters under {prefix}:ver:"
    );
    del_keys(con, &counter_names).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_3_counters_never_reset_lost_after_a_write() {
    counters_lost(CounterLoss::AfterWrite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_3_counters_never_reset_lost_before_a_write() {
    counters_lost(CounterLoss::BeforeWrite).await;
}

// ---------------------------------------------------------------------------
// Redis unreachable
// ---------------------------------------------------------------------------

fn redis_url_of(addr: SocketAddr) -> String {
    format!("redis://{addr}")
}

/// Reads every path until a whole pass is served from the cache, checking each
/// answer against the truth; panics after `limit`.
async fn until_all_hit(
    app: &TestApp,
    truth: &TestApp,
    paths: &[String],
    limit: Duration,
    context: &str,
) {
    let deadline = Instant::now() + limit;
    loop {
        let mut all_hit = true;
        let mut results = Vec::new();
        for path in paths {
            let got = assert_fresh(app, truth, path, context).await;
            if got.status == 200 && got.x_cache != "HIT" {
                all_hit = false;
            }
            results.push((path.clone(), got.x_cache));
        }
        if all_hit {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{context}: the cache was not used again within {limit:?}: {results:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn outbox_rows(database_url: &str) -> i64 {
    query_strings(
        database_url,
        "SELECT count(*)::text AS value FROM cache_outbox",
    )
    .await[0]
        .parse()
        .expect("count")
}

/// Reads during an outage: fresh, BYPASS, and fast.
async fn assert_outage_reads(app: &TestApp, truth: &TestApp, paths: &[String], context: &str) {
    for path in paths {
        let got = assert_fresh(app, truth, path, context).await;
        assert_eq!(
            got.x_cache, "BYPASS",
            "{context}: GET {path} while Redis is unreachable"
        );
        assert!(
            got.elapsed < Duration::from_secs(1),
            "{context}: GET {path} took {:?} while Redis is unreachable",
            got.elapsed
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_4_a_failed_bump_is_owed_reads_bypass_and_writes_stay_visible() {
    let redis = RedisServer::start().await;
    let proxy = TcpProxy::start(redis.addr()).await;
    let redis_url = redis_url_of(proxy.addr());
    let app = spawn_app_with(|s| s.redis_url = redis_url).await;
    wait_cache_ok(&app).await;
    let truth = spawn_truth(&app).await;
    let mut owner = Owner::create(&app, 2, 2).await;
    let other = Owner::create(&app, 1, 1).await;
    let mut gone = Vec::new();
    let mut reads = reads_of(&owner, &gone);
    reads.extend(other.own_reads());
    warm_all(&app, &reads).await;

    proxy.cut();
    // Even the first read after the cut is quick, and every one is BYPASS.
    assert_outage_reads(&app, &truth, &reads, "Redis cut").await;
    // Later reads do not pay the Redis timeout each time (circuit breaker).
    let path = owner.profile_path();
    let mut slow = Vec::new();
    for _ in 0..15 {
        let got = fetch(&app, &path).await;
        assert_eq!(got.x_cache, "BYPASS");
        if got.elapsed >= Duration::from_millis(240) {
            slow.push(got.elapsed);
        }
    }
    assert!(
        slow.len() <= 2,
        "reads during the outage keep waiting for Redis (REDIS_TIMEOUT_MS=250): slow reads {slow:?}"
    );

    // Writes during the outage answer 2xx and show at once.
    for (round, write) in [
        Write::PatchBio,
        Write::AddLink,
        Write::PatchSocial,
        Write::DeleteLink,
    ]
    .into_iter()
    .enumerate()
    {
        let started = Instant::now();
        perform(&app, &mut owner, write, round + 10, &mut gone).await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{write:?} took {:?} during the outage",
            started.elapsed()
        );
        let mut reads = reads_of(&owner, &gone);
        reads.extend(other.own_reads());
        assert_outage_reads(
            &app,
            &truth,
            &reads,
            &format!("after {write:?} during the outage"),
        )
        .await;
    }

    // Redis comes back with the pre-outage entries and counters: never serve them.
    proxy.restore();
    let mut reads = reads_of(&owner, &gone);
    reads.extend(other.own_reads());
    until_all_hit(
        &app,
        &truth,
        &reads,
        Duration::from_secs(10),
        "after Redis came back",
    )
    .await;
    assert_eq!(
        outbox_rows(&app.database_url).await,
        0,
        "the outage's pending bumps are applied once the cache is used again"
    );
    // And the cache works normally again: a write is seen at once.
    warm_all(&app, &reads).await;
    perform(&app, &mut owner, Write::PatchBio, 99, &mut gone).await;
    assert_fresh_twice(&app, &truth, &reads, "a write after the outage").await;
}

/// Two instances on one database and one Redis (same prefix), each through its
/// own proxy. Both lose Redis, one of them writes, then they get Redis back one
/// after the other (`writer_first` says which one first).
async fn outage_on_every_instance(writer_first: bool) {
    let redis = RedisServer::start().await;
    let proxy_w = TcpProxy::start(redis.addr()).await;
    let proxy_r = TcpProxy::start(redis.addr()).await;
    let url_w = redis_url_of(proxy_w.addr());
    let url_r = redis_url_of(proxy_r.addr());
    let writer = spawn_app_with(|s| s.redis_url = url_w).await;
    let reader = spawn_app_on(&writer.database_url, &writer.settings.cache_prefix, |s| {
        s.redis_url = url_r
    })
    .await;
    wait_cache_ok(&writer).await;
    wait_cache_ok(&reader).await;
    let truth = spawn_truth(&writer).await;
    let prefix = writer.key_prefix().await;
    let mut con = redis_connection(&redis.url()).await;

    let mut owner = Owner::create(&writer, 2, 2).await;
    let mut gone = Vec::new();
    let reads = reads_of(&owner, &gone);
    warm_all(&writer, &reads).await;
    warm_all(&reader, &reads).await;
    let counters_before = counters(&mut con, &prefix).await;
    let profile_counter = format!("{prefix}:ver:{{profile:{}}}", owner.username);
    let profile_version = *counters_before
        .get(&profile_counter)
        .unwrap_or_else(|| panic!("no counter {profile_counter} in {counters_before:?}"));

    proxy_w.cut();
    proxy_r.cut();
    for (round, write) in [Write::PatchBio, Write::AddLink, Write::PatchSocial]
        .into_iter()
        .enumerate()
    {
        perform(&writer, &mut owner, write, round + 1, &mut gone).await;
    }
    let reads = reads_of(&owner, &gone);
    assert_outage_reads(&writer, &truth, &reads, "writer, both cut").await;
    assert_outage_reads(&reader, &truth, &reads, "reader, both cut").await;

    let (first, first_proxy, second, second_proxy, first_name, second_name) = if writer_first {
        (&writer, &proxy_w, &reader, &proxy_r, "writer", "reader")
    } else {
        (&reader, &proxy_r, &writer, &proxy_w, "reader", "writer")
    };

    first_proxy.restore();
    // From the first read on, the instance that has Redis back is fresh ...
    for path in &reads {
        assert_fresh(
            first,
            &truth,
            path,
            &format!("{first_name} right after its Redis came back"),
        )
        .await;
    }
    // ... the pending bump reaches Redis within a few seconds ...
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = counters(&mut con, &prefix).await;
        if now
            .get(&profile_counter)
            .is_some_and(|v| *v != profile_version)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the bump of {profile_counter} made during the outage was not applied within 5 s \
             after the {first_name}'s Redis came back ({profile_version} -> {:?})",
            now.get(&profile_counter)
        );
        for path in &reads {
            assert_fresh(
                first,
                &truth,
                path,
                &format!("{first_name} while the bump is pending"),
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until_all_hit(
        first,
        &truth,
        &reads,
        Duration::from_secs(10),
        &format!("{first_name} back"),
    )
    .await;
    // ... and the one still cut off keeps serving fresh data.
    assert_outage_reads(second, &truth, &reads, &format!("{second_name} still cut")).await;

    second_proxy.restore();
    for path in &reads {
        assert_fresh(
            second,
            &truth,
            path,
            &format!("{second_name} right after its Redis came back"),
        )
        .await;
    }
    until_all_hit(
        second,
        &truth,
        &reads,
        Duration::from_secs(10),
        &format!("{second_name} back"),
    )
    .await;
    until_all_hit(
        first,
        &truth,
        &reads,
        Duration::from_secs(10),
        &format!("{first_name} at the end"),
    )
    .await;
    assert_eq!(outbox_rows(&writer.database_url).await, 0, "outbox drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_4_a_failed_bump_is_owed_on_every_instance_writer_back_first() {
    outage_on_every_instance(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_4_a_failed_bump_is_owed_on_every_instance_reader_back_first() {
    outage_on_every_instance(false).await;
}

// ---------------------------------------------------------------------------
// Redis killed and restarted empty
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_3_counters_never_reset_redis_killed_and_restarted_empty() {
    let mut redis = RedisServer::start().await;
    let redis_url = redis.url();
    let app = spawn_app_with(|s| s.redis_url = redis_url).await;
    wait_cache_ok(&app).await;
    let truth = spawn_truth(&app).await;
    let prefix = app.key_prefix().await;
    let mut owner = Owner::create(&app, 2, 2).await;
    let mut gone = Vec::new();
    let reads = reads_of(&owner, &gone);
    warm_all(&app, &reads).await;
    let before = {
        let mut con = redis_connection(&redis.url()).await;
        snapshot(&mut con, &prefix).await
    };

    redis.kill();
    assert_outage_reads(&app, &truth, &reads, "Redis killed").await;
    for (round, write) in [Write::PatchBio, Write::AddLink, Write::DeleteSocial]
        .into_iter()
        .enumerate()
    {
        perform(&app, &mut owner, write, round + 1, &mut gone).await;
    }
    let reads = reads_of(&owner, &gone);
    assert_outage_reads(&app, &truth, &reads, "writes while Redis is dead").await;

    redis.restart().await;
    for path in &reads {
        assert_fresh(&app, &truth, path, "right after Redis restarted empty").await;
    }
    until_all_hit(
        &app,
        &truth,
        &reads,
        Duration::from_secs(10),
        "Redis restarted",
    )
    .await;

    // Pre-crash entries turning up again (under their own versions and the
    // small ones a counter counting from zero would reach) stay unreachable.
    let mut con = redis_connection(&redis.url()).await;
    for dumped in &before {
        if !is_counter(&prefix, &dumped.key) {
            restore_as(&mut con, &dumped.key, &dumped.payload).await;
        }
    }
    forge_stale_versions(&mut con, &prefix, &before).await;
    assert_fresh_twice(&app, &truth, &reads, "old entries back after the restart").await;

    // Writes after the restart are seen at once.
    warm_all(&app, &reads).await;
    perform(&app, &mut owner, Write::PatchName, 7, &mut gone).await;
    perform(&app, &mut owner, Write::PatchLink, 8, &mut gone).await;
    assert_fresh_twice(&app, &truth, &reads, "writes after the restart").await;

    // A restart with no write in between, then a write.
    warm_all(&app, &reads).await;
    drop(con);
    redis.restart().await;
    perform(&app, &mut owner, Write::PatchBio, 9, &mut gone).await;
    assert_fresh_twice(&app, &truth, &reads, "a write right after a quiet restart").await;
}

// ---------------------------------------------------------------------------
// Readers racing a writer
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct ReadRecord {
    started: Instant,
    path: String,
    seen: u64,
    x_cache: String,
}

fn seen_bio(path: &str, body: &Value) -> u64 {
    let bio = if path.contains("/profiles/") {
        &body["data"]["user"]["bio"]
    } else if path.contains("search=") {
        &body["data"][0]["bio"]
    } else {
        &body["data"]["bio"]
    };
    bio.as_str()
        .and_then(|b| b.strip_prefix("bio-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("GET {path}: unexpected bio in {body}"))
}

const WRITES: u64 = 20;
const READERS: usize = 6;

/// Readers hammer an instance whose PostgreSQL answers come back slowly
/// (through the proxy), so each cache load spans tens of milliseconds; the
/// writes go mostly through a second instance on a direct connection (same
/// database, same Redis key space), so they commit and bump in the middle of
/// those loads: the classic stale-set race of cache-aside. Every third write
/// goes through the slow instance itself.
async fn stale_set_race(slow_database: bool) {
    let proxy = TcpProxy::start(database_server_addr()).await;
    let app = spawn_cached_with(|s| {
        let proxied = database_url_through(&s.database_url, proxy.addr());
        assert_ne!(proxied, s.database_url, "the URL goes through the proxy");
        s.database_url = proxied;
        s.db_pool_size = 8;
    })
    .await;
    let fast = spawn_app_on(&app.database_url, &app.settings.cache_prefix, |s| {
        s.redis_timeout = Duration::from_millis(PATIENT_REDIS_TIMEOUT_MS);
    })
    .await;
    wait_cache_ok(&fast).await;
    let owner = Owner::create(&fast, 2, 2).await;
    let paths = vec![owner.profile_path(), owner.user_path(), owner.search_path()];
    warm_all(&app, &paths).await;

    let stop = AtomicBool::new(false);
    let writer_done = AtomicBool::new(false);
    let delays = async {
        if !slow_database {
            return;
        }
        let pattern = [30u64, 80, 45, 65, 55, 35, 75];
        let mut i = 0;
        while !stop.load(Ordering::SeqCst) {
            proxy.set_delay(Duration::from_millis(pattern[i % pattern.len()]));
            i += 1;
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        proxy.set_delay(Duration::ZERO);
    };
    let writer = async {
        let pauses = [40u64, 90, 15, 120, 60, 150, 30, 75, 10, 100];
        let mut answered = Vec::new();
        for i in 1..=WRITES {
            let through = if i % 3 == 0 { &app } else { &fast };
            let response = through
                .patch_json(
                    &owner.user_path(),
                    Some(owner.token()),
                    &json!({"bio": format!("bio-{i}")}),
                )
                .await;
            expect_json(response, 200).await;
            answered.push((Instant::now(), i));
            let pause = pauses[i as usize % pauses.len()];
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        writer_done.store(true, Ordering::SeqCst);
        // Let the readers go on a little: a stale entry written after the
        // last write would show now.
        tokio::time::sleep(Duration::from_millis(800)).await;
        stop.store(true, Ordering::SeqCst);
        answered
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    let readers = join_all((0..READERS).map(|r| {
        let paths = &paths;
        let app = &app;
        let stop = &stop;
        async move {
            let mut records = Vec::new();
            let mut n = r;
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let path = &paths[n % paths.len()];
                n += 1;
                let started = Instant::now();
                let got = fetch(app, path).await;
                assert_eq!(got.status, 200, "GET {path}: {}", got.text);
                records.push(ReadRecord {
                    started,
                    path: path.clone(),
                    seen: seen_bio(path, &got.body),
                    x_cache: got.x_cache,
                });
            }
            records
        }
    }));
    let ((), answered, records) = tokio::join!(delays, writer, readers);
    assert!(
        writer_done.load(Ordering::SeqCst),
        "the writer did not finish"
    );

    let records: Vec<ReadRecord> = records.into_iter().flatten().collect();
    assert!(records.len() > 50, "only {} reads happened", records.len());
    let mut stale = Vec::new();
    for read in &records {
        let must_see = answered
            .iter()
            .filter(|(at, _)| *at < read.started)
            .map(|(_, i)| *i)
            .max()
            .unwrap_or(0);
        if read.seen < must_see {
            stale.push(format!(
                "GET {} ({}) saw bio-{} though bio-{must_see} had been answered",
                read.path, read.x_cache, read.seen
            ));
        }
    }
    if !stale.is_empty() {
        let mut diagnosis = String::new();
        for (name, instance) in [("slow", &app), ("fast", &fast)] {
            for metric in [
                "linkhub_cache_version_bumps_total",
                "linkhub_cache_version_bump_failures_total",
                "linkhub_cache_breaker_open",
            ] {
                let value = instance.metric_sum(metric, &[]).await;
                diagnosis.push_str(&format!(" {name}:{metric}={value}"));
            }
        }
        panic!(
            "{} of {} reads were stale, e.g. {:?};{diagnosis}",
            stale.len(),
            records.len(),
            &stale[..stale.len().min(5)]
        );
    }
    for instance in [&app, &fast] {
        for path in &paths {
            for _ in 0..3 {
                let got = fetch(instance, path).await;
                assert_eq!(
                    seen_bio(path, &got.body),
                    WRITES,
                    "GET {path} at the end ({})",
                    got.x_cache
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_1_versions_are_taken_before_the_database_read_slow_database() {
    stale_set_race(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_1_versions_are_taken_before_the_database_read_fast_database() {
    stale_set_race(false).await;
}
