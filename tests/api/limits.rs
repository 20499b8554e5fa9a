//! Per-user limits (100 links, 50 socials; one more is `422`), also under
//! concurrent creates, and `Cache-Control: no-store` on every answer that
//! carries a token or a private user.

use futures_util::future::join_all;
use serde_json::json;

use crate::support::*;

/// Gives user `user_id` `count` links (positions 0..count) straight in the database.
async fn seed_links(app: &TestApp, user_id: i64, count: usize) {
    execute_sql(
        &app.database_url,
        &format!(
            "INSERT INTO links (user_id, title, url, position) \
             SELECT {user_id}, 'seeded ' || g, 'https://example.com/' || g, g \
             FROM generate_series(0, {} ) AS g",
            count - 1
        ),
    )
    .await;
}

async fn seed_socials(app: &TestApp, user_id: i64, count: usize) {
    execute_sql(
        &app.database_url,
        &format!(
            "INSERT INTO socials (user_id, platform, url) \
             SELECT {user_id}, 'seeded' || g, 'https://example.com/' || g \
             FROM generate_series(1, {count}) AS g"
        ),
    )
    .await;
}

async fn total_links(app: &TestApp, user_id: i64) -> u64 {
    let (_, meta) = expect_page(app.links_of(user_id, "?limit=1").await).await;
    meta["total"].as_u64().expect("total")
}

#[tokio::test]
async fn the_101st_link_is_422_naming_links() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    seed_links(&app, user.id, 99).await;
    app.add_link(
        user.id,
        &user.token,
        &json!({"title": "100th", "url": "https://e.com/100"}),
    )
    .await;
    let body = json!({"title": "101st", "url": "https://e.com/101"});
    let response = app.create_link(user.id, Some(&user.token), &body).await;
    expect_validation(response, &["links"]).await;
    // An admin is held to it as well, and with an explicit position.
    let admin = app.register_admin().await;
    let body = json!({"title": "by admin", "url": "https://e.com/a", "position": 7});
    let response = app.create_link(user.id, Some(&admin.token), &body).await;
    expect_validation(response, &["links"]).await;
    assert_eq!(total_links(&app, user.id).await, 100);
    // Deleting one makes room again.
    let (links, _) = expect_page(app.links_of(user.id, "?limit=1").await).await;
    let response = app.delete_link(&links[0]["id"], Some(&user.token)).await;
    assert_eq!(response.status(), 204);
    app.add_link(
        user.id,
        &user.token,
        &json!({"title": "again", "url": "https://e.com/x"}),
    )
    .await;
}

#[tokio::test]
async fn the_51st_social_is_422_naming_socials() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    seed_socials(&app, user.id, 49).await;
    app.add_social(user.id, &user.token, "fiftieth", "https://e.com/50")
        .await;
    let body = json!({"platform": "one_more", "url": "https://e.com/51"});
    let response = app.create_social(user.id, Some(&user.token), &body).await;
    expect_validation(response, &["socials"]).await;
    let socials = expect_data(app.socials_of(user.id, "").await).await;
    assert_eq!(socials.as_array().map(Vec::len), Some(50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_simultaneous_creates_at_95_links_end_at_exactly_100() {
    let app = spawn_app_with(|s| s.db_pool_size = 8).await;
    let user = app.register_user().await;
    seed_links(&app, user.id, 95).await;
    let creates = (0..20).map(|i| {
        let body = json!({"title": format!("racer {i}"), "url": "https://e.com/race"});
        let token = user.token.clone();
        let app = &app;
        async move { app.create_link(user.id, Some(&token), &body).await }
    });
    let mut created = 0;
    for response in join_all(creates).await {
        match response.status().as_u16() {
            201 => created += 1,
            422 => {
                expect_validation(response, &["links"]).await;
            }
            other => panic!("a create answered {other}"),
        }
    }
    assert_eq!(created, 5);
    assert_eq!(total_links(&app, user.id).await, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_social_creates_stop_at_50() {
    let app = spawn_app_with(|s| s.db_pool_size = 8).await;
    let user = app.register_user().await;
    seed_socials(&app, user.id, 45).await;
    let creates = (0..12).map(|i| {
        let body = json!({"platform": format!("racer{i}"), "url": "https://e.com/race"});
        let app = &app;
        let token = user.token.clone();
        async move { app.create_social(user.id, Some(&token), &body).await }
    });
    let statuses: Vec<u16> = join_all(creates)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 422).count(),
        7,
        "{statuses:?}"
    );
    let socials = expect_data(app.socials_of(user.id, "").await).await;
    assert_eq!(socials.as_array().map(Vec::len), Some(50));
}

fn cache_control(response: &reqwest::Response) -> String {
    header(response, "cache-control").unwrap_or_default()
}

#[tokio::test]
async fn answers_with_a_token_or_a_private_user_are_no_store() {
    let app = spawn_app().await;
    let username = unique_name("ns");
    let body = json!({"username": username, "email": format!("{username}@example.com"), "password": TEST_PASSWORD});
    let register = app.register(&body).await;
    assert!(cache_control(&register).contains("no-store"), "register");
    let id = expect_written(register, 201).await["id"].clone();
    let login = app.login(&username, TEST_PASSWORD).await;
    assert!(cache_control(&login).contains("no-store"), "login");
    let token = expect_data(login).await["token"]
        .as_str()
        .expect("token")
        .to_string();
    let me = app.me(&token).await;
    assert!(cache_control(&me).contains("no-store"), "/me");
    let own_writes = [
        (
            "PATCH own user",
            app.update_user(&id, Some(&token), &json!({"bio": "mine"}))
                .await,
        ),
        (
            "create a link",
            app.create_link(
                &id,
                Some(&token),
                &json!({"title": "t", "url": "https://e.com"}),
            )
            .await,
        ),
        (
            "create a social",
            app.create_social(
                &id,
                Some(&token),
                &json!({"platform": "gh", "url": "https://e.com"}),
            )
            .await,
        ),
    ];
    for (what, response) in &own_writes {
        assert!(cache_control(response).contains("no-store"), "{what}");
    }
    // Public reads stay cacheable by clients (revalidated).
    let public = app.user(&id).await;
    assert_eq!(cache_control(&public), "no-cache");
}
