//! The error table of API.md: routes, methods, bodies, ids, and the one JSON
//! error shape whatever produced the error.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn unknown_routes_are_404_json() {
    let app = spawn_app().await;
    for path in [
        "/",
        "/nope",
        "/api/v1/nope",
        "/api/v2/users",
        "/api/v1/users/1/nothing",
        "/api/v1/profiles",
        "/api/v1/profiles/a/b",
    ] {
        let response = app.get(path).await;
        let status = response.status().as_u16();
        assert_eq!(status, 404, "GET {path}");
        expect_error(response, 404, "not_found").await;
    }
    let response = app
        .post_json("/api/v1/nothing", None, &json!({"a": 1}))
        .await;
    expect_error(response, 404, "not_found").await;
}

/// Every (method, path) of a known route with a method it does not serve,
/// derived from [`paths::ROUTES`].
fn wrong_methods() -> Vec<(&'static str, String)> {
    let mut pairs = Vec::new();
    for (template, served) in paths::ROUTES {
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if !served.contains(&method) {
                pairs.push((method, paths::example(template)));
            }
        }
    }
    pairs
}

fn method(name: &str) -> reqwest::Method {
    reqwest::Method::from_bytes(name.as_bytes()).unwrap()
}

#[tokio::test]
async fn known_paths_with_a_wrong_method_are_405_json() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    for (name, path) in wrong_methods() {
        for token in [None, Some(user.token.as_str())] {
            let mut request = app.client.request(method(name), app.url(&path));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            assert_eq!(status, 405, "{name} {path}");
            expect_error(response, 405, "method_not_allowed").await;
        }
    }
}

#[tokio::test]
async fn method_not_allowed_lists_the_allowed_methods() {
    let app = spawn_app().await;
    // One wrong method per route: its 405 lists what the route serves.
    for (template, allowed) in paths::ROUTES {
        let name = ["PUT", "POST", "DELETE"]
            .into_iter()
            .find(|m| !allowed.contains(m))
            .expect("no route serves PUT, POST and DELETE");
        let path = paths::example(template);
        let response = app
            .client
            .request(method(name), app.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 405, "{name} {path}");
        let allow = header(&response, "allow")
            .unwrap_or_else(|| panic!("405 for {name} {path} without an Allow header"));
        for m in *allowed {
            assert!(allow.contains(m), "Allow {allow:?} for {path} lacks {m}");
        }
    }
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    for body in [
        "{not json",
        "{\"username\": ",
        "",
        "{\"username\": \"abc\"} trailing",
        "[1, 2",
        "nul",
    ] {
        let response = app
            .post_raw(paths::USERS, Some("application/json"), body)
            .await;
        let status = response.status().as_u16();
        assert_eq!(status, 400, "body {body:?}");
        expect_error(response, 400, "bad_request").await;
        let response = app
            .client
            .patch(app.url(&paths::user(user.id)))
            .bearer_auth(&user.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        expect_error(response, 400, "bad_request").await;
    }
    let response = app
        .post_raw(paths::LOGIN, Some("application/json"), "{")
        .await;
    expect_error(response, 400, "bad_request").await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let valid = json!({
        "username": unique_name("ct"),
        "email": "ct@example.com",
        "password": TEST_PASSWORD,
    })
    .to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/xml"),
        None,
    ] {
        let response = app
            .post_raw(paths::USERS, content_type, valid.clone())
            .await;
        let status = response.status().as_u16();
        assert_eq!(status, 415, "content-type {content_type:?}");
        expect_error(response, 415, "unsupported_media_type").await;
    }
    let response = app
        .client
        .post(app.url(&paths::links(user.id)))
        .bearer_auth(&user.token)
        .header("content-type", "text/plain")
        .body(r#"{"title": "t", "url": "https://example.com"}"#)
        .send()
        .await
        .unwrap();
    expect_error(response, 415, "unsupported_media_type").await;
    // A JSON content type with parameters is JSON.
    let response = app
        .post_raw(paths::USERS, Some("application/json; charset=utf-8"), valid)
        .await;
    expect_written(response, 201).await;
}

/// A registration body of exactly `len` bytes whose bio pads it out.
fn registration_of_len(len: usize) -> String {
    let head = format!(
        r#"{{"username":"{}","email":"big@example.com","password":"{TEST_PASSWORD}","bio":""#,
        unique_name("big")
    );
    let tail = r#""}"#;
    let body = format!("{head}{}{tail}", "b".repeat(len - head.len() - tail.len()));
    assert_eq!(body.len(), len);
    body
}

#[tokio::test]
async fn bodies_over_64_kib_are_413() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    // Exactly 64 KiB is allowed through to validation (the bio is too long).
    let response = app
        .post_raw(
            paths::USERS,
            Some("application/json"),
            registration_of_len(64 * 1024),
        )
        .await;
    expect_validation(response, &["bio"]).await;
    for len in [64 * 1024 + 1, 200 * 1024] {
        let response = app
            .post_raw(
                paths::USERS,
                Some("application/json"),
                registration_of_len(len),
            )
            .await;
        let status = response.status().as_u16();
        assert_eq!(status, 413, "body of {len} bytes");
        expect_error(response, 413, "payload_too_large").await;
    }
    let response = app
        .update_user(
            user.id,
            Some(&user.token),
            &json!({"bio": "b".repeat(70_000)}),
        )
        .await;
    expect_error(response, 413, "payload_too_large").await;
    let (_, meta) = expect_page(app.list_users("").await).await;
    assert_eq!(meta["total"], 1);
}

#[tokio::test]
async fn path_ids_that_are_not_positive_integers_are_404() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    for id in [
        "abc",
        "0",
        "-1",
        "1.5",
        "99999999999999999999",
        "1e3",
        "%20",
    ] {
        for path in [
            paths::user(id),
            paths::links(id),
            paths::socials(id),
            paths::link(id),
            paths::social(id),
        ] {
            let response = app.get(&path).await;
            let status = response.status().as_u16();
            assert_eq!(status, 404, "GET {path}");
            expect_error(response, 404, "not_found").await;
        }
        for path in [paths::user(id), paths::link(id), paths::social(id)] {
            let response = app
                .patch_json(&path, Some(&user.token), &json!({"title": "x"}))
                .await;
            let status = response.status().as_u16();
            assert_eq!(status, 404, "PATCH {path}");
            expect_error(response, 404, "not_found").await;
            let response = app.delete(&path, Some(&user.token)).await;
            expect_error(response, 404, "not_found").await;
        }
        let response = app
            .create_link(
                id,
                Some(&user.token),
                &json!({"title": "t", "url": "https://example.com"}),
            )
            .await;
        expect_error(response, 404, "not_found").await;
    }
    // The user was not touched by any of it.
    expect_data(app.me(&user.token).await).await;
}

#[tokio::test]
async fn an_internal_error_is_500_and_leaks_nothing() {
    // Without the cache every read reaches the broken table.
    let app = spawn_app_with(|s| s.cache_enabled = false).await;
    let (user, link) = app.user_with_link("t", "https://example.com").await;
    // Break the schema under the running service.
    execute_sql(
        &app.database_url,
        "ALTER TABLE links RENAME COLUMN title TO title_broken_by_test",
    )
    .await;
    let responses = [
        app.link(&link["id"]).await,
        app.create_link(
            user.id,
            Some(&user.token),
            &json!({"title": "t", "url": "https://example.com"}),
        )
        .await,
    ];
    for response in responses {
        let error = expect_error(response, 500, "internal").await;
        let message = error["message"].as_str().unwrap().to_lowercase();
        for leak in [
            "select",
            "insert",
            "column",
            "relation",
            "diesel",
            "postgres",
            "sql",
            "title_broken_by_test",
            "does not exist",
            "panicked",
            ".rs:",
        ] {
            assert!(
                !message.contains(leak),
                "500 message leaks {leak:?}: {message}"
            );
        }
        assert!(
            error
                .get("details")
                .is_none_or(|d| !d.to_string().to_lowercase().contains("column")),
            "500 details leak: {error}"
        );
    }
}

#[tokio::test]
async fn an_unreachable_database_is_503() {
    let direct_url = create_test_database().await;
    let proxy = crate::support::TcpProxy::start(database_server_addr()).await;
    let proxied_url = database_url_through(&direct_url, proxy.addr());
    let app = spawn_app_on(&proxied_url, &unique_name("t"), |_| {}).await;
    let user = app.register_user().await;

    proxy.cut();
    let started = std::time::Instant::now();
    let response = app
        .register(&json!({"username": unique_name("down"), "email": "down@example.com", "password": TEST_PASSWORD}))
        .await;
    expect_error(response, 503, "service_unavailable").await;
    let response = app
        .update_user(user.id, Some(&user.token), &json!({"name": "x"}))
        .await;
    expect_error(response, 503, "service_unavailable").await;
    let response = app.readyz().await;
    assert_eq!(response.status().as_u16(), 503);
    let body = body_json(response).await;
    assert_ne!(body["database"], "ok", "{body}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(25),
        "answers took {:?}: the pool needs a checkout timeout",
        started.elapsed()
    );
    // The liveness probe does not depend on the database.
    expect_json(app.healthz().await, 200).await;

    proxy.restore();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let response = app.readyz().await;
        if response.status().as_u16() == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the service never recovered from the outage"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    expect_written(
        app.update_user(user.id, Some(&user.token), &json!({"name": "back"}))
            .await,
        200,
    )
    .await;
}
