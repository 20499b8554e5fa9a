//! Configuration: one typed struct, read once at start-up from the environment
//! (and `.env` when present). A bad value stops the start with a message that
//! names the variable, so an operator knows exactly what to fix.
//!
//! Each setting is declared once, in the table below: its field, its type,
//! its variable, and its `Rule` (default, accepted text, bound). The
//! `settings!` macro (`table.rs`) turns the table into the struct and its
//! parse; `rule.rs` holds the kinds of values. What involves two variables
//! (a CA file folded into its URL, one Redis node or a cluster) comes after
//! the table, in plain code.
//!
//! Not clap's `#[arg(env = ...)]`: every setting would become a command-line
//! flag too, and clap reads only the process environment, while tests build
//! settings from a map ([`Settings::from_lookup`]) without touching it.

mod rule;
mod table;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

use rule::{HTTP, POSTGRES, REDIS, Rule};
use table::settings;

settings! {
    /// Everything linkhub can be configured with, one environment variable
    /// each. See docs/CONFIGURATION.md for the table.
    #[derive(Debug, Clone)]
    pub struct Settings {
        /// The PostgreSQL database; created at start-up when missing.
        database_url: String = "DATABASE_URL"
            => Rule::url("postgres://postgres@127.0.0.1:5432/linkhub", POSTGRES),
        /// PEM CA(s) to verify PostgreSQL's certificate against instead of
        /// the system roots. Folded into `database_url` as libpq's
        /// `sslrootcert` (with `sslmode=verify-full` unless a TLS mode is given).
        database_ca_file: Option<PathBuf> = "DATABASE_CA_FILE" => Rule::path(),
        /// The Redis node used as cache (`rediss://` for TLS).
        redis_url: String = "REDIS_URL" => Rule::url("redis://127.0.0.1:6379", REDIS),
        /// Seed nodes of a Redis Cluster (comma-separated); when set, the
        /// cache uses the cluster and `REDIS_URL` is ignored.
        redis_cluster_urls: Vec<String> = "REDIS_CLUSTER_URLS" => Rule::urls(REDIS),
        /// PEM CA(s) to verify Redis's certificate against (`rediss://` only)
        /// instead of the system roots.
        redis_ca_file: Option<PathBuf> = "REDIS_CA_FILE" => Rule::path(),
        /// Where the HTTP server listens (`127.0.0.1:0` picks a free port).
        bind_addr: String = "BIND_ADDR" => Rule::text("127.0.0.1:8080"),
        /// Upper bound of every cache entry's lifetime.
        cache_ttl: Duration = "CACHE_TTL_SECS"
            => Rule::seconds(3600).positive().expecting("a whole number of seconds"),
        /// `false` serves every read from PostgreSQL (`X-Cache: BYPASS`).
        cache_enabled: bool = "CACHE_ENABLED" => Rule::flag(true),
        /// Every Redis key linkhub writes starts with `<prefix>:`.
        cache_prefix: String = "CACHE_PREFIX" => Rule::key_prefix("lh"),
        /// Run pending migrations before serving.
        migrate_on_start: bool = "MIGRATE_ON_START" => Rule::flag(true),
        /// Actix worker threads (default: the cores available).
        workers: usize = "WORKERS"
            => Rule::number(available_cores(), "a positive whole number").positive(),
        /// PostgreSQL connections at most.
        db_pool_size: usize = "DB_POOL_SIZE"
            => Rule::number(16, "a positive whole number").positive(),
        /// Connection slots of the cache's reads: each thread that sends Redis
        /// commands opens a connection of its own while slots are free, then
        /// threads share them; each connection multiplexes many requests.
        /// Bumps have one more connection of their own.
        redis_pool_size: usize = "REDIS_POOL_SIZE"
            => Rule::number(8, "a positive whole number").positive(),
        /// Connect and command timeout towards Redis.
        redis_timeout: Duration = "REDIS_TIMEOUT_MS" => Rule::millis(250).positive(),
        /// How long a request waits for a PostgreSQL connection.
        db_timeout: Duration = "DB_TIMEOUT_MS" => Rule::millis(5000).positive(),
        /// Failed logins per login name before `429`.
        login_max_failures: u32 = "LOGIN_MAX_FAILURES" => Rule::number(10, "a whole number"),
        /// The window those failures are counted in.
        login_window: Duration = "LOGIN_WINDOW_SECS" => Rule::seconds(60).positive(),
        /// Failed logins from one client address, across every login name,
        /// before `429` (password spraying).
        login_max_failures_per_address: u32 = "LOGIN_MAX_FAILURES_PER_ADDRESS"
            => Rule::number(100, "a whole number"),
        /// Registrations from one client address (an IPv6 /64) within
        /// `REGISTRATION_WINDOW_SECS` before `429`.
        registrations_per_address: u32 = "REGISTRATIONS_PER_ADDRESS"
            => Rule::number(10, "a whole number"),
        /// The window registrations are counted in.
        registration_window: Duration = "REGISTRATION_WINDOW_SECS"
            => Rule::seconds(600).positive(),
        /// Expensive reads (users list with a search, an `after`, or beyond
        /// `EXPENSIVE_PAGE_DEPTH`) that missed the cache, from one client
        /// address within `EXPENSIVE_READS_WINDOW_SECS`, before `429`.
        expensive_reads_per_address: u32 = "EXPENSIVE_READS_PER_ADDRESS"
            => Rule::number(30, "a whole number"),
        /// The window expensive reads are counted in.
        expensive_reads_window: Duration = "EXPENSIVE_READS_WINDOW_SECS"
            => Rule::seconds(60).positive(),
        /// `/readyz` probes from one client address (an IPv6 /64) within a
        /// second before `429`.
        readiness_per_address: u32 = "READINESS_PER_ADDRESS"
            => Rule::number(50, "a positive whole number").positive(),
        /// How long a refusal of a per-address limit is held when its client
        /// asks again before its window ends (its first refusal in a window
        /// is answered at once; 0: never held).
        refusal_delay: Duration = "REFUSAL_DELAY_MS" => Rule::millis(1000),
        /// Refusals held at once at most; beyond, one is answered at once
        /// and its connection closed.
        refusals_held_max: usize = "REFUSALS_HELD_MAX"
            => Rule::number(1024, "a positive whole number").positive(),
        /// A users-list page whose `page × limit` is above this is an
        /// expensive read.
        expensive_page_depth: u64 = "EXPENSIVE_PAGE_DEPTH"
            => Rule::number(1000, "a positive whole number").positive(),
        /// Users-list loads (every page and search that misses the cache)
        /// running at once at most; 0: a quarter of `DB_POOL_SIZE` and at
        /// most half the cores, at least 1.
        list_loads_max: usize = "LIST_LOADS_MAX"
            => Rule::number(0, "a whole number (0: from DB_POOL_SIZE and the cores)"),
        /// The longest a users-list load waits for the bulkhead before `503`.
        list_load_wait: Duration = "LIST_LOAD_WAIT_MS" => Rule::millis(250).positive(),
        /// Peers (IPs or CIDRs, comma-separated) whose `X-Forwarded-For`
        /// names the client; empty: the header is never trusted.
        trusted_proxies: Vec<ipnet::IpNet> = "TRUSTED_PROXIES" => Rule::networks(),
        /// Password hashes that may wait for a free hashing slot; one more is
        /// answered `503` with `Retry-After`.
        hash_queue_max: usize = "HASH_QUEUE_MAX" => Rule::number(64, "a whole number"),
        /// The longest a password hash waits for a slot before `503`.
        hash_wait: Duration = "HASH_WAIT_MS" => Rule::millis(3000).positive(),
        /// How much lower registrations' password hashes run in the OS
        /// scheduler (`nice`, 0 to 19, higher is lower; 0: as every thread).
        hash_registration_nice: u8 = "HASH_REGISTRATION_NICE"
            => Rule::number(10, "a whole number from 0 to 19"),
        /// Lifetime of a bearer token.
        token_ttl: Duration = "TOKEN_TTL_SECS" => Rule::seconds(7 * 24 * 3600).positive(),
        /// After `SIGTERM`, how long requests in flight may take to answer
        /// before they are cut.
        shutdown_grace: Duration = "SHUTDOWN_GRACE_SECS" => Rule::seconds(25),
        /// Browser origins (`https://app.example.com`, comma-separated) whose
        /// pages may read the API's answers; none by default.
        cors_allowed_origins: Vec<String> = "CORS_ALLOWED_ORIGINS" => Rule::origins(),
        /// Lifetime of a cached `404` and of a version counter that a read
        /// created (it may be of something that does not exist).
        cache_negative_ttl: Duration = "CACHE_NEGATIVE_TTL_SECS"
            => Rule::seconds(60).positive(),
        /// Pages and searches stored per namespace version (per count
        /// lifetime); the reads a client can make up.
        cache_max_entries_per_version: u64 = "CACHE_MAX_ENTRIES_PER_VERSION"
            => Rule::number(1000, "a positive whole number").positive(),
        /// Bytes of entries kept in process (the near cache: a `HIT` then
        /// asks Redis only for the version); 0 turns it off.
        cache_near_max_bytes: u64 = "CACHE_NEAR_MAX_BYTES"
            => Rule::number(16 * 1024 * 1024, "a whole number of bytes"),
        /// Keys a second the janitor's SCAN for stale entries looks at, at
        /// most (0: no janitor).
        cache_janitor_keys_per_sec: u64 = "CACHE_JANITOR_KEYS_PER_SEC"
            => Rule::number(2000, "a whole number (0: no janitor)"),
        /// Share of cached reads (`HIT`s) the consistency observer checks
        /// against PostgreSQL, off the request path (0 to 1; 0 turns it off).
        cache_verify_sample: f64 = "CACHE_VERIFY_SAMPLE" => Rule::fraction(0.01),
        /// Checks begun a second at most (0: no limit): the sampled `HIT`s
        /// beyond it are counted, not checked.
        cache_verify_per_second: u32 = "CACHE_VERIFY_PER_SECOND"
            => Rule::number(50, "a whole number (0: no limit)"),
        /// How long after a sampled `HIT` its check begins.
        cache_verify_settle: Duration = "CACHE_VERIFY_SETTLE_MS" => Rule::millis(1000),
        /// Checks waiting to begin, at most; more are dropped and counted.
        cache_verify_queue: usize = "CACHE_VERIFY_QUEUE"
            => Rule::number(1024, "a positive whole number").positive(),
        /// Checks that may hold a PostgreSQL connection at once.
        cache_verify_db_connections: usize = "CACHE_VERIFY_DB_CONNECTIONS"
            => Rule::number(2, "a positive whole number").positive(),
        /// Mixed into the digest of what a cache entry holds (part of every
        /// entry key). A release whose entries change shape gets new keys on
        /// its own; a new value forces it (a fix the shapes do not show, a test).
        cache_format_salt: String = "CACHE_FORMAT_SALT" => Rule::text(""),
        /// PostgreSQL `statement_timeout` of every pooled connection.
        db_statement_timeout: Duration = "DB_STATEMENT_TIMEOUT_MS"
            => Rule::millis(5000).positive(),
        /// PostgreSQL `idle_in_transaction_session_timeout` of every pooled connection.
        db_idle_in_transaction_timeout: Duration = "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS"
            => Rule::millis(10_000).positive(),
        /// How long `/readyz` waits for PostgreSQL on its own connection.
        readiness_timeout: Duration = "READINESS_TIMEOUT_MS" => Rule::millis(1000).positive(),
        /// How long one PostgreSQL check answers every `/readyz` (one check
        /// in flight at a time; 0: a check per request, still one at a time).
        readiness_reuse: Duration = "READINESS_REUSE_MS" => Rule::millis(500),
        /// Time a client has to send a request's head.
        http_client_request_timeout: Duration = "HTTP_CLIENT_REQUEST_TIMEOUT_MS"
            => Rule::millis(5000).positive(),
        /// Time a client has to send a request's body, from the end of its head.
        http_client_body_timeout: Duration = "HTTP_CLIENT_BODY_TIMEOUT_MS"
            => Rule::millis(10_000).positive(),
        /// Time a client has to close after the answer.
        http_client_disconnect_timeout: Duration = "HTTP_CLIENT_DISCONNECT_TIMEOUT_MS"
            => Rule::millis(1000).positive(),
        /// How long an idle keep-alive connection stays open (0: none).
        http_keep_alive: Duration = "HTTP_KEEP_ALIVE_SECS" => Rule::seconds(5),
        /// The bearer token `/metrics` asks for (`Authorization: Bearer
        /// <token>`); without it `/metrics` answers `401`. Unset: no token
        /// is asked (then set `METRICS_BIND_ADDR`, or keep `/metrics` from
        /// the public at the proxy).
        metrics_token: Option<Secret> = "METRICS_TOKEN" => Rule::secret(),
        /// A listener of its own for `/metrics` (`127.0.0.1:9100`), serving
        /// nothing else; the public listener then answers `/metrics` with
        /// `404`. Unset: `/metrics` is served on `BIND_ADDR`.
        metrics_bind_addr: Option<String> = "METRICS_BIND_ADDR" => Rule::optional_text(),
        /// `text` (the default: one human-readable line per event) or `json`
        /// (one JSON object per line, with the request id and the fields of
        /// the spans the event is in).
        log_format: LogFormat = "LOG_FORMAT" => Rule::word(LogFormat::Text, "text or json"),
        /// Where spans are exported over OTLP/HTTP (protobuf), such as
        /// `http://127.0.0.1:4318` (`/v1/traces` is appended). Unset: no
        /// traces, and no tracing layer for them. The other standard `OTEL_*`
        /// variables (`OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_HEADERS`,
        /// `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`) are read by the exporter.
        otel_exporter_otlp_endpoint: Option<String> = "OTEL_EXPORTER_OTLP_ENDPOINT"
            => Rule::optional_url(HTTP),
        /// The directory of the click journal (`src/clicks/journal.rs`): each
        /// process appends the clicks it answers to a segment file there
        /// before the `302`, and adopts the segments of dead processes.
        /// Unset: `${TMPDIR:-/tmp}/linkhub-clicks/<host>_<port>_<dbname>` of
        /// `DATABASE_URL` ([`Settings::clicks_journal_dir`]), so instances of
        /// one database on one machine share it. It must outlive the process
        /// (docs/OPERATIONS.md).
        clicks_journal_dir: Option<PathBuf> = "CLICKS_JOURNAL_DIR" => Rule::path(),
        /// Journal bytes not yet applied to PostgreSQL, at most (20 bytes a
        /// click); past it a redirect answers `503` with `Retry-After`.
        clicks_journal_max_bytes: u64 = "CLICKS_JOURNAL_MAX_BYTES"
            => Rule::number(64 * 1024 * 1024, "a positive whole number of bytes").positive(),
        /// How often the clicks journaled are applied to PostgreSQL, in one
        /// transaction; the analytics lag at most about this (and at most 5 s
        /// is promised: the maximum is 4000).
        clicks_flush: Duration = "CLICKS_FLUSH_MS"
            => Rule::millis(250)
                .at_most(Duration::from_millis(4000), "milliseconds, from 1 to 4000")
                .positive(),
        /// How often the visitors seen are merged into PostgreSQL.
        clicks_visitors_flush: Duration = "CLICKS_VISITORS_FLUSH_MS"
            => Rule::millis(1000).positive(),
        /// Visitor observations waiting for that merge, at most; past it a
        /// click still counts but its visitor does not.
        clicks_visitors_pending_max: usize = "CLICKS_VISITORS_PENDING_MAX"
            => Rule::number(100_000, "a positive whole number").positive(),
    }
}

/// The shape of log lines (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event, its spans as a prefix.
    Text,
    /// One JSON object per line, for log pipelines.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = ();

    fn from_str(word: &str) -> Result<Self, ()> {
        match word.to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(()),
        }
    }
}

/// A value that must not reach a log line: its `Debug` is a placeholder, so
/// printing the settings does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret given in code (tests, tools) rather than read.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the one comparison that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A configuration variable that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid {name}={value:?}: {expected}")]
pub struct ConfigError {
    /// The variable, as the operator sets it.
    pub name: &'static str,
    /// Its value as given (a URL's password masked).
    pub value: String,
    /// What would have been accepted.
    pub expected: &'static str,
}

impl Settings {
    /// Reads the process environment, after loading `.env` when one exists.
    pub fn from_env() -> Result<Self, ConfigError> {
        // A missing .env is the normal case in production; a broken one is not
        // worth refusing to start over, the variables it sets are checked below.
        let _ = dotenvy::dotenv();
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Parses settings from any lookup; names it does not know take their defaults.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::read_each(&lookup)?.with_database_ca_file()
    }

    /// Puts `DATABASE_CA_FILE` into `DATABASE_URL` the way libpq spells it,
    /// so every connection (pool, migrations, listener) reads one URL.
    fn with_database_ca_file(mut self) -> Result<Self, ConfigError> {
        let Some(ca_file) = &self.database_ca_file else {
            return Ok(self);
        };
        let refuse = |expected| ConfigError {
            name: "DATABASE_CA_FILE",
            value: ca_file.display().to_string(),
            expected,
        };
        let mut url = url::Url::parse(&self.database_url)
            .map_err(|_| refuse("a DATABASE_URL that parses"))?;
        let mode = url
            .query_pairs()
            .find(|(key, _)| key == "sslmode")
            .map(|(_, value)| value.into_owned());
        if url.query_pairs().any(|(key, _)| key == "sslrootcert") {
            return Err(refuse(
                "unset, or no sslrootcert in DATABASE_URL (one CA only)",
            ));
        }
        let mut query = url.query_pairs_mut();
        match mode.as_deref() {
            None => {
                query.append_pair("sslmode", "verify-full");
            }
            Some("require" | "verify-ca" | "verify-full") => {}
            Some(_) => {
                return Err(refuse(
                    "unset, or a DATABASE_URL with sslmode=require, verify-ca or verify-full",
                ));
            }
        }
        query.append_pair("sslrootcert", &ca_file.to_string_lossy());
        drop(query);
        self.database_url = url.to_string();
        Ok(self)
    }

    /// The click journal's directory: `CLICKS_JOURNAL_DIR`, else one per
    /// database under the temporary directory,
    /// `${TMPDIR:-/tmp}/linkhub-clicks/<host>_<port>_<dbname>`, so that the
    /// instances of one database on one machine share it (and adopt each
    /// other's segments) while those of other databases never see them.
    pub fn clicks_journal_dir(&self) -> PathBuf {
        if let Some(dir) = &self.clicks_journal_dir {
            return dir.clone();
        }
        let (host, port, database) = match url::Url::parse(&self.database_url) {
            Ok(url) => (
                url.host_str().unwrap_or("localhost").to_owned(),
                url.port().unwrap_or(5432),
                url.path().trim_start_matches('/').to_owned(),
            ),
            Err(_) => ("localhost".to_owned(), 5432, String::new()),
        };
        let name: String = format!("{host}_{port}_{database}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        std::env::temp_dir().join("linkhub-clicks").join(name)
    }

    /// Where the cache lives: the cluster when seed nodes are given, else the one node.
    pub fn redis_topology(&self) -> RedisTopology {
        if self.redis_cluster_urls.is_empty() {
            RedisTopology::Single(self.redis_url.clone())
        } else {
            RedisTopology::Cluster(self.redis_cluster_urls.clone())
        }
    }
}

/// Where the cache is: one node (`REDIS_URL`) or a cluster's seed nodes
/// (`REDIS_CLUSTER_URLS`). Configuration, not a connection: the cache opens
/// its connections from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTopology {
    /// One Redis node, by its URL.
    Single(String),
    /// A Redis Cluster, by the URLs of its seed nodes.
    Cluster(Vec<String>),
}

impl RedisTopology {
    /// The variable this topology was read from, for messages that tell an
    /// operator what to fix.
    pub fn variable(&self) -> &'static str {
        match self {
            Self::Single(_) => "REDIS_URL",
            Self::Cluster(_) => "REDIS_CLUSTER_URLS",
        }
    }
}

/// The default number of workers: one per core available (2 when unknown).
fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}
