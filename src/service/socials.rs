//! Creating, changing and deleting social accounts.

use super::{Body, authorize, invalidate_committed};
use crate::auth::Caller;
use crate::db;
use crate::db::socials::{MAX_SOCIALS_PER_USER, NewSocial};
use crate::domain::input::{NewSocialInput, SocialPatchInput, Valid};
use crate::domain::resources::Social;
use crate::error::ApiError;
use crate::state::AppState;

/// Adds a social account to user `user_id`; one per platform and user, at
/// most [`MAX_SOCIALS_PER_USER`] per user.
pub async fn create(
    state: &AppState,
    caller: &Caller,
    user_id: i64,
    input: Body<NewSocialInput>,
) -> Result<Social, ApiError> {
    let mut conn = state.db.get().await?;
    let exists = db::users::exists(&mut conn, user_id).await?;
    authorize(caller, exists.then_some(user_id), "user")?;
    let social = Valid::parse(input?)?;
    let outcome = db::socials::insert(&mut conn, user_id, social).await?;
    drop(conn);
    let written = match outcome {
        NewSocial::Created(written) => Some(written),
        NewSocial::NoSuchUser => None,
        NewSocial::LimitReached => {
            return Err(ApiError::invalid_field(
                "socials",
                format!("a user has at most {MAX_SOCIALS_PER_USER} social accounts"),
            ));
        }
    };
    invalidate_committed(state, written, "user").await
}

/// Changes a social account's platform or URL.
pub async fn update(
    state: &AppState,
    caller: &Caller,
    id: i64,
    input: Body<SocialPatchInput>,
) -> Result<Social, ApiError> {
    let mut conn = state.db.get().await?;
    let owner = db::socials::owner_of(&mut conn, id).await?;
    authorize(caller, owner, "social account")?;
    let patch = Valid::parse(input?)?;
    let written = db::socials::update(&mut conn, id, patch).await?;
    drop(conn);
    invalidate_committed(state, written, "social account").await
}

/// Deletes a social account.
pub async fn delete(state: &AppState, caller: &Caller, id: i64) -> Result<(), ApiError> {
    let mut conn = state.db.get().await?;
    let owner = db::socials::owner_of(&mut conn, id).await?;
    authorize(caller, owner, "social account")?;
    let written = db::socials::delete(&mut conn, id).await?;
    drop(conn);
    invalidate_committed(state, written, "social account").await
}
