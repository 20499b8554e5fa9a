//! Invalidation that does not grow with the keyspace: a write's
//! stale entries are removed through their namespace's index, with no SCAN,
//! however many keys Redis holds; the index expires with its entries; the
//! budgeted janitor removes what the index missed, at its budget, and only
//! after writes; keys of other prefixes are never touched.
//!
//! Measured from Redis itself: `INFO commandstats` (SCAN calls) and the keys,
//! on private `redis-server`s where the counts must be exact; the index
//! purge alone also runs on the shared Redis (a cluster in CI's cluster pass).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// `SCAN` calls the server answered since its statistics were reset.
async fn scan_calls(con: &mut TestRedis) -> u64 {
    info_field(con, "commandstats", "cmdstat_scan")
        .await
        .and_then(|stats| {
            let calls = stats.strip_prefix("calls=")?;
            calls.split(',').next()?.parse().ok()
        })
        .unwrap_or(0)
}

async fn reset_stats(con: &mut TestRedis) {
    let () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(con)
        .await
        .expect("CONFIG RESETSTAT");
}

async fn dbsize(con: &mut TestRedis) -> u64 {
    redis::cmd("DBSIZE").query_async(con).await.expect("DBSIZE")
}

async fn exists(con: &mut TestRedis, key: &str) -> bool {
    let n: i64 = redis::cmd("EXISTS")
        .arg(key)
        .query_async(con)
        .await
        .expect("EXISTS");
    n == 1
}

/// A private redis-server with `DEBUG` enabled, holding `unrelated` keys
/// (`DEBUG POPULATE`, named `unrelated:<n>`) that are not linkhub's.
async fn private_redis(unrelated: u64) -> (RedisServer, TestRedis) {
    let server = RedisOptions::new()
        .args(["--enable-debug-command", "local"])
        .start()
        .await
        .expect("start a private redis-server with DEBUG enabled");
    let mut con = redis_connection(&server.url()).await;
    if unrelated > 0 {
        let () = redis::cmd("DEBUG")
            .arg("POPULATE")
            .arg(unrelated)
            .arg("unrelated")
            .query_async(&mut con)
            .await
            .expect("DEBUG POPULATE");
    }
    (server, con)
}

/// The entry keys of the prefix (counters and indexes left out), by namespace.
async fn entries_by_namespace(
    con: &mut TestRedis,
    prefix: &str,
) -> BTreeMap<String, Vec<EntryKey>> {
    let mut by_ns: BTreeMap<String, Vec<EntryKey>> = BTreeMap::new();
    for key in scan_keys(con, prefix).await {
        if let Some(entry) = parse_entry_key(prefix, &key) {
            by_ns
                .entry(entry.namespace.clone())
                .or_default()
                .push(entry);
        }
    }
    by_ns
}

fn index_key(prefix: &str, namespace: &str) -> String {
    format!("{prefix}:idx:{{{namespace}}}")
}

/// The namespaces a change to the user's own row bumps (the users list's
/// full pages, and its totals and tails).
fn bumped_by_user_patch(owner: &Owner) -> [String; 4] {
    [
        "users".to_owned(),
        "users_added".to_owned(),
        format!("user:{}", owner.id()),
        format!("profile:{}", owner.username),
    ]
}

/// Waits (at most `within`) until none of `keys` exists; answers how long it took.
async fn until_gone(con: &mut TestRedis, keys: &[String], within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let mut left = Vec::new();
        for key in keys {
            if exists(con, key).await {
                left.push(key.clone());
            }
        }
        if left.is_empty() {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{} stale entries still in Redis after {within:?}: {left:?}",
            left.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until Redis has answered no SCAN for `quiet` (the janitor's passes
/// that earlier writes started are over); answers the SCAN calls by then.
async fn until_scans_stop(con: &mut TestRedis, quiet: Duration, within: Duration) -> u64 {
    let deadline = Instant::now() + within;
    let mut last = scan_calls(con).await;
    loop {
        tokio::time::sleep(quiet).await;
        let now = scan_calls(con).await;
        if now == last {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "SCAN calls kept growing for {within:?} ({now})"
        );
        last = now;
    }
}

/// Entries of `old` that are in the namespaces `bumped`, as keys.
fn stale_keys(
    prefix: &str,
    old: &BTreeMap<String, Vec<EntryKey>>,
    bumped: &[String],
) -> Vec<String> {
    bumped
        .iter()
        .flat_map(|ns| old.get(ns).into_iter().flatten())
        .map(|e| entry_key(prefix, e))
        .collect()
}

/// Entries of `old` outside the namespaces `bumped`, as keys.
fn kept_keys(
    prefix: &str,
    old: &BTreeMap<String, Vec<EntryKey>>,
    bumped: &[String],
) -> Vec<String> {
    old.iter()
        .filter(|(ns, _)| !bumped.contains(ns))
        .flat_map(|(_, entries)| entries)
        .map(|e| entry_key(prefix, e))
        .collect()
}

/// A million keys of someone else in Redis, and a write: its stale entries
/// (and the version's `stored` count) are gone within moments, through the
/// index, with not one SCAN; the other namespaces' entries and every
/// unrelated key stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_purges_its_stale_entries_through_the_index_without_any_scan() {
    const UNRELATED: u64 = 1_000_000;
    let (server, mut con) = private_redis(UNRELATED).await;
    let url = server.url();
    // No janitor: every SCAN would be the purge's.
    let app = spawn_cached_with(|s| {
        s.redis_url = url;
        s.cache_janitor_keys_per_sec = 0;
    })
    .await;
    let truth = spawn_truth(&app).await;
    let prefix = app.key_prefix().await;
    let owner = Owner::create(&app, 2, 2).await;
    warm_all(&app, &owner.all_reads()).await;
    let before = entries_by_namespace(&mut con, &prefix).await;
    let bumped = bumped_by_user_patch(&owner);
    let stale = stale_keys(&prefix, &before, &bumped);
    let kept = kept_keys(&prefix, &before, &bumped);
    let user_ns = format!("user:{}", owner.id());
    assert!(
        before[&user_ns].iter().any(|e| e.query == "stored"),
        "the paged links read left no `stored` count: {before:?}"
    );
    assert!(!kept.is_empty(), "no entry outside the bumped namespaces");
    let keys_before = dbsize(&mut con).await;

    reset_stats(&mut con).await;
    owner
        .patch_user(&app, json!({"bio": "purged by index"}))
        .await;
    let took = until_gone(&mut con, &stale, Duration::from_secs(5)).await;
    let read = assert_fresh(&app, &truth, &owner.user_path(), "after the write").await;
    assert_eq!(read.body["data"]["bio"], "purged by index");

    assert_eq!(
        scan_calls(&mut con).await,
        0,
        "the write's purge SCANned Redis"
    );
    for key in &kept {
        assert!(
            exists(&mut con, key).await,
            "{key} was removed, but its namespace was not bumped"
        );
    }
    // The index of a bumped namespace lists only what is stored under its
    // current version (the read above re-cached the user).
    let listed: Vec<String> = redis::cmd("ZRANGE")
        .arg(index_key(&prefix, &user_ns))
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut con)
        .await
        .expect("ZRANGE");
    let members: Vec<(&str, f64)> = listed
        .chunks(2)
        .map(|pair| (pair[0].as_str(), pair[1].parse().expect("a score")))
        .collect();
    let version: u64 = redis::cmd("GET")
        .arg(format!("{prefix}:ver:{{{user_ns}}}"))
        .query_async(&mut con)
        .await
        .expect("GET counter");
    assert!(
        !members.is_empty() && members.iter().all(|(_, score)| *score as u64 == version),
        "the index of {user_ns} still lists older versions: {members:?} (current {version})"
    );
    let unrelated: u64 = redis::cmd("EVAL")
        .arg("return #redis.call('KEYS', 'unrelated:*')")
        .arg(0)
        .query_async(&mut con)
        .await
        .expect("count the unrelated keys");
    assert_eq!(unrelated, UNRELATED, "an unrelated key was touched");
    // The user entry came back under the new version; the stale ones and
    // the old `stored` count are gone.
    assert!(dbsize(&mut con).await < keys_before);
    println!(
        "{} stale entries gone {took:?} after the write answered, 0 SCAN calls, {UNRELATED} unrelated keys",
        stale.len()
    );
}

/// Every index has a TTL at least as long as each entry it lists, and no
/// longer than an entry can live; after a write the index purge removes the
/// stale entries on the shared Redis too (a cluster in the cluster pass,
/// where each purge runs on its namespace's slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn indexes_expire_with_their_entries_and_purge_on_any_topology() {
    let app = spawn_cached().await;
    let prefix = app.key_prefix().await;
    let mut con = redis_for(&app.settings).await;
    let owner = Owner::create(&app, 2, 1).await;
    warm_all(&app, &owner.all_reads()).await;

    let keys = scan_keys(&mut con, &prefix).await;
    let indexes: Vec<&String> = keys.iter().filter(|k| k.contains(":idx:{")).collect();
    let by_ns = entries_by_namespace(&mut con, &prefix).await;
    assert!(!indexes.is_empty(), "no index in {keys:?}");
    let ttl_cap = app.settings.cache_ttl.as_secs() as i64;
    for (ns, entries) in &by_ns {
        let index = index_key(&prefix, ns);
        let index_ttl: i64 = redis::cmd("TTL")
            .arg(&index)
            .query_async(&mut con)
            .await
            .expect("TTL");
        assert!(
            index_ttl > 0 && index_ttl <= ttl_cap,
            "{index}: TTL {index_ttl}, expected 1..={ttl_cap}"
        );
        for entry in entries {
            let key = entry_key(&prefix, entry);
            let ttl: i64 = redis::cmd("TTL")
                .arg(&key)
                .query_async(&mut con)
                .await
                .expect("TTL");
            assert!(
                ttl <= index_ttl,
                "{key} lives {ttl} s, longer than its index ({index_ttl} s)"
            );
            let score: Option<f64> = redis::cmd("ZSCORE")
                .arg(&index)
                .arg(format!("{}:{}", entry.version, entry.query))
                .query_async(&mut con)
                .await
                .expect("ZSCORE");
            assert_eq!(
                score.map(|s| s as u64),
                Some(entry.version),
                "{key} is not in {index}"
            );
        }
    }

    let bumped = bumped_by_user_patch(&owner);
    let stale = stale_keys(&prefix, &by_ns, &bumped);
    let kept = kept_keys(&prefix, &by_ns, &bumped);
    owner.patch_user(&app, json!({"bio": "any topology"})).await;
    until_gone(&mut con, &stale, Duration::from_secs(5)).await;
    for key in &kept {
        assert!(
            exists(&mut con, key).await,
            "{key} was removed, but its namespace was not bumped"
        );
    }
}

/// A purge that missed (here: the indexes emptied by hand before the
/// write, so the purge finds nothing) is caught by the janitor's SCAN
/// within its budget: it walks no faster than `CACHE_JANITOR_KEYS_PER_SEC`,
/// removes the stale entries and nothing else (not the fresh ones, not
/// another prefix's look-alike keys, not the unrelated ones), and once the
/// pass is over, with no more writes, Redis sees no SCAN at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_janitor_removes_what_the_index_missed_within_its_budget() {
    const UNRELATED: u64 = 30_000;
    const BUDGET: u64 = 20_000;
    let (server, mut con) = private_redis(UNRELATED).await;
    let url = server.url();
    let app = spawn_cached_with(|s| {
        s.redis_url = url;
        s.cache_janitor_keys_per_sec = BUDGET;
    })
    .await;
    let prefix = app.key_prefix().await;
    let owner = Owner::create(&app, 1, 1).await;
    warm_all(&app, &owner.all_reads()).await;
    // Another application's keys shaped like linkhub's, stale by any
    // counter, under another prefix: never touched.
    let other = format!("{prefix}x");
    let foreign = [
        format!("{other}:{{user:{}}}:1:user", owner.id()),
        format!("{other}:{{users}}:1:stored"),
    ];
    for key in &foreign {
        let () = redis::cmd("SET")
            .arg(key)
            .arg("not linkhub's")
            .query_async(&mut con)
            .await
            .expect("SET");
    }
    // The writes that made the owner started janitor passes: let them end.
    until_scans_stop(
        &mut con,
        Duration::from_millis(600),
        Duration::from_secs(30),
    )
    .await;

    let before = entries_by_namespace(&mut con, &prefix).await;
    let bumped = bumped_by_user_patch(&owner);
    let stale = stale_keys(&prefix, &before, &bumped);
    let kept = kept_keys(&prefix, &before, &bumped);
    for ns in &bumped {
        let _: i64 = redis::cmd("DEL")
            .arg(index_key(&prefix, ns))
            .query_async(&mut con)
            .await
            .expect("DEL index");
    }
    let keys_in_redis = dbsize(&mut con).await;

    reset_stats(&mut con).await;
    let written = Instant::now();
    owner
        .patch_user(&app, json!({"bio": "left to the janitor"}))
        .await;
    // The janitor's steps: a tenth of the budget, at most 1000 keys.
    let step = (BUDGET / 10).min(1000);
    let pause = Duration::from_secs_f64(step as f64 / BUDGET as f64);
    // A pass over the keyspace at the budget, with room for a loaded machine.
    let pass = Duration::from_secs_f64(keys_in_redis as f64 / BUDGET as f64 * 2.0);
    let took = until_gone(&mut con, &stale, pass + Duration::from_secs(10)).await;
    let scans = until_scans_stop(
        &mut con,
        Duration::from_millis(600),
        Duration::from_secs(60),
    )
    .await;
    let pass_took = written.elapsed();
    assert!(
        scans > 0,
        "the stale entries went, but not by the janitor's SCAN"
    );
    // One SCAN step per pause at most: the walk kept to its budget.
    let fastest = pause.mul_f64(scans.saturating_sub(1) as f64 * 0.9);
    assert!(
        pass_took >= fastest,
        "{scans} SCAN steps of {step} keys in {pass_took:?}: faster than {BUDGET} keys/s"
    );
    for key in &kept {
        assert!(
            exists(&mut con, key).await,
            "the janitor removed {key}, which is not stale"
        );
    }
    for key in &foreign {
        assert!(
            exists(&mut con, key).await,
            "the janitor removed {key} of another prefix"
        );
    }
    assert!(
        exists(&mut con, "unrelated:0").await
            && exists(&mut con, &format!("unrelated:{}", UNRELATED - 1)).await,
        "the janitor removed an unrelated key"
    );
    // Idle: no write, no pass.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        scan_calls(&mut con).await,
        scans,
        "the janitor walked again with no write since its last pass"
    );
    let deleted = app
        .metric_sum(
            "linkhub_cache_scan_deleted_keys_total",
            &[("namespace", "user")],
        )
        .await;
    assert!(
        deleted >= 1.0,
        "the janitor's deletions of user entries were not counted"
    );
    println!(
        "the janitor removed {} stale entries {took:?} after the write, its pass over {keys_in_redis} keys \
         took {scans} SCAN steps and {pass_took:?}",
        stale.len()
    );
}
