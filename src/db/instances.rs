//! `cache_instances`: what each running instance last reported of its cache,
//! for `linkhub cache status`. A report older than a few heartbeats means the
//! instance is gone; reports older than a day are removed by the next one.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// One instance's report.
#[derive(Debug, Clone, QueryableByName)]
pub struct InstanceReport {
    /// `<host>:<pid>:<start, µs>`: unique per process.
    #[diesel(sql_type = Text)]
    pub instance: String,
    #[diesel(sql_type = Timestamptz)]
    pub started_at: chrono::DateTime<chrono::Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub seen_at: chrono::DateTime<chrono::Utc>,
    /// `ok`, `degraded` (reads bypass Redis) or `off` (`CACHE_ENABLED=false`).
    #[diesel(sql_type = Text)]
    pub cache: String,
    /// The cache epoch the instance builds its keys with.
    #[diesel(sql_type = BigInt)]
    pub epoch: i64,
    /// Namespaces whose bump this instance knows to be owed.
    #[diesel(sql_type = BigInt)]
    pub owed: i64,
    /// Seconds since `seen_at`, on PostgreSQL's clock.
    #[diesel(sql_type = BigInt)]
    pub age_secs: i64,
}

/// Records `report` (its `seen_at` and `age_secs` are ignored: now, on the
/// database's clock) and drops reports a day old.
pub async fn report(conn: &mut AsyncPgConnection, report: &InstanceReport) -> QueryResult<()> {
    diesel::sql_query(
        "WITH gone AS (DELETE FROM cache_instances WHERE seen_at < now() - interval '1 day') \
         INSERT INTO cache_instances (instance, started_at, seen_at, cache, epoch, owed) \
         VALUES ($1, $2, now(), $3, $4, $5) \
         ON CONFLICT (instance) DO UPDATE SET seen_at = now(), cache = EXCLUDED.cache, \
             epoch = EXCLUDED.epoch, owed = EXCLUDED.owed",
    )
    .bind::<Text, _>(&report.instance)
    .bind::<Timestamptz, _>(report.started_at)
    .bind::<Text, _>(&report.cache)
    .bind::<BigInt, _>(report.epoch)
    .bind::<BigInt, _>(report.owed)
    .execute(conn)
    .await
    .map(drop)
}

/// Every report, newest first.
pub async fn all(conn: &mut AsyncPgConnection) -> QueryResult<Vec<InstanceReport>> {
    diesel::sql_query(
        "SELECT instance, started_at, seen_at, cache, epoch, owed, \
                extract(epoch FROM now() - seen_at)::BIGINT AS age_secs \
         FROM cache_instances ORDER BY seen_at DESC, instance",
    )
    .load(conn)
    .await
}

/// Forgets an instance that stopped cleanly.
pub async fn forget(conn: &mut AsyncPgConnection, instance: &str) -> QueryResult<()> {
    diesel::sql_query("DELETE FROM cache_instances WHERE instance = $1")
        .bind::<Text, _>(instance)
        .execute(conn)
        .await
        .map(drop)
}
