//! The SQL layer: every query linkhub makes lives below this module, one file
//! per table. Every committed change to a cached table records the cache
//! namespaces it changed in the same transaction ([`outbox`], written by the
//! tables' triggers whoever commits), so an invalidation can never be lost
//! between a commit and a crash, nor forgotten by a writer; [`epoch`] keeps
//! the cache epoch that coarse changes and untrusted Redis processes move.

pub mod clicks;
pub mod epoch;
pub mod instances;
pub mod links;
pub mod outbox;
pub mod socials;
pub mod tls;
pub mod tokens;
pub mod user_search_grams;
pub mod users;

use std::time::Duration;

use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{AsyncDieselConnectionManager, ManagerConfig};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

/// The migrations of `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

pub type DbPool = Pool<AsyncPgConnection>;
pub type DbConn = Object<AsyncPgConnection>;

/// Why the database could not be made ready at start-up.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseSetupError {
    #[error("cannot reach PostgreSQL at DATABASE_URL ({url}): {cause}")]
    Unreachable { url: String, cause: String },
    #[error("cannot create the database of DATABASE_URL ({url}): {cause}")]
    Create { url: String, cause: String },
    #[error("migrations failed on DATABASE_URL ({url}): {cause}")]
    Migrate { url: String, cause: String },
    #[error("cannot build the PostgreSQL pool for DATABASE_URL: {0}")]
    Pool(String),
}

/// The result of a write: its value and the cache namespaces it changed (the
/// outbox rows written in the same transaction).
#[derive(Debug)]
pub struct Written<T> {
    pub value: T,
    pub changes: outbox::Pending,
}

/// Limits PostgreSQL enforces on every pooled connection, so that neither a
/// slow statement nor a transaction left open holds a connection (and its
/// locks) for long.
#[derive(Debug, Clone, Copy)]
pub struct SessionTimeouts {
    /// `statement_timeout`: a statement running longer is cancelled (`503`).
    pub statement: Duration,
    /// `idle_in_transaction_session_timeout`: a session idle inside a
    /// transaction that long is ended by the server.
    pub idle_in_transaction: Duration,
}

/// `database_url` with `timeouts`, and the mark of a linkhub writer, added to
/// libpq's `options` parameter (`-c name=value`), so PostgreSQL applies them
/// from the connection's start:
/// no extra round trip per connection, and every connection made from the
/// URL has them. Options the URL carries already are kept.
pub fn with_session_timeouts(
    database_url: &str,
    timeouts: SessionTimeouts,
) -> Result<String, DatabaseSetupError> {
    let mut url = url::Url::parse(database_url)
        .map_err(|e| DatabaseSetupError::Pool(format!("DATABASE_URL does not parse: {e}")))?;
    let mut options = String::new();
    let mut kept = Vec::new();
    for (key, value) in url.query_pairs() {
        if key == "options" {
            options = value.into_owned();
        } else {
            kept.push((key.into_owned(), value.into_owned()));
        }
    }
    // `linkhub.writer` tells the outbox triggers that a linkhub writer made
    // the change and bumps it itself before answering (`outbox.rs`).
    let options = format!(
        "{options} -c statement_timeout={} -c idle_in_transaction_session_timeout={} -c linkhub.writer=linkhub",
        timeouts.statement.as_millis(),
        timeouts.idle_in_transaction.as_millis()
    );
    let mut pairs = url.query_pairs_mut();
    pairs.clear();
    for (key, value) in &kept {
        pairs.append_pair(key, value);
    }
    pairs.append_pair("options", options.trim_start());
    drop(pairs);
    // Spaces as `%20`, not `+`: tokio-postgres only percent-decodes (see `tls::parse_target`).
    let query = url.query().map(|q| q.replace('+', "%20"));
    url.set_query(query.as_deref());
    Ok(url.to_string())
}

/// Builds the pool with explicit bounds. Getting a connection may wait for a
/// free slot and then create (or recycle) one; each half gets half of
/// `timeout`, so a request waits `timeout` at most before its `503`.
pub fn build_pool(
    database_url: &str,
    size: usize,
    timeout: Duration,
) -> Result<DbPool, DatabaseSetupError> {
    let mut config = ManagerConfig::default();
    // A connection's driver task runs on the runtime that made it. Made on an
    // HTTP worker's runtime, it died with that worker: at a stop, a worker
    // with nothing in flight ends first, and a request still running on
    // another worker lost its connection mid-query (a `503` under a rolling
    // deploy, scripts/rolling-deploy.sh). So connections are made on the
    // runtime that builds the pool, the process's own, which outlives the
    // workers.
    let home = tokio::runtime::Handle::try_current().ok();
    config.custom_setup = Box::new(move |url| {
        let url = url.to_owned();
        let home = home.clone();
        Box::pin(async move {
            let Some(home) = home else {
                return tls::establish(&url).await;
            };
            home.spawn(async move { tls::establish(&url).await })
                .await
                .unwrap_or_else(|e| {
                    Err(diesel::ConnectionError::BadConnection(format!(
                        "connecting to PostgreSQL was cut: {e}"
                    )))
                })
        })
    });
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(database_url, config);
    let half = timeout / 2;
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(half))
        .create_timeout(Some(half))
        .recycle_timeout(Some(half))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| DatabaseSetupError::Pool(e.to_string()))
}

/// Creates the database named in `database_url` when it does not exist, then
/// runs the pending migrations.
pub async fn prepare_database(database_url: &str) -> Result<(), DatabaseSetupError> {
    create_database_if_missing(database_url).await?;
    run_migrations(database_url).await
}

/// Connects with a bound on the time it may take, so an unreachable server is
/// reported instead of hanging start-up.
async fn connect(url: &str, shown: &str) -> Result<AsyncPgConnection, diesel::ConnectionError> {
    match tokio::time::timeout(Duration::from_secs(10), tls::establish(url)).await {
        Ok(result) => result,
        Err(_) => Err(diesel::ConnectionError::BadConnection(format!(
            "no answer from {shown} within 10 s"
        ))),
    }
}

pub async fn create_database_if_missing(database_url: &str) -> Result<(), DatabaseSetupError> {
    let shown = redact(database_url);
    let mut url = url::Url::parse(database_url).map_err(|e| DatabaseSetupError::Unreachable {
        url: shown.clone(),
        cause: e.to_string(),
    })?;
    let name = url.path().trim_start_matches('/').to_owned();
    if name.is_empty() {
        return Ok(());
    }
    match connect(database_url, &shown).await {
        Ok(_) => return Ok(()),
        // 3D000 invalid_catalog_name: the server answered, the database is missing.
        Err(e) if e.to_string().contains("does not exist") => {}
        Err(e) => {
            return Err(DatabaseSetupError::Unreachable {
                url: shown,
                cause: e.to_string(),
            });
        }
    }
    url.set_path("/postgres");
    let mut admin =
        connect(url.as_str(), &shown)
            .await
            .map_err(|e| DatabaseSetupError::Unreachable {
                url: shown.clone(),
                cause: e.to_string(),
            })?;
    let create = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    match diesel::sql_query(create).execute(&mut admin).await {
        Ok(_) => {
            tracing::info!("created database {name}");
            Ok(())
        }
        // Another instance created it first.
        Err(diesel::result::Error::DatabaseError(_, info))
            if info.message().contains("already exists") =>
        {
            Ok(())
        }
        Err(e) => Err(DatabaseSetupError::Create {
            url: shown,
            cause: e.to_string(),
        }),
    }
}

/// Runs the embedded migrations. diesel's migration harness is synchronous, so
/// it runs on a blocking thread through `AsyncConnectionWrapper` (its async
/// harness would `block_in_place`, which panics on actix's current-thread runtime).
pub async fn run_migrations(database_url: &str) -> Result<(), DatabaseSetupError> {
    let shown = redact(database_url);
    let conn =
        connect(database_url, &shown)
            .await
            .map_err(|e| DatabaseSetupError::Unreachable {
                url: shown.clone(),
                cause: e.to_string(),
            })?;
    let outcome = tokio::task::spawn_blocking(move || {
        let mut wrapper: AsyncConnectionWrapper<AsyncPgConnection> = conn.into();
        // Two instances starting together must not run the same migration twice.
        diesel::RunQueryDsl::execute(
            diesel::sql_query("SELECT pg_advisory_lock(7468102251)"),
            &mut wrapper,
        )
        .map_err(|e| e.to_string())?;
        let applied = wrapper
            .run_pending_migrations(MIGRATIONS)
            .map(|v| v.len())
            .map_err(|e| e.to_string());
        let _ = diesel::RunQueryDsl::execute(
            diesel::sql_query("SELECT pg_advisory_unlock(7468102251)"),
            &mut wrapper,
        );
        applied
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    match outcome {
        Ok(0) => Ok(()),
        Ok(n) => {
            tracing::info!("applied {n} migration(s)");
            Ok(())
        }
        Err(cause) => Err(DatabaseSetupError::Migrate { url: shown, cause }),
    }
}

/// `/readyz`'s own connection to PostgreSQL, outside the pool: requests
/// holding every pooled connection can neither make readiness report the
/// database down nor make it wait behind them. It is opened on first use and
/// again after any failure; each check is bounded by `timeout`.
pub struct ReadinessProbe {
    database_url: String,
    timeout: Duration,
    conn: tokio::sync::Mutex<Option<AsyncPgConnection>>,
}

impl ReadinessProbe {
    pub fn new(database_url: &str, timeout: Duration) -> Self {
        Self {
            database_url: database_url.to_owned(),
            timeout,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// `true` when PostgreSQL answered a trivial query within the timeout.
    pub async fn database_answers(&self) -> bool {
        // Checks run one at a time; one stuck behind another is bounded too.
        let Ok(mut slot) = tokio::time::timeout(self.timeout, self.conn.lock()).await else {
            return false;
        };
        let answered = tokio::time::timeout(self.timeout, async {
            if slot.is_none() {
                *slot = tls::establish(&self.database_url).await.ok();
            }
            let conn = slot.as_mut()?;
            diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("1"))
                .get_result::<i32>(conn)
                .await
                .ok()
        })
        .await;
        let ok = matches!(answered, Ok(Some(1)));
        if !ok {
            // A connection that failed or was cut off mid-query is not reused.
            *slot = None;
        }
        ok
    }
}

/// The URL without its password, for messages.
pub fn redact(database_url: &str) -> String {
    crate::redact::redact_url_password(database_url)
}

/// Turns a `COUNT(*)` into the `u64` of a page's `total`.
fn count_to_u64(count: i64) -> u64 {
    u64::try_from(count).unwrap_or(0)
}
