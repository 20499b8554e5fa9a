//! Assertions on answers, in API.md's terms: the JSON shapes of users, links,
//! socials, pages and errors, and the status each kind of answer has.

use serde_json::Value;

/// Reads a response as JSON, panicking with the raw body when it is not.
pub async fn body_json(response: reqwest::Response) -> Value {
    let text = response.text().await.expect("response body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text:?}"))
}

/// Asserts the status and returns the JSON body, showing the body on mismatch.
pub async fn expect_json(response: reqwest::Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    let text = response.text().await.expect("response body");
    assert_eq!(actual, status, "unexpected status; body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("body is not JSON ({e}): {text:?}"))
}

/// Asserts an error response of API.md: the status, the `code`, and the exact
/// shape `{"error": {"code", "message", "details"?}}`. Returns the `error` object.
pub async fn expect_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    let actual = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or("").to_string())
        .unwrap_or_default();
    let text = response.text().await.expect("response body");
    assert_eq!(actual, status, "unexpected status; body: {text}");
    assert!(
        content_type.starts_with("application/json"),
        "error content-type is {content_type:?}; body: {text}"
    );
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {text:?}"));
    assert_error_shape(&body);
    assert_eq!(body["error"]["code"], code, "error code; body: {body}");
    body["error"].clone()
}

/// Asserts that a body is exactly `{"error": {"code", "message", "details"?}}`.
pub fn assert_error_shape(body: &Value) {
    let top = body
        .as_object()
        .unwrap_or_else(|| panic!("error body is not an object: {body}"));
    assert_eq!(top.len(), 1, "error body has extra top-level keys: {body}");
    let error = top
        .get("error")
        .and_then(Value::as_object)
        .unwrap_or_else(|| panic!("error body has no error object: {body}"));
    assert!(
        error.get("code").is_some_and(Value::is_string),
        "error.code must be a string: {body}"
    );
    assert!(
        error
            .get("message")
            .and_then(Value::as_str)
            .is_some_and(|m| !m.is_empty()),
        "error.message must be a non-empty string: {body}"
    );
    for key in error.keys() {
        assert!(
            ["code", "message", "details"].contains(&key.as_str()),
            "unexpected key {key:?} in error: {body}"
        );
    }
}

/// Header value as a string, if present.
pub fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().expect("header is not ASCII").to_string())
}

/// The keys of a public user, per API.md.
pub const PUBLIC_USER_KEYS: &[&str] = &[
    "id",
    "username",
    "name",
    "bio",
    "avatar_url",
    "created_at",
    "updated_at",
];
/// What a private user has besides [`PUBLIC_USER_KEYS`].
pub const PRIVATE_USER_EXTRA_KEYS: &[&str] = &["email", "role"];
pub const LINK_KEYS: &[&str] = &[
    "id",
    "user_id",
    "title",
    "url",
    "position",
    "created_at",
    "updated_at",
];
pub const SOCIAL_KEYS: &[&str] = &[
    "id",
    "user_id",
    "platform",
    "url",
    "created_at",
    "updated_at",
];

/// Asserts that `value` is an object with exactly these keys.
pub fn assert_keys(value: &Value, keys: &[&str]) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("expected an object, got {value}"));
    let mut actual: Vec<&str> = object.keys().map(String::as_str).collect();
    actual.sort_unstable();
    let mut expected = keys.to_vec();
    expected.sort_unstable();
    assert_eq!(actual, expected, "object keys of {value}");
}

/// Asserts that a timestamp is RFC 3339 and returns it.
pub fn assert_timestamp(value: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("timestamp is not a string: {value}"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("timestamp {text:?} is not RFC 3339: {e}"))
}

/// Asserts the public user shape (and the types of its fields).
pub fn assert_public_user(user: &Value) {
    assert_keys(user, PUBLIC_USER_KEYS);
    assert_user_field_types(user);
}

/// Asserts the private user shape (and the types of its fields).
pub fn assert_private_user(user: &Value) {
    assert_keys(user, &[PUBLIC_USER_KEYS, PRIVATE_USER_EXTRA_KEYS].concat());
    assert_user_field_types(user);
    assert!(user["email"].is_string(), "email: {user}");
    assert!(
        user["role"] == "user" || user["role"] == "admin",
        "role: {user}"
    );
}

fn assert_user_field_types(user: &Value) {
    assert!(user["id"].as_i64().is_some_and(|id| id > 0), "id: {user}");
    assert!(user["username"].is_string(), "username: {user}");
    assert!(user["name"].is_string(), "name: {user}");
    assert!(user["bio"].is_string(), "bio: {user}");
    assert!(
        user["avatar_url"].is_null() || user["avatar_url"].is_string(),
        "avatar_url: {user}"
    );
    assert_timestamp(&user["created_at"]);
    assert_timestamp(&user["updated_at"]);
}

pub fn assert_link(link: &Value) {
    assert_keys(link, LINK_KEYS);
    assert!(link["id"].as_i64().is_some_and(|id| id > 0), "id: {link}");
    assert!(link["user_id"].as_i64().is_some(), "user_id: {link}");
    assert!(link["title"].is_string(), "title: {link}");
    assert!(link["url"].is_string(), "url: {link}");
    assert!(
        link["position"].as_i64().is_some_and(|p| p >= 0),
        "position: {link}"
    );
    assert_timestamp(&link["created_at"]);
    assert_timestamp(&link["updated_at"]);
}

pub fn assert_social(social: &Value) {
    assert_keys(social, SOCIAL_KEYS);
    assert!(
        social["id"].as_i64().is_some_and(|id| id > 0),
        "id: {social}"
    );
    assert!(social["user_id"].as_i64().is_some(), "user_id: {social}");
    assert!(social["platform"].is_string(), "platform: {social}");
    assert!(social["url"].is_string(), "url: {social}");
    assert_timestamp(&social["created_at"]);
    assert_timestamp(&social["updated_at"]);
}

/// Asserts a create (`201`) or update (`200`) answer: `{"message", "data"}`;
/// returns `data`.
pub async fn expect_written(response: reqwest::Response, status: u16) -> Value {
    let body = expect_json(response, status).await;
    assert_keys(&body, &["message", "data"]);
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "message must be a non-empty string: {body}"
    );
    body["data"].clone()
}

/// Asserts a `204` with an empty body.
pub async fn expect_no_content(response: reqwest::Response) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("response body");
    assert_eq!(status, 204, "expected 204; body: {text}");
    assert!(text.is_empty(), "204 must have no body, got {text:?}");
}

/// Asserts a `422 validation_failed` whose `details` names exactly `fields`,
/// each with a non-empty list of messages.
pub async fn expect_validation(response: reqwest::Response, fields: &[&str]) -> Value {
    let error = expect_error(response, 422, "validation_failed").await;
    let details = error["details"]
        .as_object()
        .unwrap_or_else(|| panic!("422 without details object: {error}"));
    let mut actual: Vec<&str> = details.keys().map(String::as_str).collect();
    actual.sort_unstable();
    let mut expected = fields.to_vec();
    expected.sort_unstable();
    assert_eq!(actual, expected, "fields named in details: {error}");
    for (field, messages) in details {
        let messages = messages
            .as_array()
            .unwrap_or_else(|| panic!("details.{field} is not a list: {error}"));
        assert!(!messages.is_empty(), "details.{field} is empty: {error}");
        assert!(
            messages
                .iter()
                .all(|m| m.as_str().is_some_and(|m| !m.is_empty())),
            "details.{field} must hold non-empty strings: {error}"
        );
    }
    error
}

/// Asserts a page of a list and returns `(data, meta)`: a page-numbered one,
/// or one walked with `after` (which has `after` in place of `page` and
/// `total_pages`).
pub async fn expect_page(response: reqwest::Response) -> (Vec<Value>, Value) {
    let body = expect_json(response, 200).await;
    assert_keys(&body, &["data", "meta"]);
    let shared = ["limit", "total", "total_exact", "next_after"];
    if body["meta"].get("after").is_some() {
        assert_keys(&body["meta"], &[&["after"][..], &shared].concat());
    } else {
        assert_keys(
            &body["meta"],
            &[&["page", "total_pages"][..], &shared].concat(),
        );
    }
    assert!(body["meta"]["total_exact"].is_boolean(), "{body}");
    assert!(
        body["meta"]["next_after"].is_null() || body["meta"]["next_after"].is_i64(),
        "{body}"
    );
    let data = body["data"]
        .as_array()
        .unwrap_or_else(|| panic!("data is not a list: {body}"))
        .clone();
    (data, body["meta"].clone())
}

/// Asserts `{"data": {...}}` with status 200 and returns `data`.
pub async fn expect_data(response: reqwest::Response) -> Value {
    let body = expect_json(response, 200).await;
    assert_keys(&body, &["data"]);
    body["data"].clone()
}

/// The `id` of a resource as answered (asserted to be an integer).
pub fn id_of(resource: &Value) -> i64 {
    resource["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no integer id in {resource}"))
}

/// The `position` of each link, in the order given.
pub fn positions_of(links: &[Value]) -> Vec<i64> {
    links
        .iter()
        .map(|link| {
            link["position"]
                .as_i64()
                .unwrap_or_else(|| panic!("no integer position in {link}"))
        })
        .collect()
}
