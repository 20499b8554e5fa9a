//! The goose scenarios, each selectable with `--scenarios <name>`:
//!
//! * `profiles`: profile reads with a Zipf-like popularity over the seeded users;
//! * `search`: the users list with realistic search terms, pages and limits;
//! * `mixed`: 95 % profile reads, 5 % writes by logged-in users, each write
//!   read back at once (a stale read-back is a failed request and is counted);
//! * `stampede`: every user reads the hottest profile while its owner (goose
//!   user 1) writes it every second and reads each write back;
//! * `clicks`: people following profile links through `/l/{link_id}`
//!   (`clicks.rs`).
//!
//! Writers log in lazily, on their first write. Each writer owns one seeded
//! account (spread evenly over the popularity ranks, the hottest included), so
//! no two writers change the same profile and a read-back can only be stale
//! if the cache served an old entry.

use std::collections::VecDeque;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use goose::goose::GooseResponse;
use goose::prelude::*;
use rand::RngExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::ProfileView;
use crate::data::{self, Zipf};

/// The Zipf exponent of profile popularity.
const ZIPF_EXPONENT: f64 = 1.0;

/// Share of `mixed` iterations that write.
const WRITE_SHARE: f64 = 0.05;

/// How often the `stampede` owner writes.
const OWNER_WRITE_EVERY: Duration = Duration::from_secs(1);

static POPULARITY: LazyLock<Zipf> =
    LazyLock::new(|| Zipf::new(data::seeded_users(), ZIPF_EXPONENT));

/// Counters the summary line reports (goose's metrics know nothing of
/// `X-Cache` or of stale reads).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Counters {
    /// Profile reads by `X-Cache`, read-backs excluded.
    pub hit: u64,
    pub miss: u64,
    pub bypass: u64,
    /// Writes that answered 2xx and were read back.
    pub writes: u64,
    /// Read-backs that did not show their write.
    pub stale_reads: u64,
    /// Clicks answered `302` (the `clicks` scenario).
    #[serde(default)]
    pub clicks: u64,
}

static HIT: AtomicU64 = AtomicU64::new(0);
static MISS: AtomicU64 = AtomicU64::new(0);
static BYPASS: AtomicU64 = AtomicU64::new(0);
static WRITES: AtomicU64 = AtomicU64::new(0);
static STALE: AtomicU64 = AtomicU64::new(0);

pub fn counters() -> Counters {
    Counters {
        hit: HIT.load(Ordering::Relaxed),
        miss: MISS.load(Ordering::Relaxed),
        bypass: BYPASS.load(Ordering::Relaxed),
        writes: WRITES.load(Ordering::Relaxed),
        stale_reads: STALE.load(Ordering::Relaxed),
        clicks: crate::clicks::ANSWERED.load(Ordering::Relaxed),
    }
}

/// Registers the five scenarios.
pub fn register(attack: GooseAttack) -> GooseAttack {
    attack
        .register_scenario(
            scenario!("profiles")
                .register_transaction(transaction!(read_profile).set_name("profile")),
        )
        .register_scenario(
            scenario!("search").register_transaction(transaction!(search_users).set_name("search")),
        )
        .register_scenario(
            scenario!("mixed").register_transaction(transaction!(mixed).set_name("mixed")),
        )
        .register_scenario(
            scenario!("stampede").register_transaction(transaction!(stampede).set_name("stampede")),
        )
        .register_scenario(crate::clicks::scenario())
}

/// A seeded account drawn by popularity.
pub fn popular_account() -> usize {
    POPULARITY.sample()
}

/// `profiles`: one profile read, its user drawn by popularity.
async fn read_profile(user: &mut GooseUser) -> TransactionResult {
    let rank = POPULARITY.sample();
    get_profile(user, rank).await
}

async fn get_profile(user: &mut GooseUser, account: usize) -> TransactionResult {
    let path = format!("/api/v1/profiles/{}", data::username(account));
    let goose = user.get_named(&path, "/api/v1/profiles/{username}").await?;
    count_cache_result(&goose);
    drain(goose).await;
    Ok(())
}

/// `search`: a page of the users list for a realistic term.
async fn search_users(user: &mut GooseUser) -> TransactionResult {
    let path = {
        let mut rng = rand::rng();
        let term = data::SEARCH_TERMS[rng.random_range(0..data::SEARCH_TERMS.len())];
        // Most people stay on the first page.
        let page = match rng.random_range(0..10) {
            0..=6 => 1,
            7 | 8 => 2,
            _ => rng.random_range(3..=5),
        };
        let limit = [10, 10, 10, 20, 50][rng.random_range(0..5)];
        format!(
            "/api/v1/users?search={}&page={page}&limit={limit}",
            encode_query(term)
        )
    };
    let goose = user.get_named(&path, "/api/v1/users?search=").await?;
    drain(goose).await;
    Ok(())
}

/// `mixed`: a popular profile read, or (5 %) a write of the user's own
/// account followed by a read-back of its profile.
async fn mixed(user: &mut GooseUser) -> TransactionResult {
    let (write, op) = {
        let mut rng = rand::rng();
        (rng.random::<f64>() < WRITE_SHARE, rng.random_range(0..4u8))
    };
    if !write {
        return read_profile(user).await;
    }
    let account = writer_account(user.weighted_users_index);
    let op = match op {
        0 => WriteOp::Bio,
        1 | 2 => WriteOp::Link,
        _ => WriteOp::Social,
    };
    write_and_read_back(user, account, op).await
}

/// `stampede`: goose user 1 owns the hottest profile and writes it every
/// second; everybody else reads it.
async fn stampede(user: &mut GooseUser) -> TransactionResult {
    let hot = 0;
    if user.weighted_users_index != 0 {
        return get_profile(user, hot).await;
    }
    let wait = user
        .get_session_data::<Writer>()
        .and_then(|w| w.last_write)
        .map(|at| OWNER_WRITE_EVERY.saturating_sub(at.elapsed()))
        .unwrap_or_default();
    tokio::time::sleep(wait).await;
    write_and_read_back(user, hot, WriteOp::Bio).await
}

/// Which seeded account goose user `index` writes: distinct for every user
/// (up to the number of seeded users), spread evenly over the popularity ranks.
fn writer_account(index: usize) -> usize {
    let n = data::seeded_users();
    // A stride coprime with n visits every account once before repeating.
    let stride = [97, 89, 83, 79, 73, 71, 67, 61, 59, 53]
        .into_iter()
        .find(|s| !n.is_multiple_of(*s))
        .unwrap_or(1);
    (index * stride) % n
}

#[derive(Clone, Copy, Debug)]
enum WriteOp {
    /// `PATCH /users/{id}` with a new bio.
    Bio,
    /// Add a link, or delete one this writer added (keeps the count bounded).
    Link,
    /// `PATCH /socials/{id}` with a new URL.
    Social,
}

/// A writer's session, made on its first write.
#[derive(Clone)]
struct Writer {
    account: usize,
    user_id: i64,
    token: String,
    socials: Vec<i64>,
    added_links: VecDeque<i64>,
    writes: u64,
    last_write: Option<Instant>,
}

/// What a read-back must show.
enum Expect {
    Bio(String),
    Link { id: i64, present: bool },
    SocialUrl { id: i64, url: String },
}

async fn write_and_read_back(
    user: &mut GooseUser,
    account: usize,
    op: WriteOp,
) -> TransactionResult {
    ensure_writer(user, account).await?;
    let Some(writer) = user.get_session_data_mut::<Writer>() else {
        return Ok(());
    };
    writer.writes += 1;
    writer.last_write = Some(Instant::now());
    let nonce = format!(
        "{}-{}-{}",
        writer.account,
        writer.writes,
        std::process::id()
    );
    let token = writer.token.clone();
    let user_id = writer.user_id;
    let social = if writer.socials.is_empty() {
        None
    } else {
        Some(writer.socials[writer.writes as usize % writer.socials.len()])
    };
    // Only a link write takes one of the writer's links to delete: taken by
    // any other write, it was forgotten and never deleted, and a long run
    // piled links up to the per-user limit (then every add answered `422`).
    let delete_link = if matches!(op, WriteOp::Link) && writer.added_links.len() >= 2 {
        writer.added_links.pop_front()
    } else {
        None
    };
    let planned = match (op, social, delete_link) {
        (WriteOp::Link, _, Some(id)) => Planned::DeleteLink(id),
        (WriteOp::Link, _, None) => Planned::AddLink(format!("load {nonce}")),
        (WriteOp::Social, Some(id), _) => Planned::SocialUrl {
            id,
            url: format!("https://example.com/social/{nonce}"),
        },
        _ => Planned::Bio(format!("bio {nonce}")),
    };
    let (method, path, name, body) = match &planned {
        Planned::DeleteLink(id) => (
            GooseMethod::Delete,
            format!("/api/v1/links/{id}"),
            "/api/v1/links/{id}",
            None,
        ),
        Planned::AddLink(title) => (
            GooseMethod::Post,
            format!("/api/v1/users/{user_id}/links"),
            "/api/v1/users/{id}/links",
            Some(json!({ "title": title, "url": format!("https://example.com/load/{nonce}") })),
        ),
        Planned::SocialUrl { id, url } => (
            GooseMethod::Patch,
            format!("/api/v1/socials/{id}"),
            "/api/v1/socials/{id}",
            Some(json!({ "url": url })),
        ),
        Planned::Bio(bio) => (
            GooseMethod::Patch,
            format!("/api/v1/users/{user_id}"),
            "/api/v1/users/{id}",
            Some(json!({ "bio": bio })),
        ),
    };
    let goose = authed(user, &token, method, &path, name, body.as_ref()).await?;
    let status = goose.response.as_ref().map(|r| r.status().as_u16()).ok();
    if !goose.request.success {
        if status == Some(401) {
            // A dead token: replace the session with one that is no
            // `Writer`, so the next write logs in again.
            user.set_session_data(());
        }
        return Ok(());
    }
    let expect = match planned {
        Planned::DeleteLink(id) => Expect::Link { id, present: false },
        Planned::AddLink(_) => {
            let written: Option<Value> = match goose.response {
                Ok(response) => response.json().await.ok(),
                Err(_) => None,
            };
            let Some(id) = written
                .as_ref()
                .and_then(|v| v.pointer("/data/id"))
                .and_then(Value::as_i64)
            else {
                return Ok(());
            };
            if let Some(writer) = user.get_session_data_mut::<Writer>() {
                writer.added_links.push_back(id);
            }
            Expect::Link { id, present: true }
        }
        Planned::SocialUrl { id, url } => {
            drain(goose).await;
            Expect::SocialUrl { id, url }
        }
        Planned::Bio(bio) => {
            drain(goose).await;
            Expect::Bio(bio)
        }
    };
    WRITES.fetch_add(1, Ordering::Relaxed);
    read_back(user, account, expect).await
}

/// The write a writer is about to make.
enum Planned {
    DeleteLink(i64),
    AddLink(String),
    SocialUrl { id: i64, url: String },
    Bio(String),
}

/// Reads the writer's profile right after its write; a profile that does not
/// show the write is a stale read: a failed request, counted.
async fn read_back(user: &mut GooseUser, account: usize, expect: Expect) -> TransactionResult {
    let path = format!("/api/v1/profiles/{}", data::username(account));
    let mut goose = user
        .get_named(&path, "/api/v1/profiles/{username} (read-back)")
        .await?;
    let profile: Option<ProfileView> = match goose.response {
        Ok(response) if goose.request.success => response
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| serde_json::from_value(v["data"].clone()).ok()),
        _ => return Ok(()),
    };
    let fresh = profile.as_ref().is_some_and(|p| match &expect {
        Expect::Bio(bio) => &p.user.bio == bio,
        Expect::Link { id, present } => p.links.iter().any(|l| l.id == *id) == *present,
        Expect::SocialUrl { id, url } => p.socials.iter().any(|s| s.id == *id && &s.url == url),
    });
    if !fresh {
        STALE.fetch_add(1, Ordering::Relaxed);
        return user.set_failure("stale read after a write", &mut goose.request, None, None);
    }
    Ok(())
}

/// Logs the writer in and learns its ids, once per goose user.
async fn ensure_writer(user: &mut GooseUser, account: usize) -> TransactionResult {
    if user.get_session_data::<Writer>().is_some() {
        return Ok(());
    }
    let username = data::username(account);
    let goose = user
        .post_json(
            "/api/v1/auth/login",
            &json!({ "login": username, "password": data::PASSWORD }),
        )
        .await?;
    let login: Option<Value> = match goose.response {
        Ok(response) if goose.request.success => response.json().await.ok(),
        _ => None,
    };
    let Some(token) = login
        .as_ref()
        .and_then(|v| v.pointer("/data/token"))
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return Err(Box::new(TransactionError::Custom(format!(
            "cannot log in as {username}: was the linkhub seeded (loadtest seed)?"
        ))));
    };
    let path = format!("/api/v1/profiles/{username}");
    let goose = user
        .get_named(&path, "/api/v1/profiles/{username} (read-back)")
        .await?;
    let profile: Option<ProfileView> = match goose.response {
        Ok(response) if goose.request.success => response
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| serde_json::from_value(v["data"].clone()).ok()),
        _ => None,
    };
    let Some(profile) = profile else {
        return Err(Box::new(TransactionError::Custom(format!(
            "cannot read the profile of {username}"
        ))));
    };
    user.set_session_data(Writer {
        account,
        user_id: profile.user.id,
        token,
        socials: profile.socials.iter().map(|s| s.id).collect(),
        added_links: VecDeque::new(),
        writes: 0,
        last_write: None,
    });
    Ok(())
}

/// An authenticated request, named for the metrics.
async fn authed(
    user: &mut GooseUser,
    token: &str,
    method: GooseMethod,
    path: &str,
    name: &str,
    body: Option<&Value>,
) -> Result<GooseResponse, Box<TransactionError>> {
    let mut builder = user.get_request_builder(&method, path)?.bearer_auth(token);
    if let Some(body) = body {
        builder = builder.json(body);
    }
    let request = GooseRequest::builder()
        .method(method)
        .path(path)
        .name(name)
        .set_request_builder(builder)
        .build();
    user.request(request).await
}

fn count_cache_result(goose: &GooseResponse) {
    let Ok(response) = &goose.response else {
        return;
    };
    match response.headers().get("x-cache").map(|v| v.as_bytes()) {
        Some(b"HIT") => HIT.fetch_add(1, Ordering::Relaxed),
        Some(b"MISS") => MISS.fetch_add(1, Ordering::Relaxed),
        Some(b"BYPASS") => BYPASS.fetch_add(1, Ordering::Relaxed),
        _ => 0,
    };
}

/// Reads the body to its end, so the connection goes back to the pool.
async fn drain(goose: GooseResponse) {
    if let Ok(response) = goose.response {
        let _ = response.bytes().await;
    }
}

/// Percent-encodes a query value (letters, digits and `-_.~` pass as they are).
fn encode_query(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_own_distinct_accounts() {
        let accounts: std::collections::HashSet<usize> = (0..500).map(writer_account).collect();
        assert_eq!(accounts.len(), 500);
    }

    #[test]
    fn search_terms_are_ones_the_contract_allows() {
        for term in data::SEARCH_TERMS {
            let longest_run = term
                .split(|c: char| !c.is_alphanumeric())
                .map(|run| run.chars().count())
                .max()
                .unwrap_or(0);
            assert!(
                longest_run >= 3,
                "{term:?} holds no 3 letters or digits in a row"
            );
        }
    }

    #[test]
    fn search_terms_are_encoded() {
        assert_eq!(encode_query("Anna Smith"), "Anna%20Smith");
        assert_eq!(encode_query("user_0"), "user_0");
    }
}
