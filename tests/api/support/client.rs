//! Talking to a [`TestApp`] the way the API's users do: one helper per
//! endpoint, named after it (`register`, `login`, `create_link`, `profile`,
//! ...), answering the raw response so a test can assert any status; and the
//! one way to create each resource and get it back asserted (`register_user`,
//! `register_admin`, `register_with`, `add_link`, `add_social`).

use std::fmt::Display;

use reqwest::Response;
use serde_json::{Value, json};

use super::app::{TestApp, unique_name};
use super::assertions::{assert_link, assert_private_user, assert_social, expect_written};
use super::database::execute_sql;
use super::metrics::parse_metric_samples;
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
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("GET failed")
    }

    pub async fn get_auth(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET failed")
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        self.send(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    pub async fn patch_json(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        self.send(reqwest::Method::PATCH, path, token, Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        self.send(reqwest::Method::DELETE, path, token, None).await
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
        method: reqwest::Method,
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
        let (id, username, email) = self.create_user().await;
        let token = self.login_token(&username, TEST_PASSWORD).await;
        RegisteredUser {
            id,
            username,
            email,
            password: TEST_PASSWORD.to_string(),
            token,
        }
    }

    /// Registers a unique user, makes it an admin in the database, logs it in.
    pub async fn register_admin(&self) -> RegisteredUser {
        let (id, username, email) = self.create_user().await;
        execute_sql(
            &self.database_url,
            &format!("UPDATE users SET role = 'admin' WHERE id = {id}"),
        )
        .await;
        let token = self.login_token(&username, TEST_PASSWORD).await;
        RegisteredUser {
            id,
            username,
            email,
            password: TEST_PASSWORD.to_string(),
            token,
        }
    }

    async fn create_user(&self) -> (i64, String, String) {
        let username = unique_name("user");
        let email = format!("{username}@example.com");
        let response = self
            .register(&json!({"username": username, "email": email, "password": TEST_PASSWORD}))
            .await;
        let status = response.status().as_u16();
        let body = response.text().await.expect("register body");
        assert_eq!(status, 201, "registration failed: {body}");
        let body: Value = serde_json::from_str(&body).expect("register body is JSON");
        let id = body["data"]["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("register answered no id: {body}"));
        (id, username, email)
    }

    /// Logs in (asserting 200) and returns the new token.
    pub async fn login_token(&self, login: &str, password: &str) -> String {
        let response = self.login(login, password).await;
        let status = response.status().as_u16();
        let body = response.text().await.expect("login body");
        assert_eq!(status, 200, "login failed: {body}");
        let body: Value = serde_json::from_str(&body).expect("login body is JSON");
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

    /// `POST /api/v1/users/{user_id}/links`.
    pub async fn create_link(
        &self,
        user_id: impl Display,
        token: Token<'_>,
        body: &Value,
    ) -> Response {
        self.post_json(&paths::links(user_id), token, body).await
    }

    /// `GET /api/v1/users/{user_id}/links<query>`; `query` is `""` or starts with `?`.
    pub async fn links_of(&self, user_id: impl Display, query: &str) -> Response {
        self.get(&format!("{}{query}", paths::links(user_id))).await
    }

    /// `GET /api/v1/links/{id}`.
    pub async fn link(&self, id: impl Display) -> Response {
        self.get(&paths::link(id)).await
    }

    /// `PATCH /api/v1/links/{id}`.
    pub async fn update_link(&self, id: impl Display, token: Token<'_>, body: &Value) -> Response {
        self.patch_json(&paths::link(id), token, body).await
    }

    /// `DELETE /api/v1/links/{id}`.
    pub async fn delete_link(&self, id: impl Display, token: Token<'_>) -> Response {
        self.delete(&paths::link(id), token).await
    }

    /// `POST /api/v1/users/{user_id}/socials`.
    pub async fn create_social(
        &self,
        user_id: impl Display,
        token: Token<'_>,
        body: &Value,
    ) -> Response {
        self.post_json(&paths::socials(user_id), token, body).await
    }

    /// `GET /api/v1/users/{user_id}/socials<query>`; `query` is `""` or starts with `?`.
    pub async fn socials_of(&self, user_id: impl Display, query: &str) -> Response {
        self.get(&format!("{}{query}", paths::socials(user_id)))
            .await
    }

    /// `GET /api/v1/socials/{id}`.
    pub async fn social(&self, id: impl Display) -> Response {
        self.get(&paths::social(id)).await
    }

    /// `PATCH /api/v1/socials/{id}`.
    pub async fn update_social(
        &self,
        id: impl Display,
        token: Token<'_>,
        body: &Value,
    ) -> Response {
        self.patch_json(&paths::social(id), token, body).await
    }

    /// `DELETE /api/v1/socials/{id}`.
    pub async fn delete_social(&self, id: impl Display, token: Token<'_>) -> Response {
        self.delete(&paths::social(id), token).await
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
}
