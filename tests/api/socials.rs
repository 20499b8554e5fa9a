//! Socials: one per platform per user, ordered by platform, no paging.

use serde_json::{Value, json};

use crate::support::*;

async fn list_platforms(app: &TestApp, user_id: i64) -> Vec<String> {
    let body = expect_json(app.socials_of(user_id, "").await, 200).await;
    body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("data is not a list: {body}"))
        .iter()
        .map(|s| {
            assert_social(s);
            assert_eq!(s["user_id"], user_id);
            s["platform"].as_str().unwrap().to_string()
        })
        .collect()
}

#[tokio::test]
async fn create_social_answers_201_with_the_social() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let response = app
        .create_social(
            user.id,
            Some(&user.token),
            &json!({"platform": "github", "url": "https://github.com/someone"}),
        )
        .await;
    let social = expect_written(response, 201).await;
    assert_social(&social);
    assert_eq!(social["user_id"], user.id);
    assert_eq!(social["platform"], "github");
    assert_eq!(social["url"], "https://github.com/someone");
    let fetched = expect_data(app.social(&social["id"]).await).await;
    assert_eq!(fetched, social);
}

#[tokio::test]
async fn a_platform_is_unique_per_user_only() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let other = app.register_user().await;
    app.add_social(user.id, &user.token, "github", "https://github.com/a")
        .await;
    let response = app
        .create_social(
            user.id,
            Some(&user.token),
            &json!({"platform": "github", "url": "https://github.com/b"}),
        )
        .await;
    expect_error(response, 409, "conflict").await;
    // Another user may have the same platform.
    app.add_social(other.id, &other.token, "github", "https://github.com/c")
        .await;
    assert_eq!(list_platforms(&app, user.id).await, ["github"]);
    assert_eq!(list_platforms(&app, other.id).await, ["github"]);
}

#[tokio::test]
async fn platforms_follow_the_pattern() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let path = paths::socials(user.id);
    for platform in ["a", "x-com_2", &"p".repeat(32), "0"] {
        app.add_social(user.id, &user.token, platform, "https://example.com")
            .await;
    }
    for platform in [
        "",
        &"p".repeat(33),
        "GitHub",
        "x.com",
        "two words",
        "mast@don",
        "plat/form",
        "ünicode",
        "nul\u{0}",
    ] {
        let response = app
            .post_json(
                &path,
                Some(&user.token),
                &json!({"platform": platform, "url": "https://example.com"}),
            )
            .await;
        let status = response.status().as_u16();
        assert_eq!(status, 422, "platform {platform:?}");
        expect_validation(response, &["platform"]).await;
    }
}

#[tokio::test]
async fn social_urls_follow_the_url_rules() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let path = paths::socials(user.id);
    let prefix = "https://example.com/";
    let too_long = format!("{prefix}{}", "a".repeat(2049 - prefix.len()));
    for (i, url) in [
        "javascript:alert(1)",
        "data:text/html,hi",
        "ftp://example.com",
        "relative/path",
        "",
        too_long.as_str(),
        "https://example.com/\u{0}",
    ]
    .into_iter()
    .enumerate()
    {
        let response = app
            .post_json(
                &path,
                Some(&user.token),
                &json!({"platform": format!("p{i}"), "url": url}),
            )
            .await;
        expect_validation(response, &["url"]).await;
    }
    let response = app
        .post_json(
            &path,
            Some(&user.token),
            &json!({"platform": "Bad Platform", "url": "javascript:alert(1)"}),
        )
        .await;
    expect_validation(response, &["platform", "url"]).await;
}

#[tokio::test]
async fn social_bodies_with_unknown_fields_or_wrong_types_are_400() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let path = paths::socials(user.id);
    for body in [
        json!({"platform": "github", "url": "https://example.com", "extra": 1}),
        json!({"platform": 1, "url": "https://example.com"}),
        json!({"platform": "github"}),
        json!({"url": "https://example.com"}),
    ] {
        let response = app.post_json(&path, Some(&user.token), &body).await;
        expect_error(response, 400, "bad_request").await;
    }
    assert!(list_platforms(&app, user.id).await.is_empty());
}

#[tokio::test]
async fn socials_are_listed_by_platform_without_paging() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let other = app.register_user().await;
    app.add_social(other.id, &other.token, "bluesky", "https://bsky.app/x")
        .await;
    let platforms = [
        "twitter",
        "github",
        "mastodon",
        "a1",
        "a",
        "zz",
        "youtube",
        "linkedin",
        "bluesky",
        "instagram",
        "gitlab",
        "twitch",
    ];
    for platform in platforms {
        app.add_social(
            user.id,
            &user.token,
            platform,
            &format!("https://example.com/{platform}"),
        )
        .await;
    }
    let mut expected: Vec<String> = platforms.iter().map(|p| p.to_string()).collect();
    // Letters and digits only, so that every collation agrees on the order.
    expected.sort();
    assert_eq!(list_platforms(&app, user.id).await, expected);
    // Paging parameters change nothing: all of them, always.
    let body = expect_json(app.socials_of(user.id, "?limit=1&page=2").await, 200).await;
    assert_eq!(body["data"].as_array().unwrap().len(), platforms.len());
}

#[tokio::test]
async fn socials_of_a_user_without_any_is_an_empty_list() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    assert!(list_platforms(&app, user.id).await.is_empty());
}

#[tokio::test]
async fn socials_of_a_missing_user_is_404() {
    let app = spawn_app().await;
    expect_error(app.socials_of(525252, "").await, 404, "not_found").await;
    expect_error(app.social(525252).await, 404, "not_found").await;
}

#[tokio::test]
async fn patch_social_updates_platform_and_url() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let social = app
        .add_social(user.id, &user.token, "github", "https://github.com/a")
        .await;
    let path = paths::social(&social["id"]);
    for (field, value) in [
        ("url", json!("https://github.com/b")),
        ("platform", json!("codeberg")),
    ] {
        let updated = expect_written(
            app.patch_json(&path, Some(&user.token), &json!({ field: value }))
                .await,
            200,
        )
        .await;
        assert_social(&updated);
        assert_eq!(updated[field], value);
        assert_eq!(updated["id"], social["id"]);
        assert_eq!(updated["created_at"], social["created_at"]);
        assert_eq!(expect_data(app.get(&path).await).await, updated);
    }
    assert_eq!(list_platforms(&app, user.id).await, ["codeberg"]);
    // Keeping one's own platform is not a conflict.
    expect_written(
        app.patch_json(&path, Some(&user.token), &json!({"platform": "codeberg"}))
            .await,
        200,
    )
    .await;
    // The freed platform can be added again.
    app.add_social(user.id, &user.token, "github", "https://github.com/c")
        .await;
}

#[tokio::test]
async fn patch_social_into_a_taken_platform_is_409() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    app.add_social(user.id, &user.token, "github", "https://github.com/a")
        .await;
    let social = app
        .add_social(user.id, &user.token, "gitlab", "https://gitlab.com/a")
        .await;
    let path = paths::social(&social["id"]);
    let response = app
        .patch_json(&path, Some(&user.token), &json!({"platform": "github"}))
        .await;
    expect_error(response, 409, "conflict").await;
    assert_eq!(list_platforms(&app, user.id).await, ["github", "gitlab"]);
}

#[tokio::test]
async fn patch_social_applies_the_field_rules() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let social = app
        .add_social(user.id, &user.token, "github", "https://github.com/a")
        .await;
    let path = paths::social(&social["id"]);
    for (field, value) in [
        ("platform", json!("Not Valid")),
        ("platform", json!("")),
        ("url", json!("javascript:alert(1)")),
    ] {
        let response = app
            .patch_json(&path, Some(&user.token), &json!({ field: value }))
            .await;
        expect_validation(response, &[field]).await;
    }
    for body in [json!({"user_id": 3}), json!({"platform": 3})] {
        let response = app.patch_json(&path, Some(&user.token), &body).await;
        expect_error(response, 400, "bad_request").await;
    }
    assert_eq!(expect_data(app.get(&path).await).await, social);
}

#[tokio::test]
async fn delete_social_is_204_then_404() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let social: Value = app
        .add_social(user.id, &user.token, "github", "https://github.com/a")
        .await;
    let path = paths::social(&social["id"]);
    expect_data(app.get(&path).await).await;
    expect_no_content(app.delete(&path, Some(&user.token)).await).await;
    expect_error(app.get(&path).await, 404, "not_found").await;
    expect_error(app.delete(&path, Some(&user.token)).await, 404, "not_found").await;
    assert!(list_platforms(&app, user.id).await.is_empty());
    // The platform is free again.
    app.add_social(user.id, &user.token, "github", "https://github.com/b")
        .await;
}
