//! Creating, changing and deleting links.

use super::{Body, authorize, invalidate_committed};
use crate::auth::Caller;
use crate::db;
use crate::db::links::{MAX_LINKS_PER_USER, NewLink};
use crate::domain::input::{LinkPatchInput, NewLinkInput, Valid};
use crate::domain::resources::Link;
use crate::error::ApiError;
use crate::state::AppState;

/// Adds a link to user `user_id`; without a position it goes after the
/// user's last link.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    user_id: i64,
    input: Body<NewLinkInput>,
) -> Result<Link, ApiError> {
    let mut conn = state.db.get().await?;
    let exists = db::users::exists(&mut conn, user_id).await?;
    authorize(caller, exists.then_some(user_id), "user")?;
    let link = Valid::parse(input?)?;
    let outcome = db::links::insert(&mut conn, user_id, link).await?;
    drop(conn);
    let written = match outcome {
        NewLink::Created(written) => Some(written),
        NewLink::NoSuchUser => None,
        NewLink::LimitReached => {
            return Err(ApiError::invalid_field(
                "links",
                format!("a user has at most {MAX_LINKS_PER_USER} links"),
            ));
        }
        NewLink::NoPositionLeft => {
            return Err(ApiError::invalid_field(
                "position",
                "the last link already has the highest position",
            ));
        }
    };
    invalidate_committed(state, written, "user").await
}

/// Changes a link's title, URL or position.
pub async fn update(
    state: &AppState,
    caller: &Caller,
    id: i64,
    input: Body<LinkPatchInput>,
) -> Result<Link, ApiError> {
    let mut conn = state.db.get().await?;
    authorize(caller, db::links::owner_of(&mut conn, id).await?, "link")?;
    let patch = Valid::parse(input?)?;
    let written = db::links::update(&mut conn, id, patch).await?;
    drop(conn);
    invalidate_committed(state, written, "link").await
}

/// Deletes a link.
pub async fn delete(state: &AppState, caller: &Caller, id: i64) -> Result<(), ApiError> {
    let mut conn = state.db.get().await?;
    authorize(caller, db::links::owner_of(&mut conn, id).await?, "link")?;
    let written = db::links::delete(&mut conn, id).await?;
    drop(conn);
    invalidate_committed(state, written, "link").await
}
