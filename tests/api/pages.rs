//! `GET /@{username}`: the profile page over HTTP — HTML with the page's CSP,
//! cached like every public read (X-Cache, strong ETag, 304), read-your-writes
//! after a change, hostile input escaped, a 404 page for unknown names.

use serde_json::json;

use crate::support::*;

const PAGE_CSP: &str = linkhub::pages::CONTENT_SECURITY_POLICY;

#[tokio::test]
async fn the_page_is_html_with_its_policy_and_is_cached_with_an_etag() {
    let app = spawn_app().await;
    let (user, link) = app
        .user_with_link("My site", "https://example.com/me")
        .await;
    let path = paths::profile_page(&user.username);

    let first = app.profile_page(&user.username).await;
    assert_eq!(first.status(), 200);
    assert_eq!(
        header(&first, "content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        header(&first, "content-security-policy").as_deref(),
        Some(PAGE_CSP)
    );
    assert_eq!(header(&first, "x-cache").as_deref(), Some("MISS"));
    let etag = header(&first, "etag").expect("an ETag");
    assert!(
        etag.starts_with('"') && !etag.starts_with("W/"),
        "strong: {etag}"
    );
    let html = first.text().await.expect("body");
    assert!(
        html.contains(&format!(
            r#"<a href="/l/{}" rel="noopener nofollow ugc">My site</a>"#,
            link["id"]
        )),
        "{html}"
    );

    let second = app.get(&path).await;
    assert_eq!(header(&second, "x-cache").as_deref(), Some("HIT"));
    assert_eq!(header(&second, "etag").as_deref(), Some(etag.as_str()));
    assert_eq!(
        second.text().await.expect("body"),
        html,
        "stored bytes, not a re-render"
    );

    let revalidated = app.get_if_none_match(&path, &etag).await;
    assert_eq!(revalidated.status(), 304);

    // The JSON API keeps its own policy: the page's is on pages only.
    let api = app.profile(&user.username).await;
    assert_ne!(
        header(&api, "content-security-policy").as_deref(),
        Some(PAGE_CSP)
    );
}

#[tokio::test]
async fn a_write_shows_on_the_next_load_of_the_page() {
    let app = spawn_app().await;
    let (user, link) = app.user_with_link("Before", "https://example.com/a").await;
    let path = paths::profile_page(&user.username);
    let before = app.get(&path).await;
    let etag = header(&before, "etag").expect("ETag");
    assert!(before.text().await.expect("body").contains(">Before<"));

    let response = app
        .update_link(&link["id"], Some(&user.token), &json!({"title": "After"}))
        .await;
    assert_eq!(response.status(), 200);

    let after = app.get_if_none_match(&path, &etag).await;
    assert_eq!(
        after.status(),
        200,
        "the old ETag must not match the new page"
    );
    assert_ne!(header(&after, "etag").as_deref(), Some(etag.as_str()));
    let html = after.text().await.expect("body");
    assert!(
        html.contains(">After<") && !html.contains(">Before<"),
        "{html}"
    );
}

#[tokio::test]
async fn hostile_profile_fields_are_escaped_in_the_page() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let hostile = r#""><img src=x onerror=alert(1)><script>alert(1)</script>"#;
    let response = app
        .update_user(
            user.id,
            Some(&user.token),
            &json!({"name": hostile, "bio": hostile}),
        )
        .await;
    assert_eq!(response.status(), 200);
    app.add_link(
        user.id,
        &user.token,
        &json!({"title": hostile, "url": "https://example.com/?q=\"><script>"}),
    )
    .await;
    let html = app
        .profile_page(&user.username)
        .await
        .text()
        .await
        .expect("body");
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("<img src=x"), "{html}");
    assert!(html.contains("&lt;script&gt;"), "{html}");
}

#[tokio::test]
async fn an_unknown_or_impossible_name_gets_the_404_page() {
    let app = spawn_app().await;
    // The breaker starts open; cached 404s are only seen once it is closed.
    wait_cache_ok(&app).await;
    for path in ["/@nobody_here_at_all", "/@Not%20A%20Name", "/@%3Cscript%3E"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(
            header(&response, "content-type").as_deref(),
            Some("text/html; charset=utf-8"),
            "{path}"
        );
        assert_eq!(
            header(&response, "content-security-policy").as_deref(),
            Some(PAGE_CSP)
        );
        let html = response.text().await.expect("body");
        assert!(html.contains("No such profile"), "{html}");
        assert!(
            !html.contains("script"),
            "the name asked for is not echoed: {html}"
        );
    }
    // An unknown name's 404 is cached, and a registration under it shows at once.
    let second = app.get("/@nobody_here_at_all").await;
    assert_eq!(header(&second, "x-cache").as_deref(), Some("HIT"));
    let response = app
        .register(&json!({"username": "nobody_here_at_all", "email": "n@example.com", "password": TEST_PASSWORD, "name": "Now Here"}))
        .await;
    assert_eq!(response.status(), 201);
    let page = app.get("/@nobody_here_at_all").await;
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .expect("body")
            .contains("<h1>Now Here</h1>")
    );
}
