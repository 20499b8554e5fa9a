//! `/api/v1/users`: registration, field rules, reads, listing and search,
//! updates and deletion.

use serde_json::{Value, json};

use crate::support::*;

fn registration(username: &str) -> Value {
    json!({
        "username": username,
        "email": format!("{username}@example.com"),
        "password": TEST_PASSWORD,
    })
}

/// A registration body with one field replaced.
fn registration_with(field: &str, value: Value) -> Value {
    let mut body = registration(&unique_name("v"));
    body[field] = value;
    body
}

/// A valid address of exactly `len` characters (64-char local part, labels ≤ 63).
fn email_of_len(len: usize) -> String {
    let local = "a".repeat(64);
    // What remains for the labels before ".com", dots between them included.
    let mut remaining = len - local.len() - "@".len() - ".com".len();
    let mut labels = Vec::new();
    while remaining > 61 {
        labels.push("b".repeat(60));
        remaining -= 61;
    }
    labels.push("b".repeat(remaining));
    let email = format!("{local}@{}.com", labels.join("."));
    assert_eq!(email.chars().count(), len);
    email
}

#[tokio::test]
async fn register_returns_201_with_the_private_user() {
    let app = spawn_app().await;
    let username = unique_name("reg");
    let body = json!({
        "username": username,
        "email": format!("{username}@example.com"),
        "password": TEST_PASSWORD,
        "name": "Ada Lovelace",
        "bio": "First programmer",
        "avatar_url": "https://example.com/ada.png",
    });
    let response = app.register(&body).await;
    assert_eq!(response.status().as_u16(), 201);
    let content_type = header(&response, "content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    assert!(!text.contains(TEST_PASSWORD), "password echoed: {text}");
    assert!(!text.contains("$argon2"), "hash echoed: {text}");
    assert!(
        !text.to_lowercase().contains("password"),
        "password key: {text}"
    );
    assert!(!text.to_lowercase().contains("hash"), "hash key: {text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_keys(&body, &["message", "data"]);
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    let user = &body["data"];
    assert_private_user(user);
    assert_eq!(user["username"], username.as_str());
    assert_eq!(user["email"], format!("{username}@example.com"));
    assert_eq!(user["name"], "Ada Lovelace");
    assert_eq!(user["bio"], "First programmer");
    assert_eq!(user["avatar_url"], "https://example.com/ada.png");
    assert_eq!(user["role"], "user");
    let created = assert_timestamp(&user["created_at"]);
    let age = chrono::Utc::now().signed_duration_since(created);
    assert!(
        age.num_seconds().abs() < 300,
        "created_at {created} is not now"
    );
}

#[tokio::test]
async fn register_defaults_name_bio_and_avatar_url() {
    let app = spawn_app().await;
    let user = app.register_with(&registration(&unique_name("def"))).await;
    assert_eq!(user["name"], "");
    assert_eq!(user["bio"], "");
    assert!(user["avatar_url"].is_null(), "{user}");
    assert_eq!(user["role"], "user");
}

#[tokio::test]
async fn register_accepts_values_at_the_limits() {
    let app = spawn_app().await;
    // Username: 3 and 32 characters of the allowed set.
    app.register_with(&registration("a_9")).await;
    let long = format!("{}_9", "z".repeat(30));
    assert_eq!(long.len(), 32);
    app.register_with(&registration(&long)).await;
    // Password of 8 and 128 characters (multi-byte: characters, not bytes).
    app.register_with(&registration_with("password", json!("é".repeat(8))))
        .await;
    app.register_with(&registration_with("password", json!("p".repeat(128))))
        .await;
    app.register_with(&registration_with("password", json!("é".repeat(128))))
        .await;
    // Name 100, bio 500 characters, again counted in characters.
    app.register_with(&registration_with("name", json!("é".repeat(100))))
        .await;
    app.register_with(&registration_with("bio", json!("é".repeat(500))))
        .await;
    // Email of exactly 254 characters.
    let mut body = registration(&unique_name("em"));
    body["email"] = json!(email_of_len(254));
    app.register_with(&body).await;
    // Avatar URL of exactly 2048 characters, http and https.
    let prefix = "https://example.com/";
    let url = format!("{prefix}{}", "a".repeat(2048 - prefix.len()));
    app.register_with(&registration_with("avatar_url", json!(url)))
        .await;
    app.register_with(&registration_with(
        "avatar_url",
        json!("http://example.com/a.png"),
    ))
    .await;
}

async fn assert_registration_refused(app: &TestApp, field: &str, value: Value) {
    let body = registration_with(field, value.clone());
    let response = app.register(&body).await;
    let status = response.status().as_u16();
    if status != 422 {
        let text = response.text().await.unwrap();
        panic!("{field}={value} answered {status}, expected 422: {text}");
    }
    expect_validation(response, &[field]).await;
}

#[tokio::test]
async fn register_refuses_bad_usernames() {
    let app = spawn_app().await;
    for username in [
        "ab",
        "",
        &"a".repeat(33),
        "Alice",
        "al-ice",
        "al ice",
        "al.ice",
        "ålice",
        "alice!",
        "al\u{0}ice",
    ] {
        assert_registration_refused(&app, "username", json!(username)).await;
    }
}

#[tokio::test]
async fn register_refuses_bad_emails() {
    let app = spawn_app().await;
    for email in [
        "not-an-email",
        "a@",
        "@example.com",
        "a b@example.com",
        "",
        &email_of_len(255),
        "nul\u{0}@example.com",
    ] {
        assert_registration_refused(&app, "email", json!(email)).await;
    }
}

#[tokio::test]
async fn register_refuses_bad_passwords() {
    let app = spawn_app().await;
    for password in [
        "short12".to_string(),
        "é".repeat(7),
        "p".repeat(129),
        String::new(),
        "password\u{0}1".to_string(),
    ] {
        assert_registration_refused(&app, "password", json!(password)).await;
    }
}

#[tokio::test]
async fn register_refuses_long_name_and_bio() {
    let app = spawn_app().await;
    assert_registration_refused(&app, "name", json!("n".repeat(101))).await;
    assert_registration_refused(&app, "name", json!("é".repeat(101))).await;
    assert_registration_refused(&app, "name", json!("Ada\u{0}")).await;
    assert_registration_refused(&app, "bio", json!("b".repeat(501))).await;
    assert_registration_refused(&app, "bio", json!("é".repeat(501))).await;
    assert_registration_refused(&app, "bio", json!("bio\u{0}")).await;
}

#[tokio::test]
async fn register_refuses_bad_avatar_urls() {
    let app = spawn_app().await;
    let prefix = "https://example.com/";
    let too_long = format!("{prefix}{}", "a".repeat(2049 - prefix.len()));
    for url in [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "data:image/png;base64,iVBORw0KGgo=",
        "ftp://example.com/a.png",
        "file:///etc/passwd",
        "vbscript:msgbox(1)",
        "/relative/a.png",
        "example.com/a.png",
        "not a url",
        "",
        &too_long,
        "https://example.com/\u{0}",
    ] {
        assert_registration_refused(&app, "avatar_url", json!(url)).await;
    }
}

#[tokio::test]
async fn register_reports_every_bad_field_at_once() {
    let app = spawn_app().await;
    let response = app
        .register(&json!({
            "username": "A",
            "email": "nope",
            "password": "short",
            "name": "n".repeat(101),
            "bio": "b".repeat(501),
            "avatar_url": "javascript:alert(1)",
        }))
        .await;
    expect_validation(
        response,
        &["username", "email", "password", "name", "bio", "avatar_url"],
    )
    .await;
}

#[tokio::test]
async fn register_with_a_missing_field_unknown_field_or_wrong_type_is_400() {
    let app = spawn_app().await;
    let username = unique_name("shape");
    let missing_password = json!({"username": username, "email": "a@example.com"});
    let unknown_field = json!({
        "username": username, "email": "a@example.com", "password": TEST_PASSWORD,
        "role": "admin",
    });
    let wrong_type = json!({"username": 42, "email": "a@example.com", "password": TEST_PASSWORD});
    let not_an_object = json!(["username", "email"]);
    for body in [missing_password, unknown_field, wrong_type, not_an_object] {
        let response = app.register(&body).await;
        expect_error(response, 400, "bad_request").await;
    }
    // Nothing was created by the refused attempts.
    let (data, meta) = expect_page(app.list_users("").await).await;
    assert!(data.is_empty(), "{data:?}");
    assert_eq!(meta["total"], 0);
}

#[tokio::test]
async fn duplicate_username_is_409() {
    let app = spawn_app().await;
    let username = unique_name("dup");
    app.register_with(&registration(&username)).await;
    let response = app
        .register(
            &json!({"username": username, "email": "other@example.com", "password": TEST_PASSWORD}),
        )
        .await;
    expect_error(response, 409, "conflict").await;
}

#[tokio::test]
async fn duplicate_email_is_409_whatever_its_case() {
    let app = spawn_app().await;
    let first = app
        .register_with(&json!({
            "username": unique_name("em1"),
            "email": "Mixed.Case@Example.com",
            "password": TEST_PASSWORD,
        }))
        .await;
    assert_eq!(first["role"], "user");
    for email in [
        "Mixed.Case@Example.com",
        "mixed.case@example.com",
        "MIXED.CASE@EXAMPLE.COM",
    ] {
        let response = app
            .register(
                &json!({"username": unique_name("em2"), "email": email, "password": TEST_PASSWORD}),
            )
            .await;
        expect_error(response, 409, "conflict").await;
    }
}

#[tokio::test]
async fn get_user_answers_the_public_user_whoever_asks() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let admin = app.register_admin().await;
    let path = paths::user(user.id);

    let anonymous = expect_data(app.get(&path).await).await;
    assert_public_user(&anonymous);
    assert_eq!(anonymous["id"], user.id);
    assert_eq!(anonymous["username"], user.username.as_str());
    assert!(anonymous["avatar_url"].is_null());

    for token in [&user.token, &admin.token] {
        let response = app.get_auth(&path, token).await;
        let text = response.text().await.unwrap();
        assert!(!text.contains(&user.email), "email leaked: {text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_keys(&body, &["data"]);
        assert_public_user(&body["data"]);
    }
}

#[tokio::test]
async fn get_missing_user_is_404() {
    let app = spawn_app().await;
    expect_error(app.user(987654321).await, 404, "not_found").await;
}

async fn register_named(app: &TestApp, username: &str, name: &str) -> i64 {
    let user = app
        .register_with(&json!({
            "username": username,
            "email": format!("{username}@example.com"),
            "password": TEST_PASSWORD,
            "name": name,
        }))
        .await;
    user["id"].as_i64().unwrap()
}

#[tokio::test]
async fn list_users_pages_in_id_order() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(register_named(&app, &format!("lister_{i}"), "").await);
    }

    // Defaults: page 1, limit 10.
    let (data, meta) = expect_page(app.list_users("").await).await;
    assert_eq!(
        meta,
        json!({"page": 1, "limit": 10, "total": 5, "total_pages": 1,
               "total_exact": true, "next_after": null})
    );
    let got: Vec<i64> = data.iter().map(|u| u["id"].as_i64().unwrap()).collect();
    assert_eq!(got, ids);
    for user in &data {
        assert_public_user(user);
    }

    let (data, meta) = expect_page(app.list_users("?page=1&limit=2").await).await;
    assert_eq!(
        meta,
        json!({"page": 1, "limit": 2, "total": 5, "total_pages": 3,
               "total_exact": true, "next_after": ids[1]})
    );
    let got: Vec<i64> = data.iter().map(|u| u["id"].as_i64().unwrap()).collect();
    assert_eq!(got, ids[0..2]);

    let (data, meta) = expect_page(app.list_users("?page=3&limit=2").await).await;
    assert_eq!(
        meta,
        json!({"page": 3, "limit": 2, "total": 5, "total_pages": 3,
               "total_exact": true, "next_after": null})
    );
    let got: Vec<i64> = data.iter().map(|u| u["id"].as_i64().unwrap()).collect();
    assert_eq!(got, ids[4..5]);

    // Past the end: 200, empty, the true total.
    let (data, meta) = expect_page(app.list_users("?page=4&limit=2").await).await;
    assert!(data.is_empty());
    assert_eq!(
        meta,
        json!({"page": 4, "limit": 2, "total": 5, "total_pages": 3,
               "total_exact": true, "next_after": null})
    );
    let (data, meta) = expect_page(app.list_users("?page=100&limit=100").await).await;
    assert!(data.is_empty());
    assert_eq!(meta["total"], 5);
    assert_eq!(meta["total_pages"], 1);
    assert_eq!(meta["limit"], 100);
}

#[tokio::test]
async fn list_users_refuses_bad_paging_parameters() {
    let app = spawn_app().await;
    app.register_user().await;
    for query in [
        "page=0",
        "page=-1",
        "page=abc",
        "page=1.5",
        "page=99999999999999999999",
        "limit=0",
        "limit=-5",
        "limit=101",
        "limit=1000",
        "limit=abc",
        "limit=99999999999999999999",
    ] {
        let response = app.list_users(&format!("?{query}")).await;
        let status = response.status().as_u16();
        assert_eq!(status, 400, "{query} answered {status}");
        expect_error(response, 400, "bad_request").await;
    }
    let (_, meta) = expect_page(app.list_users("?limit=1").await).await;
    assert_eq!(meta["limit"], 1);
    let (_, meta) = expect_page(app.list_users("?limit=100").await).await;
    assert_eq!(meta["limit"], 100);
}

async fn search_usernames(app: &TestApp, search: &str) -> (Vec<String>, Value) {
    let encoded: String = url::form_urlencoded::byte_serialize(search.as_bytes()).collect();
    let response = app
        .list_users(&format!("?search={encoded}&limit=100"))
        .await;
    let (data, meta) = expect_page(response).await;
    let mut names: Vec<String> = data
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    (names, meta)
}

#[tokio::test]
async fn search_is_a_case_insensitive_substring_of_username_or_name() {
    let app = spawn_app().await;
    register_named(&app, "grace_hopper", "Admiral").await;
    register_named(&app, "ada", "Ada LOVELACE").await;
    register_named(&app, "alan", "Alan Turing").await;

    let (names, meta) = search_usernames(&app, "HOPP").await;
    assert_eq!(names, ["grace_hopper"]);
    assert_eq!(meta["total"], 1);
    assert_eq!(meta["total_pages"], 1);

    let (names, _) = search_usernames(&app, "lovelace").await;
    assert_eq!(names, ["ada"]);
    let (names, _) = search_usernames(&app, "miRAL").await;
    assert_eq!(names, ["grace_hopper"]);
    let (names, meta) = search_usernames(&app, "ALAN").await;
    assert_eq!(names, ["alan"]);
    assert_eq!(meta["total"], 1);
    // An empty search filters nothing.
    let (names, _) = search_usernames(&app, "").await;
    assert_eq!(names.len(), 3);
}

#[tokio::test]
async fn search_with_no_match_has_zero_total_and_zero_pages() {
    let app = spawn_app().await;
    register_named(&app, "someone", "Some One").await;
    let response = app.list_users("?search=zzzqqq").await;
    let (data, meta) = expect_page(response).await;
    assert!(data.is_empty());
    assert_eq!(
        meta,
        json!({"page": 1, "limit": 10, "total": 0, "total_pages": 0,
               "total_exact": true, "next_after": null})
    );
}

#[tokio::test]
async fn search_treats_wildcard_characters_literally() {
    let app = spawn_app().await;
    // Each pair: a name holding the special character, and a decoy that a
    // pattern language (LIKE, glob, regex) would match instead.
    register_named(&app, "pct_lit", "100% real").await;
    register_named(&app, "pct_decoy", "100x real").await;
    register_named(&app, "und_lit", "abc_xyz").await;
    register_named(&app, "und_decoy", "abcqxyz").await;
    register_named(&app, "bsl_lit", "kkk\\sss").await;
    register_named(&app, "bsl_decoy", "kkksss and kkkxsss").await;
    register_named(&app, "star_lit", "rrr*ttt").await;
    register_named(&app, "star_decoy", "rrrttt rrrxttt").await;
    register_named(&app, "qm_lit", "nnn?mmm").await;
    register_named(&app, "qm_decoy", "nnnmmm nnnxmmm").await;
    register_named(&app, "brk_lit", "xxx[ab]y").await;
    register_named(&app, "brk_decoy", "xxxay").await;

    let cases = [
        ("100% r", "pct_lit"),
        ("100%", "pct_lit"),
        ("abc_xyz", "und_lit"),
        ("kkk\\sss", "bsl_lit"),
        ("kkk\\", "bsl_lit"),
        ("rrr*ttt", "star_lit"),
        ("rrr*", "star_lit"),
        ("nnn?mmm", "qm_lit"),
        ("nnn?", "qm_lit"),
        ("xxx[ab]", "brk_lit"),
        ("xxx[a", "brk_lit"),
        ("xxx[", "brk_lit"),
    ];
    for (search, expected) in cases {
        let (names, meta) = search_usernames(&app, search).await;
        assert_eq!(names, [expected], "search {search:?}");
        assert_eq!(meta["total"], 1, "search {search:?}");
    }
    // "_lit" is in half the usernames above, the "_" literally.
    let (names, meta) = search_usernames(&app, "_lit").await;
    assert_eq!(names.len(), 6);
    assert_eq!(meta["total"], 6);
}

#[tokio::test]
async fn search_longer_than_100_characters_is_400() {
    let app = spawn_app().await;
    let response = app
        .list_users(&format!("?search={}", "a".repeat(101)))
        .await;
    expect_error(response, 400, "bad_request").await;
    let response = app
        .list_users(&format!("?search={}", "é".repeat(101)))
        .await;
    expect_error(response, 400, "bad_request").await;
    let (data, meta) = expect_page(
        app.list_users(&format!("?search={}", "a".repeat(100)))
            .await,
    )
    .await;
    assert!(data.is_empty());
    assert_eq!(meta["total"], 0);
    let (data, _) = expect_page(
        app.list_users(&format!("?search={}", "é".repeat(100)))
            .await,
    )
    .await;
    assert!(data.is_empty());
}

#[tokio::test]
async fn search_combines_with_paging() {
    let app = spawn_app().await;
    for i in 0..3 {
        register_named(&app, &format!("match_{i}"), "").await;
        register_named(&app, &format!("other_{i}"), "").await;
    }
    let (data, meta) = expect_page(app.list_users("?search=MATCH&limit=2&page=2").await).await;
    assert_eq!(
        meta,
        json!({"page": 2, "limit": 2, "total": 3, "total_pages": 2,
               "total_exact": true, "next_after": null})
    );
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["username"], "match_2");
}

#[tokio::test]
async fn patch_updates_each_field_and_answers_the_private_user() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let path = paths::user(user.id);
    let before = expect_data(app.get(&path).await).await;

    let changes = [
        ("name", json!("New Name")),
        ("bio", json!("A new bio")),
        ("avatar_url", json!("https://example.com/new.png")),
        ("email", json!(format!("new_{}", user.email))),
    ];
    for (field, value) in changes {
        let mut body = json!({ field: value });
        if field == "email" {
            body["current_password"] = json!(user.password);
        }
        let response = app.patch_json(&path, Some(&user.token), &body).await;
        let updated = expect_written(response, 200).await;
        assert_private_user(&updated);
        assert_eq!(updated[field], value, "{field}");
        assert_eq!(updated["id"], user.id);
        assert_eq!(updated["created_at"], before["created_at"]);
        let public = expect_data(app.get(&path).await).await;
        if field != "email" {
            assert_eq!(public[field], value, "GET after PATCH {field}");
        }
    }
    let after = expect_data(app.get(&path).await).await;
    assert!(
        assert_timestamp(&after["updated_at"]) >= assert_timestamp(&before["updated_at"]),
        "updated_at went back"
    );

    // Several fields at once.
    let response = app
        .patch_json(
            &path,
            Some(&user.token),
            &json!({"name": "Both", "bio": "Fields"}),
        )
        .await;
    let updated = expect_written(response, 200).await;
    assert_eq!(updated["name"], "Both");
    assert_eq!(updated["bio"], "Fields");

    // The new email logs in; the old one does not.
    let response = app
        .login(&format!("new_{}", user.email), &user.password)
        .await;
    expect_json(response, 200).await;
    let response = app.login(&user.email, &user.password).await;
    expect_error(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn patch_username_moves_the_profile() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let new_username = unique_name("renamed");
    expect_data(app.profile(&user.username).await).await;
    let response = app
        .update_user(
            user.id,
            Some(&user.token),
            &json!({"username": new_username}),
        )
        .await;
    let updated = expect_written(response, 200).await;
    assert_eq!(updated["username"], new_username.as_str());
    let public = expect_data(app.user(user.id).await).await;
    assert_eq!(public["username"], new_username.as_str());
    let profile = expect_data(app.profile(&new_username).await).await;
    assert_eq!(profile["user"]["id"], user.id);
    expect_error(app.profile(&user.username).await, 404, "not_found").await;
    // The token still works after a username change and login takes the new name.
    let me = expect_data(app.me(&user.token).await).await;
    assert_eq!(me["username"], new_username.as_str());
    expect_json(app.login(&new_username, &user.password).await, 200).await;
    // The old name is free again.
    app.register_with(&json!({
        "username": user.username,
        "email": "someone.else@example.com",
        "password": TEST_PASSWORD,
    }))
    .await;
}

#[tokio::test]
async fn patch_avatar_url_to_null_clears_it() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let path = paths::user(user.id);
    let response = app
        .patch_json(
            &path,
            Some(&user.token),
            &json!({"avatar_url": "https://example.com/a.png"}),
        )
        .await;
    expect_written(response, 200).await;
    let response = app
        .patch_json(&path, Some(&user.token), &json!({"avatar_url": null}))
        .await;
    let updated = expect_written(response, 200).await;
    assert!(updated["avatar_url"].is_null(), "{updated}");
    let public = expect_data(app.get(&path).await).await;
    assert!(public["avatar_url"].is_null(), "{public}");
}

#[tokio::test]
async fn patch_applies_the_field_rules() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let path = paths::user(user.id);
    let bad = [
        ("username", json!("No")),
        ("username", json!("has space")),
        ("email", json!("nope")),
        ("password", json!("short")),
        ("password", json!("p".repeat(129))),
        ("name", json!("n".repeat(101))),
        ("bio", json!("b".repeat(501))),
        ("avatar_url", json!("javascript:alert(1)")),
        ("avatar_url", json!("data:text/plain,hi")),
        ("name", json!("nul\u{0}")),
        ("bio", json!("nul\u{0}")),
    ];
    for (field, value) in bad {
        let response = app
            .patch_json(&path, Some(&user.token), &json!({ field: value }))
            .await;
        expect_validation(response, &[field]).await;
    }
    for body in [
        json!({"role": "admin"}),
        json!({"id": 5}),
        json!({"name": 5}),
        json!({"bio": ["x"]}),
    ] {
        let response = app.patch_json(&path, Some(&user.token), &body).await;
        expect_error(response, 400, "bad_request").await;
    }
    // Nothing changed, and the role is still user.
    let me = expect_data(app.me(&user.token).await).await;
    assert_eq!(me["role"], "user");
    assert_eq!(me["username"], user.username.as_str());
    assert_eq!(me["name"], "");
}

#[tokio::test]
async fn patch_into_a_taken_username_or_email_is_409() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let other = app.register_user().await;
    let path = paths::user(user.id);
    let response = app
        .patch_json(
            &path,
            Some(&user.token),
            &json!({"username": other.username}),
        )
        .await;
    expect_error(response, 409, "conflict").await;
    let response = app
        .patch_json(
            &path,
            Some(&user.token),
            &json!({"email": other.email.to_uppercase(), "current_password": user.password}),
        )
        .await;
    expect_error(response, 409, "conflict").await;
    // Keeping one's own username is not a conflict.
    let response = app
        .patch_json(
            &path,
            Some(&user.token),
            &json!({"username": user.username}),
        )
        .await;
    expect_written(response, 200).await;
}

#[tokio::test]
async fn password_change_kills_every_token_of_the_user() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let other_session = app.register_user().await;
    let second_token = app.login_token(&user.username, &user.password).await;

    let response = app
        .update_user(
            user.id,
            Some(&user.token),
            &json!({"password": "a brand new password", "current_password": user.password}),
        )
        .await;
    expect_written(response, 200).await;

    for token in [&user.token, &second_token] {
        let response = app.me(token).await;
        expect_error(response, 401, "unauthorized").await;
    }
    // Another user's token is untouched.
    expect_data(app.me(&other_session.token).await).await;
    // The old password is refused, the new one works.
    expect_error(
        app.login(&user.username, &user.password).await,
        401,
        "unauthorized",
    )
    .await;
    let token = &app
        .login_token(&user.username, "a brand new password")
        .await;
    expect_data(app.me(token).await).await;
}

#[tokio::test]
async fn delete_user_removes_links_socials_and_tokens() {
    let app = spawn_app().await;
    let (user, link, social) = app.user_with_link_and_social().await;
    let other = app.register_user().await;
    let second_token = app.login_token(&user.username, &user.password).await;
    let other_link = app
        .add_link(
            other.id,
            &other.token,
            &json!({"title": "Other", "url": "https://example.org"}),
        )
        .await;
    // Warm whatever the service caches.
    expect_data(app.link(&link["id"]).await).await;
    expect_data(app.social(&social["id"]).await).await;
    expect_data(app.profile(&user.username).await).await;

    let response = app.delete_user(user.id, Some(&user.token)).await;
    expect_no_content(response).await;

    for path in paths::reads_of_user(user.id, &user.username, &link["id"], &social["id"]) {
        expect_error(app.get(&path).await, 404, "not_found").await;
    }
    for token in [&user.token, &second_token] {
        expect_error(app.me(token).await, 401, "unauthorized").await;
    }
    expect_error(
        app.login(&user.username, &user.password).await,
        401,
        "unauthorized",
    )
    .await;
    // The other user is untouched.
    expect_data(app.link(&other_link["id"]).await).await;
    let (data, meta) = expect_page(app.list_users("").await).await;
    assert_eq!(meta["total"], 1);
    assert_eq!(data[0]["id"], other.id);
    // Deleting again: the token is dead, so 401; an admin gets 404.
    let response = app.delete_user(user.id, Some(&user.token)).await;
    expect_error(response, 401, "unauthorized").await;
    let admin = app.register_admin().await;
    let response = app.delete_user(user.id, Some(&admin.token)).await;
    expect_error(response, 404, "not_found").await;
    // The username and email can be registered again.
    app.register_with(&json!({
        "username": user.username, "email": user.email, "password": TEST_PASSWORD,
    }))
    .await;
}

#[tokio::test]
async fn list_users_refuses_hostile_list_parameters() {
    let app = spawn_app().await;
    register_named(&app, "nordic_1", "Åsa Öberg").await;
    let long = "a".repeat(101);
    let refused = [
        "after=-1".to_owned(),
        "after=9223372036854775808".to_owned(),
        "after=99999999999999999999".to_owned(),
        "after=abc".to_owned(),
        "after=1&page=1".to_owned(),
        "page=1&after=0".to_owned(),
        "page=10001&limit=1".to_owned(),
        "page=101&limit=100".to_owned(),
        "page=1001".to_owned(),
        "page=18446744073709551615&limit=100".to_owned(),
        "search=ab".to_owned(),
        "search=a".to_owned(),
        "search=--".to_owned(),
        "search=a_b_c".to_owned(),
        "search=%25%25%25".to_owned(),
        "search=ab%20cd".to_owned(),
        format!("search={long}"),
        "search=ab&after=0".to_owned(),
    ];
    for query in &refused {
        let response = app.list_users(&format!("?{query}")).await;
        expect_error(response, 400, "bad_request").await;
    }
    // At the bounds: the deepest page and a three-letter run anywhere.
    for query in [
        "page=10000&limit=1",
        "page=100&limit=100",
        "after=0",
        "after=9223372036854775807",
        "search=abc",
        "search=--abc--",
    ] {
        expect_page(app.list_users(&format!("?{query}")).await).await;
    }
    // Unicode letters count as letters, in the search and the match.
    let encoded: String = url::form_urlencoded::byte_serialize("ÅSA".as_bytes()).collect();
    let (data, meta) = expect_page(app.list_users(&format!("?search={encoded}")).await).await;
    assert_eq!(data.len(), 1, "{meta}");
    assert_eq!(data[0]["username"], "nordic_1");
    let encoded: String = url::form_urlencoded::byte_serialize("öbe".as_bytes()).collect();
    let (data, _) = expect_page(app.list_users(&format!("?search={encoded}")).await).await;
    assert_eq!(data.len(), 1);
}

/// Follows `next_after` from `after=0` and answers the ids seen, in order.
async fn walk(app: &TestApp, query: &str, limit: u64) -> Vec<i64> {
    let (mut seen, mut after) = (Vec::new(), 0);
    loop {
        let (data, meta) = expect_page(
            app.list_users(&format!("?after={after}&limit={limit}{query}"))
                .await,
        )
        .await;
        assert_eq!(meta["after"], after, "{meta}");
        assert_eq!(meta["limit"], limit, "{meta}");
        assert!(data.len() as u64 <= limit);
        let ids: Vec<i64> = data.iter().map(id_of).collect();
        assert!(ids.iter().all(|id| *id > after), "{ids:?} after {after}");
        seen.extend(&ids);
        match meta["next_after"].as_i64() {
            Some(next) => {
                assert_eq!(Some(&next), ids.last(), "next_after is the last id");
                assert_eq!(data.len() as u64, limit, "only a full page may be followed");
                after = next;
            }
            None => return seen,
        }
        assert!(seen.len() < 1000, "the walk does not end");
    }
}

#[tokio::test]
async fn after_walks_every_user_once_in_id_order() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let name = if i % 2 == 0 { "Even Walker" } else { "Odd" };
        ids.push(register_named(&app, &format!("walker_{i}"), name).await);
    }
    for limit in [1, 3, 7, 10] {
        assert_eq!(walk(&app, "", limit).await, ids, "limit {limit}");
    }
    let evens: Vec<i64> = ids.iter().step_by(2).copied().collect();
    assert_eq!(walk(&app, "&search=EVEN", 2).await, evens);

    // The meta of a walk: `after` in place of `page` and `total_pages`.
    let (data, meta) = expect_page(app.list_users("?after=0&limit=3").await).await;
    assert_eq!(
        meta,
        json!({"after": 0, "limit": 3, "total": 7, "total_exact": true, "next_after": ids[2]})
    );
    assert_eq!(data.len(), 3);
    let (data, meta) = expect_page(app.list_users(&format!("?after={}", ids[6])).await).await;
    assert!(data.is_empty());
    assert_eq!(meta["next_after"], Value::Null);
    assert_eq!(meta["total"], 7);
}

#[tokio::test]
async fn a_walk_visits_every_user_that_existed_once_while_others_come_and_go() {
    let app = spawn_cached().await;
    let admin = app.register_admin().await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(register_named(&app, &format!("stayer_{i}"), "").await);
    }
    let everyone: Vec<i64> = {
        let (data, _) = expect_page(app.list_users("?limit=100").await).await;
        data.iter().map(id_of).collect()
    };
    let (mut seen, mut after) = (Vec::new(), 0);
    let mut step = 0;
    loop {
        let (data, meta) =
            expect_page(app.list_users(&format!("?after={after}&limit=2")).await).await;
        seen.extend(data.iter().map(id_of));
        // Between pages: someone registers, someone already seen leaves.
        register_named(&app, &format!("newcomer_{step}"), "").await;
        if let Some(gone) = seen.last() {
            let response = app.delete_user(gone, Some(&admin.token)).await;
            assert!(response.status().is_success() || response.status() == 404);
        }
        step += 1;
        match meta["next_after"].as_i64() {
            Some(next) => after = next,
            None => break,
        }
        assert!(step < 100, "the walk does not end");
    }
    for id in &everyone {
        assert_eq!(
            seen.iter().filter(|s| *s == id).count(),
            1,
            "user {id} seen once in {seen:?}"
        );
    }
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, seen, "in id order, no repeat");
}

/// `linkhub_cache_loads_total` of the `users` namespace: the loads of full
/// pages (and of the marks of pages that were not).
async fn users_page_loads(app: &TestApp) -> f64 {
    app.metric_sum("linkhub_cache_loads_total", &[("namespace", "users")])
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_show_at_once_and_leave_full_pages_cached() {
    let app = spawn_cached().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(register_named(&app, &format!("early_{i}"), "Early Bird").await);
    }
    let full_pages = ["?limit=2&page=1", "?limit=2&page=2", "?limit=2&after=0"];
    let searched = [
        "?limit=2&search=bird&page=1",
        "?limit=2&search=BIRD&after=0",
    ];
    for path in full_pages.iter().chain(&searched) {
        let path = format!("{}{path}", paths::USERS);
        fetch(&app, &path).await;
        assert_eq!(fetch(&app, &path).await.x_cache, "HIT", "GET {path}");
    }
    for round in 0..3 {
        let newcomer = register_named(&app, &format!("late_{round}"), "Late Bird").await;
        ids.push(newcomer);
        let total = ids.len();

        // Read-your-writes: the total, the page that holds the newcomer,
        // the same in a search, and a walk.
        let last_page = total.div_ceil(2);
        let (data, meta) =
            expect_page(app.list_users(&format!("?limit=2&page={last_page}")).await).await;
        assert_eq!(meta["total"], total, "{meta}");
        assert_eq!(meta["total_pages"], last_page, "{meta}");
        assert_eq!(data.last().map(id_of), Some(newcomer), "round {round}");
        let (data, meta) = expect_page(
            app.list_users(&format!("?limit=2&search=bird&page={last_page}"))
                .await,
        )
        .await;
        assert_eq!(meta["total"], total, "{meta}");
        assert_eq!(data.last().map(id_of), Some(newcomer));
        assert_eq!(walk(&app, "", 2).await, ids);
        assert_eq!(walk(&app, "&search=bird", 2).await, ids);

        // The full pages were not loaded again: their items stayed cached,
        // and once the new total is loaded they answer HIT.
        let loads = users_page_loads(&app).await;
        for path in full_pages.iter().chain(&searched) {
            let path = format!("{}{path}", paths::USERS);
            let read = fetch(&app, &path).await;
            assert_eq!(read.status, 200);
            assert_eq!(read.body["meta"]["total"], total, "GET {path}");
            assert_eq!(fetch(&app, &path).await.x_cache, "HIT", "GET {path}");
        }
        assert_eq!(
            users_page_loads(&app).await,
            loads,
            "a registration reloaded a full page"
        );
    }

    // A change to an existing user reaches every page at once.
    let admin = app.register_admin().await;
    let response = app
        .update_user(ids[0], Some(&admin.token), &json!({"name": "Renamed Owl"}))
        .await;
    expect_written(response, 200).await;
    let (data, _) = expect_page(app.list_users("?limit=2&page=1").await).await;
    assert_eq!(data[0]["name"], "Renamed Owl");
    let (data, meta) = expect_page(app.list_users("?limit=2&search=bird&page=1").await).await;
    assert_eq!(meta["total"], ids.len() - 1);
    assert_eq!(data[0]["id"], ids[1]);
    let response = app.delete_user(ids[1], Some(&admin.token)).await;
    assert_eq!(response.status(), 204);
    let (data, meta) = expect_page(app.list_users("?limit=2&after=0").await).await;
    assert_eq!(data.iter().map(id_of).collect::<Vec<_>>(), [ids[0], ids[2]]);
    assert_eq!(
        meta["total"],
        ids.len() - 1 + 1,
        "the admin registered, one left"
    );
}
