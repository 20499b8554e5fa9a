//! `cache_outbox`: the cache version bumps a committed write still owes Redis.
//!
//! The rows are written by triggers on `users`, `links` and `socials` (the
//! migration `cache_owed_by_the_database`), in the transaction of whatever
//! changed them: linkhub, `psql`, a diesel data migration, another program.
//! The same triggers announce them on [`OWED_CHANNEL`] at commit. A linkhub
//! write reads back its own rows ([`recorded`]), bumps them after the commit
//! and deletes them; every other row is delivered by the running instances
//! ([`pending`]). A row that outlives its delivery (Redis was down, the
//! process died) is replayed by the cache's recovery before the cache is
//! trusted again.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::namespace::Namespace;
use crate::schema::cache_outbox;

/// Outbox rows: what one write owes, or a batch a replay delivers.
#[derive(Debug, Clone, Default)]
pub struct Pending {
    pub ids: Vec<i64>,
    pub namespaces: Vec<Namespace>,
    /// The cache epoch a write's rows were committed under (0: not known,
    /// as for a replay's batch).
    pub epoch: i64,
}

/// The outbox rows this transaction's own changes recorded (the triggers of
/// the `cache_owed_by_the_database` migration write them), with the cache
/// epoch they are owed under. Call inside the write's transaction, after its
/// last statement: the triggers hold the epoch row (`FOR KEY SHARE`) until
/// the commit, so it cannot move in between.
pub async fn recorded(conn: &mut AsyncPgConnection) -> QueryResult<Pending> {
    let rows: Vec<RecordedRow> = diesel::sql_query(
        "SELECT e.epoch, o.id, o.namespace FROM cache_epoch e \
         LEFT JOIN cache_outbox o ON o.xact = txid_current() ORDER BY o.id",
    )
    .load(conn)
    .await?;
    let epoch = rows.iter().map(|r| r.epoch).next().unwrap_or(0);
    let mut pending = Pending::from_rows(rows.into_iter().filter_map(|r| {
        Some(OutboxRow {
            id: r.id?,
            namespace: r.namespace?,
        })
    }));
    pending.epoch = epoch;
    Ok(pending)
}

#[derive(QueryableByName)]
struct RecordedRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    epoch: i64,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    id: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    namespace: Option<String>,
}

/// Owed bumps, oldest first: every row no linkhub writer made (an admin's
/// SQL, a migration, another program: nobody else will deliver it), and
/// rows a linkhub writer made more than `writer_grace` ago (their writer is
/// probably gone). Ages are measured on PostgreSQL's clock, the one that
/// stamped the rows.
pub async fn pending(
    conn: &mut AsyncPgConnection,
    writer_grace: std::time::Duration,
    limit: i64,
) -> QueryResult<Pending> {
    let grace_ms = i64::try_from(writer_grace.as_millis()).unwrap_or(i64::MAX);
    let rows: Vec<OutboxRow> = diesel::sql_query(
        "SELECT id, namespace FROM cache_outbox \
         WHERE writer IS NULL OR created_at <= now() - $1 * interval '1 millisecond' \
         ORDER BY id LIMIT $2",
    )
    .bind::<diesel::sql_types::BigInt, _>(grace_ms)
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .load(conn)
    .await?;
    Ok(Pending::from_rows(rows))
}

/// The rows [`pending`] answers, from the one after id `after` on, each
/// with its namespace (`None`: a name this build does not know, to be
/// dropped): a replay that could not deliver some namespaces keeps their
/// rows and goes on past them.
pub async fn pending_after(
    conn: &mut AsyncPgConnection,
    writer_grace: std::time::Duration,
    after: i64,
    limit: i64,
) -> QueryResult<Vec<(i64, Option<Namespace>)>> {
    let grace_ms = i64::try_from(writer_grace.as_millis()).unwrap_or(i64::MAX);
    let rows: Vec<OutboxRow> = diesel::sql_query(
        "SELECT id, namespace FROM cache_outbox \
         WHERE (writer IS NULL OR created_at <= now() - $1 * interval '1 millisecond') \
         AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind::<diesel::sql_types::BigInt, _>(grace_ms)
    .bind::<diesel::sql_types::BigInt, _>(after)
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .load(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|OutboxRow { id, namespace }| {
            let ns = namespace.parse().ok();
            if ns.is_none() {
                tracing::warn!(
                    "cache_outbox row {id} names an unknown namespace {namespace:?}; dropping it"
                );
            }
            (id, ns)
        })
        .collect())
}

#[derive(QueryableByName)]
struct OutboxRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    id: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    namespace: String,
}

impl Pending {
    fn from_rows(rows: impl IntoIterator<Item = OutboxRow>) -> Self {
        let mut pending = Self::default();
        for OutboxRow { id, namespace } in rows {
            pending.ids.push(id);
            match namespace.parse() {
                Ok(ns) => pending.namespaces.push(ns),
                Err(()) => tracing::warn!(
                    "cache_outbox row {id} names an unknown namespace {namespace:?}; dropping it"
                ),
            }
        }
        pending.namespaces.sort();
        pending.namespaces.dedup();
        pending
    }
}

/// How many outbox rows there are and, when any, how old the oldest is in
/// seconds on PostgreSQL's clock (`linkhub cache status`).
pub async fn summary(conn: &mut AsyncPgConnection) -> QueryResult<(i64, Option<f64>)> {
    #[derive(QueryableByName)]
    struct Summary {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        rows: i64,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Double>)]
        oldest_secs: Option<f64>,
    }
    diesel::sql_query(
        "SELECT count(*) AS rows, \
                extract(epoch FROM now() - min(created_at))::DOUBLE PRECISION AS oldest_secs \
         FROM cache_outbox",
    )
    .get_result::<Summary>(conn)
    .await
    .map(|s| (s.rows, s.oldest_secs))
}

/// The newest row's id (0 when the outbox is empty).
pub async fn max_id(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    cache_outbox::table
        .select(diesel::dsl::max(cache_outbox::id))
        .get_result::<Option<i64>>(conn)
        .await
        .map(|id| id.unwrap_or(0))
}

/// How many rows up to `id` are still owed.
pub async fn count_up_to(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<i64> {
    cache_outbox::table
        .filter(cache_outbox::id.le(id))
        .count()
        .get_result(conn)
        .await
}

/// Whether a committed change to `ns` still owes its bump (a row names it):
/// the consistency observer's test for a write whose bump is on its way.
pub async fn owes(conn: &mut AsyncPgConnection, ns: &Namespace) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        cache_outbox::table.filter(cache_outbox::namespace.eq(ns.to_string())),
    ))
    .get_result(conn)
    .await
}

/// How many bumps are owed: what a stopping instance leaves to the next one.
pub async fn count(conn: &mut AsyncPgConnection) -> QueryResult<i64> {
    cache_outbox::table.count().get_result(conn).await
}

/// Forgets rows whose bumps reached Redis.
pub async fn delete(conn: &mut AsyncPgConnection, ids: &[i64]) -> QueryResult<usize> {
    diesel::delete(cache_outbox::table.filter(cache_outbox::id.eq_any(ids)))
        .execute(conn)
        .await
}

/// The `LISTEN`/`NOTIFY` channel on which a writer that could not bump tells
/// the other instances which namespaces it owes.
pub const OWED_CHANNEL: &str = "linkhub_cache_owed";

/// PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7000;

/// Tells every listening instance that `namespaces` have a bump owed that
/// their writer could not deliver: they stop trusting those namespaces and
/// deliver the rows themselves. Same form as the triggers' announcement, with
/// no writer named, split over several notifications when long.
pub async fn notify_owed(
    conn: &mut AsyncPgConnection,
    namespaces: &[Namespace],
) -> QueryResult<()> {
    let mut payload = String::new();
    for ns in namespaces {
        let ns = ns.to_string();
        if payload.len() + ns.len() + 1 > MAX_PAYLOAD {
            send(conn, &payload).await?;
            payload.clear();
        }
        if payload.is_empty() {
            payload = format!("owe - {}", chrono::Utc::now().timestamp_micros());
        }
        payload.push(' ');
        payload.push_str(&ns);
    }
    if !payload.is_empty() {
        send(conn, &payload).await?;
    }
    Ok(())
}

async fn send(conn: &mut AsyncPgConnection, payload: &str) -> QueryResult<()> {
    diesel::sql_query("SELECT pg_notify($1, $2)")
        .bind::<diesel::sql_types::Text, _>(OWED_CHANNEL)
        .bind::<diesel::sql_types::Text, _>(payload)
        .execute(conn)
        .await
        .map(drop)
}

/// What arrives on [`OWED_CHANNEL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announcement {
    /// Committed changes owe these namespaces (`None`: too many to name; read
    /// the outbox). `by_linkhub`: a linkhub writer made them and delivers the
    /// bumps itself before it answers.
    Owed {
        by_linkhub: bool,
        /// When it was sent, µs since 1970 (the sender's clock: for the
        /// delay metric only).
        sent_at: i64,
        namespaces: Option<Vec<Namespace>>,
    },
    /// The cache epoch moved to this value: every entry is gone.
    Epoch(i64),
}

/// Parses a notification of the triggers, of [`notify_owed`] or of an epoch move.
pub fn parse_announcement(payload: &str) -> Option<Announcement> {
    let mut parts = payload.split(' ');
    match parts.next()? {
        "epoch" => parts.next()?.parse().ok().map(Announcement::Epoch),
        "owe" => {
            let by_linkhub = parts.next()? != "-";
            let sent_at = parts.next()?.parse().ok()?;
            let rest: Vec<&str> = parts.collect();
            let namespaces = if rest == ["*"] {
                None
            } else {
                Some(rest.iter().filter_map(|p| p.parse().ok()).collect())
            };
            Some(Announcement::Owed {
                by_linkhub,
                sent_at,
                namespaces,
            })
        }
        _ => None,
    }
}

/// A dedicated connection listening on [`OWED_CHANNEL`] (not pooled: it
/// lives as long as the process).
pub async fn listen(database_url: &str) -> Result<AsyncPgConnection, String> {
    let mut conn = super::tls::establish(database_url)
        .await
        .map_err(|e| e.to_string())?;
    diesel::sql_query(format!("LISTEN {OWED_CHANNEL}"))
        .execute(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_parse() {
        assert_eq!(
            parse_announcement("owe - 1764110000000123 profile:bob user:1 users"),
            Some(Announcement::Owed {
                by_linkhub: false,
                sent_at: 1764110000000123,
                namespaces: Some(vec![
                    Namespace::Profile("bob".into()),
                    Namespace::User(1),
                    Namespace::Users
                ]),
            })
        );
        assert_eq!(
            parse_announcement("owe linkhub 1 *"),
            Some(Announcement::Owed {
                by_linkhub: true,
                sent_at: 1,
                namespaces: None
            })
        );
        assert_eq!(parse_announcement("epoch 7"), Some(Announcement::Epoch(7)));
        assert!(parse_announcement("").is_none());
        assert!(parse_announcement("1764110000000123 user:1").is_none());
        assert!(parse_announcement("owe - user:1").is_none());
    }
}
