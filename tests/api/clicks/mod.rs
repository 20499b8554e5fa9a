//! Link clicks: `GET /l/{link_id}` redirects (302, `Location`, `no-store`)
//! through the cached read of the link, counts each answered redirect once
//! — across Redis unreachable or restarted — never moves a cached profile
//! off `HIT`, and `GET /api/v1/users/{id}/clicks` answers the owner's counts
//! and visitors. `journal.rs`: the click journal's crash paths (a killed
//! instance's segment adopted by a sibling or by its restart, a torn tail,
//! a dead batch still open in PostgreSQL), PostgreSQL cut, a batch applied
//! twice, the journal's bound. Each test's database has its own journal
//! directory (`journal_dir_of`), shared by the instances on it.

mod journal;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::future::join_all;
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

/// The clicks stored for a link once they stop changing short of `expected`
/// (the applier runs every 250 ms; adoption scans every 2 s): `expected`
/// as soon as it is reached, else what is stored after 10 s. A count above
/// `expected` is returned at once.
async fn settled_clicks(database_url: &str, link_id: &Value, expected: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stored = stored_clicks(database_url, link_id).await;
        if stored >= expected || Instant::now() >= deadline {
            return stored;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The click journal segments in the directory of `database_url`.
fn segments(database_url: &str) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(journal_dir_of(database_url)) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "clicks"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Clicks `link_id` on `app` from `width` clients until `run` has passed or
/// the instance stops answering; answers the `302`s and the requests cut.
async fn click_until_cut(
    app: &TestApp,
    link_id: &Value,
    width: usize,
) -> (
    Arc<AtomicU64>,
    Arc<AtomicU64>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let answered = Arc::new(AtomicU64::new(0));
    let cut = Arc::new(AtomicU64::new(0));
    let workers = (0..width)
        .map(|_| {
            let (app, id) = (app.clone(), link_id.clone());
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
    (answered, cut, workers)
}

/// The binary's settings for click load: warnings only, since nobody
/// reads its piped output until it exits, and a full pipe (64 KiB of access
/// log lines, some 300 requests) would stop it.
fn quiet_vars(database_url: &str) -> Vec<(&'static str, String)> {
    let mut vars = base_vars(database_url);
    vars.push(("RUST_LOG", "warn".to_owned()));
    vars
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
    assert_eq!(settled_clicks(&app.database_url, &link["id"], 1).await, 1);
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
    assert_eq!(settled_clicks(&app.database_url, &link["id"], 3).await, 3);
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
    // The deleted link's counts went with it (or were dropped when applied
    // after it); nothing else was counted.
    tokio::time::sleep(Duration::from_millis(600)).await;
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
        settled_clicks(&app.database_url, &link["id"], CLICKS as i64).await,
        CLICKS as i64
    );
    // One transaction per flush (250 ms), whatever the clicks in it: far
    // fewer than 10 per 1,000 clicks even on a slow machine.
    let commits = app
        .metric_sum("linkhub_click_batches_total", &[("outcome", "committed")])
        .await;
    println!("{CLICKS} clicks, 64 in flight: {commits} commits");
    assert!((1.0..100.0).contains(&commits), "{commits} commits");
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
    assert_eq!(
        settled_clicks(&app.database_url, &link["id"], 200).await,
        200
    );
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
    assert_eq!(
        settled_clicks(&app.database_url, &link["id"], 600).await,
        600
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
        let many_row = todays_row(&app, &user, &many["id"])
            .await
            .unwrap_or_default();
        let one_row = todays_row(&app, &user, &one["id"])
            .await
            .unwrap_or_default();
        if one_row["visitors"] == 1
            && many_row["visitors"].as_u64() > Some(0)
            && many_row["clicks"] == VISITORS
            && one_row["clicks"] == 50
        {
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
    assert_eq!(settled_clicks(&app.database_url, &link["id"], 1).await, 1);
    assert_eq!(
        settled_clicks(&app.database_url, &other_link["id"], 1).await,
        1
    );
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
