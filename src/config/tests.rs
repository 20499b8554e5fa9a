//! Unit tests of the settings table: defaults, refusals that name their
//! variable, and the settings that involve two variables.

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
    assert!((s.cache_verify_sample - 0.01).abs() < f64::EPSILON);
    assert_eq!(s.cache_verify_settle, Duration::from_millis(1000));
    assert_eq!(s.cache_verify_queue, 1024);
    assert_eq!(s.cache_verify_db_connections, 2);
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
    for share in ["1.5", "-0.1", "NaN", "a tenth"] {
        let err = from(&[("CACHE_VERIFY_SAMPLE", share)]).unwrap_err();
        assert!(err.to_string().contains("CACHE_VERIFY_SAMPLE"), "{err}");
    }
    for share in ["0", "1", " 0.25 "] {
        assert!(from(&[("CACHE_VERIFY_SAMPLE", share)]).is_ok(), "{share}");
    }
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

#[test]
fn a_refusal_says_what_would_be_accepted() {
    for (name, value, message) in [
        (
            "CACHE_TTL_SECS",
            "abc",
            r#"invalid CACHE_TTL_SECS="abc": a whole number of seconds"#,
        ),
        (
            "LOGIN_WINDOW_SECS",
            "1m",
            r#"invalid LOGIN_WINDOW_SECS="1m": seconds"#,
        ),
        (
            "REDIS_TIMEOUT_MS",
            "1.5",
            r#"invalid REDIS_TIMEOUT_MS="1.5": milliseconds"#,
        ),
        (
            "WORKERS",
            "many",
            r#"invalid WORKERS="many": a positive whole number"#,
        ),
        (
            "REDIS_POOL_SIZE",
            "0",
            r#"invalid REDIS_POOL_SIZE="0": a value greater than 0"#,
        ),
        (
            "MIGRATE_ON_START",
            " Maybe",
            r#"invalid MIGRATE_ON_START="maybe": true or false"#,
        ),
        (
            "CACHE_PREFIX",
            "a*b",
            r#"invalid CACHE_PREFIX="a*b": letters, digits, '_' or '-' (it becomes part of SCAN patterns)"#,
        ),
    ] {
        let err = from(&[(name, value)]).unwrap_err();
        assert_eq!(err.to_string(), message);
    }
}

#[test]
fn zero_is_refused_where_it_makes_no_sense() {
    for name in [
        "CACHE_TTL_SECS",
        "WORKERS",
        "DB_POOL_SIZE",
        "REDIS_POOL_SIZE",
        "REDIS_TIMEOUT_MS",
        "DB_TIMEOUT_MS",
        "LOGIN_WINDOW_SECS",
        "HASH_WAIT_MS",
        "TOKEN_TTL_SECS",
        "CACHE_NEGATIVE_TTL_SECS",
        "CACHE_MAX_ENTRIES_PER_VERSION",
        "DB_STATEMENT_TIMEOUT_MS",
        "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS",
        "READINESS_TIMEOUT_MS",
        "HTTP_CLIENT_REQUEST_TIMEOUT_MS",
        "HTTP_CLIENT_BODY_TIMEOUT_MS",
        "HTTP_CLIENT_DISCONNECT_TIMEOUT_MS",
    ] {
        let err = from(&[(name, "0")]).unwrap_err();
        assert_eq!(err.name, name);
        assert_eq!(err.expected, "a value greater than 0");
    }
    for name in [
        "LOGIN_MAX_FAILURES",
        "LOGIN_MAX_FAILURES_PER_ADDRESS",
        "HASH_QUEUE_MAX",
        "SHUTDOWN_GRACE_SECS",
        "CACHE_NEAR_MAX_BYTES",
        "CACHE_JANITOR_KEYS_PER_SEC",
        "HTTP_KEEP_ALIVE_SECS",
    ] {
        assert!(from(&[(name, "0")]).is_ok(), "{name}=0 is refused");
    }
}

#[test]
fn the_topology_names_its_variable() {
    let s = from(&[]).expect("defaults");
    assert_eq!(s.redis_topology().variable(), "REDIS_URL");
    let s = from(&[("REDIS_CLUSTER_URLS", "redis://a:7000, redis://b:7001")]).expect("valid");
    assert_eq!(
        s.redis_topology(),
        RedisTopology::Cluster(vec!["redis://a:7000".into(), "redis://b:7001".into()])
    );
    assert_eq!(s.redis_topology().variable(), "REDIS_CLUSTER_URLS");
}

#[test]
fn the_operator_settings_are_off_unless_set() {
    let s = from(&[]).expect("defaults are valid");
    assert!(s.metrics_token.is_none() && s.metrics_bind_addr.is_none());
    assert!(s.otel_exporter_otlp_endpoint.is_none());
    assert_eq!(s.log_format, LogFormat::Text);
    let s = from(&[
        ("METRICS_TOKEN", "s3cret"),
        ("METRICS_BIND_ADDR", " 127.0.0.1:9100 "),
        ("LOG_FORMAT", "JSON"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
    ])
    .expect("valid operator settings");
    assert_eq!(s.metrics_token.as_ref().map(Secret::expose), Some("s3cret"));
    assert_eq!(s.metrics_bind_addr.as_deref(), Some("127.0.0.1:9100"));
    assert_eq!(s.log_format, LogFormat::Json);
    assert!(
        !format!("{s:?}").contains("s3cret"),
        "the token is never printed"
    );
    for (name, value) in [
        ("LOG_FORMAT", "yaml"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "grpc://collector:4317"),
    ] {
        let err = from(&[(name, value)]).unwrap_err();
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn the_click_journal_settings_have_their_defaults_and_bounds() {
    let s = from(&[(
        "DATABASE_URL",
        "postgres://u@db.example:6543/links?sslmode=require",
    )])
    .expect("valid");
    assert_eq!(s.clicks_journal_max_bytes, 64 * 1024 * 1024);
    assert_eq!(s.clicks_flush, Duration::from_millis(250));
    assert_eq!(
        s.clicks_journal_dir(),
        std::env::temp_dir()
            .join("linkhub-clicks")
            .join("db.example_6543_links")
    );
    let s = from(&[("CLICKS_JOURNAL_DIR", " /var/lib/linkhub/clicks ")]).expect("valid");
    assert_eq!(
        s.clicks_journal_dir(),
        PathBuf::from("/var/lib/linkhub/clicks")
    );
    assert!(from(&[("CLICKS_FLUSH_MS", "4000")]).is_ok());
    for (name, value) in [
        ("CLICKS_FLUSH_MS", "4001"),
        ("CLICKS_FLUSH_MS", "0"),
        ("CLICKS_JOURNAL_MAX_BYTES", "0"),
        ("CLICKS_JOURNAL_MAX_BYTES", "lots"),
    ] {
        let err = from(&[(name, value)]).unwrap_err();
        assert_eq!(err.name, name, "{value}");
    }
    let err = from(&[("CLICKS_FLUSH_MS", "5000")]).unwrap_err();
    assert_eq!(err.expected, "milliseconds, from 1 to 4000");
}
