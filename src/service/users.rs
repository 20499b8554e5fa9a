//! Registration, updates and deletion of users.

use super::{Body, authorize, invalidate_committed, sessions};
use crate::auth::Caller;
use crate::auth::throttle::Subject;
use crate::db;
use crate::domain::input::{NewUserInput, UserPatchInput, Valid};
use crate::domain::resources::PrivateUser;
use crate::error::ApiError;
use crate::state::AppState;

/// Registers a user: the password is hashed (behind every login waiting
/// for a hashing slot) before a connection is taken.
pub async fn register(state: &AppState, input: NewUserInput) -> Result<PrivateUser, ApiError> {
    let input = Valid::parse(input)?;
    let password_hash = state
        .hashing
        .hash_registration(input.password.clone())
        .await?;
    let mut conn = state.db.get().await?;
    let written = db::users::insert(&mut conn, input, password_hash).await?;
    drop(conn);
    invalidate_committed(state, Some(written), "user").await
}

/// Changes any of a user's fields; a new password kills every token of the
/// user. Changing one's own password or email needs the current password
/// (an admin changing another user's does not). The connection of the
/// authorization is given back before any password is hashed, and the write
/// takes another one.
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
    let patch = Valid::parse(input?)?;
    if caller.user.id == id && (patch.password.is_some() || patch.email.is_some()) {
        confirm_current_password(state, caller, patch.current_password.clone()).await?;
    }
    let password_hash = match &patch.password {
        Some(p) => Some(state.hashing.hash(p.clone()).await?),
        None => None,
    };
    let mut conn = state.db.get().await?;
    let written = db::users::update(&mut conn, id, patch, password_hash).await?;
    drop(conn);
    invalidate_committed(state, written, "user").await
}

/// A stolen token alone must not take an account over: `current` must be
/// the caller's password as it is now (`422` on `current_password` when it
/// is missing or wrong). It is judged like a login to the caller's account:
/// throttled in the account's window (`429` once it is locked out), and a
/// wrong one counts as a failed login.
async fn confirm_current_password(
    state: &AppState,
    caller: &Caller,
    current: Option<String>,
) -> Result<(), ApiError> {
    let current = current.ok_or_else(|| {
        ApiError::invalid_field(
            "current_password",
            "is required to change your own password or email",
        )
    })?;
    let throttle = &state.login_throttle;
    let reservation = throttle.reserve_address(&state.cache, None).await?;
    let reservation = throttle
        .reserve_subject(&state.cache, reservation, Subject::Account(caller.user.id))
        .await?;
    let attempt = async {
        let mut conn = state.db.get().await?;
        let stored = db::users::password_hash_of(&mut conn, caller.user.id).await?;
        drop(conn);
        let stored = stored.ok_or(ApiError::not_found("user"))?;
        Ok(state.hashing.verify(current, stored).await?.then_some(()))
    };
    sessions::judge(state, reservation, attempt)
        .await?
        .ok_or_else(|| ApiError::invalid_field("current_password", "is not your current password"))
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
