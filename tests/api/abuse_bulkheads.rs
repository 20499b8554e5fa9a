//! Bulkheads under abuse: the per-address limits of registrations and
//! expensive reads (each `429` with `Retry-After` and the JSON error, an
//! IPv6 client counted by its /64, a mapped IPv4 address as IPv4), the
//! bulkhead that bounds the users list's loads while other reads pass, and
//! a `/readyz` flood that costs one PostgreSQL check and is limited per
//! address; a client that asks again before its window ends gets its
//! refusals late, within a bound.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;

use crate::support::*;

/// `Retry-After` of a `429`, checked to be whole seconds within `window`,
/// and the JSON error shape.
async fn expect_limited(response: reqwest::Response, window: Duration) -> u64 {
    let retry_after: u64 = header(&response, "retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("429 without whole-second Retry-After"));
    assert!(
        (1..=window.as_secs()).contains(&retry_after),
        "Retry-After {retry_after} outside 1..={}",
        window.as_secs()
    );
    expect_error(response, 429, "rate_limited").await;
    retry_after
}

/// An app behind a trusted proxy (the tests' own address), so that
/// `X-Forwarded-For` names each request's client.
async fn behind_proxy(configure: impl FnOnce(&mut linkhub::config::Settings)) -> TestApp {
    spawn_app_with(|s| {
        s.trusted_proxies = vec!["127.0.0.1/32".parse().expect("a network")];
        configure(s);
    })
    .await
}

/// `GET path` as relayed for client `from`.
async fn get_from(app: &TestApp, path: &str, from: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .header("x-forwarded-for", from)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path} failed: {e}"))
}

/// A registration of a new, valid user as relayed for client `from`.
async fn register_from(app: &TestApp, from: &str) -> reqwest::Response {
    let username = unique_name("r");
    register_body_from(
        app,
        from,
        &json!({"username": username, "email": format!("{username}@example.com"), "password": TEST_PASSWORD}),
    )
    .await
}

async fn register_body_from(
    app: &TestApp,
    from: &str,
    body: &serde_json::Value,
) -> reqwest::Response {
    app.client
        .post(app.url(paths::USERS))
        .header("x-forwarded-for", from)
        .json(body)
        .send()
        .await
        .expect("POST users failed")
}

#[tokio::test]
async fn registrations_from_one_64_are_limited_and_refusals_before_hashing_do_not_count() {
    let window = Duration::from_secs(600);
    let app = behind_proxy(|s| {
        s.registrations_per_address = 3;
        s.registration_window = window;
    })
    .await;
    // Bodies refused before any hash give their place back.
    for _ in 0..5 {
        let response = register_body_from(
            &app,
            "2001:db8:7:1::1",
            &json!({"username": "x", "email": "no", "password": "short"}),
        )
        .await;
        assert_eq!(response.status(), 422);
    }
    // Three from one /64, each from another address in it.
    for host in [
        "2001:db8:7:1::1",
        "2001:db8:7:1::2",
        "2001:db8:7:1:ffff:ffff:ffff:fffe",
    ] {
        expect_written(register_from(&app, host).await, 201).await;
    }
    // Rotating inside the /64 does not escape the window.
    let refused = register_from(&app, "2001:db8:7:1:1234:5678:9abc:def0").await;
    expect_limited(refused, window).await;
    // Another /64 and an IPv4 client are other clients.
    expect_written(register_from(&app, "2001:db8:7:2::1").await, 201).await;
    expect_written(register_from(&app, "198.51.100.20").await, 201).await;
    assert_eq!(
        app.metric_sum(
            "linkhub_limited_requests_total",
            &[("limit", "registrations")]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn a_mapped_ipv4_client_and_the_ipv4_client_share_one_window() {
    let window = Duration::from_secs(600);
    let app = behind_proxy(|s| {
        s.registrations_per_address = 2;
        s.registration_window = window;
    })
    .await;
    expect_written(register_from(&app, "::ffff:198.51.100.30").await, 201).await;
    expect_written(register_from(&app, "198.51.100.30").await, 201).await;
    expect_limited(register_from(&app, "::ffff:c633:641e").await, window).await;
    expect_limited(register_from(&app, "198.51.100.30").await, window).await;
}

/// The peer is an IPv4-mapped IPv6 address (a dual-stack listener reports an
/// IPv4 client so); an IPv4 `TRUSTED_PROXIES` entry still matches it, so the
/// forwarded client is the one counted.
#[tokio::test]
async fn a_mapped_peer_matches_an_ipv4_trusted_proxy() {
    let window = Duration::from_secs(600);
    let app = behind_proxy(|s| {
        // An IPv6 listener: the tests' IPv4 connections arrive as ::ffff:127.0.0.1.
        s.bind_addr = "[::]:0".to_owned();
        s.registrations_per_address = 1;
        s.registration_window = window;
    })
    .await;
    expect_written(register_from(&app, "203.0.113.40").await, 201).await;
    expect_limited(register_from(&app, "203.0.113.40").await, window).await;
    // Were the proxy not matched, both would count as the peer's, and this
    // one would be refused too.
    expect_written(register_from(&app, "203.0.113.41").await, 201).await;
}

#[tokio::test]
async fn expensive_reads_are_limited_per_address_and_hits_do_not_count() {
    let window = Duration::from_secs(60);
    let app = behind_proxy(|s| {
        s.expensive_reads_per_address = 3;
        s.expensive_reads_window = window;
    })
    .await;
    wait_cache_ok(&app).await;
    let client = "198.51.100.50";
    // A query the handler refuses (400) loads nothing and does not count.
    for _ in 0..5 {
        let response = get_from(&app, &format!("{}?search=abc&page=0", paths::USERS), client).await;
        assert_eq!(response.status(), 400);
    }
    let search = |term: &str| format!("{}?search={term}", paths::USERS);
    let first = get_from(&app, &search("abc1"), client).await;
    assert_eq!(header(&first, "x-cache").as_deref(), Some("MISS"));
    // The same search again is a HIT: its place goes back.
    let again = get_from(&app, &search("abc1"), client).await;
    assert_eq!(header(&again, "x-cache").as_deref(), Some("HIT"));
    for term in ["abc2", "abc3"] {
        expect_json(get_from(&app, &search(term), client).await, 200).await;
    }
    // Three misses: every expensive read of this address is refused now.
    for path in [
        search("abc4"),
        format!("{}?after=1", paths::USERS),
        format!("{}?page=101", paths::USERS),
        format!("{}?page=11&limit=100", paths::USERS),
    ] {
        expect_limited(get_from(&app, &path, client).await, window).await;
    }
    // Cheap reads from the same address pass, and so does another address.
    expect_json(get_from(&app, paths::USERS, client).await, 200).await;
    expect_json(
        get_from(&app, &format!("{}?page=100", paths::USERS), client).await,
        200,
    )
    .await;
    expect_json(get_from(&app, &search("abc4"), "198.51.100.51").await, 200).await;
}

#[tokio::test]
async fn an_ipv6_client_rotating_in_its_64_shares_one_expensive_reads_window() {
    let window = Duration::from_secs(60);
    let app = behind_proxy(|s| {
        s.expensive_reads_per_address = 2;
        s.expensive_reads_window = window;
    })
    .await;
    let search = |n: u32| format!("{}?search=rot{n}", paths::USERS);
    expect_json(get_from(&app, &search(1), "2001:db8:9:9::1").await, 200).await;
    expect_json(get_from(&app, &search(2), "2001:db8:9:9::2").await, 200).await;
    expect_limited(
        get_from(&app, &search(3), "2001:db8:9:9:a:b:c:d").await,
        window,
    )
    .await;
    expect_json(get_from(&app, &search(3), "2001:db8:9:a::1").await, 200).await;
}

/// Eight distinct searches at once with the users table locked: two (the
/// bulkhead) reach PostgreSQL, the rest wait their bounded time and answer a
/// JSON `503` with `Retry-After`; meanwhile reads that are not list loads
/// use the rest of the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bulkhead_bounds_list_loads_while_other_reads_pass() {
    let app = spawn_app_with(|s| {
        s.db_pool_size = 6;
        s.list_loads_max = 2;
        s.list_load_wait = Duration::from_millis(300);
        s.db_statement_timeout = Duration::from_secs(30);
        // Every read loads: no entry can answer a search.
        s.cache_enabled = false;
    })
    .await;
    let (user, link, social) = app.user_with_link_and_social().await;
    let lock = TableLock::take(&app.database_url, "users").await;
    let searches: Vec<_> = (0..8)
        .map(|i| {
            let (client, url) = (
                app.client.clone(),
                app.url(&format!("{}?search=term{i}", paths::USERS)),
            );
            tokio::spawn(async move { client.get(url).send().await })
        })
        .collect();
    until_sessions_wait_for_a_lock(&app.database_url, 2).await;
    // Past the bulkhead's wait, still only two loads are in PostgreSQL.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(sessions_waiting_for_a_lock(&app.database_url).await, 2);
    // Reads that are not list loads take the rest of the pool, at once.
    let started = Instant::now();
    expect_json(app.link(&link["id"]).await, 200).await;
    expect_json(app.social(&social["id"]).await, 200).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a link read waited {:?} behind the list loads",
        started.elapsed()
    );
    lock.release().await;
    let (mut loaded, mut refused) = (0, 0);
    for search in join_all(searches).await {
        let response = search.expect("task").expect("response");
        match response.status().as_u16() {
            200 => loaded += 1,
            503 => {
                assert_eq!(header(&response, "retry-after").as_deref(), Some("1"));
                expect_error(response, 503, "service_unavailable").await;
                refused += 1;
            }
            other => panic!("a search answered {other}"),
        }
    }
    // A search is two loads, its page then its total, each entering the
    // bulkhead in turn: the two places serve the two searches that got in.
    assert_eq!((loaded, refused), (2, 6), "loaded, refused");
    // Every refused search had at least one load refused.
    let refused_loads = app
        .metric_sum(
            "linkhub_bulkhead_refused_total",
            &[("bulkhead", "list_loads")],
        )
        .await;
    assert!(
        refused_loads >= refused as f64,
        "{refused_loads} loads refused for {refused} searches"
    );
    // The bulkhead is free again.
    expect_json(app.list_users("?search=term0").await, 200).await;
    expect_json(app.profile(&user.username).await, 200).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_readyz_flood_costs_one_database_check() {
    let reuse = Duration::from_secs(3);
    let app = spawn_app_with(|s| s.readiness_reuse = reuse).await;
    let checks = || app.metric_sum("linkhub_readiness_checks_total", &[]);
    let before = checks().await;
    let answers = join_all((0..300).map(|_| app.readyz())).await;
    let flood_checks = checks().await - before;
    for answer in answers {
        let body = expect_json(answer, 200).await;
        assert_eq!(body["database"], "ok", "{body}");
    }
    assert!(
        flood_checks <= 1.0,
        "300 simultaneous /readyz made {flood_checks} checks"
    );
    // Once the answer is older than READINESS_REUSE_MS, the next asks again.
    tokio::time::sleep(reuse + Duration::from_millis(100)).await;
    let before = checks().await;
    expect_json(app.readyz().await, 200).await;
    assert_eq!(checks().await - before, 1.0);
}

/// The expensive reads' window of [`one_expensive_read_a_minute`].
const EXPENSIVE_WINDOW: Duration = Duration::from_secs(60);

/// An app behind the proxy that allows one expensive read a minute per
/// address and holds repeated refusals `delay`.
async fn one_expensive_read_a_minute(
    delay: Duration,
    configure: impl FnOnce(&mut linkhub::config::Settings),
) -> TestApp {
    behind_proxy(|s| {
        s.expensive_reads_per_address = 1;
        s.expensive_reads_window = EXPENSIVE_WINDOW;
        s.refusal_delay = delay;
        configure(s);
    })
    .await
}

/// Two expensive reads from `client` with a limit of one: the second is
/// its window's first refusal, answered at once.
async fn fill_the_window(app: &TestApp, client: &str, window: Duration) {
    let search = |term: &str| format!("{}?search={term}", paths::USERS);
    expect_json(get_from(app, &search("slow1"), client).await, 200).await;
    let started = Instant::now();
    expect_limited(get_from(app, &search("slow2"), client).await, window).await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "a first refusal took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_client_asking_again_before_its_window_ends_gets_its_refusals_late() {
    let (window, delay) = (EXPENSIVE_WINDOW, Duration::from_millis(800));
    let app = one_expensive_read_a_minute(delay, |_| {}).await;
    let client = "198.51.100.70";
    fill_the_window(&app, client, window).await;
    // Asked again at once: held for the delay, still a clear 429.
    let started = Instant::now();
    let late = get_from(&app, &format!("{}?search=slow3", paths::USERS), client).await;
    let took = started.elapsed();
    assert!(took >= delay, "a repeated refusal came after {took:?}");
    assert!(took < delay * 4, "a repeated refusal came after {took:?}");
    expect_limited(late, window).await;
    // Another address, and cheap reads of the same one, are not held.
    let started = Instant::now();
    expect_json(get_from(&app, paths::USERS, client).await, 200).await;
    expect_json(
        get_from(
            &app,
            &format!("{}?search=slow3", paths::USERS),
            "198.51.100.71",
        )
        .await,
        200,
    )
    .await;
    assert!(started.elapsed() < Duration::from_millis(500));
    let held = app
        .metric_sum("linkhub_refusals_held_total", &[("outcome", "held")])
        .await;
    assert_eq!(held, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_beyond_the_held_bound_are_answered_at_once_and_close_the_connection() {
    let (window, delay) = (EXPENSIVE_WINDOW, Duration::from_secs(2));
    let app = one_expensive_read_a_minute(delay, |s| s.refusals_held_max = 2).await;
    let client = "198.51.100.80";
    fill_the_window(&app, client, window).await;
    let path = format!("{}?search=slow9", paths::USERS);
    let started = Instant::now();
    let answers = join_all((0..5).map(|_| get_from(&app, &path, client))).await;
    let (mut held, mut at_once) = (0, 0);
    for answer in answers {
        let closes = header(&answer, "connection").as_deref() == Some("close");
        expect_limited(answer, window).await;
        if closes {
            at_once += 1;
        } else {
            held += 1;
        }
    }
    assert_eq!((held, at_once), (2, 3), "held, answered at once");
    assert!(started.elapsed() >= delay, "the held ones waited the delay");
    assert_eq!(
        app.metric_sum("linkhub_refusals_held_total", &[("outcome", "full")])
            .await,
        3.0
    );
}

#[tokio::test]
async fn readyz_is_limited_per_address() {
    let app = behind_proxy(|s| s.readiness_per_address = 5).await;
    let client = "198.51.100.90";
    for _ in 0..5 {
        expect_json(get_from(&app, paths::READYZ, client).await, 200).await;
    }
    expect_limited(
        get_from(&app, paths::READYZ, client).await,
        Duration::from_secs(1),
    )
    .await;
    // The orchestrator, from its own address, is answered.
    expect_json(get_from(&app, paths::READYZ, "198.51.100.91").await, 200).await;
    // The window is a second long.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    expect_json(get_from(&app, paths::READYZ, client).await, 200).await;
}
