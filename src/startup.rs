//! Builds the application: database, its pool, the cache's Redis
//! connections, routes, server. Tests call [`Application::build`] with
//! `BIND_ADDR=127.0.0.1:0` and talk HTTP to the port it reports.
//!
//! With `METRICS_BIND_ADDR`, a second, small server (one worker) serves
//! `/metrics` alone on that address, away from the public listener; it stops
//! with the main one.
//!
//! A stop (`SIGTERM` or `SIGINT` for the binary, any future for tests) closes
//! the listener, lets the requests in flight answer for up to
//! `SHUTDOWN_GRACE_SECS`, cuts the rest, then stops the background tasks.
//! Owed cache bumps stay in the outbox, where the next instance to start (or
//! any running one) replays them. A request cut mid-write either committed,
//! with its outbox rows in the same transaction, or rolled back when its
//! connection closed: nothing is left half-done.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use tokio::task::JoinHandle;

use crate::auth::password::Hashing;
use crate::auth::throttle::{Limit, LoginThrottle};
use crate::bulkhead::{Bulkhead, default_list_loads};
use crate::cache::{Cache, CacheConfig};
use crate::clicks::{Clicks, ClicksStartError};
use crate::config::Settings;
use crate::db::{self, DatabaseSetupError, DbPool};
use crate::metrics::Metrics;
use crate::middleware::admission::{self, Admission};
use crate::middleware::body_deadline::{BodyTimeout, body_deadline};
use crate::middleware::drain::{InFlight, count_in_flight};
use crate::middleware::request_id::request_id;
use crate::middleware::{cors, headers, json_errors, metrics, panics};
use crate::routes;
use crate::service::ops::SharedReadiness;
use crate::state::AppState;
use crate::tasks::BackgroundTasks;

/// How long the background tasks get to end once the server has stopped.
/// They end at their next await, so this is only a bound.
const TASKS_STOP_WITHIN: Duration = Duration::from_secs(5);

/// Why linkhub could not start; each message names the variable to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// PostgreSQL: unreachable, refused, or its migrations failed.
    #[error(transparent)]
    Database(#[from] DatabaseSetupError),
    /// The cache's Redis client could not be made from its configuration (a
    /// URL it does not take, an unreadable `REDIS_CA_FILE`). An unreachable
    /// Redis is not this: the cache starts without it.
    #[error("cannot set up the Redis connections of {variable}: {cause}")]
    Redis {
        /// `REDIS_URL`, or `REDIS_CLUSTER_URLS` when it is set.
        variable: &'static str,
        /// Why the client could not be made.
        cause: String,
    },
    /// The click journal's directory cannot be used.
    #[error(transparent)]
    Clicks(#[from] ClicksStartError),
    /// A listener could not be bound.
    #[error("cannot listen on {variable}={addr}: {cause}")]
    Bind {
        /// `BIND_ADDR`, or `METRICS_BIND_ADDR` for the metrics listener.
        variable: &'static str,
        /// The address as given (or as bound, when listening on it failed).
        addr: String,
        /// Why the system refused it.
        cause: std::io::Error,
    },
}

/// linkhub, built and serving: the database ready, the cache started, the
/// listener bound. [`Application::port`] is the port it got (tests bind
/// port 0); [`Application::run_until_stopped`] serves until a signal and
/// then stops gracefully, reporting what the stop cut.
pub struct Application {
    port: u16,
    server: Server,
    /// The `METRICS_BIND_ADDR` listener, when there is one.
    metrics_server: Option<MetricsServer>,
    tasks: BackgroundTasks,
    /// Stopped after the server, so every click journaled before the stop
    /// is applied (and the segment removed), and the visitors seen are merged.
    clicks: Arc<Clicks>,
    in_flight: Arc<InFlight>,
    db: DbPool,
    grace: Duration,
    db_timeout: Duration,
}

/// How a stop went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// Requests that were admitted but had not answered when the grace ran out.
    pub cut_requests: u64,
    /// Background tasks still running when [`TASKS_STOP_WITHIN`] ran out.
    pub tasks_left: usize,
    /// Owed cache bumps left in the outbox for the next instance, when
    /// PostgreSQL answered the count.
    pub owed_bumps_left: Option<i64>,
}

impl Stopped {
    /// Every request admitted got its answer.
    pub fn drained(&self) -> bool {
        self.cut_requests == 0
    }
}

impl Application {
    /// Creates the database when missing, runs migrations (unless
    /// `MIGRATE_ON_START=false`), builds the database pool, starts the
    /// cache and binds the listener.
    /// Redis is not required to start: the cache bypasses it until it answers.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        if settings.migrate_on_start {
            db::prepare_database(&settings.database_url).await?;
        } else {
            // Still fail fast, with a clear message, when PostgreSQL is unreachable.
            db::create_database_if_missing(&settings.database_url).await?;
        }
        let pool_url = db::with_session_timeouts(
            &settings.database_url,
            db::SessionTimeouts {
                statement: settings.db_statement_timeout,
                idle_in_transaction: settings.db_idle_in_transaction_timeout,
            },
        )?;
        let pool = db::build_pool(&pool_url, settings.db_pool_size, settings.db_timeout)?;
        let readiness = db::ReadinessProbe::new(&pool_url, settings.readiness_timeout);
        let metrics = Arc::new(Metrics::default());
        let tasks = BackgroundTasks::default();
        let redis_variable = settings.redis_topology().variable();
        let mut cache_config = CacheConfig::from(&settings);
        cache_config.format = entry_format(&settings.cache_format_salt);
        let cache = Cache::start(cache_config, pool.clone(), Arc::clone(&metrics), &tasks)
            .map_err(|cause| StartupError::Redis {
                variable: redis_variable,
                cause,
            })?;
        if settings.cache_enabled && !cache.warm_up().await {
            tracing::warn!(
                "Redis at {redis_variable} does not answer; serving from PostgreSQL (X-Cache: BYPASS) until it does"
            );
        }
        sweep_expired_tokens(&tasks, pool.clone());
        let clicks = Arc::new(Clicks::start(&settings, pool.clone(), Arc::clone(&metrics)).await?);
        let (listener, port) = bind("BIND_ADDR", &settings.bind_addr)?;
        let metrics_listener = settings
            .metrics_bind_addr
            .as_deref()
            .map(|addr| bind("METRICS_BIND_ADDR", addr))
            .transpose()?;
        let workers = settings.workers;
        let client_timeouts = ClientTimeouts::from(&settings);
        let body_timeout = web::Data::new(BodyTimeout(settings.http_client_body_timeout));
        let grace = settings.shutdown_grace;
        let db_timeout = settings.db_timeout;
        let in_flight = Arc::new(InFlight::default());
        let in_flight_data = web::Data::from(Arc::clone(&in_flight));
        let cors_origins = settings.cors_allowed_origins.clone();
        // The parts extractors and middleware need are registered on their
        // own, so none of them takes the whole state.
        let pool_data = web::Data::new(pool.clone());
        let metrics_data = web::Data::from(Arc::clone(&metrics));
        let admission = web::Data::new(Admission::new(&settings, Arc::clone(&metrics)));
        let shared_readiness = web::Data::new(SharedReadiness::new(settings.readiness_reuse));
        let list_loads = Bulkhead::new(
            "list_loads",
            match settings.list_loads_max {
                0 => default_list_loads(
                    settings.db_pool_size,
                    std::thread::available_parallelism().map_or(2, |n| n.get()),
                ),
                n => n,
            },
            settings.list_load_wait,
            Arc::clone(&metrics),
        );
        let state = web::Data::new(AppState {
            db: pool.clone(),
            cache,
            clicks: Arc::clone(&clicks),
            metrics,
            login_throttle: LoginThrottle::new(
                Limit {
                    max: settings.login_max_failures,
                    window: settings.login_window,
                },
                Limit {
                    max: settings.login_max_failures_per_address,
                    window: settings.login_window,
                },
            ),
            hashing: Hashing::new(
                settings.hash_queue_max,
                settings.hash_wait,
                settings.hash_registration_nice,
            ),
            readiness,
            list_loads,
            settings,
        });
        let metrics_server = metrics_listener
            .map(|(listener, addr)| MetricsServer::start(listener, addr, state.clone()))
            .transpose()?;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(pool_data.clone())
                .app_data(metrics_data.clone())
                .app_data(in_flight_data.clone())
                .app_data(body_timeout.clone())
                .app_data(admission.clone())
                .app_data(shared_readiness.clone())
                .configure(routes::extractor_errors)
                .wrap(from_fn(admission::admit))
                .wrap(from_fn(body_deadline))
                .wrap(from_fn(metrics::track))
                .wrap(from_fn(panics::catch_panic))
                .wrap(cors::cors(&cors_origins))
                .wrap(json_errors::json_errors())
                .wrap(from_fn(headers::security_headers))
                .wrap(from_fn(request_id))
                .wrap(from_fn(count_in_flight))
                .configure(routes::configure)
        })
        .workers(workers)
        .keep_alive(client_timeouts.keep_alive)
        .client_request_timeout(client_timeouts.request_head)
        .client_disconnect_timeout(client_timeouts.disconnect)
        // The stop is ours (see `run_until`), so that it can report what it cut.
        .disable_signals()
        .shutdown_timeout(grace.as_secs())
        .listen(listener)
        .map_err(|cause| StartupError::Bind {
            variable: "BIND_ADDR",
            addr: port.to_string(),
            cause,
        })?
        .run();
        Ok(Self {
            port: port.port(),
            server,
            metrics_server,
            tasks,
            clicks,
            in_flight,
            db: pool,
            grace,
            db_timeout,
        })
    }

    /// The port the listener is bound to (the one picked for `BIND_ADDR=…:0`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of the `METRICS_BIND_ADDR` listener, when there is one.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_server.as_ref().map(|m| m.port)
    }

    /// Serves until `SIGTERM` or `SIGINT`, then stops as [`Self::run_until`] does.
    pub async fn run_until_stopped(self) -> std::io::Result<Stopped> {
        self.run_until(stop_signal()).await
    }

    /// Serves until `stop` resolves (to the name of what asked for the stop),
    /// then stops: no new connections, the requests in flight answer within
    /// the grace or are cut, then the background tasks end.
    pub async fn run_until(
        self,
        stop: impl Future<Output = &'static str>,
    ) -> std::io::Result<Stopped> {
        let handle = self.server.handle();
        let mut server = self.server;
        tokio::select! {
            ended = &mut server => ended?,
            asked_by = stop => {
                tracing::info!(
                    "{asked_by}: no longer accepting connections; {} request(s) in flight get up to {}s (SHUTDOWN_GRACE_SECS)",
                    self.in_flight.pending(),
                    self.grace.as_secs(),
                );
                self.in_flight.start_draining(self.grace);
                // The server future carries out the stop, so it is polled meanwhile.
                let (ended, ()) = tokio::join!(&mut server, handle.stop(true));
                ended?;
            }
        }
        if let Some(metrics_server) = self.metrics_server {
            metrics_server.stop().await;
        }
        let abandoned = self.in_flight.abandoned();
        if abandoned > 0 {
            tracing::info!(
                "stop: {abandoned} request(s) in this process's life ended unanswered because their clients went away (not cut)"
            );
        }
        self.clicks.stop(TASKS_STOP_WITHIN).await;
        let stopped = Stopped {
            cut_requests: self.in_flight.cut(),
            tasks_left: self.tasks.stop(TASKS_STOP_WITHIN).await,
            owed_bumps_left: owed_bumps_left(&self.db, self.db_timeout).await,
        };
        report(&stopped);
        Ok(stopped)
    }
}

/// Binds `addr`, read from `variable`; answers the listener and the address
/// it got (the port picked for `…:0`).
fn bind(variable: &'static str, addr: &str) -> Result<(TcpListener, SocketAddr), StartupError> {
    let refused = |cause| StartupError::Bind {
        variable,
        addr: addr.to_owned(),
        cause,
    };
    let listener = TcpListener::bind(addr).map_err(refused)?;
    let bound = listener.local_addr().map_err(refused)?;
    Ok((listener, bound))
}

/// The `METRICS_BIND_ADDR` server: `/metrics` only, one worker (a scrape
/// every few seconds needs no more), no middleware but what the handler does.
struct MetricsServer {
    port: u16,
    handle: ServerHandle,
    running: JoinHandle<std::io::Result<()>>,
}

impl MetricsServer {
    fn start(
        listener: TcpListener,
        addr: SocketAddr,
        state: web::Data<AppState>,
    ) -> Result<Self, StartupError> {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(routes::ops::metrics_listener)
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen(listener)
        .map_err(|cause| StartupError::Bind {
            variable: "METRICS_BIND_ADDR",
            addr: addr.to_string(),
            cause,
        })?
        .run();
        Ok(Self {
            port: addr.port(),
            handle: server.handle(),
            running: tokio::spawn(server),
        })
    }

    /// Stops it once the main server has: scrapes go on while requests drain.
    async fn stop(self) {
        self.handle.stop(true).await;
        if let Ok(Err(e)) = self.running.await {
            tracing::warn!("stop: the METRICS_BIND_ADDR listener ended with an error: {e}");
        }
    }
}

/// Resolves on the first `SIGTERM` or `SIGINT`.
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        },
        Err(e) => {
            tracing::warn!("cannot watch for SIGTERM ({e}); only SIGINT stops linkhub cleanly");
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

async fn owed_bumps_left(db: &DbPool, within: Duration) -> Option<i64> {
    let count = async {
        let mut conn = db.get().await.map_err(|e| e.to_string())?;
        db::outbox::count(&mut conn)
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(within, count).await {
        Ok(Ok(n)) => Some(n),
        Ok(Err(e)) => {
            tracing::warn!("stop: cannot count the owed cache bumps in the outbox: {e}");
            None
        }
        Err(_) => {
            tracing::warn!("stop: PostgreSQL did not answer the outbox count in time");
            None
        }
    }
}

fn report(stopped: &Stopped) {
    if stopped.cut_requests > 0 {
        tracing::warn!(
            "stop: {} request(s) were cut when the grace ran out; a cut write either committed with its outbox rows or rolled back",
            stopped.cut_requests
        );
    }
    if stopped.tasks_left > 0 {
        tracing::warn!(
            "stop: {} background task(s) did not end in time",
            stopped.tasks_left
        );
    }
    match stopped.owed_bumps_left {
        Some(0) => tracing::info!("stopped; no cache bump owed"),
        Some(n) => tracing::info!(
            "stopped; {n} owed cache bump(s) stay in the outbox for the next instance to replay"
        ),
        None => tracing::info!("stopped"),
    }
}

/// How long the server waits on a client, so that slow or idle clients
/// (slow-loris) cannot hold connections open without end.
struct ClientTimeouts {
    /// `HTTP_CLIENT_REQUEST_TIMEOUT_MS`: the whole request head must arrive
    /// within this, else `408` and the connection is closed.
    request_head: std::time::Duration,
    /// `HTTP_CLIENT_DISCONNECT_TIMEOUT_MS`.
    disconnect: std::time::Duration,
    /// `HTTP_KEEP_ALIVE_SECS` (0: a connection serves one request).
    keep_alive: actix_web::http::KeepAlive,
}

impl From<&Settings> for ClientTimeouts {
    fn from(settings: &Settings) -> Self {
        Self {
            request_head: settings.http_client_request_timeout,
            disconnect: settings.http_client_disconnect_timeout,
            keep_alive: if settings.http_keep_alive.is_zero() {
                actix_web::http::KeepAlive::Disabled
            } else {
                actix_web::http::KeepAlive::Timeout(settings.http_keep_alive)
            },
        }
    }
}

/// Expired tokens are refused by the auth query already; this only keeps the
/// table from growing forever.
fn sweep_expired_tokens(tasks: &BackgroundTasks, pool: DbPool) {
    tasks.spawn("token_sweep", async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(600));
        loop {
            every.tick().await;
            let swept = match pool.get().await {
                Ok(mut conn) => db::tokens::delete_expired(&mut conn)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match swept {
                Ok(0) => {}
                Ok(n) => tracing::info!("removed {n} expired token(s)"),
                Err(e) => tracing::warn!("sweeping expired tokens failed: {e}"),
            }
        }
    });
}

/// What a cache entry holds, as 8 hex digits: a digest of the schemas of the
/// OpenAPI document (every cached JSON body is one of them), of the page
/// templates' source (the cached HTML), and of `CACHE_FORMAT_SALT`. A release
/// that changes either gets entry keys of its own, so during a rolling
/// deploy neither release reads an entry the other wrote in another shape;
/// the version counters stay shared, so a write through either invalidates
/// both. Unrelated changes to those files cost a cold cache once.
pub fn entry_format(salt: &str) -> String {
    use sha2::{Digest, Sha256};
    use utoipa::OpenApi;
    let mut digest = Sha256::new();
    let schemas = crate::routes::openapi::ApiDoc::openapi().components;
    digest.update(serde_json::to_vec(&schemas).unwrap_or_default());
    for source in crate::pages::TEMPLATE_SOURCES {
        digest.update(source.as_bytes());
    }
    digest.update(salt.as_bytes());
    hex::encode(&digest.finalize()[..4])
}
