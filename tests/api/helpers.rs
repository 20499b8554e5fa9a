#![allow(dead_code)]

//! Test support shared by every module of the `api` test binary.
//!
//! Each test gets its own PostgreSQL database, cloned from a migrated template
//! (`linkhub_tpl_<hash of migrations/>`, built once and reused by every test
//! process), and its own Redis key space (`t_<unique>`), so the suite runs in
//! parallel without tests seeing each other's data. The app is spawned
//! in-process on port 0 and spoken to over real HTTP.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use linkhub::config::Settings;
use linkhub::startup::Application;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

/// The PostgreSQL server every test database lives on.
pub const PG_BASE_URL: &str = "postgres://postgres@127.0.0.1:5432";
/// The shared Redis; tests isolate themselves by key prefix, never by flushing.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
/// The password every helper-registered user gets.
pub const TEST_PASSWORD: &str = "correct horse battery staple";

/// Test databases older than this are dropped when a test process builds or
/// finds the template, so crashed or finished runs do not pile up.
const STALE_TEST_DB_SECS: u64 = 3600;
/// Test databases older than this with nobody connected are dropped too: the
/// process that made them has finished (a running test holds pool connections).
const IDLE_TEST_DB_SECS: u64 = 600;

pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    pub port: u16,
    pub client: reqwest::Client,
    pub database_url: String,
    pub settings: Settings,
}

pub struct RegisteredUser {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub password: String,
    pub token: String,
}

/// Spawns the app on a fresh database with a unique cache prefix.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Like [`spawn_app`], letting the test adjust the settings first
/// (e.g. `s.redis_url = proxy_url`).
pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let database_url = create_test_database().await;
    let cache_prefix = unique_name("t");
    spawn_app_on(&database_url, &cache_prefix, configure).await
}

/// Spawns an app on an existing database and cache prefix: a second instance
/// sharing PostgreSQL and the Redis key space with another one.
pub async fn spawn_app_on(
    database_url: &str,
    cache_prefix: &str,
    configure: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings = test_settings(database_url, cache_prefix);
    configure(&mut settings);
    // LINKHUB_TEST_REDIS_CLUSTER_URLS runs the suite on a Redis Cluster
    // (scripts/redis-cluster.sh), except for tests that point the app at a
    // Redis of their own (a private server behind a proxy).
    if settings.redis_url == REDIS_URL
        && settings.redis_cluster_urls.is_empty()
        && let Ok(urls) = std::env::var("LINKHUB_TEST_REDIS_CLUSTER_URLS")
    {
        settings.redis_cluster_urls = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
    }
    let application = Application::build(settings.clone())
        .await
        .expect("failed to build the application");
    let port = application.port();
    tokio::spawn(application.run_until_stopped());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("failed to build the HTTP client");
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        client,
        database_url: database_url.to_string(),
        settings,
    }
}

/// Settings for a test instance: defaults, then the test database, the shared
/// Redis, port 0, no migrations (the template is migrated) and small pools.
pub fn test_settings(database_url: &str, cache_prefix: &str) -> Settings {
    let mut settings = Settings::from_lookup(|_| None).expect("default settings must parse");
    settings.database_url = database_url.to_string();
    settings.redis_url = REDIS_URL.to_string();
    settings.bind_addr = "127.0.0.1:0".to_string();
    settings.cache_prefix = cache_prefix.to_string();
    settings.migrate_on_start = false;
    settings.workers = 2;
    settings.db_pool_size = 4;
    settings.redis_pool_size = 4;
    settings
}

/// A lowercase `[a-z0-9_]` name of at most 32 characters, unique per call, per
/// process and (with overwhelming probability) across runs.
pub fn unique_name(prefix: &str) -> String {
    static PROCESS_TAG: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let tag = PROCESS_TAG.get_or_init(|| {
        let mut hasher = DefaultHasher::new();
        std::process::id().hash(&mut hasher);
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock before 1970")
            .as_nanos()
            .hash(&mut hasher);
        // 8 base-36 digits, about 41 bits.
        let mut value = hasher.finish() % 36u64.pow(8);
        let mut digits = Vec::new();
        for _ in 0..8 {
            digits.push(base36_digit(value % 36));
            value /= 36;
        }
        digits.into_iter().collect()
    });
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let suffix = format!("{tag}{}", base36(count));
    let clean_prefix: String = prefix
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
        .collect();
    let room = 32 - 1 - suffix.len();
    let clean_prefix: String = clean_prefix.chars().take(room).collect();
    if clean_prefix.is_empty() {
        format!("u_{suffix}")
    } else {
        format!("{clean_prefix}_{suffix}")
    }
}

fn base36_digit(d: u64) -> char {
    char::from_digit(d as u32, 36).expect("digit below 36")
}

fn base36(mut value: u64) -> String {
    if value == 0 {
        return "0".to_string();
    }
    let mut digits = Vec::new();
    while value > 0 {
        digits.push(base36_digit(value % 36));
        value /= 36;
    }
    digits.into_iter().rev().collect()
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
            .post_json(
                "/api/v1/users",
                None,
                &json!({"username": username, "email": email, "password": TEST_PASSWORD}),
            )
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

    async fn login_token(&self, login: &str, password: &str) -> String {
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

    pub async fn login(&self, login: &str, password: &str) -> reqwest::Response {
        self.post_json(
            "/api/v1/auth/login",
            None,
            &json!({"login": login, "password": password}),
        )
        .await
    }

    pub async fn metrics(&self) -> String {
        let response = self.get("/metrics").await;
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

/// One sample line of the Prometheus text format.
#[derive(Debug, Clone)]
pub struct MetricSample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Parses the sample lines (not `#` comments) of a Prometheus text exposition.
pub fn parse_metric_samples(text: &str) -> Vec<MetricSample> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(parse_metric_line)
        .collect()
}

fn parse_metric_line(line: &str) -> Option<MetricSample> {
    let (name, labels, rest) = match line.find('{') {
        Some(open) if line[..open].find(' ').is_none() => {
            let name = line[..open].to_string();
            let mut labels = Vec::new();
            let mut chars = line[open + 1..].char_indices().peekable();
            let body = &line[open + 1..];
            // key="value" pairs separated by commas; values may hold escapes.
            let end = loop {
                while let Some((_, c)) = chars.peek() {
                    if *c == ',' || *c == ' ' {
                        chars.next();
                    } else {
                        break;
                    }
                }
                let (start, c) = chars.next()?;
                if c == '}' {
                    break start;
                }
                let mut key = String::from(c);
                for (_, c) in chars.by_ref() {
                    if c == '=' {
                        break;
                    }
                    key.push(c);
                }
                if chars.next()?.1 != '"' {
                    return None;
                }
                let mut value = String::new();
                loop {
                    let (_, c) = chars.next()?;
                    match c {
                        '\\' => match chars.next()?.1 {
                            'n' => value.push('\n'),
                            other => value.push(other),
                        },
                        '"' => break,
                        other => value.push(other),
                    }
                }
                labels.push((key.trim().to_string(), value));
            };
            (name, labels, body[end + 1..].trim())
        }
        _ => {
            let mut parts = line.splitn(2, ' ');
            let name = parts.next()?.to_string();
            (name, Vec::new(), parts.next()?.trim())
        }
    };
    let value_text = rest.split_whitespace().next()?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().ok()?,
    };
    Some(MetricSample {
        name,
        labels,
        value,
    })
}

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

/// Runs one or more SQL statements on the given database.
pub async fn execute_sql(database_url: &str, sql: &str) {
    let mut connection = AsyncPgConnection::establish(database_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {database_url}: {e}"));
    connection
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("SQL failed ({sql}): {e}"));
}

#[derive(QueryableByName)]
struct TextRow {
    #[diesel(sql_type = Text)]
    value: String,
}

/// Runs a query whose single text column is named `value`, returning the values.
pub async fn query_strings(database_url: &str, sql: &str) -> Vec<String> {
    let mut connection = AsyncPgConnection::establish(database_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {database_url}: {e}"));
    query_strings_on(&mut connection, sql).await
}

async fn query_strings_on(connection: &mut AsyncPgConnection, sql: &str) -> Vec<String> {
    diesel::sql_query(sql)
        .load::<TextRow>(connection)
        .await
        .unwrap_or_else(|e| panic!("SQL failed ({sql}): {e}"))
        .into_iter()
        .map(|row| row.value)
        .collect()
}

/// The URL of a database that does not exist yet, named so that the stale
/// database sweep removes it later.
pub fn fresh_database_url() -> String {
    format!("{PG_BASE_URL}/{}", fresh_database_name())
}

fn fresh_database_name() -> String {
    format!("linkhub_test_{}_{}", unix_now(), unique_name("d"))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_secs()
}

/// Creates `linkhub_test_<unix secs>_<unique>` from the migrated template and
/// returns its URL.
pub async fn create_test_database() -> String {
    let template = template_database().await;
    let name = fresh_database_name();
    let mut connection = admin_connection().await;
    let statement = format!("CREATE DATABASE {name} TEMPLATE {template}");
    let mut attempt = 0;
    loop {
        match connection.batch_execute(&statement).await {
            Ok(()) => break,
            Err(e) if attempt < 50 && e.to_string().contains("being accessed by other users") => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{statement} failed: {e}"),
        }
    }
    format!("{PG_BASE_URL}/{name}")
}

async fn admin_connection() -> AsyncPgConnection {
    let url = format!("{PG_BASE_URL}/postgres");
    AsyncPgConnection::establish(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

/// The name of the migrated template database, building it on first use.
async fn template_database() -> String {
    static TEMPLATE: OnceCell<String> = OnceCell::const_new();
    TEMPLATE.get_or_init(build_template_database).await.clone()
}

/// Builds `linkhub_tpl_<hash>` unless another process already has. Holds a
/// PostgreSQL advisory lock so parallel test processes build it once; builds
/// under a scratch name and renames, so a crash never leaves a half-migrated
/// template behind.
async fn build_template_database() -> String {
    let template = format!("linkhub_tpl_{}", migrations_hash());
    let mut connection = admin_connection().await;
    connection
        .batch_execute("SELECT pg_advisory_lock(742017)")
        .await
        .expect("advisory lock");

    let exists = !query_strings(
        &format!("{PG_BASE_URL}/postgres"),
        &format!("SELECT datname::text AS value FROM pg_database WHERE datname = '{template}'"),
    )
    .await
    .is_empty();
    if !exists {
        let scratch = format!("{template}_build");
        connection
            .batch_execute(&format!("DROP DATABASE IF EXISTS {scratch} WITH (FORCE)"))
            .await
            .expect("drop scratch template");
        linkhub::db::prepare_database(&format!("{PG_BASE_URL}/{scratch}"))
            .await
            .unwrap_or_else(|e| panic!("prepare_database for the template failed: {e}"));
        let rename = format!("ALTER DATABASE {scratch} RENAME TO {template}");
        let mut attempt = 0;
        loop {
            match connection.batch_execute(&rename).await {
                Ok(()) => break,
                Err(e)
                    if attempt < 100 && e.to_string().contains("being accessed by other users") =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{rename} failed: {e}"),
            }
        }
    }
    connection
        .batch_execute("SELECT pg_advisory_unlock(742017)")
        .await
        .expect("advisory unlock");
    // Dropping databases is slow; no test waits for it.
    std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the sweep");
        runtime.block_on(drop_stale_test_databases());
    });
    template
}

/// Drops `linkhub_test_<secs>_*` databases created more than an hour ago, or
/// more than ten minutes ago and no longer connected to. One process sweeps
/// at a time; the others skip it.
async fn drop_stale_test_databases() {
    let Ok(mut connection) = AsyncPgConnection::establish(&format!("{PG_BASE_URL}/postgres")).await
    else {
        return;
    };
    let locked = query_strings_on(
        &mut connection,
        "SELECT pg_try_advisory_lock(742018)::text AS value",
    )
    .await;
    if locked != ["true"] {
        return;
    }
    let rows = query_strings_on(
        &mut connection,
        "SELECT d.datname::text || ' ' || COALESCE(s.numbackends, 0)::text AS value \
         FROM pg_database d LEFT JOIN pg_stat_database s ON s.datid = d.oid \
         WHERE d.datname LIKE 'linkhub\\_test\\_%'",
    )
    .await;
    let now = unix_now();
    for row in rows {
        let (name, backends) = row.split_once(' ').expect("name and backend count");
        let created = name
            .strip_prefix("linkhub_test_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        let Some(created) = created else { continue };
        let age = now.saturating_sub(created);
        if age > STALE_TEST_DB_SECS || (age > IDLE_TEST_DB_SECS && backends == "0") {
            // Ignore failures: someone may be dropping it at the same time.
            let _ = connection
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

/// A hash of every file under `migrations/` (path and contents), so a changed
/// migration gets a new template instead of a stale one.
fn migrations_hash() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files = Vec::new();
    collect_files(&root, &mut files);
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        let relative = file.strip_prefix(&root).expect("file under migrations/");
        hasher.update(relative.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(std::fs::read(&file).expect("read migration file"));
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())[..16].to_string()
}

fn collect_files(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("read migrations dir").path();
        if path.is_dir() {
            collect_files(&path, files);
        } else {
            files.push(path);
        }
    }
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
/// The keys of a private user: the public ones plus `email` and `role`.
pub const PRIVATE_USER_KEYS: &[&str] = &[
    "id",
    "username",
    "name",
    "bio",
    "avatar_url",
    "created_at",
    "updated_at",
    "email",
    "role",
];
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
    assert_keys(user, PRIVATE_USER_KEYS);
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

/// Asserts a page of a list and returns `(data, meta)`.
pub async fn expect_page(response: reqwest::Response) -> (Vec<Value>, Value) {
    let body = expect_json(response, 200).await;
    assert_keys(&body, &["data", "meta"]);
    assert_keys(&body["meta"], &["page", "limit", "total", "total_pages"]);
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

impl TestApp {
    /// Creates a link for `user_id` with the given token; asserts 201, returns the link.
    pub async fn create_link(&self, user_id: i64, token: &str, body: &Value) -> Value {
        let response = self
            .post_json(&format!("/api/v1/users/{user_id}/links"), Some(token), body)
            .await;
        let link = expect_written(response, 201).await;
        assert_link(&link);
        link
    }

    /// Creates a social for `user_id` with the given token; asserts 201, returns it.
    pub async fn create_social(
        &self,
        user_id: i64,
        token: &str,
        platform: &str,
        url: &str,
    ) -> Value {
        let response = self
            .post_json(
                &format!("/api/v1/users/{user_id}/socials"),
                Some(token),
                &json!({"platform": platform, "url": url}),
            )
            .await;
        let social = expect_written(response, 201).await;
        assert_social(&social);
        social
    }

    /// Registers a user with exactly these fields; asserts 201, returns the private user.
    pub async fn register_with(&self, body: &Value) -> Value {
        let response = self.post_json("/api/v1/users", None, body).await;
        let user = expect_written(response, 201).await;
        assert_private_user(&user);
        user
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
}
