//! Issue 11: nothing acknowledged is lost when Redis masters fail over. A
//! private 3-master + 3-replica cluster whose replication links are broken
//! takes a write, loses its masters and lets the replicas take over; every
//! read afterwards, on the writer and on another instance, shows the write.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// How long reads are checked after the takeover (the 8 seconds).
const CHECKED_FOR: Duration = Duration::from_secs(8);

/// An instance on `cluster`, whose Redis timeout is short enough that the dead
/// masters cost a read little, long enough for a loaded test machine.
async fn instance_on(cluster: &ReplicatedCluster, database_url: &str, prefix: &str) -> TestApp {
    let urls = cluster.urls();
    let app = spawn_app_on(database_url, prefix, |s| {
        s.redis_cluster_urls = urls;
        s.redis_timeout = Duration::from_millis(500);
    })
    .await;
    wait_cache_ok(&app).await;
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_after_an_unreplicated_write_serves_only_fresh_data() {
    let mut cluster = ReplicatedCluster::start().await;
    let database_url = create_test_database().await;
    let prefix = unique_name("fo");
    let writer = instance_on(&cluster, &database_url, &prefix).await;
    let reader = instance_on(&cluster, &database_url, &prefix).await;
    let truth = spawn_truth(&writer).await;
    let owner = Owner::create(&writer, 1, 1).await;
    let paths = owner.own_reads();
    for app in [&writer, &reader] {
        warm_all(app, &paths).await;
    }

    // 1. The replicas stop receiving writes; the cluster still counts them alive.
    cluster.break_replication_links().await;
    // 2. A write answers 200.
    let bio = "written before the failover";
    owner.patch_user(&writer, json!({ "bio": bio })).await;
    // 3. The masters die; every replica takes over, without the write's bumps.
    cluster.kill_masters();
    cluster.take_over().await;
    let took_over = Instant::now();

    // Every read from now on shows the write, however it is served.
    let mut trusted_at: [Option<Duration>; 2] = [None, None];
    let mut reads = 0;
    while took_over.elapsed() < CHECKED_FOR || trusted_at.iter().any(Option::is_none) {
        assert!(
            took_over.elapsed() < Duration::from_secs(40),
            "the cache was not trusted again within 40 s of the takeover \
             (writer, reader: {trusted_at:?})"
        );
        for (i, app) in [&writer, &reader].into_iter().enumerate() {
            for path in &paths {
                let got = assert_fresh(app, &truth, path, "after the failover").await;
                reads += 1;
                if *path == owner.user_path() && got.x_cache == "HIT" && trusted_at[i].is_none() {
                    trusted_at[i] = Some(took_over.elapsed());
                }
            }
        }
    }
    let user = fetch(&reader, &owner.user_path()).await;
    assert_eq!(user.body["data"]["bio"], bio);
    println!(
        "failover: {reads} fresh reads; the user served as HIT again after \
         {:?} (writer) and {:?} (reader) from the takeover",
        trusted_at[0], trusted_at[1]
    );
}
