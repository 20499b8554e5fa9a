//! `users`: registration, lookups, search, updates and deletion.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use diesel::sql_types::{BigInt, Text};

use super::user_search_grams::{self, Term};
use super::{Written, count_to_u64, outbox};
use crate::domain::input::{NewUserInput, UserPatchInput, Valid};
use crate::domain::resources::{
    EXACT_TOTAL_UP_TO, ListRequest, ListStart, PrivateUser, PublicUser, Total,
};
use crate::schema::{auth_tokens, users};

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// The row of a registration; made only of a checked body (see [`insert`]).
#[derive(Debug, Insertable)]
#[diesel(table_name = users)]
struct NewUser {
    username: String,
    email: String,
    password_hash: String,
    name: String,
    bio: String,
    avatar_url: Option<String>,
}

/// The columns a write may set; `None` leaves a column as it is.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = users)]
struct UserChanges {
    username: Option<String>,
    email: Option<String>,
    password_hash: Option<String>,
    name: Option<String>,
    bio: Option<String>,
    /// `Some(None)` clears the avatar.
    avatar_url: Option<Option<String>>,
    role: Option<String>,
}

impl UserChanges {
    fn is_empty(&self) -> bool {
        self.username.is_none()
            && self.email.is_none()
            && self.password_hash.is_none()
            && self.name.is_none()
            && self.bio.is_none()
            && self.avatar_url.is_none()
            && self.role.is_none()
    }
}

/// What a login needs to check a password.
#[derive(Debug, Queryable)]
pub struct Credentials {
    pub id: i64,
    pub password_hash: String,
}

/// Registers the user of a checked body; its password is stored only as
/// `password_hash`. A missing name or bio is empty.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    input: Valid<NewUserInput>,
    password_hash: String,
) -> QueryResult<Written<PrivateUser>> {
    let input = input.into_inner();
    let new = NewUser {
        username: input.username,
        email: input.email,
        password_hash,
        name: input.name.unwrap_or_default(),
        bio: input.bio.unwrap_or_default(),
        avatar_url: input.avatar_url,
    };
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        let user: PrivateUser = diesel::insert_into(users::table)
            .values(&new)
            .returning(PrivateUser::as_returning())
            .get_result(conn)
            .await?;
        let changes = outbox::recorded(conn).await?;
        Ok(Written {
            value: user,
            changes,
        })
    })
    .await
}

pub async fn find_public(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<PublicUser>> {
    users::table
        .find(id)
        .select(PublicUser::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_private(
    conn: &mut AsyncPgConnection,
    id: i64,
) -> QueryResult<Option<PrivateUser>> {
    users::table
        .find(id)
        .select(PrivateUser::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_public_by_username(
    conn: &mut AsyncPgConnection,
    username: &str,
) -> QueryResult<Option<PublicUser>> {
    users::table
        .filter(users::username.eq(username))
        .select(PublicUser::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn exists(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(users::table.find(id)))
        .get_result(conn)
        .await
}

/// A login is a username or an email (case-insensitive).
pub async fn credentials(
    conn: &mut AsyncPgConnection,
    login: &str,
) -> QueryResult<Option<Credentials>> {
    let by_email = login.contains('@');
    let query = users::table
        .select((users::id, users::password_hash))
        .into_boxed();
    let query = if by_email {
        query.filter(lower(users::email).eq(login.to_lowercase()))
    } else {
        query.filter(users::username.eq(login))
    };
    query.first(conn).await.optional()
}

/// The stored password hash of user `id`, to check a `current_password`.
pub async fn password_hash_of(
    conn: &mut AsyncPgConnection,
    id: i64,
) -> QueryResult<Option<String>> {
    users::table
        .find(id)
        .select(users::password_hash)
        .first(conn)
        .await
        .optional()
}

pub use super::user_search_grams::like_contains_pattern;

/// A page of public users ordered by id, optionally those whose username or
/// name contains `search` (case-insensitive), from where `request` starts.
///
/// Costs, measured with `EXPLAIN ANALYZE` on 1,000,000 users (2 links each,
/// `VACUUM ANALYZE`d): `after` anywhere walks the primary key from that id
/// (0.3 ms near the end); page 100 at limit 100 without a search finds its
/// first id by an index-only scan of the 9,900 ids before it, then reads 100
/// rows (1.2 ms; `OFFSET` read and dropped 9,900 rows: 14 ms). A search
/// walks the grams of `user_search_grams` in id order (its module says how
/// and what it costs).
pub async fn list(
    conn: &mut AsyncPgConnection,
    search: Option<&str>,
    request: ListRequest,
) -> QueryResult<Vec<PublicUser>> {
    if let Some(term) = search.and_then(Term::new) {
        let after = match request.start {
            ListStart::After(after) => after,
            ListStart::Page(_) => i64::MIN,
        };
        return user_search_grams::page(conn, &term, after, request.offset(), request.limit as i64)
            .await;
    }
    let query = matching(search)
        .order(users::id)
        .limit(request.limit as i64)
        .select(PublicUser::as_select());
    let query = match request.start {
        ListStart::After(after) => query.filter(users::id.gt(after)),
        ListStart::Page(_) if search.is_some() => query.offset(request.offset()),
        ListStart::Page(_) => {
            // The first id of the page, from the primary key alone (no
            // heap row is read for the rows skipped).
            let skipped = diesel::alias!(users as skipped);
            let first = skipped
                .select(skipped.field(users::id))
                .order(skipped.field(users::id))
                .offset(request.offset())
                .limit(1)
                .single_value();
            query.filter(users::id.nullable().ge(first))
        }
    };
    query.load(conn).await
}

/// The users `search` matches (all of them without one), as a boxed query:
/// the plain `LIKE` filter, for a term too short to have a gram (which the
/// contract does not let through), and the reference the gram search is
/// tested against.
pub fn matching(search: Option<&str>) -> users::BoxedQuery<'static, diesel::pg::Pg> {
    let query = users::table.into_boxed();
    match search {
        Some(term) => {
            let pattern = like_contains_pattern(term);
            query.filter(
                lower(users::username)
                    .like(pattern.clone())
                    .escape('\\')
                    .or(lower(users::name).like(pattern).escape('\\')),
            )
        }
        None => query,
    }
}

/// How many users `search` matches: exact up to [`EXACT_TOTAL_UP_TO`], an
/// estimate above (API.md allows it). The count stops at
/// `EXACT_TOTAL_UP_TO + 1` matches, so it never costs more than that many
/// rows: an index-only scan of 10,001 ids without a search (2 ms at 1,000,000
/// users, where `count(*)` of the table took 64 ms). A search counts its
/// grams (`user_search_grams::count`).
pub async fn count_matching(
    conn: &mut AsyncPgConnection,
    search: Option<&str>,
) -> QueryResult<Total> {
    if let Some(term) = search.and_then(Term::new) {
        return user_search_grams::count(conn, &term).await;
    }
    let cap = EXACT_TOTAL_UP_TO as i64 + 1;
    let counted: Number =
        match search {
            Some(term) => diesel::sql_query(format!(
                "SELECT count(*) AS value FROM (SELECT 1 FROM users WHERE {MATCH_SQL} LIMIT $2) m"
            ))
            .bind::<Text, _>(like_contains_pattern(term))
            .bind::<BigInt, _>(cap)
            .get_result(conn)
            .await?,
            None => {
                diesel::sql_query("SELECT count(*) AS value FROM (SELECT 1 FROM users LIMIT $1) m")
                    .bind::<BigInt, _>(cap)
                    .get_result(conn)
                    .await?
            }
        };
    if counted.value < cap {
        return Ok(Total::exact(count_to_u64(counted.value)));
    }
    let estimate = estimate_all(conn).await?;
    Ok(Total {
        value: estimate.max(EXACT_TOTAL_UP_TO + 1),
        exact: false,
    })
}

/// The filter of [`matching`] in SQL, for the count (which diesel's query
/// builder cannot wrap): `$1` is the `LIKE` pattern.
const MATCH_SQL: &str = "(lower(username) LIKE $1 ESCAPE '\\' OR lower(name) LIKE $1 ESCAPE '\\')";

/// A `count(*)`.
#[derive(Debug, QueryableByName)]
struct Number {
    #[diesel(sql_type = BigInt)]
    value: i64,
}

/// The planner's estimate of the users: `EXPLAIN`, no execution (the
/// table's statistics scaled to its current size).
async fn estimate_all(conn: &mut AsyncPgConnection) -> QueryResult<u64> {
    let plan: Plan = diesel::sql_query("EXPLAIN (FORMAT JSON) SELECT 1 FROM users")
        .get_result(conn)
        .await?;
    Ok(plan.rows())
}

/// The one row `EXPLAIN (FORMAT JSON)` answers.
#[derive(Debug, QueryableByName)]
struct Plan {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    json: String,
}

impl Plan {
    /// The top node's `Plan Rows`; 0 if the plan is not as PostgreSQL writes it.
    fn rows(&self) -> u64 {
        serde_json::from_str::<serde_json::Value>(&self.json)
            .ok()
            .and_then(|plan| plan[0]["Plan"]["Plan Rows"].as_f64())
            .map_or(0, |rows| rows.max(0.0) as u64)
    }
}

/// Applies a checked patch, with `password_hash` the hash of its new
/// password if it has one (the password itself is never stored). A new
/// password also kills every token of the user, in the same transaction.
/// `Ok(None)`: no such user.
pub async fn update(
    conn: &mut AsyncPgConnection,
    id: i64,
    patch: Valid<UserPatchInput>,
    password_hash: Option<String>,
) -> QueryResult<Option<Written<PrivateUser>>> {
    let patch = patch.into_inner();
    let changes = UserChanges {
        username: patch.username,
        email: patch.email,
        password_hash,
        name: patch.name,
        bio: patch.bio,
        avatar_url: patch.avatar_url,
        role: None,
    };
    apply(conn, id, changes).await
}

/// Applies `changes` (see [`update`]).
async fn apply(
    conn: &mut AsyncPgConnection,
    id: i64,
    changes: UserChanges,
) -> QueryResult<Option<Written<PrivateUser>>> {
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        let Some(_locked) = users::table
            .find(id)
            .select(users::username)
            .for_update()
            .first::<String>(conn)
            .await
            .optional()?
        else {
            return Ok(None);
        };
        if changes.is_empty() {
            let user = users::table
                .find(id)
                .select(PrivateUser::as_select())
                .first(conn)
                .await?;
            return Ok(Some(Written {
                value: user,
                changes: outbox::Pending::default(),
            }));
        }
        let password_changed = changes.password_hash.is_some();
        let user: PrivateUser = diesel::update(users::table.find(id))
            .set(&changes)
            .returning(PrivateUser::as_returning())
            .get_result(conn)
            .await?;
        if password_changed {
            diesel::delete(auth_tokens::table.filter(auth_tokens::user_id.eq(id)))
                .execute(conn)
                .await?;
        }
        let pending = outbox::recorded(conn).await?;
        Ok(Some(Written {
            value: user,
            changes: pending,
        }))
    })
    .await
}

/// Deletes the user; links, socials and tokens go with it (ON DELETE CASCADE).
/// `Ok(None)`: no such user.
pub async fn delete(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<Written<()>>> {
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        let Some(_locked) = users::table
            .find(id)
            .select(users::username)
            .for_update()
            .first::<String>(conn)
            .await
            .optional()?
        else {
            return Ok(None);
        };
        diesel::delete(users::table.find(id)).execute(conn).await?;
        let changes = outbox::recorded(conn).await?;
        Ok(Some(Written { value: (), changes }))
    })
    .await
}

/// The id of the user named `username`, if any.
pub async fn id_by_username(
    conn: &mut AsyncPgConnection,
    username: &str,
) -> QueryResult<Option<i64>> {
    users::table
        .filter(users::username.eq(username))
        .select(users::id)
        .first(conn)
        .await
        .optional()
}

/// Gives `username` the admin role. `Ok(None)`: no such user.
pub async fn promote(
    conn: &mut AsyncPgConnection,
    username: &str,
) -> QueryResult<Option<Written<PrivateUser>>> {
    let Some(id) = id_by_username(conn, username).await? else {
        return Ok(None);
    };
    let changes = UserChanges {
        role: Some("admin".to_owned()),
        ..UserChanges::default()
    };
    apply(conn, id, changes).await
}

/// The owner's username, locked for the rest of the transaction: link and
/// social writes serialize on it, which keeps default link positions distinct.
pub(super) async fn lock_owner(
    conn: &mut AsyncPgConnection,
    id: i64,
) -> QueryResult<Option<String>> {
    users::table
        .find(id)
        .select(users::username)
        .for_update()
        .first(conn)
        .await
        .optional()
}
