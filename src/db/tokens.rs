//! `auth_tokens`: bearer tokens, stored as SHA-256 digests.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::domain::resources::PrivateUser;
use crate::schema::{auth_tokens, users};

pub async fn insert(
    conn: &mut AsyncPgConnection,
    user_id: i64,
    token_hash: &[u8],
    expires_at: DateTime<Utc>,
) -> QueryResult<()> {
    diesel::insert_into(auth_tokens::table)
        .values((
            auth_tokens::user_id.eq(user_id),
            auth_tokens::token_hash.eq(token_hash),
            auth_tokens::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// The user a live token belongs to.
pub async fn user_of(
    conn: &mut AsyncPgConnection,
    token_hash: &[u8],
) -> QueryResult<Option<PrivateUser>> {
    auth_tokens::table
        .inner_join(users::table)
        .filter(auth_tokens::token_hash.eq(token_hash))
        .filter(auth_tokens::expires_at.gt(diesel::dsl::now))
        .select(PrivateUser::as_select())
        .first(conn)
        .await
        .optional()
}

/// Logout: only this token dies.
pub async fn delete(conn: &mut AsyncPgConnection, token_hash: &[u8]) -> QueryResult<usize> {
    diesel::delete(auth_tokens::table.filter(auth_tokens::token_hash.eq(token_hash)))
        .execute(conn)
        .await
}

/// Drops expired tokens; run from time to time so the table does not grow forever.
pub async fn delete_expired(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    diesel::delete(auth_tokens::table.filter(auth_tokens::expires_at.le(diesel::dsl::now)))
        .execute(conn)
        .await
}
