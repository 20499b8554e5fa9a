//! `link_clicks`, `link_visitors`, `click_batches`, `click_salts`: the
//! counts of link clicks per link and UTC day. None of these tables has an
//! outbox trigger: writing them owes the cache nothing (`crate::clicks`
//! explains why the counts stay exact).

use chrono::NaiveDate;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bytea, Date, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::domain::clicks::{ClickDay, DayRange};

/// Clicks of one link on one day, as a batch adds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DayCount {
    pub link_id: i64,
    pub day: NaiveDate,
    pub clicks: i64,
}

#[derive(QueryableByName)]
struct Applied {
    #[diesel(sql_type = BigInt)]
    applied: i64,
}

/// Adds a batch's counts, unless batch `batch` of `writer` (or a later one)
/// was applied already: the counts and the record that they were applied
/// are one statement in one transaction. `true`: applied now;
/// `false`: it had been (a retry after an outcome that was not known).
/// Counts of links deleted meanwhile are dropped (their rows would go with
/// them). Rows are written in key order, so two writers adding to the same
/// rows wait for each other instead of deadlocking.
pub async fn apply_batch(
    conn: &mut AsyncPgConnection,
    writer: &str,
    batch: i64,
    counts: &[DayCount],
) -> QueryResult<bool> {
    let mut counts = counts.to_vec();
    counts.sort_unstable();
    let link_ids: Vec<i64> = counts.iter().map(|c| c.link_id).collect();
    let days: Vec<NaiveDate> = counts.iter().map(|c| c.day).collect();
    let clicks: Vec<i64> = counts.iter().map(|c| c.clicks).collect();
    // BEGIN … COMMIT around the one statement, not autocommit: a statement
    // that waits (on a lock, say) while its process is killed would still
    // commit when it ran in autocommit, counting clicks nobody was answered;
    // in a transaction it is rolled back when no COMMIT comes.
    let outcome = conn
        .transaction::<Applied, diesel::result::Error, _>(async |conn| {
            diesel::sql_query(
        "WITH recorded AS ( \
             INSERT INTO click_batches (writer, last_batch) VALUES ($1, $2) \
             ON CONFLICT (writer) DO UPDATE SET last_batch = EXCLUDED.last_batch, seen_at = now() \
                 WHERE click_batches.last_batch < EXCLUDED.last_batch \
             RETURNING 1 \
         ), counted AS ( \
             INSERT INTO link_clicks (link_id, day, clicks) \
             SELECT b.link_id, b.day, b.clicks \
             FROM unnest($3::BIGINT[], $4::DATE[], $5::BIGINT[]) AS b (link_id, day, clicks) \
             WHERE EXISTS (SELECT 1 FROM recorded) \
               AND EXISTS (SELECT 1 FROM links l WHERE l.id = b.link_id) \
             ORDER BY b.link_id, b.day \
             ON CONFLICT (link_id, day) DO UPDATE SET clicks = link_clicks.clicks + EXCLUDED.clicks \
             RETURNING 1 \
         ) \
         SELECT (SELECT count(*) FROM recorded) AS applied",
    )
    .bind::<Text, _>(writer)
    .bind::<BigInt, _>(batch)
    .bind::<Array<BigInt>, _>(link_ids)
    .bind::<Array<Date>, _>(days)
    .bind::<Array<BigInt>, _>(clicks)
    .get_result(conn)
    .await
        })
        .await?;
    Ok(outcome.applied > 0)
}

/// The salt of `day`'s visitor digests: `fresh` when this call is the first
/// to ask, else the one stored. Salts two days old are removed meanwhile.
pub async fn salt_of(
    conn: &mut AsyncPgConnection,
    day: NaiveDate,
    fresh: &[u8],
) -> QueryResult<Vec<u8>> {
    #[derive(QueryableByName)]
    struct Salt {
        #[diesel(sql_type = Bytea)]
        salt: Vec<u8>,
    }
    diesel::sql_query(
        "WITH gone AS (DELETE FROM click_salts WHERE day < $1::DATE - 1) \
         INSERT INTO click_salts (day, salt) VALUES ($1, $2) ON CONFLICT (day) DO NOTHING",
    )
    .bind::<Date, _>(day)
    .bind::<Bytea, _>(fresh)
    .execute(conn)
    .await?;
    // A statement of its own: in READ COMMITTED it sees a salt that a
    // concurrent first call committed while this one's insert waited.
    let stored: Salt = diesel::sql_query("SELECT salt FROM click_salts WHERE day = $1")
        .bind::<Date, _>(day)
        .get_result(conn)
        .await?;
    Ok(stored.salt)
}

/// One link-day's visitor sketch as stored.
#[derive(Debug, Clone, QueryableByName)]
pub struct StoredSketch {
    #[diesel(sql_type = BigInt)]
    pub link_id: i64,
    #[diesel(sql_type = Date)]
    pub day: NaiveDate,
    #[diesel(sql_type = Bytea)]
    pub registers: Vec<u8>,
}

/// A link-day's merged sketch and the estimate it gives.
#[derive(Debug, Clone)]
pub struct MergedSketch {
    pub link_id: i64,
    pub day: NaiveDate,
    pub registers: Vec<u8>,
    pub visitors: i64,
}

/// Merges into the stored sketches of `keys` in one transaction: `merge`
/// gets the stored ones (locked, so instances merging at once take turns)
/// and answers every key's new sketch, which replaces the stored one.
/// Keys of links deleted meanwhile are dropped.
pub async fn merge_sketches<F>(
    conn: &mut AsyncPgConnection,
    keys: &[(i64, NaiveDate)],
    merge: F,
) -> QueryResult<usize>
where
    F: FnOnce(Vec<StoredSketch>) -> Vec<MergedSketch> + Send,
{
    let mut keys = keys.to_vec();
    keys.sort_unstable();
    let link_ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
    let days: Vec<NaiveDate> = keys.iter().map(|k| k.1).collect();
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        let stored: Vec<StoredSketch> = diesel::sql_query(
            "SELECT v.link_id, v.day, v.registers FROM link_visitors v \
                 JOIN unnest($1::BIGINT[], $2::DATE[]) AS k (link_id, day) \
                   ON v.link_id = k.link_id AND v.day = k.day \
                 ORDER BY v.link_id, v.day FOR UPDATE OF v",
        )
        .bind::<Array<BigInt>, _>(&link_ids)
        .bind::<Array<Date>, _>(&days)
        .load(conn)
        .await?;
        let mut merged = merge(stored);
        merged.sort_unstable_by_key(|m| (m.link_id, m.day));
        let link_ids: Vec<i64> = merged.iter().map(|m| m.link_id).collect();
        let days: Vec<NaiveDate> = merged.iter().map(|m| m.day).collect();
        let visitors: Vec<i64> = merged.iter().map(|m| m.visitors).collect();
        let registers: Vec<Vec<u8>> = merged.into_iter().map(|m| m.registers).collect();
        diesel::sql_query(
            "INSERT INTO link_visitors (link_id, day, registers, visitors) \
                 SELECT m.link_id, m.day, m.registers, m.visitors \
                 FROM unnest($1::BIGINT[], $2::DATE[], $3::BYTEA[], $4::BIGINT[]) \
                     AS m (link_id, day, registers, visitors) \
                 WHERE EXISTS (SELECT 1 FROM links l WHERE l.id = m.link_id) \
                 ORDER BY m.link_id, m.day \
                 ON CONFLICT (link_id, day) DO UPDATE \
                     SET registers = EXCLUDED.registers, visitors = EXCLUDED.visitors",
        )
        .bind::<Array<BigInt>, _>(link_ids)
        .bind::<Array<Date>, _>(days)
        .bind::<Array<Bytea>, _>(registers)
        .bind::<Array<BigInt>, _>(visitors)
        .execute(conn)
        .await
    })
    .await
}

/// Forgets the batch records of writers unseen for a week: a process that
/// ended long ago retries nothing.
pub async fn forget_old_writers(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    diesel::sql_query("DELETE FROM click_batches WHERE seen_at < now() - interval '7 days'")
        .execute(conn)
        .await
}

/// The clicks and visitors of every link of `user_id` on the days of
/// `range`, by day then link; only days with clicks have a row.
pub async fn of_user(
    conn: &mut AsyncPgConnection,
    user_id: i64,
    range: DayRange,
) -> QueryResult<Vec<ClickDay>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        link_id: i64,
        #[diesel(sql_type = Date)]
        day: NaiveDate,
        #[diesel(sql_type = BigInt)]
        clicks: i64,
        #[diesel(sql_type = BigInt)]
        visitors: i64,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT c.link_id, c.day, c.clicks, COALESCE(v.visitors, 0) AS visitors \
         FROM link_clicks c \
         JOIN links l ON l.id = c.link_id \
         LEFT JOIN link_visitors v ON v.link_id = c.link_id AND v.day = c.day \
         WHERE l.user_id = $1 AND c.day BETWEEN $2 AND $3 \
         ORDER BY c.day, c.link_id",
    )
    .bind::<BigInt, _>(user_id)
    .bind::<Date, _>(range.from)
    .bind::<Date, _>(range.to)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ClickDay {
            link_id: r.link_id,
            day: r.day,
            // The estimate cannot exceed the clicks it was made of.
            visitors: r.visitors.min(r.clicks),
            clicks: r.clicks,
        })
        .collect())
}
