//! Where the shared PostgreSQL and Redis are. By default the local ones
//! (`scripts/services.sh`): PostgreSQL on `127.0.0.1:5432` (user `postgres`,
//! trust auth) and Redis on `127.0.0.1:6379`. `LINKHUB_TEST_DATABASE_URL` and
//! `LINKHUB_TEST_REDIS_URL` point the suite elsewhere; every URL a test builds
//! for them comes from here, so one variable moves the whole suite.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::LazyLock;

use url::Url;

/// The PostgreSQL server every test database lives on, without a database
/// name: `LINKHUB_TEST_DATABASE_URL` (its path, if any, is dropped), else the
/// local server.
static DATABASE_SERVER: LazyLock<Url> = LazyLock::new(|| {
    let configured = std::env::var("LINKHUB_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string());
    let mut url = Url::parse(&configured)
        .unwrap_or_else(|e| panic!("LINKHUB_TEST_DATABASE_URL is not a URL ({configured}): {e}"));
    url.set_path("");
    url
});

/// The shared Redis: `LINKHUB_TEST_REDIS_URL`, else the local server. Tests
/// isolate themselves there by key prefix, never by flushing.
static REDIS: LazyLock<String> = LazyLock::new(|| {
    std::env::var("LINKHUB_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
});

/// The URL of database `name` on the shared PostgreSQL server.
pub fn database_url(name: &str) -> String {
    let mut url = DATABASE_SERVER.clone();
    url.set_path(name);
    url.into()
}

/// The shared PostgreSQL server's address, for a proxy put in front of it.
pub fn database_server_addr() -> SocketAddr {
    let host = DATABASE_SERVER
        .host_str()
        .expect("the test database URL names a host");
    let port = DATABASE_SERVER.port().unwrap_or(5432);
    (host, port)
        .to_socket_addrs()
        .unwrap_or_else(|e| panic!("cannot resolve {host}:{port}: {e}"))
        .next()
        .unwrap_or_else(|| panic!("{host}:{port} resolves to no address"))
}

/// `database_url` reached through `addr` (a proxy in front of the server)
/// instead of the server itself: same user, database and parameters.
pub fn database_url_through(database_url: &str, addr: SocketAddr) -> String {
    let mut url = Url::parse(database_url)
        .unwrap_or_else(|e| panic!("not a database URL ({database_url}): {e}"));
    url.set_ip_host(addr.ip()).expect("a URL with a host");
    url.set_port(Some(addr.port())).expect("a URL with a host");
    url.into()
}

/// The shared Redis's URL.
pub fn redis_url() -> String {
    REDIS.clone()
}
