//! `cache_epoch`: the cache epoch, part of every cache key, and the Redis
//! processes it was trusted on.
//!
//! The epoch lives in PostgreSQL because what Redis brings back after a
//! restart cannot say what it lost: a snapshot restores old counters *and*
//! old entries together. Moving the epoch makes every entry and counter
//! unreachable at once. It moves when a statement changes more rows than the
//! triggers name one by one, when an operator asks (`linkhub cache invalidate
//! --all`), and when an instance finds Redis served by processes (run ids)
//! the current epoch was not trusted on.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// The epoch row.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Epoch {
    #[diesel(sql_type = BigInt)]
    pub epoch: i64,
    /// The run ids of the Redis processes this epoch was trusted on, sorted
    /// and comma-separated; empty until an instance first trusted Redis.
    #[diesel(sql_type = Text)]
    pub redis_runs: String,
    /// Why it last moved.
    #[diesel(sql_type = Text)]
    pub reason: String,
    #[diesel(sql_type = Timestamptz)]
    pub moved_at: chrono::DateTime<chrono::Utc>,
}

/// The current epoch.
pub async fn current(conn: &mut AsyncPgConnection) -> QueryResult<Epoch> {
    diesel::sql_query("SELECT epoch, redis_runs, reason, moved_at FROM cache_epoch")
        .get_result(conn)
        .await
}

/// The epoch under which Redis served by `runs` (sorted, comma-separated
/// run ids) may be trusted: the current one when it was trusted on those
/// processes, else a new one (moved once, whichever instance gets there
/// first), recorded with `runs`.
pub async fn trust_runs(conn: &mut AsyncPgConnection, runs: &str) -> QueryResult<i64> {
    diesel::sql_query("SELECT linkhub_cache_trust_runs($1) AS value")
        .bind::<Text, _>(runs)
        .get_result::<Number>(conn)
        .await
        .map(|n| n.value)
}

/// Moves the epoch for `reason`: every instance drops every entry.
pub async fn move_epoch(conn: &mut AsyncPgConnection, reason: &str) -> QueryResult<i64> {
    diesel::sql_query("SELECT linkhub_cache_move_epoch($1) AS value")
        .bind::<Text, _>(reason)
        .get_result::<Number>(conn)
        .await
        .map(|n| n.value)
}

/// Owes every namespace `user_id` shows in, through the triggers' own
/// function; the number of namespaces (0: no such user).
pub async fn owe_user(conn: &mut AsyncPgConnection, user_id: i64) -> QueryResult<i64> {
    diesel::sql_query("SELECT linkhub_cache_owe_user($1) AS value")
        .bind::<BigInt, _>(user_id)
        .get_result::<Number>(conn)
        .await
        .map(|n| n.value)
}

/// What the functions of the migration answer: one number, as `value`.
#[derive(QueryableByName)]
struct Number {
    #[diesel(sql_type = BigInt)]
    value: i64,
}
