//! Talking to a [`TestApp`] the way the API's users do: one helper per
//! endpoint, named after it (`register`, `login`, `create_link`, `profile`,
//! ...), answering the raw response so a test can assert any status; and the
//! one way to create each resource and get it back asserted (`register_user`,
//! `register_admin`, `register_with`, `add_link`, `add_social`).

use std::fmt::Display;

use reqwest::{Method, Response};
use serde_json::{Value, json};

use super::app::TestApp;
use super::assertions::{
    assert_link, assert_private_user, assert_social, expect_json, expect_written,
};
use super::database::execute_sql;
use super::metrics::parse_metric_samples;
use super::names::unique_name;
use super::paths;

/// The password every helper-registered user gets.
pub const TEST_PASSWORD: &str = "correct horse battery staple";

pub struct RegisteredUser {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub password: String,
    pub token: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.send(Method::GET, path, None, None).await
    }

    /// `GET path` with `If-None-Match: etag` (a revalidation).
    pub async fn get_if_none_match(&self, path: &str, etag: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header("If-None-Match", etag)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path} failed: {e}"))
    }

    pub async fn get_auth(&self, path: &str, token: &str) -> reqwest::Response {
        self.send(Method::GET, path, Some(token), None).await
    }

    pub async fn post_json(&self, path: &str, token: Token<'_>, body: &Value) -> Response {
        self.send(Method::POST, path, token, Some(body)).await
    }

    pub async fn patch_json(&self, path: &str, token: Token<'_>, body: &Value) -> Response {
        self.send(Method::PATCH, path, token, Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        self.send(Method::DELETE, path, token, None).await
    }

    /// Sends a raw body with the given content type (or none).
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut request = self.client.post(self.url(path)).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send().await.expect("POST failed")
    }

    /// One request with an optional bearer token and JSON body.
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> reqwest::Response {
        let mut request = self.client.request(method.clone(), self.url(path));
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path} failed: {e}"))
    }

    /// Registers a unique user (password [`TEST_PASSWORD`]) and logs it in.
    pub async fn register_user(&self) -> RegisteredUser {
        self.register_logged_in(false).await
    }

    /// Registers a unique user, makes it an admin in the database, logs it in.
    pub async fn register_admin(&self) -> RegisteredUser {
        self.register_logged_in(true).await
    }

    async fn register_logged_in(&self, admin: bool) -> RegisteredUser {
        let username = unique_name("user");
        let email = format!("{username}@example.com");
        let body = json!({"username": username, "email": email, "password": TEST_PASSWORD});
        let registered = expect_json(self.register(&body).await, 201).await;
        let id = registered["data"]["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("register answered no id: {registered}"));
        if admin {
            let promote = format!("UPDATE users SET role = 'admin' WHERE id = {id}");
            execute_sql(&self.database_url, &promote).await;
        }
        let token = self.login_token(&username, TEST_PASSWORD).await;
        RegisteredUser {
            id,
            username,
            email,
            password: TEST_PASSWORD.to_string(),
            token,
        }
    }

    /// Logs in (asserting 200) and returns the new token.
    pub async fn login_token(&self, login: &str, password: &str) -> String {
        let body = expect_json(self.login(login, password).await, 200).await;
        body["data"]["token"]
            .as_str()
            .unwrap_or_else(|| panic!("login answered no token: {body}"))
            .to_string()
    }

    /// `POST /api/v1/auth/login`.
    pub async fn login(&self, login: &str, password: &str) -> reqwest::Response {
        self.post_json(
            paths::LOGIN,
            None,
            &json!({"login": login, "password": password}),
        )
        .await
    }

    /// `POST /api/v1/auth/login` as relayed by a proxy: with `X-Forwarded-For`.
    pub async fn login_forwarded_for(
        &self,
        login: &str,
        password: &str,
        forwarded_for: &str,
    ) -> reqwest::Response {
        self.client
            .post(self.url(paths::LOGIN))
            .header("x-forwarded-for", forwarded_for)
            .json(&json!({"login": login, "password": password}))
            .send()
            .await
            .expect("POST login failed")
    }

    pub async fn metrics(&self) -> String {
        let response = self.get(paths::METRICS).await;
        assert_eq!(response.status().as_u16(), 200, "GET /metrics");
        response.text().await.expect("metrics body")
    }

    /// Sums the samples of series `name` whose labels include every filter pair.
    pub async fn metric_sum(&self, name: &str, label_filter: &[(&str, &str)]) -> f64 {
        let text = self.metrics().await;
        parse_metric_samples(&text)
            .into_iter()
            .filter(|sample| sample.name == name)
            .filter(|sample| {
                label_filter
                    .iter()
                    .all(|(key, value)| sample.labels.iter().any(|(k, v)| k == key && v == value))
            })
            .map(|sample| sample.value)
            .sum()
    }
}

/// An optional bearer token.
pub type Token<'a> = Option<&'a str>;

/// One helper per endpoint of API.md, named after it. Each answers the raw
/// response; ids are anything that prints as one (an `i64`, or a JSON value
/// taken from an earlier answer).
impl TestApp {
    /// `POST /api/v1/users` with exactly `body`.
    pub async fn register(&self, body: &Value) -> Response {
        self.post_json(paths::USERS, None, body).await
    }

    /// `POST /api/v1/auth/logout`.
    pub async fn logout(&self, token: Token<'_>) -> Response {
        self.post_json(paths::LOGOUT, token, &json!({})).await
    }

    /// `GET /api/v1/me`.
    pub async fn me(&self, token: &str) -> Response {
        self.get_auth(paths::ME, token).await
    }

    /// `GET /api/v1/users<query>`; `query` is `""` or starts with `?`.
    pub async fn list_users(&self, query: &str) -> Response {
        self.get(&format!("{}{query}", paths::USERS)).await
    }

    /// `GET /api/v1/users/{id}`.
    pub async fn user(&self, id: impl Display) -> Response {
        self.get(&paths::user(id)).await
    }

    /// `PATCH /api/v1/users/{id}`.
    pub async fn update_user(&self, id: impl Display, token: Token<'_>, body: &Value) -> Response {
        self.patch_json(&paths::user(id), token, body).await
    }

    /// `DELETE /api/v1/users/{id}`.
    pub async fn delete_user(&self, id: impl Display, token: Token<'_>) -> Response {
        self.delete(&paths::user(id), token).await
    }

    /// `GET /api/v1/profiles/{username}`.
    pub async fn profile(&self, username: impl Display) -> Response {
        self.get(&paths::profile(username)).await
    }

    /// `GET /@{username}`, the HTML page.
    pub async fn profile_page(&self, username: impl Display) -> Response {
        self.get(&paths::profile_page(username)).await
    }

    /// `GET /healthz`.
    pub async fn healthz(&self) -> Response {
        self.get(paths::HEALTHZ).await
    }

    /// `GET /readyz`.
    pub async fn readyz(&self) -> Response {
        self.get(paths::READYZ).await
    }

    /// `GET /api/v1/openapi.json`.
    pub async fn openapi(&self) -> Response {
        self.get(paths::OPENAPI).await
    }
}

/// The five endpoints of a user's links and of a user's socials have one
/// shape on their own paths, so they are written once, for both:
/// `create_link`, `links_of`, `link`, `update_link`, `delete_link` and the
/// same for socials.
macro_rules! owned_resource_endpoints {
    ($name:literal, $of_user:path, $one:path,
     $create:ident, $list:ident, $get:ident, $update:ident, $delete:ident) => {
        impl TestApp {
            #[doc = concat!("`POST /api/v1/users/{user_id}/", $name, "s`.")]
            pub async fn $create(
                &self,
                user_id: impl Display,
                token: Token<'_>,
                body: &Value,
            ) -> Response {
                self.post_json(&$of_user(user_id), token, body).await
            }

            #[doc = concat!("`GET /api/v1/users/{user_id}/", $name, "s<query>`; `query` is `\"\"` or starts with `?`.")]
            pub async fn $list(&self, user_id: impl Display, query: &str) -> Response {
                self.get(&format!("{}{query}", $of_user(user_id))).await
            }

            #[doc = concat!("`GET /api/v1/", $name, "s/{id}`.")]
            pub async fn $get(&self, id: impl Display) -> Response {
                self.get(&$one(id)).await
            }

            #[doc = concat!("`PATCH /api/v1/", $name, "s/{id}`.")]
            pub async fn $update(&self, id: impl Display, token: Token<'_>, body: &Value) -> Response {
                self.patch_json(&$one(id), token, body).await
            }

            #[doc = concat!("`DELETE /api/v1/", $name, "s/{id}`.")]
            pub async fn $delete(&self, id: impl Display, token: Token<'_>) -> Response {
                self.delete(&$one(id), token).await
            }
        }
    };
}

owned_resource_endpoints!(
    "link",
    paths::links,
    paths::link,
    create_link,
    links_of,
    link,
    update_link,
    delete_link
);
owned_resource_endpoints!(
    "social",
    paths::socials,
    paths::social,
    create_social,
    socials_of,
    social,
    update_social,
    delete_social
);

/// The one way to create each resource: the endpoint above, the answer
/// asserted (`201`, the resource's shape), the resource returned.
impl TestApp {
    /// Registers a user with exactly these fields; returns the private user.
    pub async fn register_with(&self, body: &Value) -> Value {
        let user = expect_written(self.register(body).await, 201).await;
        assert_private_user(&user);
        user
    }

    /// Creates a link for `user_id` with `token`; returns the link.
    pub async fn add_link(&self, user_id: impl Display, token: &str, body: &Value) -> Value {
        let link = expect_written(self.create_link(user_id, Some(token), body).await, 201).await;
        assert_link(&link);
        link
    }

    /// Creates a social for `user_id` with `token`; returns the social.
    pub async fn add_social(
        &self,
        user_id: impl Display,
        token: &str,
        platform: &str,
        url: &str,
    ) -> Value {
        let body = json!({"platform": platform, "url": url});
        let social =
            expect_written(self.create_social(user_id, Some(token), &body).await, 201).await;
        assert_social(&social);
        social
    }

    /// Registers a user with one link.
    pub async fn user_with_link(&self, title: &str, url: &str) -> (RegisteredUser, Value) {
        let user = self.register_user().await;
        let body = json!({"title": title, "url": url});
        let link = self.add_link(user.id, &user.token, &body).await;
        (user, link)
    }

    /// Registers a user with a link titled `Mine` and a `github` social at
    /// `https://github.com/mine`.
    pub async fn user_with_link_and_social(&self) -> (RegisteredUser, Value, Value) {
        let (user, link) = self
            .user_with_link("Mine", "https://example.com/mine")
            .await;
        let social = self
            .add_social(user.id, &user.token, "github", "https://github.com/mine")
            .await;
        (user, link, social)
    }
}

impl TestApp {
    /// A request with any method, also one HTTP does not define (`FOO`).
    pub async fn request_with_method(&self, method: &str, path: &str) -> Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method token");
        self.client
            .request(method, self.url(path))
            .send()
            .await
            .expect("request failed")
    }
}
