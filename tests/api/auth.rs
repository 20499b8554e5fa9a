//! Login, tokens, `/me`, logout, ownership (401 → 404 → 403), admins, and the
//! login throttle.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn login_by_username_answers_a_bearer_token_and_the_private_user() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let response = app.login(&user.username, &user.password).await;
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await.unwrap();
    assert!(!text.contains(&user.password), "password echoed: {text}");
    assert!(!text.contains("$argon2"), "hash echoed: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_keys(&body, &["data"]);
    let data = &body["data"];
    assert_keys(data, &["token", "token_type", "expires_at", "user"]);
    let token = data["token"].as_str().unwrap();
    assert!(
        token.len() >= 16,
        "token too short to be unguessable: {token}"
    );
    assert_ne!(token, user.token, "two logins must get two tokens");
    assert_eq!(data["token_type"], "Bearer");
    let expires_at = assert_timestamp(&data["expires_at"]);
    assert!(
        expires_at > chrono::Utc::now(),
        "expires_at {expires_at} is not in the future"
    );
    assert_private_user(&data["user"]);
    assert_eq!(data["user"]["id"], user.id);
    assert_eq!(data["user"]["email"], user.email.as_str());
    assert_eq!(data["user"]["role"], "user");
}

#[tokio::test]
async fn login_by_email_ignores_its_case() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    for login in [user.email.clone(), user.email.to_uppercase()] {
        let body = expect_json(app.login(&login, &user.password).await, 200).await;
        assert_eq!(body["data"]["user"]["id"], user.id, "login {login}");
    }
}

#[tokio::test]
async fn unknown_login_and_wrong_password_get_the_same_401() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let wrong_password = expect_error(
        app.login(&user.username, "not the password").await,
        401,
        "unauthorized",
    )
    .await;
    let unknown_login = expect_error(
        app.login("nobody_here", "not the password").await,
        401,
        "unauthorized",
    )
    .await;
    let unknown_email = expect_error(
        app.login("nobody@example.com", user.password.as_str())
            .await,
        401,
        "unauthorized",
    )
    .await;
    assert_eq!(wrong_password, unknown_login);
    assert_eq!(wrong_password, unknown_email);
}

#[tokio::test]
async fn login_with_a_bad_body_is_400() {
    let app = spawn_app().await;
    for body in [
        json!({"login": "someone"}),
        json!({"password": "something"}),
        json!({"login": 1, "password": "something"}),
        json!({"login": "someone", "password": "something", "extra": true}),
    ] {
        let response = app.post_json(paths::LOGIN, None, &body).await;
        expect_error(response, 400, "bad_request").await;
    }
}

#[tokio::test]
async fn me_needs_a_valid_token() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    expect_error(app.get(paths::ME).await, 401, "unauthorized").await;
    expect_error(app.me("not-a-token").await, 401, "unauthorized").await;
    // The token in the wrong scheme is not a bearer token.
    let response = app
        .client
        .get(app.url(paths::ME))
        .header("authorization", format!("Basic {}", user.token))
        .send()
        .await
        .unwrap();
    expect_error(response, 401, "unauthorized").await;
    let response = app
        .client
        .get(app.url(paths::ME))
        .header("authorization", "Bearer")
        .send()
        .await
        .unwrap();
    expect_error(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn me_answers_the_callers_private_user_and_is_never_a_cache_hit() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let other = app.register_user().await;
    for _ in 0..3 {
        let response = app.me(&user.token).await;
        assert_ne!(
            header(&response, "x-cache").as_deref(),
            Some("HIT"),
            "/me served from the shared cache"
        );
        let me = expect_data(response).await;
        assert_private_user(&me);
        assert_eq!(me["id"], user.id);
        assert_eq!(me["email"], user.email.as_str());
    }
    // The other user's token gets the other user, even right after.
    let response = app.me(&other.token).await;
    assert_ne!(header(&response, "x-cache").as_deref(), Some("HIT"));
    let me = expect_data(response).await;
    assert_eq!(me["id"], other.id);
    // A change shows at once.
    let response = app
        .update_user(user.id, Some(&user.token), &json!({"name": "Changed"}))
        .await;
    expect_written(response, 200).await;
    let me = expect_data(app.me(&user.token).await).await;
    assert_eq!(me["name"], "Changed");
}

#[tokio::test]
async fn me_is_marked_private_for_http_caches() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let response = app.me(&user.token).await;
    let cache_control = header(&response, "cache-control").unwrap_or_default();
    assert!(
        cache_control.contains("no-store") || cache_control.contains("private"),
        "/me must not be stored by shared caches; Cache-Control: {cache_control:?}"
    );
}

#[tokio::test]
async fn logout_kills_only_that_token() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let second_token = app.login_token(&user.username, &user.password).await;

    let response = app.logout(Some(&user.token)).await;
    expect_no_content(response).await;
    expect_error(app.me(&user.token).await, 401, "unauthorized").await;
    // A dead token cannot write either.
    let response = app
        .update_user(user.id, Some(&user.token), &json!({"name": "x"}))
        .await;
    expect_error(response, 401, "unauthorized").await;
    // Logging out twice: the token is dead.
    let response = app.logout(Some(&user.token)).await;
    expect_error(response, 401, "unauthorized").await;
    // The other token lives on.
    let me = expect_data(app.me(&second_token).await).await;
    assert_eq!(me["id"], user.id);
}

#[tokio::test]
async fn logout_without_a_body_works_and_without_a_token_is_401() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let response = app
        .client
        .post(app.url(paths::LOGOUT))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    expect_no_content(response).await;
    let response = app
        .client
        .post(app.url(paths::LOGOUT))
        .send()
        .await
        .unwrap();
    expect_error(response, 401, "unauthorized").await;
}

/// Every write on a user's resources, as (method, path, body).
fn writes(user_id: i64, link_id: i64, social_id: i64) -> Vec<(&'static str, String, Value)> {
    vec![
        ("PATCH", paths::user(user_id), json!({"name": "x"})),
        ("DELETE", paths::user(user_id), Value::Null),
        (
            "POST",
            paths::links(user_id),
            json!({"title": "t", "url": "https://example.com"}),
        ),
        (
            "POST",
            paths::socials(user_id),
            json!({"platform": "newone", "url": "https://example.com"}),
        ),
        ("PATCH", paths::link(link_id), json!({"title": "x"})),
        ("DELETE", paths::link(link_id), Value::Null),
        (
            "PATCH",
            paths::social(social_id),
            json!({"url": "https://example.net"}),
        ),
        ("DELETE", paths::social(social_id), Value::Null),
    ]
}

async fn send(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    match method {
        "POST" => app.post_json(path, token, body).await,
        "PATCH" => app.patch_json(path, token, body).await,
        "DELETE" => app.delete(path, token).await,
        other => panic!("no such method {other}"),
    }
}

#[tokio::test]
async fn writes_without_a_valid_token_are_401_before_anything_else() {
    let app = spawn_app().await;
    let (owner, link, social) = app.user_with_link_and_social().await;
    let (link_id, social_id) = (id_of(&link), id_of(&social));
    let existing = writes(owner.id, link_id, social_id);
    let missing = writes(999_999, 999_998, 999_997);
    for (method, path, body) in existing.iter().chain(missing.iter()) {
        for token in [None, Some("garbage-token"), Some("")] {
            let response = send(&app, method, path, token, body).await;
            let status = response.status().as_u16();
            assert_eq!(status, 401, "{method} {path} with token {token:?}");
            expect_error(response, 401, "unauthorized").await;
        }
        // A body that breaks the field rules does not get past auth either.
        if *method != "DELETE" {
            let mut bad = body.clone();
            for value in bad.as_object_mut().unwrap().values_mut() {
                *value = json!("javascript:alert(1)\u{0}");
            }
            let response = send(&app, method, path, None, &bad).await;
            expect_error(response, 401, "unauthorized").await;
        }
    }
    // Nothing was changed.
    let profile = expect_data(app.profile(&owner.username).await).await;
    assert_eq!(profile["user"]["name"], "");
    assert_eq!(profile["links"].as_array().unwrap().len(), 1);
    assert_eq!(profile["socials"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn writes_to_a_missing_target_are_404_with_a_valid_token() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    for (method, path, body) in writes(999_999, 999_998, 999_997) {
        let response = send(&app, method, &path, Some(&user.token), &body).await;
        let status = response.status().as_u16();
        assert_eq!(status, 404, "{method} {path}");
        expect_error(response, 404, "not_found").await;
    }
}

#[tokio::test]
async fn writes_to_another_users_resources_are_403() {
    let app = spawn_app().await;
    let (owner, link, social) = app.user_with_link_and_social().await;
    let (link_id, social_id) = (id_of(&link), id_of(&social));
    let intruder = app.register_user().await;
    for (method, path, body) in writes(owner.id, link_id, social_id) {
        let response = send(&app, method, &path, Some(&intruder.token), &body).await;
        let status = response.status().as_u16();
        assert_eq!(status, 403, "{method} {path}");
        expect_error(response, 403, "forbidden").await;
    }
    let profile = expect_data(app.profile(&owner.username).await).await;
    assert_eq!(profile["user"]["name"], "");
    assert_eq!(profile["links"].as_array().unwrap().len(), 1);
    assert_eq!(profile["links"][0]["title"], "Mine");
    assert_eq!(profile["socials"].as_array().unwrap().len(), 1);
    assert_eq!(profile["socials"][0]["url"], "https://github.com/mine");
}

#[tokio::test]
async fn an_admin_may_write_anything() {
    let app = spawn_app().await;
    let (owner, link, social) = app.user_with_link_and_social().await;
    let (link_id, social_id) = (id_of(&link), id_of(&social));
    let admin = app.register_admin().await;
    let me = expect_data(app.me(&admin.token).await).await;
    assert_eq!(me["role"], "admin");

    let response = app
        .update_user(
            owner.id,
            Some(&admin.token),
            &json!({"name": "Set by admin"}),
        )
        .await;
    let updated = expect_written(response, 200).await;
    assert_private_user(&updated);
    assert_eq!(updated["id"], owner.id);
    assert_eq!(updated["name"], "Set by admin");
    assert_eq!(updated["role"], "user");

    let link = expect_written(
        app.update_link(
            link_id,
            Some(&admin.token),
            &json!({"title": "Admin title"}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(link["title"], "Admin title");
    assert_eq!(link["user_id"], owner.id);

    let social = expect_written(
        app.update_social(
            social_id,
            Some(&admin.token),
            &json!({"url": "https://github.com/admin"}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(social["url"], "https://github.com/admin");
    assert_eq!(social["user_id"], owner.id);

    let created = app
        .add_link(
            owner.id,
            &admin.token,
            &json!({"title": "By admin", "url": "https://example.com/admin"}),
        )
        .await;
    assert_eq!(created["user_id"], owner.id);
    let created_social = app
        .add_social(
            owner.id,
            &admin.token,
            "mastodon",
            "https://mastodon.social/@x",
        )
        .await;
    assert_eq!(created_social["user_id"], owner.id);

    expect_no_content(app.delete_link(link_id, Some(&admin.token)).await).await;
    expect_no_content(app.delete_social(social_id, Some(&admin.token)).await).await;
    expect_no_content(app.delete_user(owner.id, Some(&admin.token)).await).await;
    expect_error(app.user(owner.id).await, 404, "not_found").await;
    // The admin itself is unaffected.
    expect_data(app.me(&admin.token).await).await;
}

#[tokio::test]
async fn admin_changing_a_users_password_kills_that_users_tokens_only() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let admin = app.register_admin().await;
    let response = app
        .update_user(
            user.id,
            Some(&admin.token),
            &json!({"password": "set by the admin"}),
        )
        .await;
    expect_written(response, 200).await;
    expect_error(app.me(&user.token).await, 401, "unauthorized").await;
    expect_data(app.me(&admin.token).await).await;
    expect_json(app.login(&user.username, "set by the admin").await, 200).await;
}

async fn fail_logins(app: &TestApp, login: &str, count: usize) {
    for attempt in 1..=count {
        let response = app.login(login, "definitely wrong").await;
        let status = response.status().as_u16();
        assert_eq!(status, 401, "failed attempt {attempt} for {login}");
    }
}

async fn expect_rate_limited(response: reqwest::Response, window_secs: u64) {
    let retry_after = header(&response, "retry-after").unwrap_or_else(|| {
        panic!(
            "{} without Retry-After: {:?}",
            response.status(),
            response.headers()
        )
    });
    let seconds: u64 = retry_after
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After {retry_after:?} is not whole seconds"));
    assert!(
        (1..=window_secs).contains(&seconds),
        "Retry-After {seconds} outside 1..={window_secs}"
    );
    expect_error(response, 429, "rate_limited").await;
}

#[tokio::test]
async fn ten_failed_logins_lock_that_login_even_with_the_right_password() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let bystander = app.register_user().await;
    fail_logins(&app, &user.username, 10).await;
    for _ in 0..2 {
        expect_rate_limited(app.login(&user.username, &user.password).await, 60).await;
        expect_rate_limited(app.login(&user.username, "definitely wrong").await, 60).await;
    }
    // A different login is unaffected.
    expect_json(
        app.login(&bystander.username, &bystander.password).await,
        200,
    )
    .await;
    // The existing token of the locked user still works: only logins are throttled.
    expect_data(app.me(&user.token).await).await;
}

#[tokio::test]
async fn a_nonexistent_login_is_throttled_too() {
    let app = spawn_app().await;
    fail_logins(&app, "ghost_user", 10).await;
    expect_rate_limited(app.login("ghost_user", "definitely wrong").await, 60).await;
    fail_logins(&app, "ghost@example.com", 10).await;
    expect_rate_limited(app.login("ghost@example.com", "x").await, 60).await;
}

#[tokio::test]
async fn the_throttle_is_keyed_by_the_lowercased_login() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    fail_logins(&app, &user.email.to_uppercase(), 5).await;
    fail_logins(&app, &user.email, 5).await;
    expect_rate_limited(app.login(&user.email, &user.password).await, 60).await;
    // The username names the same account: one window for both names.
    expect_rate_limited(app.login(&user.username, &user.password).await, 60).await;
    let other = app.register_user().await;
    expect_json(app.login(&other.username, &other.password).await, 200).await;
}

#[tokio::test]
async fn the_throttle_lifts_when_the_window_passes() {
    // The window must outlast ten password checks, which are slow in a debug
    // build on a loaded machine: time one, then start an instance whose window
    // is comfortably longer than ten, yet short enough to wait out.
    let probe = spawn_app().await;
    let user = probe.register_user().await;
    let started = std::time::Instant::now();
    fail_logins(&probe, "timing_probe_nobody", 2).await;
    let ten_checks = started.elapsed().as_secs_f64() * 5.0;
    let window_secs = ((ten_checks * 2.0).ceil() as u64 + 2).clamp(4, 60);
    // A Redis key space of its own: the probe's 60 s windows (opened by its
    // logins, this user's included) must not be the windows under test.
    let app = spawn_app_on(&probe.database_url, &unique_name("t"), |s| {
        s.login_window = Duration::from_secs(window_secs)
    })
    .await;

    fail_logins(&app, &user.username, 10).await;
    let response = app.login(&user.username, &user.password).await;
    let retry_after: u64 = header(&response, "retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no Retry-After on {} (window {window_secs} s)",
                response.status()
            )
        });
    expect_rate_limited(response, window_secs).await;
    // Retry-After is honest: once it has passed, the right password works.
    tokio::time::sleep(Duration::from_millis(retry_after * 1000 + 300)).await;
    let body = expect_json(app.login(&user.username, &user.password).await, 200).await;
    assert_eq!(body["data"]["user"]["id"], user.id);
}

#[tokio::test]
async fn nine_failures_do_not_lock() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    fail_logins(&app, &user.username, 9).await;
    expect_json(app.login(&user.username, &user.password).await, 200).await;
}
