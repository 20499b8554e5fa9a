//! The `linkhub` binary (bad configuration, unreachable PostgreSQL, `migrate`,
//! `promote`, `serve`) and start-up without Redis.

use std::process::ExitStatus;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::*;

struct Outcome {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Runs the binary to completion, failing the test if it takes longer than `limit`.
async fn run(args: &[&str], vars: &[(&str, &str)], limit: Duration) -> Outcome {
    let (mut command, _dir) = linkhub(args, vars);
    let started = Instant::now();
    let output = tokio::time::timeout(limit, command.output())
        .await
        .unwrap_or_else(|_| panic!("linkhub {args:?} with {vars:?} did not exit within {limit:?}"))
        .expect("failed to run the linkhub binary");
    Outcome {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    }
}

#[tokio::test]
async fn a_bad_setting_exits_non_zero_naming_the_variable() {
    let database_url = create_test_database().await;
    for (name, value) in [
        ("CACHE_TTL_SECS", "abc"),
        ("CACHE_TTL_SECS", "-1"),
        ("WORKERS", "many"),
        ("REDIS_TIMEOUT_MS", "1.5"),
        ("LOGIN_MAX_FAILURES", "ten"),
        ("CACHE_ENABLED", "maybe"),
        ("CLICKS_FLUSH_MS", "5000"),
        ("CLICKS_JOURNAL_MAX_BYTES", "0"),
        // Not a setting that fails to parse: a directory that cannot be made.
        ("CLICKS_JOURNAL_DIR", "/dev/null/clicks"),
    ] {
        let mut vars = base_vars(&database_url);
        vars.retain(|(k, _)| *k != name);
        vars.push((name, value.to_string()));
        let outcome = run(&[], &as_refs(&vars), Duration::from_secs(30)).await;
        assert!(
            !outcome.status.success(),
            "{name}={value} was accepted; stderr: {}",
            outcome.stderr
        );
        assert!(
            outcome.stderr.contains(name),
            "stderr does not name {name}: {:?}",
            outcome.stderr
        );
        assert!(
            !outcome.stderr.contains("panicked"),
            "{name}={value} panicked: {}",
            outcome.stderr
        );
    }
}

#[tokio::test]
async fn an_unreachable_database_exits_quickly_naming_database_url() {
    for args in [&[][..], &["serve"][..], &["migrate"][..]] {
        let mut vars = base_vars("postgres://postgres@127.0.0.1:1/linkhub");
        vars.retain(|(k, _)| *k != "REDIS_URL");
        let outcome = run(args, &as_refs(&vars), Duration::from_secs(30)).await;
        assert!(
            !outcome.status.success(),
            "linkhub {args:?} succeeded without a database"
        );
        assert!(
            outcome.elapsed < Duration::from_secs(10),
            "linkhub {args:?} took {:?} to give up",
            outcome.elapsed
        );
        assert!(
            outcome
                .stderr
                .lines()
                .any(|line| line.contains("DATABASE_URL")),
            "stderr does not mention DATABASE_URL: {:?}",
            outcome.stderr
        );
        assert!(
            !outcome.stderr.contains("panicked"),
            "linkhub {args:?} panicked: {}",
            outcome.stderr
        );
    }
}

#[tokio::test]
async fn promote_of_an_unknown_user_fails() {
    let app = spawn_app().await;
    let vars = base_vars(&app.database_url);
    let outcome = run(
        &["promote", "no_such_user"],
        &as_refs(&vars),
        Duration::from_secs(30),
    )
    .await;
    assert!(!outcome.status.success(), "stdout: {}", outcome.stdout);
    assert!(
        !outcome.stderr.trim().is_empty(),
        "no message on stderr for an unknown user"
    );
    assert!(!outcome.stderr.contains("panicked"), "{}", outcome.stderr);
}

#[tokio::test]
async fn promote_makes_a_user_an_admin() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let bystander = app.register_user().await;
    let vars = base_vars(&app.database_url);
    let outcome = run(
        &["promote", &user.username],
        &as_refs(&vars),
        Duration::from_secs(30),
    )
    .await;
    assert!(
        outcome.status.success(),
        "promote failed: {} {}",
        outcome.stdout,
        outcome.stderr
    );
    assert!(!outcome.stdout.trim().is_empty(), "promote printed nothing");
    let body = expect_json(app.login(&user.username, &user.password).await, 200).await;
    assert_eq!(body["data"]["user"]["role"], "admin");
    // Promoted, the user may now write another user's data.
    let token = body["data"]["token"].as_str().unwrap();
    let response = app
        .update_user(
            bystander.id,
            Some(token),
            &json!({"bio": "edited by the new admin"}),
        )
        .await;
    expect_written(response, 200).await;
    // The bystander stays a user.
    let body = expect_json(
        app.login(&bystander.username, &bystander.password).await,
        200,
    )
    .await;
    assert_eq!(body["data"]["user"]["role"], "user");
}

#[tokio::test]
async fn migrate_creates_a_missing_database() {
    let database_url = fresh_database_url();
    let vars = base_vars(&database_url);
    for _ in 0..2 {
        // Twice: the second run finds everything in place.
        let outcome = run(&["migrate"], &as_refs(&vars), Duration::from_secs(60)).await;
        assert!(
            outcome.status.success(),
            "migrate failed: {} {}",
            outcome.stdout,
            outcome.stderr
        );
    }
    let tables = query_strings(
        &database_url,
        "SELECT tablename::text AS value FROM pg_tables WHERE schemaname = 'public'",
    )
    .await;
    for table in ["users", "links", "socials"] {
        assert!(
            tables.iter().any(|t| t == table),
            "table {table} missing: {tables:?}"
        );
    }
    let app = spawn_app_on(&database_url, &unique_name("t"), |_| {}).await;
    let user = app.register_user().await;
    expect_data(app.user(user.id).await).await;
}

#[tokio::test]
async fn serve_creates_the_database_migrates_and_listens_on_bind_addr() {
    let database_url = fresh_database_url();
    let served = ServedBinary::start(&base_vars(&database_url)).await;
    let body = expect_json(served.app.readyz().await, 200).await;
    assert_eq!(body["database"], "ok");
    let response = served
        .app
        .client
        .post(served.app.url("/api/v1/users"))
        .json(&json!({"username": "served", "email": "served@example.com", "password": TEST_PASSWORD}))
        .send()
        .await
        .unwrap();
    expect_written(response, 201).await;
}

#[tokio::test]
async fn without_redis_the_service_starts_and_serves_reads_bypassing_the_cache() {
    let app = spawn_app_with(|s| s.redis_url = "redis://127.0.0.1:1".to_string()).await;
    let ready = expect_json(app.readyz().await, 200).await;
    assert_eq!(
        ready,
        json!({"status": "ok", "database": "ok", "cache": "degraded"})
    );
    let (user, link) = app.user_with_link("t", "https://example.com").await;
    for path in [
        "/api/v1/users".to_string(),
        paths::user(user.id),
        paths::links(user.id),
        paths::link(&link["id"]),
        paths::profile(&user.username),
    ] {
        for _ in 0..2 {
            let response = app.get(&path).await;
            assert_eq!(
                header(&response, "x-cache").as_deref(),
                Some("BYPASS"),
                "{path}"
            );
            expect_json(response, 200).await;
        }
    }
    // Writes go through, and reads show them.
    let response = app
        .update_user(user.id, Some(&user.token), &json!({"name": "No Redis"}))
        .await;
    expect_written(response, 200).await;
    let public = expect_data(app.user(user.id).await).await;
    assert_eq!(public["name"], "No Redis");
}
