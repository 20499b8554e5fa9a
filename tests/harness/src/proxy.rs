//! [`TcpProxy`]: a tiny TCP forwarder on 127.0.0.1 that can be cut (every
//! live connection dropped, new ones accepted and then black-holed) and
//! restored, and that can delay every chunk flowing from the upstream back to
//! the client (used to slow PostgreSQL answers down so that readers and
//! writers really race, or to make Redis unreachable under a running app).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinHandle};

struct ProxyState {
    /// Where new connections go (see [`TcpProxy::switch_to`]).
    upstream: Mutex<SocketAddr>,
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

impl ProxyState {
    fn drop_live_connections(&self) {
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        for handle in conns.drain(..) {
            handle.abort();
        }
    }

    fn drop_held_sockets(&self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.clear();
    }
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
            upstream: Mutex::new(upstream),
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
                    accept_state
                        .held
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(client);
                    continue;
                }
                let conn_state = Arc::clone(&accept_state);
                let task = tokio::spawn(async move {
                    forward(client, conn_state).await;
                });
                let mut conns = accept_state
                    .conns
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
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
        self.state.drop_live_connections();
    }

    /// Forwards again; sockets accepted during the cut are closed (their owners
    /// reconnect).
    pub fn restore(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
        self.state.drop_held_sockets();
    }

    /// Drops every live connection and sends new ones to `upstream`: to
    /// the client, the server behind the address was replaced (a restart
    /// on other data, a failover to another node).
    pub fn switch_to(&self, upstream: SocketAddr) {
        *self
            .state
            .upstream
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = upstream;
        self.state.drop_live_connections();
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
        self.state.drop_live_connections();
        self.state.drop_held_sockets();
    }
}

async fn forward(client: TcpStream, state: Arc<ProxyState>) {
    let address = *state
        .upstream
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let Ok(upstream) = TcpStream::connect(address).await else {
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
