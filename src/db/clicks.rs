//! `link_clicks`, `link_visitors`, `click_batches`, `click_salts`: the
//! counts of link clicks per link and UTC day. None of these tables has an
//! outbox trigger: writing them owes the cache nothing (`crate::clicks`
//! explains why the counts stay exact).
//!
//! `click_batches` is keyed by click journal segment (its `writer`), and its
//! `last_batch` is the byte offset of the segment applied so far: the
//! record that a batch was applied, committed with the batch.

use chrono::NaiveDate;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bytea, Date, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::domain::clicks::{ClickDay, DayRange};

/// Clicks of one link on one day, as a journal segment adds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DayCount {
    pub link_id: i64,
    pub day: NaiveDate,
    pub clicks: i64,
}

/// What [`apply_segment`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentApply {
    /// The clicks beyond the segment's last applied offset were added, and
    /// the offset moved to the end given.
    Applied,
    /// The segment was applied up to that end (or beyond) already: a retry
    /// after an outcome that was not known, or a segment adopted twice.
    AlreadyApplied,
}

/// Applies a click journal segment up to byte offset `end`, in one
/// transaction, in this order (the one way both the applier and an adopter
/// apply a segment, `crate::clicks`):
/// 1. the segment's `click_batches` row is upserted and locked, returning
///    the offset applied so far (`-1`: nothing yet). The lock waits for any
///    transaction on the same segment still open, a dead process's
///    included, so what it returns is final;
/// 2. `beyond(last)` counts the segment's clicks past that offset, only
///    now that it is known (`None`: they cannot be counted now, and the
///    transaction is rolled back);
/// 3. the counts are added and the row's offset set to `end`, only when
///    `end` is past it.
///
/// Counts of links deleted meanwhile are dropped (their rows would go with
/// them). Rows are written in key order, so two writers adding to the same
/// rows wait for each other instead of deadlocking.
pub async fn apply_segment<F>(
    conn: &mut AsyncPgConnection,
    segment: &str,
    end: i64,
    beyond: F,
) -> QueryResult<SegmentApply>
where
    F: FnOnce(i64) -> Option<Vec<DayCount>> + Send,
{
    #[derive(QueryableByName)]
    struct Last {
        #[diesel(sql_type = BigInt)]
        last_batch: i64,
    }
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        let last: Last = diesel::sql_query(
            "INSERT INTO click_batches (writer, last_batch) VALUES ($1, -1) \
             ON CONFLICT (writer) DO UPDATE SET seen_at = now() \
             RETURNING last_batch",
        )
        .bind::<Text, _>(segment)
        .get_result(conn)
        .await?;
        if end <= last.last_batch {
            return Ok(SegmentApply::AlreadyApplied);
        }
        let mut counts = beyond(last.last_batch).ok_or(diesel::result::Error::RollbackTransaction)?;
        counts.sort_unstable();
        let link_ids: Vec<i64> = counts.iter().map(|c| c.link_id).collect();
        let days: Vec<NaiveDate> = counts.iter().map(|c| c.day).collect();
        let clicks: Vec<i64> = counts.iter().map(|c| c.clicks).collect();
        diesel::sql_query(
            "WITH counted AS ( \
                 INSERT INTO link_clicks (link_id, day, clicks) \
                 SELECT b.link_id, b.day, b.clicks \
                 FROM unnest($3::BIGINT[], $4::DATE[], $5::BIGINT[]) AS b (link_id, day, clicks) \
                 WHERE EXISTS (SELECT 1 FROM links l WHERE l.id = b.link_id) \
                 ORDER BY b.link_id, b.day \
                 ON CONFLICT (link_id, day) DO UPDATE SET clicks = link_clicks.clicks + EXCLUDED.clicks \
                 RETURNING 1 \
             ) \
             UPDATE click_batches SET last_batch = $2 WHERE writer = $1",
        )
        .bind::<Text, _>(segment)
        .bind::<BigInt, _>(end)
        .bind::<Array<BigInt>, _>(link_ids)
        .bind::<Array<Date>, _>(days)
        .bind::<Array<BigInt>, _>(clicks)
        .execute(conn)
        .await?;
        Ok(SegmentApply::Applied)
    })
    .await
}

/// Forgets a segment's record once its file is gone: nothing can apply it
/// again.
pub async fn forget_segment(conn: &mut AsyncPgConnection, segment: &str) -> QueryResult<usize> {
    diesel::sql_query("DELETE FROM click_batches WHERE writer = $1")
        .bind::<Text, _>(segment)
        .execute(conn)
        .await
}

/// The database a connection is on, as a journal segment's header names
/// it: `current_database()` and the server's `port`.
pub async fn database_identity(conn: &mut AsyncPgConnection) -> QueryResult<String> {
    #[derive(QueryableByName)]
    struct Identity {
        #[diesel(sql_type = Text)]
        identity: String,
    }
    let identity: Identity = diesel::sql_query(
        "SELECT current_database() || ' port ' || current_setting('port') AS identity",
    )
    .get_result(conn)
    .await?;
    Ok(identity.identity)
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

/// Forgets the records of segments unseen for a week: a segment's record
/// outlives its file only when its process died between deleting the file
/// and the record, and a file once deleted is never applied again.
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
