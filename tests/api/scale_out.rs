//! Several instances sharing PostgreSQL and Redis: a write answered by one
//! is seen by the next read on another, also when only the writer lost Redis.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// A second instance on `app`'s database and Redis key space.
async fn second_instance(app: &TestApp) -> TestApp {
    let other = spawn_app_on(&app.database_url, &app.settings.cache_prefix, |s| {
        s.redis_url = app.settings.redis_url.clone();
        s.redis_cluster_urls = app.settings.redis_cluster_urls.clone();
        s.redis_timeout = app.settings.redis_timeout;
    })
    .await;
    wait_cache_ok(&other).await;
    other
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_instance_is_read_on_the_other() {
    let writer = spawn_cached().await;
    let reader = second_instance(&writer).await;
    let truth = spawn_truth(&writer).await;
    let mut owner = Owner::create(&writer, 1, 1).await;
    for round in 0..3 {
        for path in owner.own_reads() {
            warm(&reader, &path).await;
        }
        owner
            .patch_user(
                &writer,
                json!({ "bio": format!("written on the writer, round {round}") }),
            )
            .await;
        owner.add_link(&writer, &format!("link {round}")).await;
        for path in owner.own_reads() {
            assert_fresh(&reader, &truth, &path, "write on instance 1, read on 2").await;
        }
    }
}

/// Only the writer loses Redis: its bump is owed. It tells the other instances
/// over PostgreSQL NOTIFY before it answers, so the reader (whose Redis is
/// fine) bypasses, then delivers the bump itself and caches again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_writer_lost_redis() {
    let redis = RedisServer::start().await;
    let proxy = TcpProxy::start(redis.addr()).await;
    let through_proxy = format!("redis://{}", proxy.addr());
    let writer = spawn_app_with(|s| s.redis_url = through_proxy).await;
    wait_cache_ok(&writer).await;
    let reader = spawn_app_on(&writer.database_url, &writer.settings.cache_prefix, |s| {
        s.redis_url = redis.url();
        s.redis_timeout = Duration::from_millis(PATIENT_REDIS_TIMEOUT_MS);
    })
    .await;
    wait_cache_ok(&reader).await;
    let truth = spawn_truth(&writer).await;
    let owner = Owner::create(&writer, 1, 1).await;
    let paths = owner.own_reads();
    for path in &paths {
        warm(&reader, path).await;
    }

    proxy.cut();
    for round in 0..3 {
        let bio = format!("written while the writer had no Redis, round {round}");
        owner.patch_user(&writer, json!({ "bio": bio })).await;
        // The known window (docs/RUNNING.md, "Several instances"): the reader learns of
        // the owed bump over NOTIFY, which may arrive a moment after the write
        // answered when the machine is loaded. Once it has arrived, the very
        // next reads on the other instance show the write.
        wait_for_owed_notifications(&reader, round + 1).await;
        for path in &paths {
            assert_fresh(&reader, &truth, path, "only the writer lost Redis").await;
        }
    }

    // The reader delivered the owed bumps into Redis: it caches again.
    let deadline = Instant::now() + Duration::from_secs(5);
    let path = owner.profile_path();
    loop {
        let got = fetch(&reader, &path).await;
        if got.x_cache == "HIT" {
            assert_fresh(
                &reader,
                &truth,
                &path,
                "after the reader delivered the bump",
            )
            .await;
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the reader never cached {path} again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delays = reader
        .metric_sum("linkhub_cache_owed_notify_delay_seconds_count", &[])
        .await;
    assert!(
        delays >= 3.0,
        "the reader handled {delays} owed-bump notifications, expected 3"
    );

    // When the writer gets Redis back, nothing it serves is stale either.
    proxy.restore();
    wait_cache_ok(&writer).await;
    for path in &paths {
        assert_fresh(&writer, &truth, path, "writer after its Redis came back").await;
    }
}

/// Waits (at most 5 s) until `app` has handled `count` owed-bump notifications.
async fn wait_for_owed_notifications(app: &TestApp, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let handled = app
            .metric_sum("linkhub_cache_owed_notify_delay_seconds_count", &[])
            .await;
        if handled >= count as f64 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the reader handled {handled} owed-bump notifications within 5 s, expected {count}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
