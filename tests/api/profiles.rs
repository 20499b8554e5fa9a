//! `GET /profiles/{username}`: the public user with ordered links and socials.

use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn profile_has_the_public_user_ordered_links_and_ordered_socials() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let (other, _) = app.user_with_link("not mine", "https://example.org").await;
    app.add_social(other.id, &other.token, "aaa", "https://example.org")
        .await;
    for (title, position) in [("third", 2), ("first", 0), ("second", 1), ("also third", 2)] {
        app.add_link(
            user.id,
            &user.token,
            &json!({"title": title, "url": "https://example.com", "position": position}),
        )
        .await;
    }
    for platform in ["youtube", "github", "mastodon"] {
        app.add_social(user.id, &user.token, platform, "https://example.com")
            .await;
    }
    let response = app.profile(&user.username).await;
    let text = response.text().await.unwrap();
    assert!(!text.contains(&user.email), "email leaked: {text}");
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_keys(&body, &["data"]);
    let profile = &body["data"];
    assert_keys(profile, &["user", "links", "socials"]);
    assert_public_user(&profile["user"]);
    assert_eq!(profile["user"]["id"], user.id);
    assert_eq!(profile["user"]["username"], user.username.as_str());

    let links = profile["links"].as_array().unwrap();
    let titles: Vec<&str> = links.iter().map(|l| l["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["first", "second", "third", "also third"]);
    for link in links {
        assert_link(link);
        assert_eq!(link["user_id"], user.id);
    }
    let socials = profile["socials"].as_array().unwrap();
    let platforms: Vec<&str> = socials
        .iter()
        .map(|s| s["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["github", "mastodon", "youtube"]);
    for social in socials {
        assert_social(social);
        assert_eq!(social["user_id"], user.id);
    }
    // The profile's entries are the same objects the resource endpoints answer.
    let link = expect_data(app.link(&links[0]["id"]).await).await;
    assert_eq!(&link, &links[0]);
}

#[tokio::test]
async fn profile_shows_all_links_not_just_a_page() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    for i in 0..15 {
        app.add_link(
            user.id,
            &user.token,
            &json!({"title": format!("l{i}"), "url": "https://example.com"}),
        )
        .await;
    }
    let profile = expect_data(app.profile(&user.username).await).await;
    let links = profile["links"].as_array().expect("links is a list");
    assert_eq!(positions_of(links), (0..15).collect::<Vec<i64>>());
}

#[tokio::test]
async fn profile_of_a_user_without_links_or_socials_has_empty_lists() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let profile = expect_data(app.profile(&user.username).await).await;
    assert_eq!(profile["links"], json!([]));
    assert_eq!(profile["socials"], json!([]));
    assert_eq!(profile["user"]["name"], "");
}

#[tokio::test]
async fn profile_of_an_unknown_username_is_404() {
    let app = spawn_app().await;
    app.register_user().await;
    for username in ["nobody_at_all", "x", "Not-A-Valid-Name", "%25", "a%20b"] {
        let response = app.profile(username).await;
        let status = response.status().as_u16();
        assert_eq!(status, 404, "/profiles/{username}");
        expect_error(response, 404, "not_found").await;
    }
}
