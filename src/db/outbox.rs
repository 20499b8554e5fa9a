//! `cache_outbox`: the cache version bumps a committed write still owes Redis.
//!
//! A write inserts one row per namespace it changed, in its own transaction.
//! After the commit the cache bumps those namespaces and deletes the rows; a
//! row that outlives that (Redis was down, the process died) is replayed by
//! the cache's recovery before the cache is trusted again.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::cache::Namespace;
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
                log::warn!("cache_outbox row {id} names an unknown namespace {ns:?}; dropping it")
            }
        }
    }
    pending.namespaces.sort();
    pending.namespaces.dedup();
    Ok(pending)
}

/// Forgets rows whose bumps reached Redis.
pub async fn delete(conn: &mut AsyncPgConnection, ids: &[i64]) -> QueryResult<usize> {
    diesel::delete(cache_outbox::table.filter(cache_outbox::id.eq_any(ids)))
        .execute(conn)
        .await
}
