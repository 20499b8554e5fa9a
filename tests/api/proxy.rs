//! Test-only network plumbing for the cache tests:
//!
//! * [`TcpProxy`]: a tiny TCP forwarder that can be cut (every live connection
//!   dropped, new ones accepted and then black-holed) and restored, and that can
//!   delay every chunk flowing from the upstream back to the client (used to slow
//!   PostgreSQL answers down so that readers and writers really race).
//! * [`RedisServer`]: a private `redis-server` child process on a free port, with
//!   nothing persisted, killed when dropped; it can be killed and restarted empty
//!   on the same port.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

struct ProxyState {
    upstream: SocketAddr,
    /// While set, live connections are gone and new ones are accepted but never
    /// answered (a black hole: the client only notices through its timeouts).
    cut: AtomicBool,
    /// Delay applied to each chunk forwarded upstream → client, in microseconds.
    delay_micros: AtomicU64,
    /// Forwarding tasks of the live connections.
    conns: Mutex<Vec<AbortHandle>>,
    /// Sockets accepted while cut; dropped on restore.
    held: Mutex<Vec<TcpStream>>,
}

/// A TCP proxy on 127.0.0.1 in front of one upstream address. Dropping it stops
/// the listener and drops every connection.
pub struct TcpProxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    accept_task: JoinHandle<()>,
}

impl TcpProxy {
    /// Starts listening on `127.0.0.1:0`, forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy listener");
        let addr = listener.local_addr().expect("proxy local addr");
        let state = Arc::new(ProxyState {
            upstream,
            cut: AtomicBool::new(false),
            delay_micros: AtomicU64::new(0),
            conns: Mutex::new(Vec::new()),
            held: Mutex::new(Vec::new()),
        });
        let accept_state = Arc::clone(&state);
        let accept_task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    // Transient accept errors (e.g. EMFILE): back off a little.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let _ = client.set_nodelay(true);
                if accept_state.cut.load(Ordering::SeqCst) {
                    accept_state.held.lock().unwrap().push(client);
                    continue;
                }
                let conn_state = Arc::clone(&accept_state);
                let task = tokio::spawn(async move {
                    forward(client, conn_state).await;
                });
                let mut conns = accept_state.conns.lock().unwrap();
                conns.retain(|handle| !handle.is_finished());
                conns.push(task.abort_handle());
                // A cut that raced with this accept must not miss this connection.
                if accept_state.cut.load(Ordering::SeqCst) {
                    task.abort();
                }
            }
        });
        TcpProxy {
            addr,
            state,
            accept_task,
        }
    }

    /// The address clients should connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every live connection and black-holes new ones until [`restore`].
    ///
    /// [`restore`]: TcpProxy::restore
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        for handle in self.state.conns.lock().unwrap().drain(..) {
            handle.abort();
        }
    }

    /// Forwards again; sockets accepted during the cut are closed (their owners
    /// reconnect).
    pub fn restore(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
        self.state.held.lock().unwrap().clear();
    }

    /// Delays every chunk forwarded from the upstream to the client by `delay`
    /// (applies to live connections too).
    pub fn set_delay(&self, delay: Duration) {
        let micros = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.state.delay_micros.store(micros, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept_task.abort();
        for handle in self.state.conns.lock().unwrap().drain(..) {
            handle.abort();
        }
        self.state.held.lock().unwrap().clear();
    }
}

async fn forward(client: TcpStream, state: Arc<ProxyState>) {
    let Ok(upstream) = TcpStream::connect(state.upstream).await else {
        return;
    };
    let _ = upstream.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut upstream_read, mut upstream_write) = upstream.into_split();

    let to_upstream = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if upstream_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = upstream_write.shutdown().await;
    };
    let delay_state = Arc::clone(&state);
    let to_client = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match upstream_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let micros = delay_state.delay_micros.load(Ordering::SeqCst);
            if micros > 0 {
                tokio::time::sleep(Duration::from_micros(micros)).await;
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    // Either direction ending ends the connection, like a real network peer.
    tokio::select! {
        _ = to_upstream => {}
        _ = to_client => {}
    }
}

/// Returns a port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .expect("ephemeral port addr")
        .port()
}

/// A private `redis-server` (no persistence) on a free port of 127.0.0.1.
/// Killed when dropped.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a fresh server on a free port and waits until it answers PING.
    pub async fn start() -> RedisServer {
        // A port picked as free may be taken by someone else before redis binds
        // it: retry with another one.
        for _ in 0..5 {
            let port = free_port();
            let mut server = RedisServer { port, child: None };
            if server.spawn().await {
                return server;
            }
        }
        panic!("could not start a private redis-server");
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:<port>` (direct, not through any proxy).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it to be gone: all data is lost.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again, empty, on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        // The port is normally free again at once (the listener was closed with
        // the process); retry briefly in case it is not.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.spawn().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("could not restart redis-server on port {}", self.port);
    }

    /// Spawns redis-server on `self.port`; true once it answers PING.
    async fn spawn(&mut self) -> bool {
        let child = Command::new("redis-server")
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--save")
            .arg("")
            .arg("--appendonly")
            .arg("no")
            .arg("--protected-mode")
            .arg("no")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server (is it installed?)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                // Exited: most likely the port was taken.
                self.child = None;
                return false;
            }
            if ping(self.port).await {
                // Make sure it is our process that answered, not another server
                // that already held the port.
                tokio::time::sleep(Duration::from_millis(20)).await;
                return match self.child.as_mut().map(|c| c.try_wait()) {
                    Some(Ok(None)) => true,
                    _ => {
                        self.child = None;
                        false
                    }
                };
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// True when something on 127.0.0.1:`port` answers an inline PING with +PONG.
async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 7];
        stream.read_exact(&mut buf).await.ok()?;
        (&buf == b"+PONG\r\n").then_some(())
    };
    matches!(
        tokio::time::timeout(Duration::from_millis(500), attempt).await,
        Ok(Some(()))
    )
}

/// The tooling the cache tests rely on: a private Redis behind the proxy,
/// cut (live connections dropped, new ones black-holed), restored, delayed,
/// killed and restarted empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_tooling_proxy_and_private_redis() {
    use redis::AsyncConnectionConfig;

    let mut server = RedisServer::start().await;
    let proxy = TcpProxy::start(server.addr()).await;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_millis(300)))
        .set_response_timeout(Some(Duration::from_millis(300)));
    let client = redis::Client::open(format!("redis://{}", proxy.addr())).expect("url");
    let mut con = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("connect through the proxy");
    let () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut con)
        .await
        .expect("SET");

    // Cut: the live connection fails, a new one connects but never answers.
    proxy.cut();
    let started = Instant::now();
    let result: redis::RedisResult<String> = redis::cmd("GET").arg("k").query_async(&mut con).await;
    assert!(result.is_err(), "a command on a cut connection must fail");
    assert!(started.elapsed() < Duration::from_secs(2));
    let fresh = client
        .get_multiplexed_async_connection_with_config(&config)
        .await;
    if let Ok(mut fresh) = fresh {
        let result: redis::RedisResult<String> =
            redis::cmd("GET").arg("k").query_async(&mut fresh).await;
        assert!(
            result.is_err(),
            "a new connection must be black-holed while cut"
        );
    }

    // Restore: new connections work again; with a delay, answers come late.
    proxy.restore();
    let mut con = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .expect("connect after restore");
    let value: String = redis::cmd("GET")
        .arg("k")
        .query_async(&mut con)
        .await
        .expect("GET");
    assert_eq!(value, "v");
    proxy.set_delay(Duration::from_millis(100));
    let started = Instant::now();
    let slow = AsyncConnectionConfig::new().set_response_timeout(Some(Duration::from_secs(2)));
    let mut con = client
        .get_multiplexed_async_connection_with_config(&slow)
        .await
        .expect("connect with a delay");
    let started_get = Instant::now();
    let _: String = redis::cmd("GET")
        .arg("k")
        .query_async(&mut con)
        .await
        .expect("GET");
    assert!(started_get.elapsed() >= Duration::from_millis(100));
    assert!(started.elapsed() < Duration::from_secs(2));
    proxy.set_delay(Duration::ZERO);

    // Kill and restart on the same port: empty.
    server.kill();
    assert!(!ping(server.addr().port()).await);
    server.restart().await;
    let direct = redis::Client::open(server.url()).expect("url");
    let mut con = direct
        .get_multiplexed_async_connection_with_config(&slow)
        .await
        .expect("connect to the restarted server");
    let value: Option<String> = redis::cmd("GET")
        .arg("k")
        .query_async(&mut con)
        .await
        .expect("GET");
    assert_eq!(value, None, "a restarted server is empty");
}
