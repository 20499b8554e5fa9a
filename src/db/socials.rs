//! `socials`: a user's accounts on other platforms, one per platform.

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::users::lock_owner;
use super::{Written, outbox};
use crate::domain::input::{NewSocialInput, SocialPatchInput, Valid};
use crate::domain::resources::Social;
use crate::schema::{socials, users};

/// The columns a PATCH may set; made only of a checked patch.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = socials)]
struct SocialChanges {
    platform: Option<String>,
    url: Option<String>,
}

impl From<Valid<SocialPatchInput>> for SocialChanges {
    fn from(patch: Valid<SocialPatchInput>) -> Self {
        let SocialPatchInput { platform, url } = patch.into_inner();
        Self { platform, url }
    }
}

pub async fn find(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<Social>> {
    socials::table
        .find(id)
        .select(Social::as_select())
        .first(conn)
        .await
        .optional()
}

/// The owner of a social account, for the permission check before a write.
pub async fn owner_of(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<i64>> {
    socials::table
        .find(id)
        .select(socials::user_id)
        .first(conn)
        .await
        .optional()
}

/// Every social account of a user, ordered by platform.
pub async fn all_of_user(conn: &mut AsyncPgConnection, user_id: i64) -> QueryResult<Vec<Social>> {
    socials::table
        .filter(socials::user_id.eq(user_id))
        .order(socials::platform)
        .select(Social::as_select())
        .load(conn)
        .await
}

/// Social accounts one user may have (API.md).
pub const MAX_SOCIALS_PER_USER: i64 = 50;

/// What adding a social account came to. Every refusal leaves the database
/// unchanged; a platform the user already has is a unique violation (`409`).
#[derive(Debug)]
pub enum NewSocial {
    Created(Written<Social>),
    NoSuchUser,
    /// The user has [`MAX_SOCIALS_PER_USER`] accounts already.
    LimitReached,
}

/// Adds the social account of a checked body. The owner row is locked
/// first, so concurrent creates cannot pass [`MAX_SOCIALS_PER_USER`] together.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    user_id: i64,
    social: Valid<NewSocialInput>,
) -> QueryResult<NewSocial> {
    let NewSocialInput { platform, url } = social.into_inner();
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        let Some(_owner) = lock_owner(conn, user_id).await? else {
            return Ok(NewSocial::NoSuchUser);
        };
        let count: i64 = socials::table
            .filter(socials::user_id.eq(user_id))
            .count()
            .get_result(conn)
            .await?;
        if count >= MAX_SOCIALS_PER_USER {
            return Ok(NewSocial::LimitReached);
        }
        let social: Social = diesel::insert_into(socials::table)
            .values((
                socials::user_id.eq(user_id),
                socials::platform.eq(platform),
                socials::url.eq(url),
            ))
            .returning(Social::as_returning())
            .get_result(conn)
            .await?;
        let changes = outbox::recorded(conn).await?;
        Ok(NewSocial::Created(Written {
            value: social,
            changes,
        }))
    })
    .await
}

/// Applies a checked patch. `Ok(None)`: no such social account.
pub async fn update(
    conn: &mut AsyncPgConnection,
    id: i64,
    patch: Valid<SocialPatchInput>,
) -> QueryResult<Option<Written<Social>>> {
    let changes = SocialChanges::from(patch);
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        let Some(_owner) = locked_social_owner(conn, id).await? else {
            return Ok(None);
        };
        let social: Social = if changes.platform.is_none() && changes.url.is_none() {
            socials::table
                .find(id)
                .select(Social::as_select())
                .first(conn)
                .await?
        } else {
            diesel::update(socials::table.find(id))
                .set(&changes)
                .returning(Social::as_returning())
                .get_result(conn)
                .await?
        };
        let pending = outbox::recorded(conn).await?;
        Ok(Some(Written {
            value: social,
            changes: pending,
        }))
    })
    .await
}

/// `Ok(None)`: no such social account.
pub async fn delete(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<Written<()>>> {
    conn.transaction::<_, diesel::result::Error, _>(async |conn| {
        let Some(_owner) = locked_social_owner(conn, id).await? else {
            return Ok(None);
        };
        diesel::delete(socials::table.find(id))
            .execute(conn)
            .await?;
        let changes = outbox::recorded(conn).await?;
        Ok(Some(Written { value: (), changes }))
    })
    .await
}

/// The account's owner id and username, with both rows locked (as for a link:
/// the outbox trigger reads the owner's name under the lock).
async fn locked_social_owner(
    conn: &mut AsyncPgConnection,
    id: i64,
) -> QueryResult<Option<(i64, String)>> {
    socials::table
        .inner_join(users::table)
        .filter(socials::id.eq(id))
        .select((users::id, users::username))
        .for_update()
        .first(conn)
        .await
        .optional()
}
