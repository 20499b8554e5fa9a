//! Configuration: one typed struct, read once at start-up from the environment
//! (and `.env` when present). A bad value stops the start with a message that
//! names the variable, so an operator knows exactly what to fix.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Everything linkhub can be configured with. See README.md for the table.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `DATABASE_URL`: the PostgreSQL database; created at start-up when missing.
    pub database_url: String,
    /// `DATABASE_CA_FILE`: PEM CA(s) to verify PostgreSQL's certificate against
    /// instead of the system roots. Folded into `database_url` as libpq's
    /// `sslrootcert` (with `sslmode=verify-full` unless a TLS mode is given).
    pub database_ca_file: Option<PathBuf>,
    /// `REDIS_URL`: the Redis node used as cache (`rediss://` for TLS).
    pub redis_url: String,
    /// `REDIS_CLUSTER_URLS`: seed nodes of a Redis Cluster (comma-separated);
    /// when set, the cache uses the cluster and `REDIS_URL` is ignored.
    pub redis_cluster_urls: Vec<String>,
    /// `REDIS_CA_FILE`: PEM CA(s) to verify Redis's certificate against
    /// (`rediss://` only) instead of the system roots.
    pub redis_ca_file: Option<PathBuf>,
    /// `BIND_ADDR`: where the HTTP server listens (`127.0.0.1:0` picks a free port).
    pub bind_addr: String,
    /// `CACHE_TTL_SECS`: upper bound of every cache entry's lifetime.
    pub cache_ttl: Duration,
    /// `CACHE_ENABLED`: `false` serves every read from PostgreSQL (`X-Cache: BYPASS`).
    pub cache_enabled: bool,
    /// `CACHE_PREFIX`: every Redis key linkhub writes starts with `<prefix>:`.
    pub cache_prefix: String,
    /// `MIGRATE_ON_START`: run pending migrations before serving.
    pub migrate_on_start: bool,
    /// `WORKERS`: actix worker threads.
    pub workers: usize,
    /// `DB_POOL_SIZE`: PostgreSQL connections at most.
    pub db_pool_size: usize,
    /// `REDIS_POOL_SIZE`: Redis connections at most (each one multiplexes many requests).
    pub redis_pool_size: usize,
    /// `REDIS_TIMEOUT_MS`: connect and command timeout towards Redis.
    pub redis_timeout: Duration,
    /// `DB_TIMEOUT_MS`: how long a request waits for a PostgreSQL connection.
    pub db_timeout: Duration,
    /// `LOGIN_MAX_FAILURES`: failed logins per login name before `429`.
    pub login_max_failures: u32,
    /// `LOGIN_WINDOW_SECS`: the window those failures are counted in.
    pub login_window: Duration,
    /// `LOGIN_MAX_FAILURES_PER_ADDRESS`: failed logins from one client
    /// address, across every login name, before `429` (password spraying).
    pub login_max_failures_per_address: u32,
    /// `TRUSTED_PROXIES`: peers (IPs or CIDRs, comma-separated) whose
    /// `X-Forwarded-For` names the client; empty: the header is never trusted.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `HASH_QUEUE_MAX`: password hashes that may wait for a free hashing
    /// slot; one more is answered `503` with `Retry-After`.
    pub hash_queue_max: usize,
    /// `HASH_WAIT_MS`: the longest a password hash waits for a slot before `503`.
    pub hash_wait: Duration,
    /// `TOKEN_TTL_SECS`: lifetime of a bearer token.
    pub token_ttl: Duration,
    /// `SHUTDOWN_GRACE_SECS`: after `SIGTERM`, how long requests in flight
    /// may take to answer before they are cut.
    pub shutdown_grace: Duration,
    /// `CORS_ALLOWED_ORIGINS`: browser origins (`https://app.example.com`,
    /// comma-separated) whose pages may read the API's answers; none by default.
    pub cors_allowed_origins: Vec<String>,
    /// `CACHE_NEGATIVE_TTL_SECS`: lifetime of a cached `404` and of a version
    /// counter that a read created (it may be of something that does not exist).
    pub cache_negative_ttl: Duration,
    /// `CACHE_MAX_ENTRIES_PER_VERSION`: pages and searches stored per
    /// namespace version (per count lifetime); the reads a client can make up.
    pub cache_max_entries_per_version: u64,
    /// `CACHE_NEAR_MAX_BYTES`: bytes of entries kept in process (the near
    /// cache: a `HIT` then asks Redis only for the version); 0 turns it off.
    pub cache_near_max_bytes: u64,
    /// `CACHE_JANITOR_KEYS_PER_SEC`: keys a second the janitor's SCAN for
    /// stale entries looks at, at most (0: no janitor).
    pub cache_janitor_keys_per_sec: u64,
    /// `DB_STATEMENT_TIMEOUT_MS`: PostgreSQL `statement_timeout` of every pooled connection.
    pub db_statement_timeout: Duration,
    /// `DB_IDLE_IN_TRANSACTION_TIMEOUT_MS`: PostgreSQL
    /// `idle_in_transaction_session_timeout` of every pooled connection.
    pub db_idle_in_transaction_timeout: Duration,
    /// `READINESS_TIMEOUT_MS`: how long `/readyz` waits for PostgreSQL on its own connection.
    pub readiness_timeout: Duration,
    /// `HTTP_CLIENT_REQUEST_TIMEOUT_MS`: time a client has to send a request's head.
    pub http_client_request_timeout: Duration,
    /// `HTTP_CLIENT_BODY_TIMEOUT_MS`: time a client has to send a request's
    /// body, from the end of its head.
    pub http_client_body_timeout: Duration,
    /// `HTTP_CLIENT_DISCONNECT_TIMEOUT_MS`: time a client has to close after the answer.
    pub http_client_disconnect_timeout: Duration,
    /// `HTTP_KEEP_ALIVE_SECS`: how long an idle keep-alive connection stays open (0: none).
    pub http_keep_alive: Duration,
}

/// A configuration variable that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid {name}={value:?}: {expected}")]
pub struct ConfigError {
    pub name: &'static str,
    pub value: String,
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
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let settings = Settings {
            database_url: string(
                &lookup,
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/linkhub",
            ),
            database_ca_file: path(&lookup, "DATABASE_CA_FILE"),
            redis_url: string(&lookup, "REDIS_URL", "redis://127.0.0.1:6379"),
            redis_cluster_urls: lookup("REDIS_CLUSTER_URLS")
                .map(|v| {
                    v.split(',')
                        .map(|u| u.trim().to_owned())
                        .filter(|u| !u.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            redis_ca_file: path(&lookup, "REDIS_CA_FILE"),
            bind_addr: string(&lookup, "BIND_ADDR", "127.0.0.1:8080"),
            cache_ttl: seconds(&lookup, "CACHE_TTL_SECS", 3600, "a whole number of seconds")?,
            cache_enabled: boolean(&lookup, "CACHE_ENABLED", true)?,
            cache_prefix: string(&lookup, "CACHE_PREFIX", "lh"),
            migrate_on_start: boolean(&lookup, "MIGRATE_ON_START", true)?,
            workers: parse(&lookup, "WORKERS", cores, "a positive whole number")?,
            db_pool_size: parse(&lookup, "DB_POOL_SIZE", 16, "a positive whole number")?,
            redis_pool_size: parse(&lookup, "REDIS_POOL_SIZE", 8, "a positive whole number")?,
            redis_timeout: millis(&lookup, "REDIS_TIMEOUT_MS", 250)?,
            db_timeout: millis(&lookup, "DB_TIMEOUT_MS", 5000)?,
            login_max_failures: parse(&lookup, "LOGIN_MAX_FAILURES", 10, "a whole number")?,
            login_window: seconds(&lookup, "LOGIN_WINDOW_SECS", 60, "seconds")?,
            login_max_failures_per_address: parse(
                &lookup,
                "LOGIN_MAX_FAILURES_PER_ADDRESS",
                100,
                "a whole number",
            )?,
            trusted_proxies: networks(&lookup, "TRUSTED_PROXIES")?,
            hash_queue_max: parse(&lookup, "HASH_QUEUE_MAX", 64, "a whole number")?,
            hash_wait: millis(&lookup, "HASH_WAIT_MS", 3000)?,
            token_ttl: seconds(&lookup, "TOKEN_TTL_SECS", 7 * 24 * 3600, "seconds")?,
            shutdown_grace: seconds(&lookup, "SHUTDOWN_GRACE_SECS", 25, "seconds")?,
            cors_allowed_origins: origins(&lookup, "CORS_ALLOWED_ORIGINS")?,
            cache_negative_ttl: seconds(&lookup, "CACHE_NEGATIVE_TTL_SECS", 60, "seconds")?,
            cache_max_entries_per_version: parse(
                &lookup,
                "CACHE_MAX_ENTRIES_PER_VERSION",
                1000,
                "a positive whole number",
            )?,
            cache_near_max_bytes: parse(
                &lookup,
                "CACHE_NEAR_MAX_BYTES",
                16 * 1024 * 1024,
                "a whole number of bytes",
            )?,
            cache_janitor_keys_per_sec: parse(
                &lookup,
                "CACHE_JANITOR_KEYS_PER_SEC",
                2000,
                "a whole number (0: no janitor)",
            )?,
            db_statement_timeout: millis(&lookup, "DB_STATEMENT_TIMEOUT_MS", 5000)?,
            db_idle_in_transaction_timeout: millis(
                &lookup,
                "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS",
                10_000,
            )?,
            readiness_timeout: millis(&lookup, "READINESS_TIMEOUT_MS", 1000)?,
            http_client_request_timeout: millis(&lookup, "HTTP_CLIENT_REQUEST_TIMEOUT_MS", 5000)?,
            http_client_body_timeout: millis(&lookup, "HTTP_CLIENT_BODY_TIMEOUT_MS", 10_000)?,
            http_client_disconnect_timeout: millis(
                &lookup,
                "HTTP_CLIENT_DISCONNECT_TIMEOUT_MS",
                1000,
            )?,
            http_keep_alive: seconds(&lookup, "HTTP_KEEP_ALIVE_SECS", 5, "seconds")?,
        };
        settings.check()?.with_database_ca_file()
    }

    fn check(self) -> Result<Self, ConfigError> {
        let positive = [
            ("CACHE_TTL_SECS", self.cache_ttl.is_zero()),
            ("WORKERS", self.workers == 0),
            ("DB_POOL_SIZE", self.db_pool_size == 0),
            ("REDIS_POOL_SIZE", self.redis_pool_size == 0),
            ("REDIS_TIMEOUT_MS", self.redis_timeout.is_zero()),
            ("DB_TIMEOUT_MS", self.db_timeout.is_zero()),
            ("LOGIN_WINDOW_SECS", self.login_window.is_zero()),
            ("HASH_WAIT_MS", self.hash_wait.is_zero()),
            ("TOKEN_TTL_SECS", self.token_ttl.is_zero()),
            ("CACHE_NEGATIVE_TTL_SECS", self.cache_negative_ttl.is_zero()),
            (
                "CACHE_MAX_ENTRIES_PER_VERSION",
                self.cache_max_entries_per_version == 0,
            ),
            (
                "DB_STATEMENT_TIMEOUT_MS",
                self.db_statement_timeout.is_zero(),
            ),
            (
                "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS",
                self.db_idle_in_transaction_timeout.is_zero(),
            ),
            ("READINESS_TIMEOUT_MS", self.readiness_timeout.is_zero()),
            (
                "HTTP_CLIENT_REQUEST_TIMEOUT_MS",
                self.http_client_request_timeout.is_zero(),
            ),
            (
                "HTTP_CLIENT_BODY_TIMEOUT_MS",
                self.http_client_body_timeout.is_zero(),
            ),
            (
                "HTTP_CLIENT_DISCONNECT_TIMEOUT_MS",
                self.http_client_disconnect_timeout.is_zero(),
            ),
        ];
        if let Some((name, _)) = positive.into_iter().find(|(_, zero)| *zero) {
            return Err(ConfigError {
                name,
                value: "0".to_owned(),
                expected: "a value greater than 0",
            });
        }
        let prefix_ok = !self.cache_prefix.is_empty()
            && self
                .cache_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !prefix_ok {
            return Err(ConfigError {
                name: "CACHE_PREFIX",
                value: self.cache_prefix,
                expected: "letters, digits, '_' or '-' (it becomes part of SCAN patterns)",
            });
        }
        let postgres = &["postgres", "postgresql"][..];
        let redis = &["redis", "rediss"][..];
        let urls = [
            ("DATABASE_URL", &self.database_url, postgres),
            ("REDIS_URL", &self.redis_url, redis),
        ]
        .into_iter()
        .chain(
            self.redis_cluster_urls
                .iter()
                .map(|u| ("REDIS_CLUSTER_URLS", u, redis)),
        );
        for (name, url, schemes) in urls {
            let scheme_ok = url::Url::parse(url).is_ok_and(|u| schemes.contains(&u.scheme()));
            if !scheme_ok {
                return Err(ConfigError {
                    name,
                    value: crate::redact::redact_url_password(url),
                    expected: "a URL such as postgres://user@host:5432/db or redis://host:6379",
                });
            }
        }
        Ok(self)
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
/// (`REDIS_CLUSTER_URLS`). Configuration, not a connection: the cache turns
/// it into pools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTopology {
    Single(String),
    Cluster(Vec<String>),
}

fn string(lookup: &impl Fn(&str) -> Option<String>, name: &str, default: &str) -> String {
    lookup(name)
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// A variable counted in whole seconds.
fn seconds(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
    expected: &'static str,
) -> Result<Duration, ConfigError> {
    parse(lookup, name, default, expected).map(Duration::from_secs)
}

/// A variable counted in milliseconds.
fn millis(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
) -> Result<Duration, ConfigError> {
    parse(lookup, name, default, "milliseconds").map(Duration::from_millis)
}

fn path(lookup: &impl Fn(&str) -> Option<String>, name: &str) -> Option<PathBuf> {
    lookup(name)
        .filter(|v| !v.trim().is_empty())
        .map(|v| PathBuf::from(v.trim()))
}

fn parse<T: FromStr>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
    expected: &'static str,
) -> Result<T, ConfigError> {
    match lookup(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(value) => value.trim().parse().map_err(|_| ConfigError {
            name,
            value,
            expected,
        }),
    }
}

/// A comma-separated list of bare origins (`scheme://host[:port]`, http or
/// https, no path): exactly what a browser sends in `Origin`.
fn origins(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Vec<String>, ConfigError> {
    let raw = lookup(name).unwrap_or_default();
    raw.split(',')
        .map(str::trim)
        .filter(|origin| !origin.is_empty())
        .map(|origin| {
            let origin = origin.trim_end_matches('/');
            let bare = url::Url::parse(origin).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.origin().ascii_serialization() == origin
            });
            if bare {
                Ok(origin.to_owned())
            } else {
                Err(ConfigError {
                    name,
                    value: raw.clone(),
                    expected: "comma-separated origins such as https://app.example.com (scheme, host and port only)",
                })
            }
        })
        .collect()
}

/// A comma-separated list of IP addresses or CIDR networks
/// (`10.0.0.0/8, 192.0.2.7, ::1`); a bare address is a network of one.
fn networks(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    let raw = lookup(name).unwrap_or_default();
    raw.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| ConfigError {
                    name,
                    value: raw.clone(),
                    expected: "comma-separated IP addresses or CIDR networks such as 10.0.0.0/8,192.0.2.7",
                })
        })
        .collect()
}

fn boolean(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: bool,
) -> Result<bool, ConfigError> {
    match lookup(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if v.is_empty() => Ok(default),
        Some(v) if ["true", "1", "yes", "on"].contains(&v.as_str()) => Ok(true),
        Some(v) if ["false", "0", "no", "off"].contains(&v.as_str()) => Ok(false),
        Some(value) => Err(ConfigError {
            name,
            value,
            expected: "true or false",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let s = from(&[]).expect("defaults are valid");
        assert_eq!(s.database_url, "postgres://postgres@127.0.0.1:5432/linkhub");
        assert_eq!(s.redis_url, "redis://127.0.0.1:6379");
        assert_eq!(s.bind_addr, "127.0.0.1:8080");
        assert_eq!(s.cache_ttl, Duration::from_secs(3600));
        assert_eq!(s.redis_timeout, Duration::from_millis(250));
        assert_eq!(s.db_timeout, Duration::from_millis(5000));
        assert_eq!(s.login_window, Duration::from_secs(60));
        assert_eq!(s.token_ttl, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(s.shutdown_grace, Duration::from_secs(25));
        assert!(s.migrate_on_start && s.cache_enabled);
        assert_eq!(s.cache_negative_ttl, Duration::from_secs(60));
        assert_eq!(s.cache_max_entries_per_version, 1000);
        assert_eq!(s.cache_near_max_bytes, 16 * 1024 * 1024);
        assert_eq!(s.cache_janitor_keys_per_sec, 2000);
        assert_eq!(s.db_statement_timeout, Duration::from_millis(5000));
        assert_eq!(s.db_idle_in_transaction_timeout, Duration::from_secs(10));
        assert_eq!(s.readiness_timeout, Duration::from_millis(1000));
        assert_eq!(s.http_client_request_timeout, Duration::from_millis(5000));
        assert_eq!(s.http_client_body_timeout, Duration::from_millis(10_000));
        assert_eq!(
            s.http_client_disconnect_timeout,
            Duration::from_millis(1000)
        );
        assert_eq!(s.http_keep_alive, Duration::from_secs(5));
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = from(&[("CACHE_TTL_SECS", "abc")]).unwrap_err();
        assert!(err.to_string().contains("CACHE_TTL_SECS"), "{err}");
        let err = from(&[("MIGRATE_ON_START", "maybe")]).unwrap_err();
        assert!(err.to_string().contains("MIGRATE_ON_START"), "{err}");
        let err = from(&[("DATABASE_URL", "mysql://x")]).unwrap_err();
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
        let err = from(&[("REDIS_TIMEOUT_MS", "0")]).unwrap_err();
        assert!(err.to_string().contains("REDIS_TIMEOUT_MS"), "{err}");
        let err = from(&[("CACHE_PREFIX", "a*b")]).unwrap_err();
        assert!(err.to_string().contains("CACHE_PREFIX"), "{err}");
    }

    #[test]
    fn a_rejected_url_never_shows_its_password() {
        for (name, url) in [
            ("DATABASE_URL", "mysql://app:pgsecret@db:3306/x"),
            ("DATABASE_URL", "postgres://app:pgsecret@[::1:5432/x"),
            ("REDIS_URL", "http://:redissecret@cache:6379"),
            (
                "REDIS_CLUSTER_URLS",
                "redis://a:6379,tcp://:redissecret@b:6379",
            ),
        ] {
            let err = from(&[(name, url)]).unwrap_err();
            let shown = format!("{err} {err:?}");
            assert!(shown.contains(name), "{shown}");
            assert!(!shown.contains("secret"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
        }
    }

    #[test]
    fn the_database_ca_file_becomes_libpq_sslrootcert() {
        let s = from(&[
            ("DATABASE_URL", "postgres://app:pw@db.example.com/linkhub"),
            ("DATABASE_CA_FILE", "/etc/linkhub/pg-ca.pem"),
        ])
        .expect("valid");
        assert_eq!(
            s.database_url,
            "postgres://app:pw@db.example.com/linkhub?sslmode=verify-full&sslrootcert=%2Fetc%2Flinkhub%2Fpg-ca.pem"
        );
        let s = from(&[
            ("DATABASE_URL", "postgres://app@db/linkhub?sslmode=require"),
            ("DATABASE_CA_FILE", "/ca.pem"),
        ])
        .expect("valid");
        assert!(
            s.database_url
                .ends_with("?sslmode=require&sslrootcert=%2Fca.pem")
        );
        for url in [
            "postgres://app@db/linkhub?sslmode=disable",
            "postgres://app@db/linkhub?sslmode=require&sslrootcert=/other.pem",
        ] {
            let err = from(&[("DATABASE_URL", url), ("DATABASE_CA_FILE", "/ca.pem")]).unwrap_err();
            assert!(err.to_string().contains("DATABASE_CA_FILE"), "{err}");
        }
        assert_eq!(from(&[]).expect("defaults").database_ca_file, None);
    }

    #[test]
    fn trusted_proxies_are_addresses_or_networks() {
        let s = from(&[]).expect("defaults");
        assert!(s.trusted_proxies.is_empty());
        assert_eq!(s.login_max_failures_per_address, 100);
        assert_eq!(s.hash_queue_max, 64);
        assert_eq!(s.hash_wait, Duration::from_millis(3000));
        let s = from(&[("TRUSTED_PROXIES", " 10.0.0.0/8, 192.0.2.7 ,::1")]).expect("valid");
        let shown: Vec<String> = s.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.0.2.7/32", "::1/128"]);
        for bad in ["10.0.0.0/33", "proxy.example.com", "10.0.0.1,*"] {
            let err = from(&[("TRUSTED_PROXIES", bad)]).unwrap_err();
            assert!(err.to_string().contains("TRUSTED_PROXIES"), "{err}");
        }
    }

    #[test]
    fn cors_origins_are_bare_origins() {
        assert!(from(&[]).expect("defaults").cors_allowed_origins.is_empty());
        let s = from(&[(
            "CORS_ALLOWED_ORIGINS",
            " https://app.example.com, http://localhost:3000/ ,",
        )])
        .expect("valid origins");
        assert_eq!(
            s.cors_allowed_origins,
            ["https://app.example.com", "http://localhost:3000"]
        );
        for bad in ["*", "app.example.com", "https://a.com/path", "ftp://a.com"] {
            let err = from(&[("CORS_ALLOWED_ORIGINS", bad)]).unwrap_err();
            assert!(err.to_string().contains("CORS_ALLOWED_ORIGINS"), "{err}");
        }
    }
}
