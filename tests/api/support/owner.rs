//! [`Owner`]: a registered user with a name, a bio, links and socials, and
//! every public read that shows it; the fixture of the cache tests.

use serde_json::{Value, json};

use super::app::TestApp;
use super::assertions::expect_json;
use super::client::RegisteredUser;
use super::paths;

/// A registered user with links and socials, and every public read about it.
pub struct Owner {
    pub user: RegisteredUser,
    pub username: String,
    pub links: Vec<i64>,
    pub socials: Vec<i64>,
}

impl Owner {
    /// Registers a user with a name and bio, `links` links and `socials` socials.
    pub async fn create(app: &TestApp, links: usize, socials: usize) -> Owner {
        let user = app.register_user().await;
        let response = app
            .update_user(
                user.id,
                Some(&user.token),
                &json!({"name": format!("Name {}", user.username), "bio": "bio-0"}),
            )
            .await;
        expect_json(response, 200).await;
        let mut owner = Owner {
            username: user.username.clone(),
            user,
            links: Vec::new(),
            socials: Vec::new(),
        };
        for i in 0..links {
            owner.add_link(app, &format!("link {i}")).await;
        }
        for i in 0..socials {
            owner.add_social(app, &format!("net{i}")).await;
        }
        owner
    }

    pub fn id(&self) -> i64 {
        self.user.id
    }

    pub fn token(&self) -> &str {
        &self.user.token
    }

    pub async fn add_link(&mut self, app: &TestApp, title: &str) -> i64 {
        let url = format!("https://example.com/{}", self.links.len());
        let link = app
            .add_link(
                self.id(),
                self.token(),
                &json!({"title": title, "url": url}),
            )
            .await;
        let id = link["id"].as_i64().expect("link id");
        self.links.push(id);
        id
    }

    pub async fn add_social(&mut self, app: &TestApp, platform: &str) -> i64 {
        let url = format!("https://{platform}.example.com/{}", self.username);
        let social = app
            .add_social(self.id(), self.token(), platform, &url)
            .await;
        let id = social["id"].as_i64().expect("social id");
        self.socials.push(id);
        id
    }

    /// Updates the user with `body`; asserts 200, returns the whole answer.
    pub async fn patch_user(&self, app: &TestApp, body: Value) -> Value {
        let response = app.update_user(self.id(), Some(self.token()), &body).await;
        expect_json(response, 200).await
    }

    pub fn user_path(&self) -> String {
        paths::user(self.id())
    }

    pub fn profile_path(&self) -> String {
        paths::profile(&self.username)
    }

    pub fn links_path(&self) -> String {
        paths::links(self.id())
    }

    pub fn socials_path(&self) -> String {
        paths::socials(self.id())
    }

    pub fn search_path(&self) -> String {
        paths::user_search(&self.username)
    }

    /// The reads about this user alone (no global list).
    pub fn own_reads(&self) -> Vec<String> {
        let mut paths = vec![
            self.user_path(),
            self.profile_path(),
            self.links_path(),
            format!("{}?page=1&limit=2", self.links_path()),
            self.socials_path(),
        ];
        paths.extend(self.links.iter().map(paths::link));
        paths.extend(self.socials.iter().map(paths::social));
        paths
    }

    /// Every read that shows this user: its own and the user lists.
    pub fn all_reads(&self) -> Vec<String> {
        let mut paths = self.own_reads();
        paths.extend(list_reads());
        paths.push(self.search_path());
        paths
    }
}

/// The global user-list reads.
pub fn list_reads() -> Vec<String> {
    vec![
        paths::USERS.to_string(),
        format!("{}?limit=100", paths::USERS),
        format!("{}?search=name&limit=100", paths::USERS),
    ]
}
