//! Registration, updates and deletion of users.

use super::{Body, authorize, invalidate_committed};
use crate::auth::{Caller, password};
use crate::db;
use crate::domain::input::{NewUserInput, UserPatchInput, validate};
use crate::domain::resources::PrivateUser;
use crate::error::ApiError;
use crate::state::AppState;

/// Registers a user: the password is hashed before a connection is taken.
pub async fn register(state: &AppState, input: NewUserInput) -> Result<PrivateUser, ApiError> {
    validate(&input)?;
    let password_hash = password::hash(input.password).await?;
    let new = db::users::NewUser {
        username: input.username,
        email: input.email,
        password_hash,
        name: input.name.unwrap_or_default(),
        bio: input.bio.unwrap_or_default(),
        avatar_url: input.avatar_url,
    };
    let mut conn = state.db.get().await?;
    let written = db::users::insert(&mut conn, new).await?;
    drop(conn);
    invalidate_committed(state, Some(written), "user").await
}

/// Changes any of a user's fields; a new password kills every token of the
/// user. The connection of the authorization is given back before a new
/// password is hashed, and the write takes another one.
pub async fn update(
    state: &AppState,
    caller: &Caller,
    id: i64,
    input: Body<UserPatchInput>,
) -> Result<PrivateUser, ApiError> {
    let mut conn = state.db.get().await?;
    let exists = db::users::exists(&mut conn, id).await?;
    drop(conn);
    authorize(caller, exists.then_some(id), "user")?;
    let input = input?;
    input.validate_all()?;
    let password_hash = match input.password {
        Some(p) => Some(password::hash(p).await?),
        None => None,
    };
    let changes = db::users::UserChanges {
        username: input.username,
        email: input.email,
        password_hash,
        name: input.name,
        bio: input.bio,
        avatar_url: input.avatar_url,
        role: None,
    };
    let mut conn = state.db.get().await?;
    let written = db::users::update(&mut conn, id, changes).await?;
    drop(conn);
    invalidate_committed(state, written, "user").await
}

/// Deletes a user with its links, socials and tokens.
pub async fn delete(state: &AppState, caller: &Caller, id: i64) -> Result<(), ApiError> {
    let mut conn = state.db.get().await?;
    let exists = db::users::exists(&mut conn, id).await?;
    authorize(caller, exists.then_some(id), "user")?;
    let written = db::users::delete(&mut conn, id).await?;
    drop(conn);
    invalidate_committed(state, written, "user").await
}
