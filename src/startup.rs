//! Builds the application: database, pools, cache, routes, server. Tests call
//! [`Application::build`] with `BIND_ADDR=127.0.0.1:0` and talk HTTP to the
//! port it reports.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::{Logger, from_fn};
use actix_web::{App, HttpServer, web};
use tracing::Instrument;
use tracing_actix_web::TracingLogger;

use crate::auth::password::Hashing;
use crate::auth::throttle::{Limit, LoginThrottle};
use crate::cache::{Cache, CacheConfig};
use crate::config::Settings;
use crate::db::{self, DatabaseSetupError, DbPool};
use crate::metrics::Metrics;
use crate::middleware::request_id::{RequestSpan, request_id};
use crate::middleware::{cors, headers, json_errors, metrics, panics};
use crate::routes;
use crate::state::AppState;

/// Why linkhub could not start; each message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Database(#[from] DatabaseSetupError),
    #[error("cannot set up the Redis pool for REDIS_URL: {0}")]
    Redis(String),
    #[error("cannot listen on BIND_ADDR={addr}: {cause}")]
    Bind { addr: String, cause: std::io::Error },
}

pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Creates the database when missing, runs migrations (unless
    /// `MIGRATE_ON_START=false`), builds the pools and binds the listener.
    /// Redis is not required to start: the cache bypasses it until it answers.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        if settings.migrate_on_start {
            db::prepare_database(&settings.database_url).await?;
        } else {
            // Still fail fast, with a clear message, when PostgreSQL is unreachable.
            db::create_database_if_missing(&settings.database_url).await?;
        }
        let pool = db::build_pool(
            &settings.database_url,
            settings.db_pool_size,
            settings.db_timeout,
        )?;
        let metrics = Arc::new(Metrics::default());
        let cache = Cache::start(
            CacheConfig::from(&settings),
            pool.clone(),
            Arc::clone(&metrics),
        )
        .map_err(StartupError::Redis)?;
        if settings.cache_enabled && cache.ping().await.is_err() {
            tracing::warn!(
                "Redis at REDIS_URL does not answer; serving from PostgreSQL (X-Cache: BYPASS) until it does"
            );
        }
        sweep_expired_tokens(pool.clone());
        let listener =
            TcpListener::bind(&settings.bind_addr).map_err(|cause| StartupError::Bind {
                addr: settings.bind_addr.clone(),
                cause,
            })?;
        let port = listener.local_addr().map_err(|cause| StartupError::Bind {
            addr: settings.bind_addr.clone(),
            cause,
        })?;
        let workers = settings.workers;
        let cors_origins = settings.cors_allowed_origins.clone();
        // The parts extractors and middleware need are registered on their
        // own, so none of them takes the whole state.
        let pool_data = web::Data::new(pool.clone());
        let metrics_data = web::Data::from(Arc::clone(&metrics));
        let state = web::Data::new(AppState {
            db: pool,
            cache,
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
            hashing: Hashing::new(settings.hash_queue_max, settings.hash_wait),
            settings,
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(pool_data.clone())
                .app_data(metrics_data.clone())
                .configure(routes::extractor_errors)
                .wrap(from_fn(metrics::track))
                .wrap(from_fn(panics::catch_panic))
                .wrap(cors::cors(&cors_origins))
                .wrap(json_errors::json_errors())
                .wrap(from_fn(headers::security_headers))
                .wrap(Logger::new(
                    "%a \"%r\" %s %b %Dms \"%{User-Agent}i\" request_id=%{X-Request-Id}i",
                ))
                .wrap(TracingLogger::<RequestSpan>::new())
                .wrap(from_fn(request_id))
                .configure(routes::configure)
        })
        .workers(workers)
        .listen(listener)
        .map_err(|cause| StartupError::Bind {
            addr: port.to_string(),
            cause,
        })?
        .run();
        Ok(Self {
            port: port.port(),
            server,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT or SIGTERM; in-flight requests get up to 30 s to finish.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// Expired tokens are refused by the auth query already; this only keeps the
/// table from growing forever.
fn sweep_expired_tokens(pool: DbPool) {
    let span = tracing::info_span!("token_sweep");
    tokio::spawn(
        async move {
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
        }
        .instrument(span),
    );
}
