//! Two releases side by side during a rolling deploy, on one database and one
//! key space. What an entry holds is digested into every entry key (the
//! schemas of the API document and the page templates; `CACHE_FORMAT_SALT`
//! stands in here for a release that changed them): neither release reads
//! an entry the other wrote, and the version counters stay shared, so a
//! write through either is seen by both.

use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_whose_entries_differ_never_read_each_others() {
    let old = spawn_cached().await;
    let new = spawn_app_on(&old.database_url, &old.settings.cache_prefix, |s| {
        s.redis_url = old.settings.redis_url.clone();
        s.redis_cluster_urls = old.settings.redis_cluster_urls.clone();
        s.cache_format_salt = "a release whose profile gained a field".to_owned();
    })
    .await;
    wait_cache_ok(&new).await;
    let truth = spawn_truth(&old).await;
    let owner = Owner::create(&old, 1, 1).await;
    let reads = owner.own_reads();

    warm_all(&old, &reads).await;
    for path in &reads {
        let first = fetch(&new, path).await;
        assert_eq!(
            first.x_cache, "MISS",
            "GET {path}: the new release read the old one's entry"
        );
    }
    warm_all(&new, &reads).await;

    // A write through either release reaches both.
    owner
        .patch_user(&new, json!({ "bio": "written by the new release" }))
        .await;
    for path in &reads {
        assert_fresh(
            &old,
            &truth,
            path,
            "the old release after a write through the new",
        )
        .await;
    }
    warm_all(&old, &reads).await;
    owner
        .patch_user(&old, json!({ "bio": "written by the old release" }))
        .await;
    for path in &reads {
        assert_fresh(
            &new,
            &truth,
            path,
            "the new release after a write through the old",
        )
        .await;
    }
}

#[test]
fn the_entry_format_follows_what_entries_hold() {
    let plain = linkhub::startup::entry_format("");
    assert_eq!(plain.len(), 8);
    assert_eq!(plain, linkhub::startup::entry_format(""), "it is stable");
    assert_ne!(plain, linkhub::startup::entry_format("salt"));
}
