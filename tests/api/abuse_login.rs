//! The login throttle under abuse: bursts of simultaneous
//! attempts, endless new login names, password spraying from one address,
//! several instances, Redis going away, one window per account;
//! `current_password`; the bounded password hashing queue, and logins
//! served before a registration flood.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;

use crate::support::*;

/// The statuses of `responses`, each `429` checked for a sane `Retry-After`.
async fn tally(responses: Vec<reqwest::Response>, window_secs: u64) -> (usize, usize) {
    let (mut judged, mut refused) = (0, 0);
    for response in responses {
        match response.status().as_u16() {
            401 => {
                expect_error(response, 401, "unauthorized").await;
                judged += 1;
            }
            429 => {
                let retry_after: u64 = header(&response, "retry-after")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("429 without whole-second Retry-After"));
                assert!(
                    (1..=window_secs).contains(&retry_after),
                    "Retry-After {retry_after}"
                );
                expect_error(response, 429, "rate_limited").await;
                refused += 1;
            }
            other => panic!(
                "a wrong password answered {other}: {:?}",
                response.text().await
            ),
        }
    }
    (judged, refused)
}

/// `count` wrong-password logins for `login`, all sent at once, spread over `apps`.
async fn burst(apps: &[&TestApp], login: &str, count: usize) -> Vec<reqwest::Response> {
    join_all((0..count).map(|i| apps[i % apps.len()].login(login, "a wrong password"))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_48_simultaneous_wrong_passwords_at_most_10_are_judged() {
    let app = spawn_cached().await;
    let user = app.register_user().await;
    let (judged, refused) = tally(burst(&[&app], &user.username, 48).await, 60).await;
    assert_eq!((judged, refused), (10, 38), "judged (401), refused (429)");
    // The burst counted as 10 failures: the right password is refused too.
    assert_eq!(
        app.login(&user.username, &user.password).await.status(),
        429
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_redis_a_burst_is_bounded_by_the_local_windows() {
    let app = spawn_app_with(|s| s.cache_enabled = false).await;
    let user = app.register_user().await;
    let (judged, refused) = tally(burst(&[&app], &user.email, 30).await, 60).await;
    assert_eq!((judged, refused), (10, 20));
}

#[tokio::test]
async fn a_right_password_gives_its_place_back() {
    let app = spawn_cached().await;
    let user = app.register_user().await;
    for _ in 0..9 {
        assert_eq!(
            app.login(&user.username, "a wrong password").await.status(),
            401
        );
    }
    for _ in 0..3 {
        app.login_token(&user.username, &user.password).await;
    }
    // Nine failures and three successes: the tenth failure is still judged.
    assert_eq!(
        app.login(&user.username, "a wrong password").await.status(),
        401
    );
    assert_eq!(
        app.login(&user.username, &user.password).await.status(),
        429
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_throttle_is_shared_by_every_instance() {
    let first = spawn_cached().await;
    let second = spawn_app_on(&first.database_url, &first.settings.cache_prefix, |s| {
        s.redis_timeout = Duration::from_millis(PATIENT_REDIS_TIMEOUT_MS);
    })
    .await;
    wait_cache_ok(&second).await;
    let user = first.register_user().await;
    let (judged, refused) = tally(burst(&[&first, &second], &user.username, 40).await, 60).await;
    assert_eq!((judged, refused), (10, 30), "a burst over two instances");
    for app in [&first, &second] {
        assert_eq!(
            app.login(&user.username, &user.password).await.status(),
            429
        );
    }
    // Sequential failures add up across instances too.
    let other = first.register_user().await;
    for i in 0..10 {
        let app = if i % 2 == 0 { &first } else { &second };
        assert_eq!(
            app.login(&other.email, "a wrong password").await.status(),
            401
        );
    }
    assert_eq!(
        second.login(&other.email, &other.password).await.status(),
        429
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_redis_is_cut_the_local_windows_throttle_and_logins_still_work() {
    let redis = RedisServer::start().await;
    let proxy = TcpProxy::start(redis.addr()).await;
    let redis_url = format!("redis://{}", proxy.addr());
    let app = spawn_app_with(|s| s.redis_url = redis_url).await;
    wait_cache_ok(&app).await;
    let user = app.register_user().await;
    let bystander = app.register_user().await;
    // Four failures while Redis is there count locally as well.
    for _ in 0..4 {
        assert_eq!(
            app.login(&user.username, "a wrong password").await.status(),
            401
        );
    }
    proxy.cut();
    app.login_token(&bystander.username, &bystander.password)
        .await;
    for attempt in 5..=10 {
        let status = app.login(&user.username, "a wrong password").await.status();
        assert_eq!(status, 401, "failure {attempt} while Redis is cut");
    }
    assert_eq!(
        app.login(&user.username, &user.password).await.status(),
        429
    );
    app.login_token(&bystander.username, &bystander.password)
        .await;
}

#[tokio::test]
async fn password_spraying_from_one_address_is_refused_after_the_limit() {
    let app = spawn_cached_with(|s| s.login_max_failures_per_address = 5).await;
    let victim = app.register_user().await;
    for i in 0..5 {
        let login = format!("{}_{i}", victim.username);
        assert_eq!(app.login(&login, "Summer2026!").await.status(), 401);
    }
    // Any login from this address now, a real one with its right password too.
    expect_error(
        app.login("someone_else", "Summer2026!").await,
        429,
        "rate_limited",
    )
    .await;
    expect_error(
        app.login(&victim.username, &victim.password).await,
        429,
        "rate_limited",
    )
    .await;
    // The peer is not a trusted proxy: X-Forwarded-For changes nothing.
    let response = app
        .login_forwarded_for("fresh_name", "Summer2026!", "198.51.100.77")
        .await;
    expect_error(response, 429, "rate_limited").await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_counted() {
    let app = spawn_cached_with(|s| {
        s.login_max_failures_per_address = 3;
        s.trusted_proxies = vec!["127.0.0.0/8".parse().expect("a network")];
    })
    .await;
    let user = app.register_user().await;
    for i in 0..3 {
        let login = format!("spray_{i}");
        let response = app.login_forwarded_for(&login, "x", "198.51.100.1").await;
        assert_eq!(response.status(), 401);
    }
    let response = app
        .login_forwarded_for("spray_9", "x", "198.51.100.1")
        .await;
    expect_error(response, 429, "rate_limited").await;
    // What the client wrote left of the proxy's entry is not believed.
    let response = app
        .login_forwarded_for("spray_9", "x", "203.0.113.5, 198.51.100.1")
        .await;
    expect_error(response, 429, "rate_limited").await;
    // Another client behind the same proxy is unaffected.
    let response = app
        .login_forwarded_for(&user.username, &user.password, "198.51.100.2")
        .await;
    expect_json(response, 200).await;
}

/// The resident memory of process `pid`, from `/proc/<pid>/status`.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// Runs the real binary (`linkhub serve`) on a fresh database, quiet.
async fn serve_binary() -> ServedBinary {
    let database_url = create_test_database().await;
    let mut vars = base_vars(&database_url);
    vars.retain(|(k, _)| *k != "WORKERS");
    vars.extend([
        ("MIGRATE_ON_START", "false".to_owned()),
        ("WORKERS", "2".to_owned()),
        ("RUST_LOG", "warn".to_owned()),
    ]);
    ServedBinary::start(&vars).await
}

/// `count` failed logins, 16 at a time, each under a new login of `len` bytes.
async fn fail_with_new_logins(app: &TestApp, count: usize, len: usize) {
    for chunk in (0..count).collect::<Vec<_>>().chunks(16) {
        let answers = join_all(chunk.iter().map(|i| {
            let login = format!("{i:08}{}", "x".repeat(len - 8));
            async move { app.login(&login, "wrong password").await.status().as_u16() }
        }))
        .await;
        assert!(answers.iter().all(|s| *s == 401), "{answers:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_new_login_names_leave_memory_and_redis_bounded() {
    let served = serve_binary().await;
    let app = &served.app;
    wait_cache_ok(app).await;
    let pid = served.child.id().expect("the child runs");
    fail_with_new_logins(app, 100, 60 * 1024).await;
    let before = resident_kib(pid);
    fail_with_new_logins(app, 1200, 60 * 1024).await;
    let after = resident_kib(pid);
    let grown_mib = after.saturating_sub(before) as f64 / 1024.0;
    println!(
        "VmRSS {before} kB -> {after} kB after 1200 failed 60 KB logins (+{grown_mib:.1} MiB)"
    );
    assert!(
        grown_mib < 8.0,
        "resident memory grew by {grown_mib:.1} MiB ({before} kB -> {after} kB)"
    );

    // Logins of a length that can exist are counted, in Redis under a
    // digest that expires with the window.
    let logins: Vec<String> = (0..20)
        .map(|i| format!("Victim{i}@Mail.Example.com"))
        .collect();
    for login in &logins {
        assert_eq!(app.login(login, "wrong password").await.status(), 401);
    }
    let mut redis = redis_for(&app.settings).await;
    let keys = scan_keys(&mut redis, &app.settings.cache_prefix).await;
    let limits: Vec<&String> = keys.iter().filter(|k| k.contains(":limit:")).collect();
    assert_eq!(
        limits.len(),
        21,
        "one window per login and one for 127.0.0.1: {keys:?}"
    );
    for key in &keys {
        let ttl: i64 = redis::cmd("TTL")
            .arg(key)
            .query_async(&mut redis)
            .await
            .expect("TTL");
        if key.contains(":limit:") {
            assert!((1..=60).contains(&ttl), "{key} has TTL {ttl}");
        }
        for login in &logins {
            let lower = login.to_lowercase();
            let value: Option<Vec<u8>> = redis::cmd("GET")
                .arg(key)
                .query_async(&mut redis)
                .await
                .unwrap_or(None);
            let value = String::from_utf8_lossy(&value.unwrap_or_default()).to_lowercase();
            assert!(
                !key.to_lowercase().contains(&lower) && !value.contains(&lower),
                "{key} holds a raw login"
            );
        }
    }
}

#[tokio::test]
async fn changing_ones_own_password_or_email_needs_the_current_password() {
    let app = spawn_app_with(|s| s.login_max_failures = 3).await;
    let user = app.register_user().await;
    let new_email = format!("{}@changed.example.com", unique_name("m"));
    for body in [
        json!({"password": "a new password 1"}),
        json!({"email": new_email}),
        json!({"email": new_email, "name": "Also"}),
    ] {
        let response = app.update_user(user.id, Some(&user.token), &body).await;
        expect_validation(response, &["current_password"]).await;
    }
    // Nothing changed.
    let me = expect_data(app.me(&user.token).await).await;
    assert_eq!(me["email"], user.email.as_str());
    assert_eq!(me["name"], "");
    // A wrong one is a failed login for that user: three of them lock it out.
    for _ in 0..3 {
        let body = json!({"password": "a new password 2", "current_password": "not it at all"});
        let response = app.update_user(user.id, Some(&user.token), &body).await;
        expect_validation(response, &["current_password"]).await;
    }
    expect_error(
        app.login(&user.username, &user.password).await,
        429,
        "rate_limited",
    )
    .await;
    let body = json!({"email": new_email, "current_password": user.password});
    let response = app.update_user(user.id, Some(&user.token), &body).await;
    expect_error(response, 429, "rate_limited").await;
    // Other fields need no password.
    let body = json!({"bio": "no password needed"});
    expect_written(
        app.update_user(user.id, Some(&user.token), &body).await,
        200,
    )
    .await;
}

#[tokio::test]
async fn the_right_current_password_changes_them_and_an_admin_needs_none() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let admin = app.register_admin().await;
    let new_email = format!("{}@changed.example.com", unique_name("m"));
    let body = json!({"email": new_email, "current_password": user.password});
    let updated = expect_written(
        app.update_user(user.id, Some(&user.token), &body).await,
        200,
    )
    .await;
    assert_eq!(updated["email"], new_email.as_str());
    let body = json!({"password": "changed by its owner", "current_password": user.password});
    expect_written(
        app.update_user(user.id, Some(&user.token), &body).await,
        200,
    )
    .await;
    let token = app.login_token(&new_email, "changed by its owner").await;
    // An admin changes another user's password and email without one...
    let body = json!({"password": "changed by the admin", "email": format!("a_{new_email}")});
    expect_written(
        app.update_user(user.id, Some(&admin.token), &body).await,
        200,
    )
    .await;
    expect_error(app.me(&token).await, 401, "unauthorized").await;
    app.login_token(&user.username, "changed by the admin")
        .await;
    // ...but not their own.
    let body = json!({"password": "the admin's new one"});
    let response = app.update_user(admin.id, Some(&admin.token), &body).await;
    expect_validation(response, &["current_password"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_hashing_queue_answers_503_with_retry_after() {
    let app = spawn_app_with(|s| {
        s.hash_queue_max = 0;
        s.workers = 4;
    })
    .await;
    let registrations = (0..16).map(|i| {
        let app = &app;
        let username = unique_name(&format!("h{i}"));
        let body = json!({
            "username": username,
            "email": format!("{username}@example.com"),
            "password": TEST_PASSWORD,
        });
        async move { app.register(&body).await }
    });
    let (mut created, mut busy) = (0, 0);
    for response in join_all(registrations).await {
        match response.status().as_u16() {
            201 => created += 1,
            503 => {
                assert_eq!(header(&response, "retry-after").as_deref(), Some("1"));
                expect_error(response, 503, "service_unavailable").await;
                busy += 1;
            }
            other => panic!("registration answered {other}"),
        }
    }
    assert!(created >= 1 && busy >= 1, "{created} created, {busy} busy");
    // Once the burst is over, hashing serves again.
    app.register_user().await;
}

#[tokio::test]
async fn retry_after_covers_a_shared_window_that_opened_earlier_on_another_instance() {
    // The first instance's window is 60 s; the user's login there opens the
    // shared window of this login.
    let first = spawn_cached().await;
    let user = first.register_user().await;
    let second = spawn_app_on(&first.database_url, &first.settings.cache_prefix, |s| {
        s.login_window = Duration::from_secs(5);
        s.redis_timeout = Duration::from_millis(PATIENT_REDIS_TIMEOUT_MS);
    })
    .await;
    wait_cache_ok(&second).await;
    for _ in 0..10 {
        assert_eq!(second.login(&user.username, "wrong").await.status(), 401);
    }
    // The second instance's own window would end within 5 s; the shared one
    // ends up to 60 s after the first login, so Retry-After says that.
    let refused = second.login(&user.username, &user.password).await;
    let retry_after: u64 = header(&refused, "retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert_eq!(refused.status(), 429);
    assert!(
        retry_after > 5,
        "Retry-After {retry_after} ignores the shared window"
    );
}

#[tokio::test]
async fn the_username_and_the_email_of_one_account_share_one_window() {
    let app = spawn_cached_with(|s| s.login_max_failures = 4).await;
    let user = app.register_user().await;
    for login in [
        user.username.clone(),
        user.email.clone(),
        user.email.to_uppercase(),
        user.username.clone(),
    ] {
        expect_error(
            app.login(&login, "a wrong password").await,
            401,
            "unauthorized",
        )
        .await;
    }
    // Four failures of one account, whichever name they used: locked out
    // under both names, right password or not.
    for login in [&user.username, &user.email] {
        let refused = app.login(login, &user.password).await;
        expect_error(refused, 429, "rate_limited").await;
    }
    // A login that names no account keeps a window of its own.
    let ghost = unique_name("ghost");
    for _ in 0..4 {
        assert_eq!(app.login(&ghost, "x").await.status(), 401);
    }
    expect_error(app.login(&ghost, "x").await, 429, "rate_limited").await;
    let other = app.register_user().await;
    app.login_token(&other.email, &other.password).await;
}

/// A registration flood from many addresses fills the one hashing slot and
/// the registrations' queue; logins, served first and queued apart, never
/// answer `503` meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registration_flood_does_not_starve_logins_of_hashing() {
    let app = spawn_app_with(|s| {
        s.hash_queue_max = 4;
        s.workers = 4;
        s.trusted_proxies = vec!["127.0.0.1/32".parse().expect("a network")];
    })
    .await;
    let user = app.register_user().await;
    let flood = async {
        let registrations = (0..60).map(|i| {
            let app = &app;
            let username = unique_name(&format!("f{i}"));
            let body = json!({
                "username": username,
                "email": format!("{username}@example.com"),
                "password": TEST_PASSWORD,
            });
            async move {
                app.client
                    .post(app.url(paths::USERS))
                    .header("x-forwarded-for", format!("198.51.100.{}", i + 1))
                    .json(&body)
                    .send()
                    .await
                    .expect("POST users")
                    .status()
                    .as_u16()
            }
        });
        join_all(registrations).await
    };
    let logins = async {
        // Once the flood is queued, log in one after another while it lasts.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut statuses = Vec::new();
        for _ in 0..5 {
            statuses.push(
                app.login(&user.username, &user.password)
                    .await
                    .status()
                    .as_u16(),
            );
        }
        statuses
    };
    let (registrations, logins) = tokio::join!(flood, logins);
    let busy = registrations.iter().filter(|s| **s == 503).count();
    assert!(
        busy > 0,
        "the flood never filled hashing: {registrations:?}"
    );
    assert!(
        registrations.iter().all(|s| [201, 503].contains(s)),
        "{registrations:?}"
    );
    assert_eq!(logins, [200; 5], "logins during the registration flood");
}
