//! Races that the database, not luck, must settle.

use futures_util::future::join_all;
use serde_json::json;

use crate::support::*;

/// Asserts that of racing creations exactly one answered `201` and every
/// other one `409` (so none a 5xx).
async fn assert_one_created_the_rest_conflict(responses: Vec<reqwest::Response>) {
    let mut statuses = Vec::new();
    for response in responses {
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert!(status < 500, "a racer got {status}: {text}");
        statuses.push(status);
    }
    let created = statuses.iter().filter(|s| **s == 201).count();
    let conflicts = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!(created, 1, "{statuses:?}");
    assert_eq!(conflicts, statuses.len() - 1, "{statuses:?}");
}

#[tokio::test]
async fn concurrent_registrations_of_one_username_make_one_user() {
    let app = spawn_app().await;
    let username = unique_name("race");
    let attempts = (0..10).map(|i| {
        let body = json!({
            "username": username,
            "email": format!("racer{i}@example.com"),
            "password": TEST_PASSWORD,
        });
        let app = &app;
        async move { app.register(&body).await }
    });
    assert_one_created_the_rest_conflict(join_all(attempts).await).await;
    let (data, meta) = expect_page(app.list_users("").await).await;
    assert_eq!(meta["total"], 1);
    assert_eq!(data[0]["username"], username.as_str());
}

#[tokio::test]
async fn concurrent_registrations_of_one_email_in_any_case_make_one_user() {
    let app = spawn_app().await;
    let attempts = (0..10).map(|i| {
        let email = if i % 2 == 0 {
            "Same.Person@Example.com"
        } else {
            "same.person@example.com"
        };
        let body = json!({
            "username": format!("racer_{i}"),
            "email": email,
            "password": TEST_PASSWORD,
        });
        let app = &app;
        async move { app.register(&body).await }
    });
    assert_one_created_the_rest_conflict(join_all(attempts).await).await;
}

#[tokio::test]
async fn concurrent_link_creations_get_distinct_consecutive_positions() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let attempts = (0..20).map(|i| {
        let body = json!({"title": format!("link {i}"), "url": "https://example.com"});
        let app = &app;
        let path = paths::links(user.id);
        let token = user.token.clone();
        async move { app.post_json(&path, Some(&token), &body).await }
    });
    let responses = join_all(attempts).await;
    let mut positions = Vec::new();
    for response in responses {
        let link = expect_written(response, 201).await;
        positions.push(link["position"].as_i64().unwrap());
    }
    positions.sort_unstable();
    assert_eq!(positions, (0..20).collect::<Vec<i64>>());

    let (data, meta) = expect_page(app.links_of(user.id, "?limit=100").await).await;
    assert_eq!(meta["total"], 20);
    assert_eq!(positions_of(&data), (0..20).collect::<Vec<i64>>());
}

#[tokio::test]
async fn concurrent_creations_of_one_platform_make_one_social() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let attempts = (0..10).map(|i| {
        let body = json!({"platform": "github", "url": format!("https://github.com/{i}")});
        let app = &app;
        let path = paths::socials(user.id);
        let token = user.token.clone();
        async move { app.post_json(&path, Some(&token), &body).await }
    });
    assert_one_created_the_rest_conflict(join_all(attempts).await).await;
}
