//! Builds the application: database, pools, cache, routes, server. Tests call
//! [`Application::build`] with `BIND_ADDR=127.0.0.1:0` and talk HTTP to the
//! port it reports.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::{Logger, from_fn};
use actix_web::{App, HttpServer, web};

use crate::auth::throttle::LoginThrottle;
use crate::cache::{Cache, CacheConfig};
use crate::config::Settings;
use crate::db::{self, DatabaseSetupError, DbPool};
use crate::metrics::Metrics;
use crate::{middleware, routes};

/// What every handler can reach, built once at start-up.
pub struct AppState {
    pub db: DbPool,
    pub cache: Cache,
    pub metrics: Arc<Metrics>,
    pub login_throttle: LoginThrottle,
    pub settings: Settings,
}

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
            settings.db_timeout(),
        )?;
        let metrics = Arc::new(Metrics::default());
        let cache = Cache::start(
            CacheConfig {
                topology: settings.redis_topology(),
                database_url: settings.database_url.clone(),
                prefix: settings.cache_prefix.clone(),
                pool_size: settings.redis_pool_size,
                timeout: settings.redis_timeout(),
                ttl_secs: settings.cache_ttl_secs,
                enabled: settings.cache_enabled,
                ca_file: settings.redis_ca_file.clone(),
            },
            pool.clone(),
            Arc::clone(&metrics),
        )
        .map_err(StartupError::Redis)?;
        if settings.cache_enabled && cache.ping().await.is_err() {
            log::warn!(
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
        let state = web::Data::new(AppState {
            db: pool,
            cache,
            metrics,
            login_throttle: LoginThrottle::new(
                settings.login_max_failures,
                std::time::Duration::from_secs(settings.login_window_secs),
            ),
            settings,
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(routes::extractor_errors)
                .wrap(from_fn(crate::metrics::track))
                .wrap(from_fn(routes::catch_panic))
                .wrap(middleware::cors(&cors_origins))
                .wrap(routes::json_errors())
                .wrap(from_fn(middleware::security_headers))
                .wrap(Logger::new(
                    "%a \"%r\" %s %b %Dms \"%{User-Agent}i\" request_id=%{X-Request-Id}i",
                ))
                .wrap(from_fn(middleware::request_id))
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
    tokio::spawn(async move {
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
                Ok(n) => log::info!("removed {n} expired token(s)"),
                Err(e) => log::warn!("sweeping expired tokens failed: {e}"),
            }
        }
    });
}
