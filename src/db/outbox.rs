//! `cache_outbox`: the cache version bumps a committed write still owes Redis.
//!
//! A write inserts one row per namespace it changed, in its own transaction.
//! After the commit the cache bumps those namespaces and deletes the rows; a
//! row that outlives that (Redis was down, the process died) is replayed by
//! the cache's recovery before the cache is trusted again.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::namespace::Namespace;
use crate::schema::cache_outbox;

/// The outbox rows of one write.
#[derive(Debug, Clone, Default)]
pub struct Pending {
    pub ids: Vec<i64>,
    pub namespaces: Vec<Namespace>,
}

/// Records `namespaces` (deduplicated) as owed bumps. Call inside the write's transaction.
pub async fn record(
    conn: &mut AsyncPgConnection,
    mut namespaces: Vec<Namespace>,
) -> QueryResult<Pending> {
    namespaces.sort();
    namespaces.dedup();
    let rows: Vec<_> = namespaces
        .iter()
        .map(|ns| cache_outbox::namespace.eq(ns.to_string()))
        .collect();
    let ids = diesel::insert_into(cache_outbox::table)
        .values(&rows)
        .returning(cache_outbox::id)
        .get_results(conn)
        .await?;
    Ok(Pending { ids, namespaces })
}

/// Owed bumps, oldest first; `older_than_secs` skips rows whose own writer is
/// probably still delivering them.
pub async fn pending(
    conn: &mut AsyncPgConnection,
    older_than_secs: i32,
    limit: i64,
) -> QueryResult<Pending> {
    let rows: Vec<(i64, String)> = cache_outbox::table
        .filter(
            cache_outbox::created_at
                .le(chrono::Utc::now() - chrono::Duration::seconds(i64::from(older_than_secs))),
        )
        .order(cache_outbox::id)
        .limit(limit)
        .select((cache_outbox::id, cache_outbox::namespace))
        .load(conn)
        .await?;
    let mut pending = Pending::default();
    for (id, ns) in rows {
        pending.ids.push(id);
        match ns.parse() {
            Ok(ns) => pending.namespaces.push(ns),
            Err(()) => {
                tracing::warn!(
                    "cache_outbox row {id} names an unknown namespace {ns:?}; dropping it"
                )
            }
        }
    }
    pending.namespaces.sort();
    pending.namespaces.dedup();
    Ok(pending)
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

/// Tells every listening instance that `namespaces` have a bump owed. The
/// payload is `<sent at, µs since the epoch> <namespace> <namespace>…`, split
/// over several notifications when long.
pub async fn notify_owed(
    conn: &mut AsyncPgConnection,
    namespaces: &[Namespace],
) -> QueryResult<()> {
    let sent_at = chrono::Utc::now().timestamp_micros();
    let mut payload = String::new();
    for ns in namespaces {
        if payload.len() + ns.to_string().len() + 1 > MAX_PAYLOAD {
            send(conn, &payload).await?;
            payload.clear();
        }
        if payload.is_empty() {
            payload = sent_at.to_string();
        }
        payload.push(' ');
        payload.push_str(&ns.to_string());
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

/// Parses a payload of [`notify_owed`]: when it was sent and what is owed.
pub fn parse_owed(payload: &str) -> Option<(i64, Vec<Namespace>)> {
    let mut parts = payload.split(' ');
    let sent_at = parts.next()?.parse().ok()?;
    Some((sent_at, parts.filter_map(|p| p.parse().ok()).collect()))
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
    fn owed_payloads_round_trip() {
        let (at, ns) = parse_owed("1764110000000123 user:1 profile:bob users").expect("parses");
        assert_eq!(at, 1764110000000123);
        assert_eq!(
            ns,
            vec![
                Namespace::User(1),
                Namespace::Profile("bob".into()),
                Namespace::Users
            ]
        );
        assert!(parse_owed("").is_none());
    }
}
