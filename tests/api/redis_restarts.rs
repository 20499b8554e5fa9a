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

/// A cluster master restarted from a snapshot taken before a write, reached
/// through the cluster client, which reconnects to it without a word: every
/// read after the restart shows the write, and the cache is used again.
/// What notices is recovery's topology read (each master's run id, every
/// second), not an error: a restarted cluster master serves its slots only
/// about two seconds after it starts, and the run id has changed by then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_master_restarted_from_an_older_snapshot_serves_nothing_stale() {
    let mut cluster = ReplicatedCluster::start_with(Layout {
        replicas: 0,
        hostname: None,
    })
    .await;
    let database_url = create_test_database().await;
    let urls = cluster.urls();
    let app = spawn_app_on(&database_url, &unique_name("rdb"), |s| {
        s.redis_cluster_urls = urls;
        s.redis_timeout = Duration::from_millis(500);
    })
    .await;
    wait_cache_ok(&app).await;
    let truth = spawn_truth(&app).await;
    // A user whose namespace lives on master 0, the one that restarts.
    let owner = loop {
        let owner = Owner::create(&app, 0, 0).await;
        if cluster.master_of_tag(&format!("user:{}", owner.id())) == 0 {
            break owner;
        }
    };
    let path = owner.user_path();
    warm(&app, &path).await;
    assert_eq!(fetch(&app, &path).await.x_cache, "HIT");
    let port = cluster.masters[0].server.port();
    assert_eq!(cli(port, &["save"]).trim(), "OK");

    owner
        .patch_user(&app, json!({ "bio": "written after the snapshot" }))
        .await;
    // Cached again under the write's version, which the snapshot lacks.
    warm(&app, &path).await;
    cluster.masters[0].server.restart().await;
    // No read until the restarted node serves its slots again (a restarted
    // master waits a moment before it does): by then the cluster client has
    // reconnected to it in the background, and the first read goes to the
    // snapshot's data without an error on the way.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cli(port, &["cluster", "info"]).contains("cluster_state:ok") {
        assert!(
            Instant::now() < deadline,
            "the restarted master never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let started = Instant::now();
    let mut served: Vec<String> = Vec::new();
    while started.elapsed() < Duration::from_secs(3) || !served.iter().any(|s| s == "HIT") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not cached again within 20 s of the restart: {served:?}"
        );
        let got = assert_fresh(&app, &truth, &path, "a cluster master restarted").await;
        assert_eq!(got.body["data"]["bio"], "written after the snapshot");
        served.push(got.x_cache);
    }
    let hits = served.iter().filter(|s| *s == "HIT").count();
    println!(
        "restart: cluster master from an older snapshot: {} reads in {:?}, 0 stale, {hits} HIT",
        served.len(),
        started.elapsed()
    );
    let _ = &mut cluster;
}
