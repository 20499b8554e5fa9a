//! The near cache: copies of entries kept in process, served only
//! while Redis answers the version they were stored under, never after the
//! Redis they came from was replaced, and bounded in bytes.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

/// Reads `path` until it is answered from the near cache (the near-hit
/// counter moved), and answers that read.
async fn until_near_hit(app: &TestApp, path: &str) -> Fetched {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let before = app.metric_sum("linkhub_cache_near_hits_total", &[]).await;
        let got = fetch(app, path).await;
        let after = app.metric_sum("linkhub_cache_near_hits_total", &[]).await;
        if after > before {
            assert_eq!(got.x_cache, "HIT", "a near hit is a HIT: {path}");
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{path} was never served from the near cache (last: {})",
            got.x_cache
        );
    }
}

/// Changes a user's bio in PostgreSQL behind linkhub's back (no outbox row,
/// no bump): only a read that really loads sees it.
async fn change_bio_behind_the_back(app: &TestApp, user_id: i64, bio: &str) {
    execute_sql(
        &app.database_url,
        &format!("UPDATE users SET bio = '{bio}' WHERE id = {user_id}"),
    )
    .await;
}

#[tokio::test]
async fn a_near_hit_serves_the_current_version_and_a_write_is_seen_at_once() {
    let app = spawn_cached().await;
    let owner = Owner::create(&app, 2, 1).await;
    let path = owner.profile_path();
    let first = until_near_hit(&app, &path).await;
    // The copy is the entry Redis holds: same ETag, same body.
    let again = until_near_hit(&app, &path).await;
    assert_eq!(first.etag, again.etag);
    assert_eq!(first.body, again.body);

    // A write bumps the version: the next read, on any instance, cannot be
    // the copy (the version is asked of Redis every time).
    let truth = spawn_truth(&app).await;
    for round in 0..3 {
        let bio = format!("near round {round}");
        owner.patch_user(&app, json!({ "bio": bio })).await;
        let got = fetch(&app, &path).await;
        assert_eq!(
            got.body["data"]["user"]["bio"],
            bio.as_str(),
            "round {round}: {got:?}"
        );
        assert_eq!(got.body, fetch(&truth, &path).await.body);
        until_near_hit(&app, &path).await;
    }
}

#[tokio::test]
async fn a_copy_is_never_served_from_a_redis_that_was_replaced() {
    // Two Redis servers behind one address. The second holds the same
    // counter value as the first (a counter re-created from another node's
    // clock that happens to repeat a version) and no entry under it.
    let first = RedisServer::start().await;
    let second = RedisServer::start().await;
    let proxy = TcpProxy::start(first.addr()).await;
    let redis_url = format!("redis://{}", proxy.addr());
    let app = spawn_app_with(|s| s.redis_url = redis_url).await;
    wait_cache_ok(&app).await;
    let owner = Owner::create(&app, 1, 1).await;
    let path = owner.profile_path();
    let copied = until_near_hit(&app, &path).await;

    let mut on_first = redis_connection(&first.url()).await;
    let mut on_second = redis_connection(&second.url()).await;
    let counters = counters(&mut on_first, &app.key_prefix().await).await;
    assert!(!counters.is_empty(), "the reads left counters");
    for (key, version) in &counters {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(version)
            .arg("EX")
            .arg(600)
            .query_async(&mut on_second)
            .await
            .expect("SET on the second Redis");
    }
    // What only a load can see.
    change_bio_behind_the_back(&app, owner.user.id, "changed behind the back").await;

    proxy.switch_to(second.addr());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = fetch(&app, &path).await;
        assert_eq!(got.status, 200);
        assert_ne!(
            got.etag, copied.etag,
            "a copy taken from the first Redis was served from the second ({}): {got:?}",
            got.x_cache
        );
        assert_eq!(got.body["data"]["user"]["bio"], "changed behind the back");
        if got.x_cache == "HIT" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cache was not used again after the switch: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_near_cache_stays_within_its_bound_and_zero_turns_it_off() {
    let bound = 8 * 1024;
    let app = spawn_cached_with(|s| s.cache_near_max_bytes = bound).await;
    let mut paths = Vec::new();
    for _ in 0..12 {
        let owner = Owner::create(&app, 3, 2).await;
        paths.push(owner.profile_path());
    }
    for _ in 0..3 {
        for path in &paths {
            fetch(&app, path).await;
        }
    }
    let held = app.metric_sum("linkhub_cache_near_bytes", &[]).await;
    assert!(held > 0.0, "the near cache holds nothing");
    assert!(
        held <= bound as f64,
        "the near cache holds {held} bytes, more than its bound {bound}"
    );

    let off = spawn_cached_with(|s| s.cache_near_max_bytes = 0).await;
    let owner = Owner::create(&off, 1, 1).await;
    for _ in 0..5 {
        let got = fetch(&off, &owner.profile_path()).await;
        assert_eq!(got.status, 200);
    }
    assert_eq!(fetch(&off, &owner.profile_path()).await.x_cache, "HIT");
    assert_eq!(
        off.metric_sum("linkhub_cache_near_hits_total", &[]).await,
        0.0
    );
    assert_eq!(off.metric_sum("linkhub_cache_near_bytes", &[]).await, 0.0);
}
