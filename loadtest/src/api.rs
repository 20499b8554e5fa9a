//! A small linkhub client for the seeding command and the benchmark (the
//! scenarios go through goose's own client, which records every request).

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::data;

/// The parts of a profile the tools look at.
#[derive(Debug, Clone, Deserialize)]
pub struct ProfileView {
    pub user: UserView,
    pub links: Vec<LinkView>,
    pub socials: Vec<SocialView>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct UserView {
    pub id: i64,
    pub bio: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LinkView {
    pub id: i64,
    pub title: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SocialView {
    pub id: i64,
    pub platform: String,
    pub url: String,
}

#[derive(Deserialize)]
struct Data<T> {
    data: T,
}

#[derive(Deserialize)]
struct Id {
    id: i64,
}

#[derive(Deserialize)]
struct Login {
    token: String,
}

/// What registering a seeded user found.
pub enum Registered {
    /// A new user with this id.
    Created(i64),
    /// The username or email is taken (an earlier seed run).
    Exists,
}

#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    /// A client for `host` (`http://127.0.0.1:8080`) keeping up to
    /// `connections` idle connections.
    pub fn new(host: &str, connections: usize) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(connections)
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Self {
            client,
            base: host.trim_end_matches('/').to_owned(),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Registers seeded user `i`.
    pub async fn register(&self, i: usize) -> Result<Registered, String> {
        let body = json!({
            "username": data::username(i),
            "email": data::email(i),
            "password": data::PASSWORD,
            "name": data::display_name(i),
            "bio": data::bio(i),
        });
        let res = self
            .send(self.client.post(self.url("/api/v1/users")).json(&body))
            .await?;
        match res.status().as_u16() {
            201 => Ok(Registered::Created(parse::<Id>(res).await?.id)),
            409 => Ok(Registered::Exists),
            _ => Err(failure("registering", res).await),
        }
    }

    /// Logs in and answers the bearer token.
    pub async fn login(&self, login: &str, password: &str) -> Result<String, String> {
        let res = self
            .send(
                self.client
                    .post(self.url("/api/v1/auth/login"))
                    .json(&json!({ "login": login, "password": password })),
            )
            .await?;
        if res.status().as_u16() != 200 {
            return Err(failure(&format!("logging in as {login}"), res).await);
        }
        Ok(parse::<Login>(res).await?.token)
    }

    /// The profile of `username`, `None` when it does not exist.
    pub async fn profile(&self, username: &str) -> Result<Option<ProfileView>, String> {
        let res = self
            .send(
                self.client
                    .get(self.url(&format!("/api/v1/profiles/{username}"))),
            )
            .await?;
        match res.status().as_u16() {
            200 => Ok(Some(parse::<ProfileView>(res).await?)),
            404 => Ok(None),
            _ => Err(failure(&format!("reading profile {username}"), res).await),
        }
    }

    pub async fn add_link(
        &self,
        token: &str,
        user_id: i64,
        title: &str,
        url: &str,
    ) -> Result<i64, String> {
        let res = self
            .send(
                self.client
                    .post(self.url(&format!("/api/v1/users/{user_id}/links")))
                    .bearer_auth(token)
                    .json(&json!({ "title": title, "url": url })),
            )
            .await?;
        if res.status().as_u16() != 201 {
            return Err(failure("adding a link", res).await);
        }
        Ok(parse::<Id>(res).await?.id)
    }

    /// Adds a social account; one that exists already (`409`) is fine.
    pub async fn add_social(
        &self,
        token: &str,
        user_id: i64,
        platform: &str,
        url: &str,
    ) -> Result<(), String> {
        let res = self
            .send(
                self.client
                    .post(self.url(&format!("/api/v1/users/{user_id}/socials")))
                    .bearer_auth(token)
                    .json(&json!({ "platform": platform, "url": url })),
            )
            .await?;
        match res.status().as_u16() {
            201 | 409 => Ok(()),
            _ => Err(failure("adding a social", res).await),
        }
    }

    /// `PATCH /api/v1/users/{id}` with `changes`.
    pub async fn patch_user(
        &self,
        token: &str,
        user_id: i64,
        changes: &Value,
    ) -> Result<(), String> {
        let res = self
            .send(
                self.client
                    .patch(self.url(&format!("/api/v1/users/{user_id}")))
                    .bearer_auth(token)
                    .json(changes),
            )
            .await?;
        if res.status().as_u16() != 200 {
            return Err(failure("updating a user", res).await);
        }
        Ok(())
    }

    pub async fn patch_social(&self, token: &str, social_id: i64, url: &str) -> Result<(), String> {
        let res = self
            .send(
                self.client
                    .patch(self.url(&format!("/api/v1/socials/{social_id}")))
                    .bearer_auth(token)
                    .json(&json!({ "url": url })),
            )
            .await?;
        if res.status().as_u16() != 200 {
            return Err(failure("updating a social", res).await);
        }
        Ok(())
    }

    pub async fn delete_link(&self, token: &str, link_id: i64) -> Result<(), String> {
        let res = self
            .send(
                self.client
                    .delete(self.url(&format!("/api/v1/links/{link_id}")))
                    .bearer_auth(token),
            )
            .await?;
        if res.status().as_u16() != 204 {
            return Err(failure("deleting a link", res).await);
        }
        Ok(())
    }

    /// A GET answering its status, its `X-Cache` header and its body.
    pub async fn get(&self, path: &str) -> Result<(u16, String, Vec<u8>), String> {
        let res = self.send(self.client.get(self.url(path))).await?;
        let status = res.status().as_u16();
        let cache = res
            .headers()
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = res
            .bytes()
            .await
            .map_err(|e| format!("reading {path}: {e}"))?;
        Ok((status, cache, body.to_vec()))
    }

    /// Sends a request, retrying connection failures and `503` a few times
    /// (a server that is still starting, a PostgreSQL pool that is drained).
    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, String> {
        const ATTEMPTS: u32 = 5;
        let mut delay = Duration::from_millis(100);
        let mut attempt = 1;
        loop {
            let last = attempt == ATTEMPTS;
            let Some(this) = request.try_clone().filter(|_| !last) else {
                return request
                    .send()
                    .await
                    .map_err(|e| format!("request failed: {e}"));
            };
            match this.send().await {
                Ok(res) if res.status().as_u16() != 503 => return Ok(res),
                _ => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
            }
        }
    }
}

async fn parse<T: serde::de::DeserializeOwned>(res: reqwest::Response) -> Result<T, String> {
    res.json::<Data<T>>()
        .await
        .map(|d| d.data)
        .map_err(|e| format!("unexpected response body: {e}"))
}

async fn failure(what: &str, res: reqwest::Response) -> String {
    let status = res.status();
    let body = res.text().await.unwrap_or_default();
    format!(
        "{what}: HTTP {status}: {}",
        body.chars().take(300).collect::<String>()
    )
}
