//! Links: create (default positions), ordering, paging, read, update, delete
//! and the field rules.

use serde_json::{Value, json};

use crate::support::*;

fn link_body(title: &str) -> Value {
    json!({"title": title, "url": format!("https://example.com/{title}")})
}

fn ids(links: &[Value]) -> Vec<i64> {
    links.iter().map(|l| l["id"].as_i64().unwrap()).collect()
}

#[tokio::test]
async fn create_link_answers_201_with_the_link() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let response = app
        .create_link(
            user.id,
            Some(&user.token),
            &json!({"title": "My blog", "url": "https://blog.example.com/posts?x=1#top"}),
        )
        .await;
    let link = expect_written(response, 201).await;
    assert_link(&link);
    assert_eq!(link["user_id"], user.id);
    assert_eq!(link["title"], "My blog");
    assert_eq!(link["url"], "https://blog.example.com/posts?x=1#top");
    assert_eq!(link["position"], 0);

    let fetched = expect_data(app.link(&link["id"]).await).await;
    assert_eq!(fetched, link);
}

#[tokio::test]
async fn default_positions_follow_the_last_link() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let other = app.register_user().await;
    for expected in 0..3 {
        let link = app
            .add_link(user.id, &user.token, &link_body(&format!("l{expected}")))
            .await;
        assert_eq!(link["position"], expected);
    }
    // Another user's links start at 0 on their own.
    let link = app
        .add_link(other.id, &other.token, &link_body("first"))
        .await;
    assert_eq!(link["position"], 0);
    // After an explicit position, the default goes past it.
    let explicit = app
        .add_link(
            user.id,
            &user.token,
            &json!({"title": "far", "url": "https://example.com/far", "position": 10}),
        )
        .await;
    assert_eq!(explicit["position"], 10);
    let next = app.add_link(user.id, &user.token, &link_body("next")).await;
    assert_eq!(next["position"], 11);
}

#[tokio::test]
async fn links_are_ordered_by_position_then_id() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let mut created = Vec::new();
    for (title, position) in [("a", 5), ("b", 1), ("c", 5), ("d", 0), ("e", 1)] {
        let link = app
            .add_link(
                user.id,
                &user.token,
                &json!({"title": title, "url": "https://example.com", "position": position}),
            )
            .await;
        assert_eq!(link["position"], position);
        created.push(link);
    }
    let (data, meta) = expect_page(app.links_of(user.id, "").await).await;
    let titles: Vec<&str> = data.iter().map(|l| l["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["d", "b", "e", "a", "c"]);
    assert_eq!(
        meta,
        json!({"page": 1, "limit": 10, "total": 5, "total_pages": 1,
               "total_exact": true, "next_after": null})
    );
    for link in &data {
        assert_link(link);
        assert_eq!(link["user_id"], user.id);
    }
    // Moving a link reorders the list.
    let response = app
        .update_link(
            &created[2]["id"],
            Some(&user.token),
            &json!({"position": 0}),
        )
        .await;
    expect_written(response, 200).await;
    let (data, _) = expect_page(app.links_of(user.id, "").await).await;
    let titles: Vec<&str> = data.iter().map(|l| l["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["c", "d", "b", "e", "a"]);
}

#[tokio::test]
async fn list_links_pages() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let other = app.register_user().await;
    app.add_link(other.id, &other.token, &link_body("theirs"))
        .await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(
            app.add_link(user.id, &user.token, &link_body(&format!("l{i}")))
                .await,
        );
    }
    let base = paths::links(user.id);
    let (data, meta) = expect_page(app.get(&format!("{base}?limit=2")).await).await;
    assert_eq!(
        meta,
        json!({"page": 1, "limit": 2, "total": 5, "total_pages": 3,
               "total_exact": true, "next_after": created[1]["id"]})
    );
    assert_eq!(ids(&data), ids(&created[0..2]));
    let (_, meta) = expect_page(app.get(&format!("{base}?limit=2&page=2")).await).await;
    assert_eq!(meta["next_after"], created[3]["id"]);
    let (data, meta) = expect_page(app.get(&format!("{base}?limit=2&page=3")).await).await;
    assert_eq!(meta["page"], 3);
    assert_eq!(
        meta["next_after"],
        Value::Null,
        "nothing follows the last page"
    );
    assert_eq!(ids(&data), ids(&created[4..5]));
    // A full last page: nothing follows it either.
    let (_, meta) = expect_page(app.get(&format!("{base}?limit=5")).await).await;
    assert_eq!(meta["next_after"], Value::Null);
    let (data, meta) = expect_page(app.get(&format!("{base}?limit=2&page=4")).await).await;
    assert!(data.is_empty());
    assert_eq!(
        meta,
        json!({"page": 4, "limit": 2, "total": 5, "total_pages": 3,
               "total_exact": true, "next_after": null})
    );
    for query in [
        "page=0",
        "limit=0",
        "limit=101",
        "page=abc",
        "page=99999999999999999999",
    ] {
        expect_error(
            app.get(&format!("{base}?{query}")).await,
            400,
            "bad_request",
        )
        .await;
    }
}

#[tokio::test]
async fn list_links_of_a_user_without_links_is_empty() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let (data, meta) = expect_page(app.links_of(user.id, "").await).await;
    assert!(data.is_empty());
    assert_eq!(meta["total"], 0);
    assert_eq!(meta["total_pages"], 0);
}

#[tokio::test]
async fn list_links_of_a_missing_user_is_404() {
    let app = spawn_app().await;
    expect_error(app.links_of(424242, "").await, 404, "not_found").await;
}

#[tokio::test]
async fn get_missing_link_is_404() {
    let app = spawn_app().await;
    expect_error(app.link(424242).await, 404, "not_found").await;
}

#[tokio::test]
async fn patch_link_updates_each_field() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let link = app.add_link(user.id, &user.token, &link_body("old")).await;
    let path = paths::link(&link["id"]);
    for (field, value) in [
        ("title", json!("New title")),
        ("url", json!("http://example.org/new")),
        ("position", json!(7)),
    ] {
        let updated = expect_written(
            app.patch_json(&path, Some(&user.token), &json!({ field: value }))
                .await,
            200,
        )
        .await;
        assert_link(&updated);
        assert_eq!(updated[field], value);
        assert_eq!(updated["id"], link["id"]);
        assert_eq!(updated["created_at"], link["created_at"]);
        let fetched = expect_data(app.get(&path).await).await;
        assert_eq!(fetched, updated);
    }
    let all = expect_written(
        app.patch_json(
            &path,
            Some(&user.token),
            &json!({"title": "All", "url": "https://example.net", "position": 0}),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(all["title"], "All");
    assert_eq!(all["url"], "https://example.net");
    assert_eq!(all["position"], 0);
    assert!(assert_timestamp(&all["updated_at"]) >= assert_timestamp(&link["updated_at"]));
}

#[tokio::test]
async fn delete_link_is_204_then_404() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let keep = app.add_link(user.id, &user.token, &link_body("keep")).await;
    let link = app.add_link(user.id, &user.token, &link_body("gone")).await;
    let path = paths::link(&link["id"]);
    expect_data(app.get(&path).await).await;
    expect_no_content(app.delete(&path, Some(&user.token)).await).await;
    expect_error(app.get(&path).await, 404, "not_found").await;
    expect_error(app.delete(&path, Some(&user.token)).await, 404, "not_found").await;
    expect_error(
        app.patch_json(&path, Some(&user.token), &json!({"title": "x"}))
            .await,
        404,
        "not_found",
    )
    .await;
    let (data, meta) = expect_page(app.links_of(user.id, "").await).await;
    assert_eq!(meta["total"], 1);
    assert_eq!(ids(&data), [keep["id"].as_i64().unwrap()]);
}

#[tokio::test]
async fn link_titles_are_1_to_100_characters() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let path = paths::links(user.id);
    for title in ["x".to_string(), "t".repeat(100), "é".repeat(100)] {
        let link = app
            .add_link(
                user.id,
                &user.token,
                &json!({"title": title, "url": "https://example.com"}),
            )
            .await;
        assert_eq!(link["title"], title.as_str());
    }
    for title in [
        String::new(),
        "t".repeat(101),
        "é".repeat(101),
        "nul\u{0}".to_string(),
    ] {
        let response = app
            .post_json(
                &path,
                Some(&user.token),
                &json!({"title": title, "url": "https://example.com"}),
            )
            .await;
        expect_validation(response, &["title"]).await;
    }
}

#[tokio::test]
async fn link_urls_must_be_absolute_http_or_https() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let path = paths::links(user.id);
    let prefix = "https://example.com/";
    let longest = format!("{prefix}{}", "a".repeat(2048 - prefix.len()));
    app.add_link(
        user.id,
        &user.token,
        &json!({"title": "long", "url": longest}),
    )
    .await;
    let too_long = format!("{prefix}{}", "a".repeat(2049 - prefix.len()));
    for url in [
        "javascript:alert(1)",
        "  javascript:alert(1)",
        "JAVASCRIPT:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "ftp://example.com",
        "mailto:someone@example.com",
        "//example.com/no-scheme",
        "/relative",
        "example.com",
        "",
        too_long.as_str(),
        "https://example.com/\u{0}",
    ] {
        let response = app
            .post_json(&path, Some(&user.token), &json!({"title": "t", "url": url}))
            .await;
        let status = response.status().as_u16();
        assert_eq!(status, 422, "url {url:?}");
        expect_validation(response, &["url"]).await;
    }
}

#[tokio::test]
async fn negative_positions_are_422() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let response = app
        .create_link(
            user.id,
            Some(&user.token),
            &json!({"title": "t", "url": "https://example.com", "position": -1}),
        )
        .await;
    expect_validation(response, &["position"]).await;
    let link = app.add_link(user.id, &user.token, &link_body("ok")).await;
    let response = app
        .update_link(&link["id"], Some(&user.token), &json!({"position": -1}))
        .await;
    expect_validation(response, &["position"]).await;
}

#[tokio::test]
async fn patch_link_applies_the_field_rules() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let link = app.add_link(user.id, &user.token, &link_body("ok")).await;
    let path = paths::link(&link["id"]);
    for (field, value) in [
        ("title", json!("")),
        ("title", json!("t".repeat(101))),
        ("url", json!("javascript:alert(1)")),
        ("url", json!("data:,x")),
    ] {
        let response = app
            .patch_json(&path, Some(&user.token), &json!({ field: value }))
            .await;
        expect_validation(response, &[field]).await;
    }
    let response = app
        .patch_json(
            &path,
            Some(&user.token),
            &json!({"title": "", "url": "javascript:x", "position": -3}),
        )
        .await;
    expect_validation(response, &["title", "url", "position"]).await;
    assert_eq!(expect_data(app.get(&path).await).await, link);
}

#[tokio::test]
async fn link_bodies_with_unknown_fields_or_wrong_types_are_400() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let path = paths::links(user.id);
    for body in [
        json!({"title": "t", "url": "https://example.com", "colour": "red"}),
        json!({"title": "t", "url": "https://example.com", "user_id": 1}),
        json!({"title": "t", "url": "https://example.com", "position": "first"}),
        json!({"title": "t", "url": "https://example.com", "position": 1.5}),
        json!({"title": 5, "url": "https://example.com"}),
        json!({"title": "t", "url": ["https://example.com"]}),
        json!({"title": "t"}),
        json!({"url": "https://example.com"}),
        json!("just a string"),
    ] {
        let response = app.post_json(&path, Some(&user.token), &body).await;
        let status = response.status().as_u16();
        assert_eq!(status, 400, "body {body}");
        expect_error(response, 400, "bad_request").await;
    }
    let link = app.add_link(user.id, &user.token, &link_body("ok")).await;
    let path = paths::link(&link["id"]);
    for body in [
        json!({"colour": "red"}),
        json!({"position": "2"}),
        json!({"title": false}),
        json!({"user_id": 99}),
    ] {
        let response = app.patch_json(&path, Some(&user.token), &body).await;
        expect_error(response, 400, "bad_request").await;
    }
    let (_, meta) = expect_page(app.links_of(user.id, "").await).await;
    assert_eq!(meta["total"], 1);
}
