//! [`RedisServer`]: a private `redis-server` child process on a free port of
//! 127.0.0.1, with nothing persisted, killed when dropped; it can be killed and
//! restarted empty on the same port. Tests use it to kill, cut or fill a Redis
//! without touching the shared one; the bench uses it for a key space it may
//! fill with a million keys.

use std::ffi::OsString;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::ports::try_free_port;

/// How a [`RedisServer`] is started: extra `redis-server` arguments, where its
/// output goes, how long it may take to answer.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    extra_args: Vec<OsString>,
    log: Option<PathBuf>,
    ready_within: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            extra_args: Vec::new(),
            log: None,
            ready_within: Duration::from_secs(5),
        }
    }
}

impl RedisOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// One more argument after the defaults (`--port`, `--bind 127.0.0.1`,
    /// `--save ""`, `--appendonly no`, `--protected-mode no`); a later
    /// argument wins, so e.g. `--enable-debug-command local` or `--dir` go here.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Appends the server's stdout and stderr to `path` (default: discarded).
    pub fn log_to(mut self, path: impl Into<PathBuf>) -> Self {
        self.log = Some(path.into());
        self
    }

    /// How long the server may take to answer PING (default 5 s).
    pub fn ready_within(mut self, within: Duration) -> Self {
        self.ready_within = within;
        self
    }

    /// Starts the server on a free port and waits until it answers PING. A
    /// port picked as free may be taken before redis binds it: a few other
    /// ports are tried before giving up.
    pub async fn start(self) -> io::Result<RedisServer> {
        let mut last_error = None;
        for _ in 0..5 {
            let mut server = RedisServer {
                port: try_free_port()?,
                child: None,
                options: self.clone(),
            };
            match server.spawn().await {
                Ok(()) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("redis-server did not start")))
    }
}

/// A private `redis-server` (no persistence) on a free port of 127.0.0.1.
/// Killed when dropped.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    options: RedisOptions,
}

impl RedisServer {
    /// Starts a server with the default [`RedisOptions`]; panics (in a test)
    /// when redis-server cannot be started.
    pub async fn start() -> RedisServer {
        RedisOptions::new()
            .start()
            .await
            .unwrap_or_else(|e| panic!("could not start a private redis-server: {e}"))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `redis://127.0.0.1:<port>` (direct, not through any proxy).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The child's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True while the child process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Kills the server (SIGKILL) and waits for it to be gone: all data is lost.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again, empty, on the same port; panics after 5 s.
    pub async fn restart(&mut self) {
        self.kill();
        // The port is normally free again at once (the listener was closed with
        // the process); retry briefly in case it is not.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut last_error = None;
        while Instant::now() < deadline {
            match self.spawn().await {
                Ok(()) => return,
                Err(e) => last_error = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "could not restart redis-server on port {}: {last_error:?}",
            self.port
        );
    }

    /// Spawns redis-server on `self.port`; Ok once it answers PING.
    async fn spawn(&mut self) -> io::Result<()> {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(&self.options.extra_args)
            .stdin(Stdio::null());
        match &self.options.log {
            Some(path) => {
                let out = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                command.stderr(out.try_clone()?).stdout(out);
            }
            None => {
                command.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let child = command.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("spawn redis-server (is it installed?): {e}"),
            )
        })?;
        self.child = Some(child);
        let deadline = Instant::now() + self.options.ready_within;
        while Instant::now() < deadline {
            if !self.is_running() {
                // Exited: most likely the port was taken.
                self.child = None;
                return Err(io::Error::other(format!(
                    "redis-server exited at start on port {}",
                    self.port
                )));
            }
            if answers_ping(self.addr()).await {
                // Make sure it is our process that answered, not another server
                // that already held the port.
                tokio::time::sleep(Duration::from_millis(20)).await;
                if self.is_running() {
                    return Ok(());
                }
                self.child = None;
                return Err(io::Error::other(format!(
                    "port {} is held by another server",
                    self.port
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "redis-server on port {} did not answer within {:?}",
                self.port, self.options.ready_within
            ),
        ))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// True when something at `addr` answers an inline PING with +PONG within
/// half a second.
pub async fn answers_ping(addr: SocketAddr) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
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
