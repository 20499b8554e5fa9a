//! TLS to PostgreSQL and Redis against private servers with a CA the test
//! makes (the shared 5432/6379 services are never touched): linkhub starts,
//! migrates and serves a write and a cached read over TLS with
//! `DATABASE_CA_FILE` and `REDIS_CA_FILE`; a wrong CA is refused, and no
//! message carries a URL's password.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use linkhub::config::Settings;
use linkhub::startup::Application;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};

use crate::support::*;

const PG_PASSWORD: &str = "pg-tls-secret-8d1f";
const REDIS_PASSWORD: &str = "redis-tls-secret-77c2";

/// The newest installed PostgreSQL's server binaries (Debian's layout).
fn pg_bin(program: &str) -> String {
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries in /usr/lib/postgresql (apt-get install postgresql)")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .expect("a version directory in /usr/lib/postgresql");
    format!("/usr/lib/postgresql/{newest}/bin/{program}")
}

/// A CA and a server certificate for `localhost` / `127.0.0.1` / `::1` it signed.
struct Pki {
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
}

fn make_pki() -> Pki {
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "linkhub test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("self-signed CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().expect("server key");
    let server_params = CertificateParams::new(vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ])
    .expect("server params");
    let server_cert = server_params
        .signed_by(&server_key, &issuer)
        .expect("server certificate");
    Pki {
        ca_pem: ca_cert.pem(),
        server_cert_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
    }
}

/// A port of this helper's spare range (12000-12999) that was free a moment
/// ago, together with its cluster bus port (the port + 10000); parallel
/// tests and processes start at different places in it. Both lie below the
/// kernel's ephemeral range (32768-60999), so no outgoing connection of the
/// busy suite can hold a node's bus port (a bus port in that range once took
/// a node down at start: `--cluster create` was refused).
fn spare_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let start =
        std::process::id() % 1000 + NEXT.fetch_add(37, std::sync::atomic::Ordering::Relaxed);
    let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
    (0..1000u32)
        .map(|i| 12000 + ((start + i) % 1000) as u16)
        .find(|port| free(*port) && free(*port + 10000))
        .expect("a free port in 12000-12999 with its bus port")
}

/// A scratch directory owned by the `postgres` user (initdb refuses root);
/// removed when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(owner_postgres: bool) -> ScratchDir {
        let path = std::env::temp_dir().join(unique_name("linkhub_tls"));
        std::fs::create_dir_all(&path).expect("create a scratch directory");
        if owner_postgres {
            run(
                "chown",
                &[
                    "-R",
                    "postgres:postgres",
                    path.to_str().expect("utf-8 path"),
                ],
            );
        }
        ScratchDir(path)
    }

    fn write(&self, name: &str, contents: &str, mode: u32) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write a scratch file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A private PostgreSQL 15 that accepts TLS connections only (`hostssl`),
/// stopped and deleted when dropped.
struct TlsPostgres {
    dir: ScratchDir,
    data: PathBuf,
    port: u16,
}

impl TlsPostgres {
    fn start(pki: &Pki) -> TlsPostgres {
        let dir = ScratchDir::new(true);
        let data = dir.0.join("data");
        let data_str = data.to_str().expect("utf-8 path").to_owned();
        run(
            "runuser",
            &[
                "-u",
                "postgres",
                "--",
                &pg_bin("initdb"),
                "-D",
                &data_str,
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
                "--no-instructions",
            ],
        );
        dir.write("server.crt", &pki.server_cert_pem, 0o644);
        dir.write("server.key", &pki.server_key_pem, 0o600);
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
        )
        .expect("write pg_hba.conf");
        run(
            "chown",
            &["-R", "postgres:postgres", dir.0.to_str().expect("utf-8")],
        );
        for port in std::iter::repeat_with(spare_port).take(5) {
            let options = format!(
                "-p {port} -k {dir} -c listen_addresses=localhost -c ssl=on -c ssl_cert_file={dir}/server.crt -c ssl_key_file={dir}/server.key -c fsync=off",
                dir = dir.0.display()
            );
            let started = Command::new("runuser")
                .args(["-u", "postgres", "--", &pg_bin("pg_ctl"), "-D", &data_str])
                .args(["-o", &options, "-l", &format!("{}/log", dir.0.display())])
                .args(["-w", "-t", "30", "start"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("run pg_ctl");
            if started.success() {
                return TlsPostgres { dir, data, port };
            }
        }
        let log = std::fs::read_to_string(dir.0.join("log")).unwrap_or_default();
        panic!("the private PostgreSQL did not start:\n{log}");
    }

    fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres:{PG_PASSWORD}@localhost:{}/{database}",
            self.port
        )
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--", &pg_bin("pg_ctl"), "-D"])
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = &self.dir;
    }
}

/// A private `redis-server` listening on TLS only (`--port 0`), with a
/// password; killed when dropped.
struct TlsRedis {
    _dir: ScratchDir,
    child: std::process::Child,
    port: u16,
}

impl TlsRedis {
    async fn start(pki: &Pki) -> TlsRedis {
        Self::start_with(pki, &[]).await
    }

    /// A node of a TLS-only cluster: the cluster bus is TLS too, and the node
    /// keeps its `nodes.conf` in its own directory.
    async fn start_cluster_node(pki: &Pki) -> TlsRedis {
        Self::start_with(
            pki,
            &[
                "--cluster-enabled",
                "yes",
                "--tls-cluster",
                "yes",
                "--cluster-node-timeout",
                "2000",
            ],
        )
        .await
    }

    async fn start_with(pki: &Pki, extra: &[&str]) -> TlsRedis {
        let dir = ScratchDir::new(false);
        let cert = dir.write("redis.crt", &pki.server_cert_pem, 0o644);
        let key = dir.write("redis.key", &pki.server_key_pem, 0o600);
        let ca = dir.write("ca.crt", &pki.ca_pem, 0o644);
        for _ in 0..5 {
            let port = spare_port();
            let mut child = Command::new("redis-server")
                .args(["--port", "0", "--tls-port", &port.to_string()])
                .args([
                    "--bind",
                    "127.0.0.1 ::1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .arg("--tls-cert-file")
                .arg(&cert)
                .arg("--tls-key-file")
                .arg(&key)
                .arg("--tls-ca-cert-file")
                .arg(&ca)
                .args(["--tls-auth-clients", "no", "--requirepass", REDIS_PASSWORD])
                .arg("--dir")
                .arg(&dir.0)
                .args(extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                // The port answers as soon as it listens, before a cluster
                // node binds its bus port (and exits when it cannot): it is
                // ours once the process still runs a moment later.
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                    && {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        matches!(child.try_wait(), Ok(None))
                    }
                {
                    return TlsRedis {
                        _dir: dir,
                        child,
                        port,
                    };
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("the private TLS redis-server did not start");
    }

    fn url(&self) -> String {
        format!("rediss://:{REDIS_PASSWORD}@localhost:{}", self.port)
    }

    /// `redis-cli` over TLS to this node, verifying it with `ca`.
    fn cli(&self, ca: &str, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args([
                "--tls",
                "--cacert",
                ca,
                "--no-auth-warning",
                "-a",
                REDIS_PASSWORD,
            ])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli");
        assert!(
            output.status.success(),
            "redis-cli {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// Three TLS-only masters joined into a cluster that covers every slot.
async fn tls_cluster(pki: &Pki, ca: &str) -> Vec<TlsRedis> {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(TlsRedis::start_cluster_node(pki).await);
    }
    let addresses: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let mut create = vec!["--cluster", "create"];
    create.extend(addresses.iter().map(String::as_str));
    create.push("--cluster-yes");
    nodes[0].cli(ca, &create);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !nodes
        .iter()
        .all(|n| n.cli(ca, &["cluster", "info"]).contains("cluster_state:ok"))
    {
        assert!(Instant::now() < deadline, "the TLS cluster never became ok");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nodes
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn settings(vars: &[(&str, String)]) -> Settings {
    let mut settings = Settings::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .expect("valid TLS settings");
    settings.bind_addr = "127.0.0.1:0".to_owned();
    settings.workers = 2;
    settings.db_pool_size = 4;
    settings.redis_pool_size = 2;
    settings.redis_timeout = Duration::from_millis(2000);
    settings
}

async fn serve(settings: Settings) -> TestApp {
    let application = Application::build(settings.clone())
        .await
        .unwrap_or_else(|e| panic!("linkhub did not start over TLS: {e}"));
    let port = application.port();
    tokio::spawn(application.run_until(std::future::pending()));
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        client: reqwest::Client::new(),
        database_url: settings.database_url.clone(),
        settings,
    }
}

fn file(dir: &ScratchDir, name: &str, pem: &str) -> String {
    dir.write(name, pem, 0o644)
        .to_str()
        .expect("utf-8 path")
        .to_owned()
}

#[tokio::test]
async fn tls_postgres_and_rediss_serve_a_write_and_a_cached_read() {
    let pki = make_pki();
    let postgres = TlsPostgres::start(&pki);
    let redis = TlsRedis::start(&pki).await;
    let files = ScratchDir::new(false);
    let ca = file(&files, "ca.pem", &pki.ca_pem);

    // Only hostssl lines: a plain connection is refused, so a working app is a TLS one.
    let plain = linkhub::db::tls::establish(&postgres.url("postgres")).await;
    assert!(plain.is_err(), "the private server must refuse plain TCP");

    let app = serve(settings(&[
        ("DATABASE_URL", postgres.url("linkhub_tls")),
        ("DATABASE_CA_FILE", ca.clone()),
        ("REDIS_URL", redis.url()),
        ("REDIS_CA_FILE", ca.clone()),
        ("CACHE_PREFIX", unique_name("tls")),
    ]))
    .await;
    assert!(app.settings.database_url.contains("sslmode=verify-full"));

    let (user, _) = app
        .user_with_link("Over TLS", "https://tls.example.com/")
        .await;
    let path = format!("/api/v1/profiles/{}", user.username);
    let first = app.get(&path).await;
    assert_eq!(first.status(), 200);
    assert_eq!(header(&first, "x-cache").as_deref(), Some("MISS"));
    let second = app.get(&path).await;
    assert_eq!(
        header(&second, "x-cache").as_deref(),
        Some("HIT"),
        "the entry must have been stored in the TLS Redis"
    );
    let profile = expect_data(second).await;
    assert_eq!(profile["links"][0]["title"], "Over TLS");

    // The server confirms the session is encrypted.
    use diesel_async::RunQueryDsl;
    let mut conn = linkhub::db::tls::establish(&app.settings.database_url)
        .await
        .expect("a TLS connection");
    #[derive(diesel::QueryableByName)]
    struct Ssl {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        ssl: bool,
    }
    let row: Ssl = diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result(&mut conn)
        .await
        .expect("pg_stat_ssl");
    assert!(row.ssl);
}

#[tokio::test]
async fn a_wrong_ca_is_refused_and_no_message_shows_a_password() {
    let pki = make_pki();
    let other = make_pki();
    let postgres = TlsPostgres::start(&pki);
    let redis = TlsRedis::start(&pki).await;
    let files = ScratchDir::new(false);
    let wrong_ca = file(&files, "wrong-ca.pem", &other.ca_pem);
    let right_ca = file(&files, "ca.pem", &pki.ca_pem);

    // PostgreSQL is required: a certificate of an unknown CA stops the start.
    let refused = Application::build(settings(&[
        ("DATABASE_URL", postgres.url("linkhub_tls")),
        ("DATABASE_CA_FILE", wrong_ca.clone()),
        ("REDIS_URL", redis.url()),
    ]))
    .await;
    let message = match refused {
        Ok(_) => panic!("linkhub started although PostgreSQL's CA is not the configured one"),
        Err(e) => format!("{e} {e:?}"),
    };
    assert!(message.contains("DATABASE_URL"), "{message}");
    assert!(
        message.to_lowercase().contains("certificate") || message.contains("UnknownIssuer"),
        "the cause must say it is the certificate: {message}"
    );
    assert!(!message.contains(PG_PASSWORD), "{message}");
    assert!(message.contains("***"), "{message}");

    // The system roots do not know the test CA either.
    let refused =
        linkhub::db::tls::establish(&format!("{}?sslmode=require", postgres.url("postgres"))).await;
    assert!(refused.is_err());

    // Redis is not required to start (reads bypass it until it answers): with
    // the wrong CA every read is served from PostgreSQL, and the cache's own
    // error names the certificate without the password.
    let app = serve(settings(&[
        ("DATABASE_URL", postgres.url("linkhub_tls_b")),
        ("DATABASE_CA_FILE", right_ca.clone()),
        ("REDIS_URL", redis.url()),
        ("REDIS_CA_FILE", wrong_ca.clone()),
        ("CACHE_PREFIX", unique_name("tls")),
    ]))
    .await;
    let user = app.register_user().await;
    let read = app
        .get(&format!("/api/v1/profiles/{}", user.username))
        .await;
    assert_eq!(read.status(), 200);
    assert_eq!(header(&read, "x-cache").as_deref(), Some("BYPASS"));

    let metrics = std::sync::Arc::new(linkhub::metrics::Metrics::default());
    let pool = linkhub::db::build_pool(&app.settings.database_url, 1, Duration::from_secs(5))
        .expect("pool");
    let cache = linkhub::cache::Cache::start(
        linkhub::cache::CacheConfig {
            topology: linkhub::config::RedisTopology::Single(redis.url()),
            database_url: app.settings.database_url.clone(),
            prefix: unique_name("tls"),
            pool_size: 1,
            timeout: Duration::from_secs(2),
            near_max_bytes: 0,
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(60),
            max_entries_per_version: 1000,
            enabled: false,
            ca_file: Some(PathBuf::from(&wrong_ca)),
            janitor_keys_per_sec: 0,
            format: String::new(),
            observer: linkhub::cache::ObserverConfig {
                sample: 0.0,
                per_second: 0,
                settle: Duration::ZERO,
                queue: 1,
                db_connections: 1,
            },
        },
        pool,
        metrics,
        &linkhub::tasks::BackgroundTasks::default(),
    )
    .expect("the CA file is readable");
    let error = cache
        .ping()
        .await
        .expect_err("the wrong CA must be refused");
    let message = format!("{error} {error:?}");
    assert!(
        message.to_lowercase().contains("certificate") || message.contains("UnknownIssuer"),
        "{message}"
    );
    assert!(!message.contains(REDIS_PASSWORD), "{message}");
    assert!(Path::new(&wrong_ca).exists());
}

#[tokio::test]
async fn a_tls_cluster_is_verified_against_redis_ca_file() {
    let pki = make_pki();
    let other = make_pki();
    let files = ScratchDir::new(false);
    let ca = file(&files, "ca.pem", &pki.ca_pem);
    let wrong_ca = file(&files, "wrong-ca.pem", &other.ca_pem);
    let nodes = tls_cluster(&pki, &ca).await;
    // Seeds by IP: the nodes announce IPs, and the certificate names 127.0.0.1.
    let seeds = nodes
        .iter()
        .map(|n| format!("rediss://:{REDIS_PASSWORD}@127.0.0.1:{}", n.port))
        .collect::<Vec<_>>()
        .join(",");
    let database_url = create_test_database().await;

    let app = serve(settings(&[
        ("DATABASE_URL", database_url.clone()),
        ("REDIS_CLUSTER_URLS", seeds.clone()),
        ("REDIS_CA_FILE", ca.clone()),
        ("CACHE_PREFIX", unique_name("tlsc")),
        ("MIGRATE_ON_START", "false".to_owned()),
    ]))
    .await;
    let user = app.register_user().await;
    let path = format!("/api/v1/profiles/{}", user.username);
    let cached = warm(&app, &path).await;
    assert_eq!(
        cached.x_cache, "HIT",
        "the entry must be stored in the TLS cluster"
    );
    // Every master took part: the keys live in the cluster, not in one node.
    let keys: usize = nodes
        .iter()
        .map(|n| {
            n.cli(&ca, &["dbsize"])
                .trim()
                .parse::<usize>()
                .expect("a key count")
        })
        .sum();
    assert!(keys > 0, "no key reached the cluster");

    // A CA that did not sign the nodes: the cache is never trusted, reads
    // bypass it, and no message shows the password.
    let refused = serve(settings(&[
        ("DATABASE_URL", database_url.clone()),
        ("REDIS_CLUSTER_URLS", seeds),
        ("REDIS_CA_FILE", wrong_ca),
        ("CACHE_PREFIX", unique_name("tlsc")),
        ("MIGRATE_ON_START", "false".to_owned()),
    ]))
    .await;
    for _ in 0..2 {
        let read = refused.get(&path).await;
        assert_eq!(read.status(), 200);
        assert_eq!(header(&read, "x-cache").as_deref(), Some("BYPASS"));
    }
    let ready = expect_json(refused.readyz().await, 200).await;
    assert_eq!(ready["cache"], "degraded");
}
