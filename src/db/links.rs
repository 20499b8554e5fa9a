//! `links`: a user's ordered links.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::users::lock_owner;
use super::{Written, count_to_u64, outbox};
use crate::domain::input::{LinkPatchInput, NewLinkInput, Valid};
use crate::domain::resources::{Link, PageRequest};
use crate::schema::{links, users};

/// The columns a PATCH may set; made only of a checked patch.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = links)]
struct LinkChanges {
    title: Option<String>,
    url: Option<String>,
    position: Option<i32>,
}

impl From<Valid<LinkPatchInput>> for LinkChanges {
    fn from(patch: Valid<LinkPatchInput>) -> Self {
        let position = patch.position();
        let patch = patch.into_inner();
        Self {
            title: patch.title,
            url: patch.url,
            position,
        }
    }
}

pub async fn find(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<Link>> {
    links::table
        .find(id)
        .select(Link::as_select())
        .first(conn)
        .await
        .optional()
}

/// The owner of a link, for the permission check before a write.
pub async fn owner_of(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<i64>> {
    links::table
        .find(id)
        .select(links::user_id)
        .first(conn)
        .await
        .optional()
}

/// Every link of a user, ordered by position then id.
pub async fn all_of_user(conn: &mut AsyncPgConnection, user_id: i64) -> QueryResult<Vec<Link>> {
    links::table
        .filter(links::user_id.eq(user_id))
        .order((links::position, links::id))
        .select(Link::as_select())
        .load(conn)
        .await
}

pub async fn page_of_user(
    conn: &mut AsyncPgConnection,
    user_id: i64,
    page: PageRequest,
) -> QueryResult<(Vec<Link>, u64)> {
    let total: i64 = links::table
        .filter(links::user_id.eq(user_id))
        .count()
        .get_result(conn)
        .await?;
    let rows = match page.offset() {
        Some(offset) if offset < total => {
            links::table
                .filter(links::user_id.eq(user_id))
                .order((links::position, links::id))
                .limit(page.limit as i64)
                .offset(offset)
                .select(Link::as_select())
                .load(conn)
                .await?
        }
        _ => Vec::new(),
    };
    Ok((rows, count_to_u64(total)))
}

/// Links one user may have (API.md): a profile entry has a bounded size.
pub const MAX_LINKS_PER_USER: i64 = 100;

/// What adding a link came to. Every refusal leaves the database unchanged.
#[derive(Debug)]
pub enum NewLink {
    Created(Written<Link>),
    NoSuchUser,
    /// The user has [`MAX_LINKS_PER_USER`] links already.
    LimitReached,
    /// No position was given and the user's last link already has the
    /// highest one a link can have.
    NoPositionLeft,
}

/// Adds the link of a checked body; without a position it goes after the
/// user's last link. The owner row is locked first, so concurrent appends
/// get distinct positions and concurrent creates cannot pass
/// [`MAX_LINKS_PER_USER`] together.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    user_id: i64,
    link: Valid<NewLinkInput>,
) -> QueryResult<NewLink> {
    let position = link.position();
    let NewLinkInput { title, url, .. } = link.into_inner();
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        let Some(_owner) = lock_owner(conn, user_id).await? else {
            return Ok(NewLink::NoSuchUser);
        };
        let count: i64 = links::table
            .filter(links::user_id.eq(user_id))
            .count()
            .get_result(conn)
            .await?;
        if count >= MAX_LINKS_PER_USER {
            return Ok(NewLink::LimitReached);
        }
        let position = match position {
            Some(p) => p,
            None => {
                let last: Option<i32> = links::table
                    .filter(links::user_id.eq(user_id))
                    .select(diesel::dsl::max(links::position))
                    .first(conn)
                    .await?;
                match last.map(|p| p.checked_add(1)) {
                    None => 0,
                    Some(Some(next)) => next,
                    Some(None) => return Ok(NewLink::NoPositionLeft),
                }
            }
        };
        let link: Link = diesel::insert_into(links::table)
            .values((
                links::user_id.eq(user_id),
                links::title.eq(title),
                links::url.eq(url),
                links::position.eq(position),
            ))
            .returning(Link::as_returning())
            .get_result(conn)
            .await?;
        let changes = outbox::recorded(conn).await?;
        Ok(NewLink::Created(Written {
            value: link,
            changes,
        }))
    })
    .await
}

/// Applies a checked patch. `Ok(None)`: no such link.
pub async fn update(
    conn: &mut AsyncPgConnection,
    id: i64,
    patch: Valid<LinkPatchInput>,
) -> QueryResult<Option<Written<Link>>> {
    let changes = LinkChanges::from(patch);
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        let Some(_owner) = locked_link_owner(conn, id).await? else {
            return Ok(None);
        };
        let link: Link =
            if changes.title.is_none() && changes.url.is_none() && changes.position.is_none() {
                links::table
                    .find(id)
                    .select(Link::as_select())
                    .first(conn)
                    .await?
            } else {
                diesel::update(links::table.find(id))
                    .set(&changes)
                    .returning(Link::as_returning())
                    .get_result(conn)
                    .await?
            };
        let pending = outbox::recorded(conn).await?;
        Ok(Some(Written {
            value: link,
            changes: pending,
        }))
    })
    .await
}

/// `Ok(None)`: no such link.
pub async fn delete(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<Written<()>>> {
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        let Some(_owner) = locked_link_owner(conn, id).await? else {
            return Ok(None);
        };
        diesel::delete(links::table.find(id)).execute(conn).await?;
        let changes = outbox::recorded(conn).await?;
        Ok(Some(Written { value: (), changes }))
    })
    .await
}

/// The link's owner id and username, with the link and owner rows locked: a
/// concurrent rename waits, so the profile namespace the outbox trigger reads
/// for this write is the owner's name as committed.
async fn locked_link_owner(
    conn: &mut AsyncPgConnection,
    id: i64,
) -> QueryResult<Option<(i64, String)>> {
    links::table
        .inner_join(users::table)
        .filter(links::id.eq(id))
        .select((users::id, users::username))
        .for_update()
        .first(conn)
        .await
        .optional()
}
