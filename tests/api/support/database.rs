//! The test databases: each test gets its own PostgreSQL database on the
//! shared server (`services.rs`), cloned
//! from a migrated template (`linkhub_tpl_<hash of migrations/>`, built once
//! and reused by every test process), and stale ones are swept away. Also the
//! raw SQL a test uses to look behind the API (`execute_sql`, `query_strings`).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diesel::QueryableByName;
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::names::unique_name;
use super::services::database_url;

/// Test databases older than this are dropped when a test process builds or
/// finds the template, so crashed or finished runs do not pile up.
const STALE_TEST_DB_SECS: u64 = 3600;
/// Test databases older than this with nobody connected are dropped too: the
/// process that made them has finished (a running test holds pool connections).
const IDLE_TEST_DB_SECS: u64 = 600;

/// Runs one or more SQL statements on the given database.
pub async fn execute_sql(database_url: &str, sql: &str) {
    let mut connection = AsyncPgConnection::establish(database_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {database_url}: {e}"));
    connection
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("SQL failed ({sql}): {e}"));
}

#[derive(QueryableByName)]
struct TextRow {
    #[diesel(sql_type = Text)]
    value: String,
}

/// Runs a query whose single text column is named `value`, returning the values.
pub async fn query_strings(database_url: &str, sql: &str) -> Vec<String> {
    let mut connection = AsyncPgConnection::establish(database_url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {database_url}: {e}"));
    query_strings_on(&mut connection, sql).await
}

async fn query_strings_on(connection: &mut AsyncPgConnection, sql: &str) -> Vec<String> {
    diesel::sql_query(sql)
        .load::<TextRow>(connection)
        .await
        .unwrap_or_else(|e| panic!("SQL failed ({sql}): {e}"))
        .into_iter()
        .map(|row| row.value)
        .collect()
}

/// The URL of a database that does not exist yet, named so that the stale
/// database sweep removes it later.
pub fn fresh_database_url() -> String {
    database_url(&fresh_database_name())
}

fn fresh_database_name() -> String {
    format!("linkhub_test_{}_{}", unix_now(), unique_name("d"))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_secs()
}

/// Creates `linkhub_test_<unix secs>_<unique>` from the migrated template and
/// returns its URL.
pub async fn create_test_database() -> String {
    let template = template_database().await;
    let name = fresh_database_name();
    let mut connection = admin_connection().await;
    let statement = format!("CREATE DATABASE {name} TEMPLATE {template}");
    let mut attempt = 0;
    loop {
        match connection.batch_execute(&statement).await {
            Ok(()) => break,
            Err(e) if attempt < 50 && e.to_string().contains("being accessed by other users") => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{statement} failed: {e}"),
        }
    }
    database_url(&name)
}

async fn admin_connection() -> AsyncPgConnection {
    let url = database_url("postgres");
    AsyncPgConnection::establish(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

/// The name of the migrated template database, building it on first use.
async fn template_database() -> String {
    static TEMPLATE: OnceCell<String> = OnceCell::const_new();
    TEMPLATE.get_or_init(build_template_database).await.clone()
}

/// Builds `linkhub_tpl_<hash>` unless another process already has. Holds a
/// PostgreSQL advisory lock so parallel test processes build it once; builds
/// under a scratch name and renames, so a crash never leaves a half-migrated
/// template behind.
async fn build_template_database() -> String {
    let template = format!("linkhub_tpl_{}", migrations_hash());
    let mut connection = admin_connection().await;
    connection
        .batch_execute("SELECT pg_advisory_lock(742017)")
        .await
        .expect("advisory lock");

    let exists = !query_strings(
        &database_url("postgres"),
        &format!("SELECT datname::text AS value FROM pg_database WHERE datname = '{template}'"),
    )
    .await
    .is_empty();
    if !exists {
        let scratch = format!("{template}_build");
        connection
            .batch_execute(&format!("DROP DATABASE IF EXISTS {scratch} WITH (FORCE)"))
            .await
            .expect("drop scratch template");
        linkhub::db::prepare_database(&database_url(&scratch))
            .await
            .unwrap_or_else(|e| panic!("prepare_database for the template failed: {e}"));
        let rename = format!("ALTER DATABASE {scratch} RENAME TO {template}");
        let mut attempt = 0;
        loop {
            match connection.batch_execute(&rename).await {
                Ok(()) => break,
                Err(e)
                    if attempt < 100 && e.to_string().contains("being accessed by other users") =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("{rename} failed: {e}"),
            }
        }
    }
    connection
        .batch_execute("SELECT pg_advisory_unlock(742017)")
        .await
        .expect("advisory unlock");
    // Dropping databases is slow; no test waits for it.
    std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the sweep");
        runtime.block_on(drop_stale_test_databases());
    });
    template
}

/// Drops `linkhub_test_<secs>_*` databases created more than an hour ago, or
/// more than ten minutes ago and no longer connected to. One process sweeps
/// at a time; the others skip it.
async fn drop_stale_test_databases() {
    let Ok(mut connection) = AsyncPgConnection::establish(&database_url("postgres")).await else {
        return;
    };
    let locked = query_strings_on(
        &mut connection,
        "SELECT pg_try_advisory_lock(742018)::text AS value",
    )
    .await;
    if locked != ["true"] {
        return;
    }
    let rows = query_strings_on(
        &mut connection,
        "SELECT d.datname::text || ' ' || COALESCE(s.numbackends, 0)::text AS value \
         FROM pg_database d LEFT JOIN pg_stat_database s ON s.datid = d.oid \
         WHERE d.datname LIKE 'linkhub\\_test\\_%'",
    )
    .await;
    let now = unix_now();
    let mut kept = std::collections::HashSet::new();
    for row in rows {
        let (name, backends) = row.split_once(' ').expect("name and backend count");
        let Some(created) = created_secs(name) else {
            continue;
        };
        let age = now.saturating_sub(created);
        if age > STALE_TEST_DB_SECS || (age > IDLE_TEST_DB_SECS && backends == "0") {
            // Ignore failures: someone may be dropping it at the same time.
            let _ = connection
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        } else {
            kept.insert(name.to_owned());
        }
    }
    // The click journal directories of databases gone (`journal_dir_of`);
    // one younger than the idle age may belong to a database made since.
    let journals = super::app::journal_dir_of("linkhub")
        .parent()
        .map(Path::to_path_buf);
    let Some(Ok(entries)) = journals.map(std::fs::read_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let old = created_secs(&name).is_some_and(|c| now.saturating_sub(c) > IDLE_TEST_DB_SECS);
        if old && !kept.contains(&name) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// When a test database was made, from its name (`linkhub_test_<secs>_…`).
fn created_secs(name: &str) -> Option<u64> {
    name.strip_prefix("linkhub_test_")
        .and_then(|rest| rest.split('_').next())
        .and_then(|secs| secs.parse::<u64>().ok())
}

/// A hash of every file under `migrations/` (path and contents), so a changed
/// migration gets a new template instead of a stale one.
fn migrations_hash() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files = Vec::new();
    collect_files(&root, &mut files);
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        let relative = file.strip_prefix(&root).expect("file under migrations/");
        hasher.update(relative.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(std::fs::read(&file).expect("read migration file"));
        hasher.update([0]);
    }
    hex::encode(hasher.finalize())[..16].to_string()
}

fn collect_files(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("read migrations dir").path();
        if path.is_dir() {
            collect_files(&path, files);
        } else {
            files.push(path);
        }
    }
}

/// A table locked (`ACCESS EXCLUSIVE`) by a transaction of the test's own,
/// until [`TableLock::release`]: the app's statements on it wait, holding
/// their pooled connections — a slow database, made on purpose.
pub struct TableLock {
    connection: AsyncPgConnection,
}

impl TableLock {
    pub async fn take(database_url: &str, table: &str) -> TableLock {
        let mut connection = AsyncPgConnection::establish(database_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {database_url}: {e}"));
        connection
            .batch_execute(&format!(
                "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
            ))
            .await
            .unwrap_or_else(|e| panic!("cannot lock {table}: {e}"));
        TableLock { connection }
    }

    pub async fn release(mut self) {
        self.connection
            .batch_execute("COMMIT")
            .await
            .unwrap_or_else(|e| panic!("cannot release the lock: {e}"));
    }
}

/// How many sessions of the database wait for a lock right now.
pub async fn sessions_waiting_for_a_lock(database_url: &str) -> usize {
    query_strings(
        database_url,
        "SELECT count(*)::text AS value FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .await[0]
        .parse()
        .expect("a count")
}

/// Waits until `n` sessions wait for a lock (at most 10 s).
pub async fn until_sessions_wait_for_a_lock(database_url: &str, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let waiting = sessions_waiting_for_a_lock(database_url).await;
        if waiting >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{waiting} session(s) wait for the lock, not {n}, after 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
