//! Spawning the app for a test: its settings, a fresh database and a unique
//! Redis key space (`t_<unique>`) per instance, so the suite runs in parallel
//! without tests seeing each other's data. The app runs in-process on port 0
//! and is spoken to over real HTTP ([`TestApp`], see `client.rs`).
//!
//! `LINKHUB_TEST_REDIS_CLUSTER_URLS` runs every instance that uses the shared
//! Redis on a Redis Cluster instead (CI does, for the cache tests); where the
//! shared services are is `services.rs`'s business, and `TEST_LOG=1` shows
//! the instances' logs (`logs.rs`).

use std::time::{Duration, Instant};

use linkhub::config::Settings;
use linkhub::startup::Application;
use serde_json::Value;

use super::database::create_test_database;
use super::logs::init_test_logs;
use super::names::unique_name;
use super::services::redis_url;

#[derive(Clone)]
pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub address: String,
    pub port: u16,
    pub client: reqwest::Client,
    pub database_url: String,
    pub settings: Settings,
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
    init_test_logs();
    let mut settings = test_settings(database_url, cache_prefix);
    configure(&mut settings);
    // LINKHUB_TEST_REDIS_CLUSTER_URLS runs the suite on a Redis Cluster
    // (scripts/redis-cluster.sh), except for tests that point the app at a
    // Redis of their own (a private server behind a proxy).
    if settings.redis_url == redis_url()
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
    // Stopped with the test's runtime, never by a signal: Ctrl-C still ends `cargo test`.
    tokio::spawn(application.run_until(std::future::pending()));
    TestApp::at(port, database_url, settings)
}

impl TestApp {
    /// The prefix of this app's cache keys now, `<CACHE_PREFIX>:e<epoch>`,
    /// with the cache epoch its database holds (`cache_epoch`).
    pub async fn key_prefix(&self) -> String {
        let epoch = super::database::query_strings(
            &self.database_url,
            "SELECT epoch::text AS value FROM cache_epoch",
        )
        .await;
        let epoch = epoch.first().expect("the cache_epoch row");
        format!("{}:e{epoch}", self.settings.cache_prefix)
    }

    /// A client for an app (in this process or not) listening on `port`;
    /// `database_url` is the database as the test reaches it.
    pub fn at(port: u16, database_url: &str, settings: Settings) -> TestApp {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("failed to build the HTTP client");
        TestApp {
            address: format!("http://127.0.0.1:{port}"),
            port,
            client,
            database_url: database_url.to_owned(),
            settings,
        }
    }
}

/// Settings for a test instance: defaults, then the test database, its
/// click journal directory, the shared Redis, port 0, no migrations (the
/// template is migrated) and small pools.
pub fn test_settings(database_url: &str, cache_prefix: &str) -> Settings {
    let mut settings = Settings::from_lookup(|_| None).expect("default settings must parse");
    settings.database_url = database_url.to_string();
    settings.clicks_journal_dir = Some(journal_dir_of(database_url));
    settings.redis_url = redis_url();
    settings.bind_addr = "127.0.0.1:0".to_string();
    settings.cache_prefix = cache_prefix.to_string();
    settings.migrate_on_start = false;
    settings.workers = 2;
    settings.db_pool_size = 4;
    settings.redis_pool_size = 4;
    // Every test sends from 127.0.0.1 and many register users and search in
    // loops; the per-address limits are checked by the abuse tests, which
    // set the bounds they test.
    // The list loads' bulkhead, too: the pool bounds them, as before it.
    settings.registrations_per_address = 100_000;
    settings.expensive_reads_per_address = 100_000;
    settings.readiness_per_address = 100_000;
    settings.list_loads_max = 1_000;
    settings.list_load_wait = settings.db_timeout;
    settings
}

/// The click journal directory of the test database at `database_url`,
/// under the temporary directory: every instance on that database shares
/// it (and adopts a killed sibling's segments), no other test sees it.
pub fn journal_dir_of(database_url: &str) -> std::path::PathBuf {
    let name = database_url
        .rsplit('/')
        .next()
        .and_then(|last| last.split('?').next())
        .unwrap_or("linkhub");
    std::env::temp_dir().join("linkhub-test-clicks").join(name)
}

/// Waits until the app serves reads from Redis (`/readyz` says `"cache": "ok"`):
/// the breaker starts open until the outbox has been replayed.
pub async fn wait_cache_ok(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = app.get("/readyz").await;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status == 200 && body["cache"] == "ok" {
            // The owed-bump listener connects at start-up too and then asks
            // for one more outbox replay (a recovery tick, 200 ms, later);
            // let it pass so that it does not bump what the test warms.
            tokio::time::sleep(Duration::from_millis(500)).await;
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the cache did not become ready within 10 s: /readyz answers {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `REDIS_TIMEOUT_MS` for the tests that are not about Redis faults: long
/// enough that a loaded test machine never trips the circuit breaker (which
/// would turn the HITs and MISSes those tests assert into BYPASS).
pub const PATIENT_REDIS_TIMEOUT_MS: u64 = 2000;

/// [`spawn_app_with`] with a patient Redis timeout, once the cache is in use.
pub async fn spawn_cached_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let app = spawn_app_with(|s| {
        s.redis_timeout = Duration::from_millis(PATIENT_REDIS_TIMEOUT_MS);
        configure(s);
    })
    .await;
    wait_cache_ok(&app).await;
    app
}

pub async fn spawn_cached() -> TestApp {
    spawn_cached_with(|_| {}).await
}

/// An instance on the same database with the cache disabled: every read it
/// answers comes straight from PostgreSQL. It shares `app`'s Redis and key
/// space, as every instance on one database must: a cache-off instance still
/// delivers what is owed (its own writes' bumps, changes made outside the
/// API), and a delivery into another key space would be lost to `app`.
pub async fn spawn_truth(app: &TestApp) -> TestApp {
    spawn_app_on(
        &app.database_url,
        &app.settings.cache_prefix,
        |s: &mut Settings| {
            s.cache_enabled = false;
            s.redis_url = app.settings.redis_url.clone();
            s.redis_cluster_urls = app.settings.redis_cluster_urls.clone();
            s.redis_timeout = app.settings.redis_timeout;
        },
    )
    .await
}
