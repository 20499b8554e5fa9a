//! The cache rules as clients see them (API.md, "Caching, as clients see it"):
//! read-your-writes for every write on every read it affects, fine-grained
//! invalidation, headers and ETags, single-flight loads, TTLs and no secrets in
//! Redis, and the cache metrics.
//!
//! Freshness is always judged against a second instance on the same database
//! with the cache disabled (`spawn_truth`), so every field is compared, not
//! only the one a write changed.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;

use crate::support::*;

async fn register(app: &TestApp, username: &str, name: &str) -> i64 {
    let user = app
        .register_with(&json!({
            "username": username,
            "email": format!("{username}@example.com"),
            "password": "another fine password",
            "name": name,
        }))
        .await;
    user["id"].as_i64().expect("new user id")
}

// ---------------------------------------------------------------------------
// 1. read-your-writes
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_2_bump_after_commit_before_answering_register_and_cached_404() {
    let app = spawn_cached().await;
    let truth = spawn_truth(&app).await;
    let owner = Owner::create(&app, 1, 1).await;

    let newname = unique_name("fresh");
    let predicted_id = owner.id() + 1;
    let new_profile = paths::profile(&newname);
    let new_search = paths::user_search(&newname);
    let predicted = vec![
        paths::user(predicted_id),
        paths::links(predicted_id),
        paths::socials(predicted_id),
    ];

    let mut reads = owner.all_reads();
    reads.push(new_profile.clone());
    reads.push(new_search.clone());
    reads.extend(predicted.clone());
    warm_all(&app, &reads).await;

    // The profile does not exist yet, and says so twice (the second answer may
    // come from the cache).
    for _ in 0..2 {
        let missing = fetch(&app, &new_profile).await;
        assert_eq!(missing.status, 404, "GET {new_profile} before registration");
    }
    let empty = fetch(&app, &new_search).await;
    assert_eq!(empty.body["meta"]["total"], 0, "search before registration");

    let new_id = register(&app, &newname, "A fresh name").await;

    let mut affected = list_reads();
    affected.push(new_profile.clone());
    affected.push(new_search.clone());
    if new_id == predicted_id {
        affected.extend(predicted);
    }
    assert_all_fresh(&app, &truth, &reads, &affected, "after registration").await;

    let profile = fetch(&app, &new_profile).await;
    assert_eq!(
        profile.status, 200,
        "a create makes the profile visible at once"
    );
    assert_eq!(profile.body["data"]["user"]["username"], newname.as_str());
    let search = fetch(&app, &new_search).await;
    assert_eq!(search.body["meta"]["total"], 1, "search after registration");
    let user = fetch(&app, &paths::user(new_id)).await;
    assert_eq!(user.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_2_bump_after_commit_before_answering_patch_user_fields() {
    let app = spawn_cached().await;
    let truth = spawn_truth(&app).await;
    let owner = Owner::create(&app, 2, 2).await;
    let other = Owner::create(&app, 1, 1).await;
    let admin = app.register_admin().await;

    let mut reads = owner.all_reads();
    reads.extend(other.own_reads());
    let affected = {
        let mut paths = list_reads();
        paths.push(owner.search_path());
        paths.push(owner.user_path());
        paths.push(owner.profile_path());
        paths
    };

    let patches = [
        ("owner", json!({"name": "Other Person"})),
        ("owner", json!({"bio": "bio-1"})),
        (
            "owner",
            json!({"avatar_url": "https://img.example.com/a.png"}),
        ),
        (
            "owner",
            json!({"name": "Name again", "bio": "bio-2", "avatar_url": "https://img.example.com/b.png"}),
        ),
        ("admin", json!({"bio": "bio-3 by an admin"})),
    ];
    for (who, patch) in patches {
        warm_all(&app, &reads).await;
        let token = if who == "admin" {
            admin.token.as_str()
        } else {
            owner.token()
        };
        let response = app
            .patch_json(&owner.user_path(), Some(token), &patch)
            .await;
        expect_json(response, 200).await;
        let context = format!("after PATCH {patch} by {who}");
        assert_all_fresh(&app, &truth, &reads, &affected, &context).await;

        // Guard the truth instance itself: the change is visible.
        let profile = fetch(&app, &owner.profile_path()).await;
        let user = &profile.body["data"]["user"];
        for (field, value) in patch.as_object().expect("patch object") {
            assert_eq!(&user[field], value, "{context}: profile field {field}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_2_bump_after_commit_before_answering_rename_user() {
    let app = spawn_cached().await;
    let truth = spawn_truth(&app).await;
    let mut owner = Owner::create(&app, 1, 1).await;
    let original = owner.username.clone();
    let first = unique_name("first");
    let second = unique_name("second");
    let names = [original.clone(), first.clone(), second.clone()];
    let name_reads = || {
        let mut paths = Vec::new();
        for name in &names {
            paths.push(paths::profile(name));
            paths.push(paths::user_search(name));
        }
        paths
    };

    // original -> first -> second -> original: every profile path is cached
    // while it is 200 or 404 and must follow each rename.
    for (from, to) in [(&original, &first), (&first, &second), (&second, &original)] {
        let mut reads = owner.all_reads();
        reads.extend(name_reads());
        warm_all(&app, &reads).await;
        let new_profile = paths::profile(to);
        assert_eq!(fetch(&app, &new_profile).await.status, 404);

        owner.patch_user(&app, json!({"username": to})).await;
        owner.username = to.to_string();

        // Every list and search (one global namespace), the user, and the
        // profiles under the old and the new name; not the third name's.
        let mut affected = list_reads();
        affected.extend(names.iter().map(paths::user_search));
        affected.push(paths::profile(from));
        affected.push(paths::profile(to));
        affected.push(owner.user_path());
        let context = format!("after renaming {from} to {to}");
        assert_all_fresh(&app, &truth, &reads, &affected, &context).await;

        let old = fetch(&app, &paths::profile(from)).await;
        assert_eq!(old.status, 404, "{context}: the old profile path");
        let new = fetch(&app, &new_profile).await;
        assert_eq!(new.status, 200, "{context}: the new profile path");
        assert_eq!(new.body["data"]["user"]["username"], to.as_str());
        assert_eq!(new.body["data"]["links"].as_array().map(Vec::len), Some(1));

        // Writes after the rename reach the profile under its new name.
        let mut reads = owner.all_reads();
        reads.extend(name_reads());
        warm_all(&app, &reads).await;
        owner.add_link(&app, &format!("after rename to {to}")).await;
        let new_link = paths::link(owner.links.last().expect("link"));
        reads.push(new_link.clone());
        let affected = vec![
            owner.profile_path(),
            owner.links_path(),
            format!("{}?page=1&limit=2", owner.links_path()),
            new_link,
        ];
        let context = format!("{context}, then a new link");
        assert_all_fresh(&app, &truth, &reads, &affected, &context).await;
        // Keep one link per round for the link count check above.
        let removed = owner.links.remove(0);
        let response = app.delete_link(removed, Some(owner.token())).await;
        assert_eq!(response.status().as_u16(), 204);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_2_bump_after_commit_before_answering_delete_user() {
    let app = spawn_cached().await;
    let truth = spawn_truth(&app).await;
    let owner = Owner::create(&app, 2, 2).await;
    let other = Owner::create(&app, 1, 1).await;

    let mut reads = owner.all_reads();
    reads.extend(other.own_reads());
    warm_all(&app, &reads).await;

    let response = app.delete(&owner.user_path(), Some(owner.token())).await;
    assert_eq!(response.status().as_u16(), 204, "DELETE user");

    let mut affected = owner.all_reads();
    affected.retain(|p| !p.contains("?page=1&limit=2"));
    assert_all_fresh(&app, &truth, &reads, &affected, "after deleting the user").await;
    for path in owner.own_reads() {
        assert_eq!(
            fetch(&app, &path).await.status,
            404,
            "GET {path} after the user's deletion"
        );
    }

    // The freed username is somebody else's now, at once.
    let reads_after = owner.all_reads();
    warm_all(&app, &reads_after).await;
    let new_id = register(&app, &owner.username, "Second owner").await;
    assert_all_fresh(
        &app,
        &truth,
        &reads_after,
        &[owner.profile_path(), owner.search_path()],
        "after registering the freed username",
    )
    .await;
    let profile = fetch(&app, &owner.profile_path()).await;
    assert_eq!(profile.status, 200);
    assert_eq!(profile.body["data"]["user"]["id"], new_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_2_bump_after_commit_before_answering_link_writes() {
    let app = spawn_cached().await;
    let truth = spawn_truth(&app).await;
    let mut owner = Owner::create(&app, 2, 1).await;
    let other = Owner::create(&app, 1, 1).await;
    let list_paths = |owner: &Owner| {
        vec![
            owner.profile_path(),
            owner.links_path(),
            format!("{}?page=1&limit=2", owner.links_path()),
        ]
    };

    // POST: the new link shows in the lists, and its (predicted, cached 404)
    // path answers it.
    let predicted = paths::link(other.links[0] + 1);
    let mut reads = owner.all_reads();
    reads.extend(other.own_reads());
    reads.push(predicted.clone());
    warm_all(&app, &reads).await;
    let new_id = owner.add_link(&app, "brand new").await;
    let mut affected = list_paths(&owner);
    if predicted == paths::link(new_id) {
        affected.push(predicted);
    }
    assert_all_fresh(&app, &truth, &reads, &affected, "after POST link").await;
    let profile = fetch(&app, &owner.profile_path()).await;
    assert_eq!(
        profile.body["data"]["links"].as_array().map(Vec::len),
        Some(3)
    );

    // PATCH title, url, position (a reorder).
    let target = owner.links[0];
    let link_path = paths::link(target);
    for patch in [
        json!({"title": "renamed link"}),
        json!({"url": "https://example.org/changed"}),
        json!({"position": 99}),
        json!({"position": 0, "title": "first again"}),
    ] {
        let mut reads = owner.all_reads();
        reads.extend(other.own_reads());
        warm_all(&app, &reads).await;
        let response = app
            .patch_json(&link_path, Some(owner.token()), &patch)
            .await;
        expect_json(response, 200).await;
        let mut affected = list_paths(&owner);
        affected.push(link_path.clone());
        let context = format!("after PATCH link {patch}");
        assert_all_fresh(&app, &truth, &reads, &affected, &context).await;
        let link = fetch(&app, &link_path).await;
        for (field, value) in patch.as_object().expect("patch object") {
            assert_eq!(&link.body["data"][field], value, "{context}: {field}");
        }
    }

    // DELETE
    let mut reads = owner.all_reads();
    reads.extend(other.own_reads());
    warm_all(&app, &reads).await;
    let response = app.delete(&link_path, Some(owner.token())).await;
    assert_eq!(response.status().as_u16(), 204, "DELETE link");
    let mut affected = list_paths(&owner);
    affected.push(link_path.clone());
    assert_all_fresh(&app, &truth, &reads, &affected, "after DELETE link").await;
    assert_eq!(fetch(&app, &link_path).await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_2_bump_after_commit_before_answering_social_writes() {
    let app = spawn_cached().await;
    let truth = spawn_truth(&app).await;
    let mut owner = Owner::create(&app, 1, 2).await;
    let other = Owner::create(&app, 1, 1).await;
    let list_paths = |owner: &Owner| vec![owner.profile_path(), owner.socials_path()];

    let predicted = paths::social(other.socials[0] + 1);
    let mut reads = owner.all_reads();
    reads.extend(other.own_reads());
    reads.push(predicted.clone());
    warm_all(&app, &reads).await;
    let new_id = owner.add_social(&app, "aaa_first").await;
    let mut affected = list_paths(&owner);
    if predicted == paths::social(new_id) {
        affected.push(predicted);
    }
    assert_all_fresh(&app, &truth, &reads, &affected, "after POST social").await;
    let socials = fetch(&app, &owner.socials_path()).await;
    assert_eq!(socials.body["data"][0]["platform"], "aaa_first");

    let target = owner.socials[0];
    let social_path = paths::social(target);
    for patch in [
        json!({"url": "https://social.example.com/changed"}),
        json!({"platform": "zzz_last"}),
    ] {
        let mut reads = owner.all_reads();
        reads.extend(other.own_reads());
        warm_all(&app, &reads).await;
        let response = app
            .patch_json(&social_path, Some(owner.token()), &patch)
            .await;
        expect_json(response, 200).await;
        let mut affected = list_paths(&owner);
        affected.push(social_path.clone());
        let context = format!("after PATCH social {patch}");
        assert_all_fresh(&app, &truth, &reads, &affected, &context).await;
        let social = fetch(&app, &social_path).await;
        for (field, value) in patch.as_object().expect("patch object") {
            assert_eq!(&social.body["data"][field], value, "{context}: {field}");
        }
    }

    let mut reads = owner.all_reads();
    reads.extend(other.own_reads());
    warm_all(&app, &reads).await;
    let response = app.delete(&social_path, Some(owner.token())).await;
    assert_eq!(response.status().as_u16(), 204, "DELETE social");
    let mut affected = list_paths(&owner);
    affected.push(social_path.clone());
    assert_all_fresh(&app, &truth, &reads, &affected, "after DELETE social").await;
    assert_eq!(fetch(&app, &social_path).await.status, 404);
}

// ---------------------------------------------------------------------------
// 2. fine-grained invalidation
// ---------------------------------------------------------------------------

async fn assert_still_hit(app: &TestApp, truth: &TestApp, paths: &[String], context: &str) {
    for path in paths {
        let got = assert_fresh(app, truth, path, context).await;
        assert_eq!(
            got.x_cache, "HIT",
            "{context}: GET {path} belongs to another user and must stay cached"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fine_grained_invalidation() {
    let app = spawn_cached().await;
    let truth = spawn_truth(&app).await;
    let mut a = Owner::create(&app, 2, 2).await;
    let b = Owner::create(&app, 2, 2).await;
    let b_reads = b.own_reads();
    warm_all(&app, &b_reads).await;

    a.add_link(&app, "a new link").await;
    assert_still_hit(&app, &truth, &b_reads, "after A's POST link").await;

    let link = paths::link(a.links[0]);
    let response = app
        .patch_json(
            &link,
            Some(a.token()),
            &json!({"title": "changed", "position": 7}),
        )
        .await;
    expect_json(response, 200).await;
    assert_still_hit(&app, &truth, &b_reads, "after A's PATCH link").await;

    let response = app.delete(&link, Some(a.token())).await;
    assert_eq!(response.status().as_u16(), 204);
    assert_still_hit(&app, &truth, &b_reads, "after A's DELETE link").await;

    a.add_social(&app, "a_net").await;
    assert_still_hit(&app, &truth, &b_reads, "after A's POST social").await;

    let social = paths::social(a.socials[0]);
    let response = app
        .patch_json(
            &social,
            Some(a.token()),
            &json!({"url": "https://changed.example.com/"}),
        )
        .await;
    expect_json(response, 200).await;
    assert_still_hit(&app, &truth, &b_reads, "after A's PATCH social").await;

    let response = app.delete(&social, Some(a.token())).await;
    assert_eq!(response.status().as_u16(), 204);
    assert_still_hit(&app, &truth, &b_reads, "after A's DELETE social").await;

    a.patch_user(
        &app,
        json!({"name": "New A", "bio": "new bio", "avatar_url": "https://img.example.com/x.png"}),
    )
    .await;
    assert_still_hit(&app, &truth, &b_reads, "after A's profile PATCH").await;

    a.patch_user(&app, json!({"username": unique_name("renamed")}))
        .await;
    assert_still_hit(&app, &truth, &b_reads, "after A's rename").await;

    register(&app, &unique_name("third"), "Third").await;
    assert_still_hit(&app, &truth, &b_reads, "after a registration").await;

    let response = app.delete(&a.user_path(), Some(a.token())).await;
    assert_eq!(response.status().as_u16(), 204);
    assert_still_hit(&app, &truth, &b_reads, "after A's deletion").await;
}

// ---------------------------------------------------------------------------
// 3. headers and ETags
// ---------------------------------------------------------------------------

fn assert_cache_headers(got: &crate::support::Fetched) {
    let etag = got
        .etag
        .as_deref()
        .unwrap_or_else(|| panic!("GET {} has no ETag", got.path));
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() >= 3,
        "GET {}: ETag {etag:?} must be a strong (quoted, not W/) entity tag",
        got.path
    );
    let cache_control = got
        .cache_control
        .as_deref()
        .unwrap_or_else(|| panic!("GET {} has no Cache-Control", got.path));
    assert!(
        cache_control
            .split(',')
            .any(|d| d.trim().eq_ignore_ascii_case("no-cache")),
        "GET {}: Cache-Control {cache_control:?} must say no-cache",
        got.path
    );
}

async fn assert_not_modified(app: &TestApp, path: &str, etag: &str) {
    for condition in [etag.to_string(), format!("\"not-this-one\", {etag}")] {
        let got = fetch_with(app, path, Some(&condition)).await;
        assert_eq!(
            got.status, 304,
            "GET {path} with If-None-Match: {condition} must be 304"
        );
        assert!(got.text.is_empty(), "a 304 has no body: {:?}", got.text);
        assert_eq!(
            got.etag.as_deref(),
            Some(etag),
            "a 304 repeats the ETag (GET {path})"
        );
    }
    let other = fetch_with(app, path, Some("\"not-this-one\"")).await;
    assert_eq!(
        other.status, 200,
        "GET {path} with a non-matching If-None-Match"
    );
    assert!(!other.text.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hit_miss_headers_and_etag() {
    let app = spawn_cached().await;
    let owner = Owner::create(&app, 2, 2).await;
    let mut reads = owner.own_reads();
    reads.push(owner.search_path());
    reads.push("/api/v1/users?page=1&limit=5".to_string());

    let mut etags = Vec::new();
    for path in &reads {
        let miss = fetch(&app, path).await;
        assert_eq!(miss.status, 200, "GET {path}");
        assert_eq!(miss.x_cache, "MISS", "the first GET {path} is a MISS");
        assert_cache_headers(&miss);
        let hit = fetch(&app, path).await;
        assert_eq!(hit.x_cache, "HIT", "the second GET {path} is a HIT");
        assert_cache_headers(&hit);
        assert_eq!(hit.etag, miss.etag, "GET {path}: same content, same ETag");
        assert_eq!(hit.body, miss.body, "GET {path}: HIT answers what MISS did");
        let etag = hit.etag.clone().expect("etag");
        assert_not_modified(&app, path, &etag).await;
        etags.push((path.clone(), etag));
    }

    // The ETag follows the content: after a write the old one no longer matches.
    owner
        .patch_user(&app, json!({"bio": "a different bio"}))
        .await;
    for (path, old_etag) in &etags {
        if !(path == &owner.profile_path() || path == &owner.user_path()) {
            continue;
        }
        let got = fetch_with(&app, path, Some(old_etag)).await;
        assert_eq!(got.status, 200, "GET {path} with the pre-write ETag");
        assert!(
            got.body["data"].to_string().contains("a different bio"),
            "GET {path} after the write: {}",
            got.text
        );
        assert_ne!(
            got.etag.as_deref(),
            Some(old_etag.as_str()),
            "GET {path}: new content, new ETag"
        );
        assert_cache_headers(&got);
    }

    // CACHE_ENABLED=false: every read is BYPASS, with the same headers.
    let disabled = crate::support::spawn_app_on(&app.database_url, &unique_name("off"), |s| {
        s.cache_enabled = false;
    })
    .await;
    for path in &reads {
        for _ in 0..3 {
            let got = fetch(&disabled, path).await;
            assert_eq!(got.status, 200);
            assert_eq!(got.x_cache, "BYPASS", "GET {path} with CACHE_ENABLED=false");
            assert_cache_headers(&got);
        }
        let etag = fetch(&disabled, path).await.etag.expect("etag");
        assert_not_modified(&disabled, path, &etag).await;
    }
    let mut con = redis_for(&disabled.settings).await;
    let keys = scan_keys(&mut con, &disabled.settings.cache_prefix).await;
    let entries: Vec<&String> = keys
        .iter()
        .filter(|k| !is_counter(&disabled.settings.cache_prefix, k))
        .collect();
    assert!(
        entries.is_empty(),
        "CACHE_ENABLED=false must not write cache entries: {entries:?}"
    );
}

// ---------------------------------------------------------------------------
// 9. single-flight
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_7_one_load_per_key() {
    let app = spawn_cached().await;
    let owner = Owner::create(&app, 3, 2).await;
    let path = owner.profile_path();
    warm(&app, &path).await;

    // Invalidate the hot profile.
    owner.patch_user(&app, json!({"bio": "stampede"})).await;
    let loads = [("namespace", "profile")];
    let before = app.metric_sum("linkhub_cache_loads_total", &loads).await;

    let answers = join_all((0..100).map(|_| fetch(&app, &path))).await;
    for got in &answers {
        assert_eq!(got.status, 200, "GET {path}: {}", got.text);
        assert_eq!(got.body["data"]["user"]["bio"], "stampede");
        assert!(
            got.x_cache == "MISS" || got.x_cache == "HIT",
            "X-Cache {:?}",
            got.x_cache
        );
    }
    assert!(
        answers.iter().all(|a| a.body == answers[0].body),
        "every concurrent reader got the same profile"
    );
    let after = app.metric_sum("linkhub_cache_loads_total", &loads).await;
    assert_eq!(
        after - before,
        1.0,
        "100 concurrent misses on one key must make exactly one PostgreSQL load \
         (linkhub_cache_loads_total{{namespace=\"profile\"}} went {before} -> {after})"
    );
    let again = fetch(&app, &path).await;
    assert_eq!(again.x_cache, "HIT");
}

// ---------------------------------------------------------------------------
// 10. TTLs and no secrets
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_6_ttl_on_every_entry_and_no_secrets() {
    const TTL: u64 = 120;
    let app = spawn_cached_with(|s| s.cache_ttl = Duration::from_secs(TTL)).await;
    let prefix = app.key_prefix().await;
    let admin = app.register_admin().await;
    let mut owner = Owner::create(&app, 2, 2).await;
    let mut secrets: Vec<String> = vec![
        owner.user.password.clone(),
        owner.user.token.clone(),
        owner.user.email.to_lowercase(),
        admin.token.clone(),
        admin.email.to_lowercase(),
    ];

    // A workload touching every read and write kind, logins (good and bad),
    // private reads, admin reads and a password and email change.
    for path in owner.all_reads() {
        fetch(&app, &path).await;
        let response = app.get_auth(&path, owner.token()).await;
        assert_eq!(response.status().as_u16(), 200, "GET {path} with a token");
        let response = app.get_auth(&path, &admin.token).await;
        assert_eq!(response.status().as_u16(), 200, "GET {path} as admin");
        fetch(&app, &path).await;
    }
    let me = app.me(owner.token()).await;
    assert_eq!(me.status().as_u16(), 200);
    let wrong = app.login(&owner.username, "not the password at all").await;
    assert_eq!(wrong.status().as_u16(), 401);
    let second_token = {
        let response = app.login(&owner.user.email, &owner.user.password).await;
        let body = expect_json(response, 200).await;
        body["data"]["token"].as_str().expect("token").to_string()
    };
    secrets.push(second_token.clone());
    owner.add_link(&app, "one more").await;
    owner.add_social(&app, "more").await;
    let new_password = "a brand new secret password";
    let new_email = format!("{}@changed.example.org", unique_name("mail"));
    owner
        .patch_user(
            &app,
            json!({"bio": "changed", "email": new_email, "current_password": owner.user.password}),
        )
        .await;
    secrets.push(new_email.to_lowercase());
    let response = app
        .patch_json(
            &owner.user_path(),
            Some(&second_token),
            &json!({"password": new_password, "current_password": owner.user.password}),
        )
        .await;
    expect_json(response, 200).await;
    secrets.push(new_password.to_string());
    let relogin = app.login(&owner.username, new_password).await;
    let body = expect_json(relogin, 200).await;
    let third_token = body["data"]["token"].as_str().expect("token").to_string();
    secrets.push(third_token.clone());
    for path in owner.all_reads() {
        fetch(&app, &path).await;
        let response = app.get_auth(&path, &third_token).await;
        assert_eq!(response.status().as_u16(), 200, "GET {path} with a token");
    }
    let me = app.me(&third_token).await;
    assert_eq!(me.status().as_u16(), 200);

    let mut con = redis_for(&app.settings).await;
    let keys = scan_keys(&mut con, &prefix).await;
    assert!(
        keys.iter().any(|k| !is_counter(&prefix, k)),
        "the workload cached nothing under {prefix}:"
    );
    for key in &keys {
        let pttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut con)
            .await
            .expect("PTTL");
        if !is_counter(&prefix, key) {
            assert!(
                pttl > 0 && pttl <= (TTL * 1000) as i64,
                "key {key} has PTTL {pttl} ms; every entry needs a TTL of at most CACHE_TTL_SECS={TTL}"
            );
        }
        for value in key_values(&mut con, key).await {
            let lower = String::from_utf8_lossy(&value).to_lowercase();
            assert!(
                !lower.contains("$argon2"),
                "key {key} holds a password hash: {lower}"
            );
            for secret in &secrets {
                assert!(
                    !lower.contains(&secret.to_lowercase()),
                    "key {key} holds a secret ({secret:?}): {lower}"
                );
            }
        }
        let key_lower = key.to_lowercase();
        for secret in &secrets {
            assert!(
                !key_lower.contains(&secret.to_lowercase()),
                "a key name holds a secret: {key}"
            );
        }
    }
}

/// Every value stored under `key`, whatever its type (members, fields and
/// values of hashes, ...).
async fn key_values(con: &mut crate::support::TestRedis, key: &str) -> Vec<Vec<u8>> {
    let kind: String = redis::cmd("TYPE")
        .arg(key)
        .query_async(con)
        .await
        .expect("TYPE");
    let command = match kind.as_str() {
        "string" => {
            let value: Option<Vec<u8>> = redis::cmd("GET")
                .arg(key)
                .query_async(con)
                .await
                .expect("GET");
            return value.into_iter().collect();
        }
        "none" => return Vec::new(),
        "hash" => redis::cmd("HGETALL").arg(key).clone(),
        "list" => redis::cmd("LRANGE").arg(key).arg(0).arg(-1).clone(),
        "set" => redis::cmd("SMEMBERS").arg(key).clone(),
        "zset" => redis::cmd("ZRANGE").arg(key).arg(0).arg(-1).clone(),
        "stream" => redis::cmd("XRANGE").arg(key).arg("-").arg("+").clone(),
        other => panic!("key {key} has unexpected type {other}"),
    };
    let value: redis::Value = command.query_async(con).await.expect("read key");
    let mut out = Vec::new();
    flatten(&value, &mut out);
    out
}

fn flatten(value: &redis::Value, out: &mut Vec<Vec<u8>>) {
    match value {
        redis::Value::BulkString(bytes) => out.push(bytes.clone()),
        redis::Value::SimpleString(text) => out.push(text.as_bytes().to_vec()),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            items.iter().for_each(|item| flatten(item, out))
        }
        redis::Value::Map(pairs) => pairs.iter().for_each(|(k, v)| {
            flatten(k, out);
            flatten(v, out);
        }),
        other => out.push(format!("{other:?}").into_bytes()),
    }
}

// ---------------------------------------------------------------------------
// 11. metrics
// ---------------------------------------------------------------------------

async fn cache_metric(app: &TestApp, namespace: &str, result: &str) -> f64 {
    app.metric_sum(
        "linkhub_cache_requests_total",
        &[("namespace", namespace), ("result", result)],
    )
    .await
}

async fn namespace_metric(app: &TestApp, name: &str, namespace: &str) -> f64 {
    app.metric_sum(name, &[("namespace", namespace)]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_cache_results_by_namespace() {
    let app = spawn_cached().await;
    let owner = Owner::create(&app, 1, 1).await;
    let link = paths::link(owner.links[0]);
    let social = paths::social(owner.socials[0]);

    // (path, namespace label) per API.md/interface: users list, user, profile, link, social.
    let reads: Vec<(String, &str)> = vec![
        ("/api/v1/users?limit=3".to_string(), "users"),
        (owner.user_path(), "user"),
        (owner.profile_path(), "profile"),
        (link.clone(), "link"),
        (social.clone(), "social"),
    ];
    for (path, namespace) in &reads {
        let miss0 = cache_metric(&app, namespace, "miss").await;
        let hit0 = cache_metric(&app, namespace, "hit").await;
        let loads0 = namespace_metric(&app, "linkhub_cache_loads_total", namespace).await;
        assert_eq!(fetch(&app, path).await.x_cache, "MISS", "GET {path}");
        assert_eq!(fetch(&app, path).await.x_cache, "HIT", "GET {path}");
        assert_eq!(fetch(&app, path).await.x_cache, "HIT", "GET {path}");
        let miss1 = cache_metric(&app, namespace, "miss").await;
        let hit1 = cache_metric(&app, namespace, "hit").await;
        let loads1 = namespace_metric(&app, "linkhub_cache_loads_total", namespace).await;
        assert_eq!(
            miss1 - miss0,
            1.0,
            "misses{{namespace={namespace}}} after GET {path}"
        );
        assert_eq!(
            hit1 - hit0,
            2.0,
            "hits{{namespace={namespace}}} after GET {path}"
        );
        assert_eq!(
            loads1 - loads0,
            1.0,
            "loads{{namespace={namespace}}} after GET {path}"
        );
    }

    // A write bumps the namespaces it touches, and the stale entries get
    // removed through their namespaces' indexes in the background.
    let bumps = |ns: &'static str| namespace_metric(&app, "linkhub_cache_version_bumps_total", ns);
    let deleted =
        |ns: &'static str| namespace_metric(&app, "linkhub_cache_index_deleted_keys_total", ns);
    let (users0, user0, profile0, link0) = (
        bumps("users").await,
        bumps("user").await,
        bumps("profile").await,
        bumps("link").await,
    );
    let (deleted_profile0, deleted_user0) = (deleted("profile").await, deleted("user").await);
    owner.patch_user(&app, json!({"bio": "metrics"})).await;
    assert!(
        bumps("users").await > users0,
        "a user PATCH bumps the users list"
    );
    assert!(bumps("user").await > user0, "a user PATCH bumps the user");
    assert!(
        bumps("profile").await > profile0,
        "a user PATCH bumps the profile"
    );
    assert_eq!(
        bumps("link").await,
        link0,
        "a user PATCH leaves links alone"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let profile_done = deleted("profile").await > deleted_profile0;
        let user_done = deleted("user").await > deleted_user0;
        if profile_done && user_done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stale profile and user entries were not purged within 5 s \
             (linkhub_cache_index_deleted_keys_total: profile {profile_done}, user {user_done})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let link0 = bumps("link").await;
    let response = app
        .patch_json(&link, Some(owner.token()), &json!({"title": "metric link"}))
        .await;
    expect_json(response, 200).await;
    assert!(bumps("link").await > link0, "a link PATCH bumps the link");
    let social0 = bumps("social").await;
    let response = app
        .patch_json(
            &social,
            Some(owner.token()),
            &json!({"url": "https://m.example.com/"}),
        )
        .await;
    expect_json(response, 200).await;
    assert!(
        bumps("social").await > social0,
        "a social PATCH bumps the social"
    );

    // Bypasses: an instance with the cache disabled counts them by namespace.
    let disabled = crate::support::spawn_app_on(&app.database_url, &unique_name("off"), |s| {
        s.cache_enabled = false;
    })
    .await;
    for (path, namespace) in &reads {
        let before = cache_metric(&disabled, namespace, "bypass").await;
        assert_eq!(fetch(&disabled, path).await.x_cache, "BYPASS");
        let after = cache_metric(&disabled, namespace, "bypass").await;
        assert_eq!(
            after - before,
            1.0,
            "bypasses{{namespace={namespace}}} after GET {path}"
        );
    }
}
