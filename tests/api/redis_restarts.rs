//! Redis as production runs it: it persists (RDB snapshots, an AOF) and
//! restarts from what it persisted, which may be older than what linkhub was
//! told it holds: a snapshot brings back old counters *and* old entries
//! together, and nothing in Redis says a bump was lost. The cache epoch in
//! PostgreSQL, trusted per Redis process (run id), leaves whatever such a
//! Redis brought back behind: no read is stale, and the cache is used again.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// How a restarted Redis gets its data back.
#[derive(Debug, Clone, Copy)]
enum Persistence {
    /// A snapshot (`SAVE`) taken before the write.
    Snapshot,
    /// An append-only file, synced on every write.
    AppendOnly,
}

async fn persisting_redis(persistence: Persistence, dir: &std::path::Path) -> RedisServer {
    let dir = dir.display().to_string();
    let options = RedisOptions::new().args(["--dir", dir.as_str()]);
    let options = match persistence {
        Persistence::Snapshot => options.args(["--save", "3600 1"]),
        Persistence::AppendOnly => options.args(["--appendonly", "yes", "--appendfsync", "always"]),
    };
    options
        .start()
        .await
        .expect("start a private redis-server that persists")
}

async fn restart_from_persisted_data(persistence: Persistence) {
    let dir = tempdir::Dir::new();
    let mut redis = persisting_redis(persistence, dir.path()).await;
    let redis_url = redis.url();
    let app = spawn_app_with(|s| s.redis_url = redis_url).await;
    wait_cache_ok(&app).await;
    let truth = spawn_truth(&app).await;
    let owner = Owner::create(&app, 1, 1).await;
    let reads = owner.own_reads();
    warm_all(&app, &reads).await;
    let mut con = redis_connection(&redis.url()).await;
    let () = redis::cmd("SAVE")
        .query_async(&mut con)
        .await
        .expect("SAVE");
    drop(con);

    owner
        .patch_user(&app, json!({ "bio": "written after the snapshot" }))
        .await;
    redis.restart().await;

    // Every read after the restart shows the write; the cache is used again.
    let started = Instant::now();
    let (mut reads_made, mut hits) = (0, 0);
    let mut trusted_after = None;
    while started.elapsed() < Duration::from_secs(3) {
        for path in &reads {
            let got = assert_fresh(&app, &truth, path, &format!("{persistence:?} restart")).await;
            reads_made += 1;
            if got.x_cache == "HIT" {
                hits += 1;
                trusted_after.get_or_insert(started.elapsed());
            }
        }
    }
    println!(
        "{persistence:?}: {reads_made} reads in 3 s after the restart, 0 stale, {hits} HIT; \
         first HIT after {trusted_after:?}"
    );
    assert!(hits > 0, "the cache is used again after the restart");
    let epochs = query_strings(&app.database_url, "SELECT reason AS value FROM cache_epoch").await;
    assert_eq!(
        epochs,
        ["Redis processes changed"],
        "the epoch moved for the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_from_an_older_snapshot_serves_nothing_stale() {
    restart_from_persisted_data(Persistence::Snapshot).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_from_its_append_only_file_serves_nothing_stale() {
    restart_from_persisted_data(Persistence::AppendOnly).await;
}

/// A fleet of mixed settings: an instance with the cache off still delivers
/// its writes' bumps, so one with the cache on never serves what it wrote
/// over; and switching the cache off and on again serves nothing stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_off_instance_invalidates_for_the_others() {
    let app = spawn_cached().await;
    let off = spawn_truth(&app).await;
    let owner = Owner::create(&app, 1, 1).await;
    let reads = owner.own_reads();
    for round in 0..3 {
        warm_all(&app, &reads).await;
        owner
            .patch_user(
                &off,
                json!({ "bio": format!("written with the cache off, round {round}") }),
            )
            .await;
        for path in &reads {
            assert_fresh(&app, &off, path, "a write through a cache-off instance").await;
        }
    }
    // Restart with the cache off, write, and on again.
    warm_all(&app, &reads).await;
    let prefix = app.settings.cache_prefix.clone();
    let redis_url = app.settings.redis_url.clone();
    let restarted_off = spawn_app_on(&app.database_url, &prefix, |s| {
        s.cache_enabled = false;
        s.redis_url = redis_url.clone();
    })
    .await;
    owner
        .patch_user(
            &restarted_off,
            json!({ "bio": "written while the cache was off" }),
        )
        .await;
    let on_again = spawn_app_on(&app.database_url, &prefix, |s| s.redis_url = redis_url).await;
    wait_cache_ok(&on_again).await;
    for path in &reads {
        assert_fresh(&on_again, &off, path, "the cache switched on again").await;
    }
}
