//! Link clicks: `GET /l/{link_id}` redirects (302, `Location`, `no-store`)
//! through the cached read of the link, counts each answered redirect once
//! — across a killed instance, Redis unreachable or restarted, a batch
//! applied twice — never moves a cached profile off `HIT`, and
//! `GET /api/v1/users/{id}/clicks` answers the owner's counts and visitors.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::future::join_all;
use linkhub::db::clicks::{DayCount, apply_batch};
use serde_json::{Value, json};

use crate::support::*;

/// `GET /l/{id}` with a user agent (a visitor is its address and agent).
async fn click(app: &TestApp, link_id: &Value, user_agent: &str) -> reqwest::Response {
    app.client
        .get(app.url(&paths::click(link_id)))
        .header("user-agent", user_agent)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET /l/{link_id} failed: {e}"))
}

/// Clicks stored for a link, straight from PostgreSQL.
async fn stored_clicks(database_url: &str, link_id: &Value) -> i64 {
    query_strings(
        database_url,
        &format!("SELECT COALESCE(sum(clicks), 0)::text AS value FROM link_clicks WHERE link_id = {link_id}"),
    )
    .await[0]
        .parse()
        .expect("a count")
}

/// `n` clicks at once, `width` in flight; answers how many were `302`.
async fn clicks_at_once(app: &TestApp, link_id: &Value, n: usize, width: usize) -> u64 {
    let answered = Arc::new(AtomicU64::new(0));
    let next = Arc::new(AtomicU64::new(0));
    let workers = (0..width).map(|_| {
        let (app, link_id) = (app.clone(), link_id.clone());
        let (answered, next) = (Arc::clone(&answered), Arc::clone(&next));
        async move {
            while next.fetch_add(1, Ordering::SeqCst) < n as u64 {
                let response = click(&app, &link_id, "agent").await;
                assert_eq!(response.status(), 302, "{:?}", response.text().await);
                answered.fetch_add(1, Ordering::SeqCst);
            }
        }
    });
    join_all(workers).await;
    answered.load(Ordering::SeqCst)
}

/// The analytics of `user` for today, its one link's row.
async fn todays_row(app: &TestApp, user: &RegisteredUser, link_id: &Value) -> Option<Value> {
    let body = expect_json(
        app.get_auth(&paths::clicks(user.id), &user.token).await,
        200,
    )
    .await;
    let today = Utc::now().date_naive().to_string();
    body["data"]
        .as_array()
        .expect("data is a list")
        .iter()
        .find(|row| row["link_id"] == *link_id && row["day"] == today.as_str())
        .cloned()
}

#[tokio::test]
async fn a_redirect_is_a_302_to_the_url_with_no_store_and_counts_one_click() {
    let app = spawn_app().await;
    let (user, link) = app
        .user_with_link("Site", "https://example.com/a?b=c")
        .await;
    let response = click(&app, &link["id"], "agent").await;
    assert_eq!(response.status(), 302);
    assert_eq!(
        header(&response, "location").as_deref(),
        Some("https://example.com/a?b=c")
    );
    assert_eq!(
        header(&response, "cache-control").as_deref(),
        Some("no-store")
    );
    assert_eq!(stored_clicks(&app.database_url, &link["id"]).await, 1);
    let row = todays_row(&app, &user, &link["id"])
        .await
        .expect("today's row");
    assert_eq!(row["clicks"], 1);
}

#[tokio::test]
async fn an_edited_link_redirects_to_its_new_url_at_once() {
    let app = spawn_cached().await;
    let (user, link) = app.user_with_link("Site", "https://old.example.com/").await;
    for _ in 0..2 {
        let response = click(&app, &link["id"], "agent").await;
        assert_eq!(
            header(&response, "location").as_deref(),
            Some("https://old.example.com/")
        );
    }
    let patched = app
        .update_link(
            &link["id"],
            Some(&user.token),
            &json!({"url": "https://new.example.com/x"}),
        )
        .await;
    expect_written(patched, 200).await;
    let response = click(&app, &link["id"], "agent").await;
    assert_eq!(response.status(), 302);
    assert_eq!(
        header(&response, "location").as_deref(),
        Some("https://new.example.com/x")
    );
    assert_eq!(stored_clicks(&app.database_url, &link["id"]).await, 3);
}

#[tokio::test]
async fn unknown_and_deleted_links_get_the_html_404_page_and_count_nothing() {
    let app = spawn_cached().await;
    let (user, link) = app.user_with_link("Site", "https://example.com/").await;
    assert_eq!(click(&app, &link["id"], "agent").await.status(), 302);
    let deleted = app.delete_link(&link["id"], Some(&user.token)).await;
    assert_eq!(deleted.status(), 204);
    for path in [
        paths::click(&link["id"]),
        paths::click(9_000_000_000_i64),
        "/l/0".to_owned(),
        "/l/-3".to_owned(),
        "/l/abc".to_owned(),
        "/l/99999999999999999999999".to_owned(),
    ] {
        let response = app.get(&path).await;
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(
            header(&response, "content-type").as_deref(),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        assert!(header(&response, "location").is_none());
        let page = response.text().await.expect("a body");
        assert!(page.contains("No such link"), "{path}: {page}");
    }
    // The deleted link's counts went with it; nothing else was counted.
    let total = query_strings(
        &app.database_url,
        "SELECT count(*)::text AS value FROM link_clicks",
    )
    .await;
    assert_eq!(total, vec!["0".to_owned()]);
}

#[tokio::test]
async fn a_url_that_fails_todays_rules_is_never_redirected_to() {
    let app = spawn_app().await;
    let (user, _) = app.user_with_link("Fine", "https://example.com/").await;
    let bad_urls = [
        "javascript:alert(1)",
        "/relative/path",
        "https://exa mple.com/",
        "data:text/html,x",
    ];
    for url in bad_urls {
        let ids = query_strings(
            &app.database_url,
            &format!(
                "INSERT INTO links (user_id, title, url, position) VALUES ({}, 'legacy', '{url}', 50) \
                 RETURNING id::text AS value",
                user.id
            ),
        )
        .await;
        let id = Value::from(ids[0].parse::<i64>().expect("an id"));
        let response = click(&app, &id, "agent").await;
        assert_eq!(response.status(), 404, "{url}");
        assert!(header(&response, "location").is_none(), "{url}");
        assert_eq!(stored_clicks(&app.database_url, &id).await, 0, "{url}");
    }
    // The profile page shows them as text, with no link to the redirect.
    let page = app
        .profile_page(&user.username)
        .await
        .text()
        .await
        .expect("a page");
    assert_eq!(
        page.matches("<span>legacy</span>").count(),
        bad_urls.len(),
        "{page}"
    );
}

#[tokio::test]
async fn a_cached_profile_stays_hit_through_10_000_clicks() {
    const CLICKS: u64 = 10_000;
    let app = spawn_cached().await;
    let (user, link) = app.user_with_link("Site", "https://example.com/").await;
    let profile = paths::profile(&user.username);
    warm(&app, &profile).await;
    let page_cache = async || {
        let page = app.profile_page(&user.username).await;
        header(&page, "x-cache").unwrap_or_default()
    };
    page_cache().await;
    assert_eq!(page_cache().await, "HIT");
    let bumps_before = app
        .metric_sum("linkhub_cache_version_bumps_total", &[])
        .await;
    assert_eq!(
        clicks_at_once(&app, &link["id"], CLICKS as usize, 64).await,
        CLICKS
    );
    assert_eq!(fetch(&app, &profile).await.x_cache, "HIT");
    assert_eq!(page_cache().await, "HIT");
    assert_eq!(fetch(&app, &paths::link(&link["id"])).await.x_cache, "HIT");
    let bumps_after = app
        .metric_sum("linkhub_cache_version_bumps_total", &[])
        .await;
    assert_eq!(bumps_before, bumps_after, "a click bumped a namespace");
    assert_eq!(
        stored_clicks(&app.database_url, &link["id"]).await,
        CLICKS as i64
    );
    // Fewer commits than clicks: the clicks in flight share commits (how
    // many share one depends on the machine's pace: docs/BENCHMARKS.md).
    let commits = app
        .metric_sum("linkhub_click_batches_total", &[("outcome", "committed")])
        .await;
    println!("{CLICKS} clicks, 64 in flight: {commits} commits");
    assert!((1.0..CLICKS as f64).contains(&commits), "{commits} commits");
}

#[tokio::test]
async fn clicks_count_exactly_while_redis_is_unreachable() {
    let redis = RedisServer::start().await;
    let proxy = TcpProxy::start(redis.addr()).await;
    let app = spawn_app_with(|s| {
        s.redis_url = format!("redis://{}", proxy.addr());
        s.redis_timeout = Duration::from_millis(100);
    })
    .await;
    let (_, link) = app.user_with_link("Site", "https://example.com/").await;
    proxy.cut();
    let answered = clicks_at_once(&app, &link["id"], 200, 8).await;
    assert_eq!(answered, 200);
    assert_eq!(stored_clicks(&app.database_url, &link["id"]).await, 200);
    proxy.restore();
}

#[tokio::test]
async fn clicks_count_exactly_across_redis_restarts() {
    let mut redis = RedisServer::start().await;
    let app = spawn_app_with(|s| {
        s.redis_url = redis.url();
        s.redis_timeout = Duration::from_millis(200);
    })
    .await;
    let (_, link) = app.user_with_link("Site", "https://example.com/").await;
    let clicking = {
        let (app, id) = (app.clone(), link["id"].clone());
        tokio::spawn(async move { clicks_at_once(&app, &id, 600, 8).await })
    };
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        redis.restart().await;
    }
    let answered = clicking.await.expect("the clicks ran");
    assert_eq!(answered, 600);
    assert_eq!(stored_clicks(&app.database_url, &link["id"]).await, 600);
}

#[tokio::test]
async fn a_batch_applied_twice_counts_once() {
    let app = spawn_app().await;
    let (_, link) = app.user_with_link("Site", "https://example.com/").await;
    let link_id = link["id"].as_i64().expect("an id");
    let mut conn = AsyncPgConnection::establish(&app.database_url)
        .await
        .expect("connect");
    let day = Utc::now().date_naive();
    let batch = [DayCount {
        link_id,
        day,
        clicks: 7,
    }];
    assert!(
        apply_batch(&mut conn, "writer-a", 1, &batch)
            .await
            .expect("applied")
    );
    assert!(
        !apply_batch(&mut conn, "writer-a", 1, &batch)
            .await
            .expect("a retry")
    );
    assert!(
        !apply_batch(&mut conn, "writer-a", 0, &batch)
            .await
            .expect("an older one")
    );
    assert_eq!(stored_clicks(&app.database_url, &link["id"]).await, 7);
    // The next batch of that writer, and another writer's first, count.
    assert!(
        apply_batch(&mut conn, "writer-a", 2, &batch)
            .await
            .expect("the next")
    );
    assert!(
        apply_batch(&mut conn, "writer-b", 1, &batch)
            .await
            .expect("another writer")
    );
    assert_eq!(stored_clicks(&app.database_url, &link["id"]).await, 21);
    // Counts of a link deleted meanwhile are dropped, and the batch is recorded.
    let gone = [DayCount {
        link_id: 9_000_000_000,
        day,
        clicks: 1,
    }];
    assert!(
        apply_batch(&mut conn, "writer-a", 3, &gone)
            .await
            .expect("applied")
    );
    assert!(
        !apply_batch(&mut conn, "writer-a", 3, &gone)
            .await
            .expect("a retry")
    );
}

#[tokio::test]
async fn an_instance_killed_mid_batch_counts_nothing_it_did_not_answer() {
    let truth = spawn_app().await;
    let (_, link) = truth.user_with_link("Site", "https://example.com/").await;
    let served = ServedBinary::start(&base_vars(&truth.database_url)).await;
    // Its batch waits on the lock, mid-transaction, when the process dies.
    let lock = TableLock::take(&truth.database_url, "link_clicks").await;
    let pending: Vec<_> = (0..10)
        .map(|_| {
            let (app, id) = (served.app.clone(), link["id"].clone());
            tokio::spawn(async move {
                app.client
                    .get(app.url(&paths::click(&id)))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    until_sessions_wait_for_a_lock(&truth.database_url, 1).await;
    served.signal("KILL").await;
    let answered = join_all(pending)
        .await
        .into_iter()
        .filter(|r| matches!(r, Ok(Ok(302))))
        .count();
    assert_eq!(answered, 0, "nothing was answered before the kill");
    lock.release().await;
    // A second instance finishes the run.
    assert_eq!(clicks_at_once(&truth, &link["id"], 40, 4).await, 40);
    // The killed one's statement ran once the lock went, and was rolled
    // back for want of a COMMIT: wait until its session is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sessions_waiting_for_a_lock(&truth.database_url).await > 0 {
        assert!(Instant::now() < deadline, "the killed session still waits");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stored_clicks(&truth.database_url, &link["id"]).await, 40);
}

#[tokio::test]
async fn an_instance_killed_under_load_loses_no_answered_click() {
    let truth = spawn_app().await;
    let (_, link) = truth.user_with_link("Site", "https://example.com/").await;
    let served = ServedBinary::start(&base_vars(&truth.database_url)).await;
    let answered = Arc::new(AtomicU64::new(0));
    let cut = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (app, id) = (served.app.clone(), link["id"].clone());
            let (answered, cut) = (Arc::clone(&answered), Arc::clone(&cut));
            tokio::spawn(async move {
                loop {
                    match app.client.get(app.url(&paths::click(&id))).send().await {
                        Ok(r) if r.status() == 302 => answered.fetch_add(1, Ordering::SeqCst),
                        _ => {
                            cut.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                    };
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    served.signal("KILL").await;
    join_all(workers).await;
    let answered_by_killed = answered.load(Ordering::SeqCst);
    assert!(
        answered_by_killed > 0,
        "the instance answered before the kill"
    );
    assert_eq!(clicks_at_once(&truth, &link["id"], 100, 4).await, 100);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let counted = stored_clicks(&truth.database_url, &link["id"]).await as u64;
    // Every answered click counted; a request cut by the kill may have been
    // committed in the instant before it (its client saw no answer).
    let answered = answered_by_killed + 100;
    let cut = cut.load(Ordering::SeqCst);
    assert!(
        counted >= answered && counted <= answered + cut,
        "counted {counted}, answered {answered}, cut {cut}"
    );
}

#[tokio::test]
async fn distinct_visitors_are_counted_within_two_percent() {
    let app = spawn_app_with(|s| s.clicks_visitors_flush = Duration::from_millis(200)).await;
    let user = app.register_user().await;
    let many = app
        .add_link(
            user.id,
            &user.token,
            &json!({"title": "Many", "url": "https://example.com/m"}),
        )
        .await;
    let one = app
        .add_link(
            user.id,
            &user.token,
            &json!({"title": "One", "url": "https://example.com/o"}),
        )
        .await;
    const VISITORS: u64 = 5_000;
    let next = Arc::new(AtomicU64::new(0));
    let workers = (0..32).map(|_| {
        let (app, id, next) = (app.clone(), many["id"].clone(), Arc::clone(&next));
        async move {
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= VISITORS {
                    return;
                }
                let response = click(&app, &id, &format!("browser/{n}")).await;
                assert_eq!(response.status(), 302);
            }
        }
    });
    join_all(workers).await;
    for _ in 0..50 {
        assert_eq!(
            click(&app, &one["id"], "the same browser").await.status(),
            302
        );
    }
    // Visitors are at most a merge interval behind.
    let deadline = Instant::now() + Duration::from_secs(5);
    let (many_row, one_row) = loop {
        let many_row = todays_row(&app, &user, &many["id"]).await.expect("a row");
        let one_row = todays_row(&app, &user, &one["id"]).await.expect("a row");
        if one_row["visitors"] == 1 && many_row["visitors"].as_u64() > Some(0) {
            break (many_row, one_row);
        }
        assert!(
            Instant::now() < deadline,
            "visitors not merged: {many_row} {one_row}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(many_row["clicks"], VISITORS);
    assert_eq!(one_row["clicks"], 50);
    let estimate = many_row["visitors"].as_u64().expect("a number") as f64;
    let error = (estimate - VISITORS as f64).abs() / VISITORS as f64;
    assert!(
        error <= 0.02,
        "{estimate} visitors estimated for {VISITORS}"
    );
    // Nothing of an address or user agent is stored.
    let stored = query_strings(
        &app.database_url,
        "SELECT count(*)::text AS value FROM link_visitors WHERE position('browser/'::bytea IN registers) > 0",
    )
    .await;
    assert_eq!(stored, vec!["0".to_owned()]);
}

#[tokio::test]
async fn analytics_are_for_the_owner_or_an_admin_with_valid_days() {
    let app = spawn_app().await;
    let (owner, link) = app.user_with_link("Site", "https://example.com/").await;
    let (other, other_link) = app.user_with_link("Other", "https://example.org/").await;
    let admin = app.register_admin().await;
    assert_eq!(click(&app, &link["id"], "a").await.status(), 302);
    assert_eq!(click(&app, &other_link["id"], "a").await.status(), 302);
    let path = paths::clicks(owner.id);

    expect_error(app.get(&path).await, 401, "unauthorized").await;
    expect_error(
        app.get_auth(&path, "not-a-token").await,
        401,
        "unauthorized",
    )
    .await;
    expect_error(app.get_auth(&path, &other.token).await, 403, "forbidden").await;
    expect_error(
        app.get_auth(&paths::clicks(9_000_000_000_i64), &admin.token)
            .await,
        404,
        "not_found",
    )
    .await;

    for token in [&owner.token, &admin.token] {
        let response = app.get_auth(&path, token).await;
        assert_eq!(
            header(&response, "cache-control").as_deref(),
            Some("no-store")
        );
        let body = expect_json(response, 200).await;
        let rows = body["data"].as_array().expect("a list");
        assert_eq!(rows.len(), 1, "{body}");
        assert_eq!(rows[0]["link_id"], link["id"]);
        assert_eq!(rows[0]["clicks"], 1);
        assert_eq!(rows[0]["day"], Utc::now().date_naive().to_string());
    }

    let today = Utc::now().date_naive();
    let days_ago = |n: u64| (today - chrono::Days::new(n)).to_string();
    let year = format!("{path}?from={}&to={today}", days_ago(365));
    assert_eq!(app.get_auth(&year, &owner.token).await.status(), 200);
    let yesterday = format!("{path}?from={}&to={}", days_ago(1), days_ago(1));
    let body = expect_json(app.get_auth(&yesterday, &owner.token).await, 200).await;
    assert_eq!(body["data"], json!([]));
    for query in [
        format!("?from={}&to={today}", days_ago(366)),
        format!("?from={today}&to={}", days_ago(1)),
        "?from=2026-13-01".to_owned(),
        "?to=yesterday".to_owned(),
        "?from=2026-1-01".to_owned(),
        "?from=%2B2026-01-01".to_owned(),
        format!("?from={}", days_ago(400)),
    ] {
        let response = app.get_auth(&format!("{path}{query}"), &owner.token).await;
        expect_error(response, 400, "bad_request").await;
    }
}
