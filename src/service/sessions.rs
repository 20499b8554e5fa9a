//! Login and logout, and the throttled judging of a password that login and
//! a change of one's own credentials share.

use std::net::IpAddr;

use chrono::{DateTime, TimeDelta, Utc};

use crate::auth::throttle::{Reservation, Subject};
use crate::auth::{Caller, token};
use crate::db;
use crate::domain::input::{LoginInput, Valid};
use crate::domain::resources::LoginView;
use crate::error::ApiError;
use crate::state::AppState;

/// The longest login that can exist: an email of 254 characters (a
/// username has at most 32).
pub const MAX_LOGIN_CHARS: usize = 254;

/// Exchanges a login and a password for a new token. The attempt takes its
/// place in the throttle's windows before its password is judged: the
/// `client` address's before anything else, then the account's the login
/// names (or the unknown login's own); an unknown login costs a hash
/// verification too, so it takes as long as a wrong password. No connection
/// is held while verifying.
pub async fn login(
    state: &AppState,
    input: LoginInput,
    client: Option<IpAddr>,
) -> Result<LoginView, ApiError> {
    let LoginInput { login, password } = Valid::parse(input)?.into_inner();
    // A login longer than any that can exist is the wrong login it is (the
    // same `401`), refused before it costs a hash or a window.
    if login.chars().count() > MAX_LOGIN_CHARS {
        return Err(ApiError::InvalidCredentials);
    }
    // The address's place first: a flood from one address is refused
    // before it costs a query.
    let throttle = &state.login_throttle;
    let reservation = throttle.reserve_address(&state.cache, client).await?;
    let looked_up = async {
        let mut conn = state.db.get().await?;
        Ok::<_, ApiError>(db::users::credentials(&mut conn, &login).await?)
    }
    .await;
    let credentials = match looked_up {
        Ok(credentials) => credentials,
        Err(e) => {
            throttle.release(&state.cache, reservation).await;
            return Err(e);
        }
    };
    // The username and the email of one account count in one window.
    let subject = match &credentials {
        Some(c) => Subject::Account(c.id),
        None => Subject::UnknownLogin(&login),
    };
    let reservation = throttle
        .reserve_subject(&state.cache, reservation, subject)
        .await?;
    let attempt = async {
        match credentials {
            Some(c) => Ok(state
                .hashing
                .verify(password, c.password_hash)
                .await?
                .then_some(c.id)),
            None => {
                state.hashing.dummy_verify(password).await?;
                Ok(None)
            }
        }
    };
    let user_id = judge(state, reservation, attempt)
        .await?
        .ok_or(ApiError::InvalidCredentials)?;
    let (token, digest) = token::generate();
    let expires_at = expiry(Utc::now(), state.settings.token_ttl);
    let mut conn = state.db.get().await?;
    db::tokens::insert(&mut conn, user_id, &digest, expires_at).await?;
    let user = db::users::find_private(&mut conn, user_id)
        .await?
        .ok_or(ApiError::InvalidCredentials)?;
    Ok(LoginView {
        token,
        token_type: "Bearer",
        expires_at,
        user,
    })
}

/// Runs a password attempt that holds `reservation`: a success (`Some`)
/// and an attempt that could not be judged (an error: hashing busy, the
/// database down) give the place back; a failure (`None`) keeps it.
pub(super) async fn judge<T>(
    state: &AppState,
    reservation: Reservation,
    attempt: impl Future<Output = Result<Option<T>, ApiError>>,
) -> Result<Option<T>, ApiError> {
    let outcome = attempt.await;
    match &outcome {
        Ok(None) => drop(reservation),
        Ok(Some(_)) | Err(_) => {
            state
                .login_throttle
                .release(&state.cache, reservation)
                .await
        }
    }
    outcome
}

/// Kills the presented token; the user's other tokens live on.
pub async fn logout(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    let mut conn = state.db.get().await?;
    db::tokens::delete(&mut conn, &caller.token_hash).await?;
    Ok(())
}

/// When a token issued at `now` expires; a lifetime beyond what a timestamp
/// can hold ends at the last one.
fn expiry(now: DateTime<Utc>, ttl: std::time::Duration) -> DateTime<Utc> {
    TimeDelta::from_std(ttl)
        .ok()
        .and_then(|ttl| now.checked_add_signed(ttl))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_token_lifetime_saturates_instead_of_overflowing() {
        let now = Utc::now();
        let week = std::time::Duration::from_secs(7 * 24 * 3600);
        assert_eq!(expiry(now, week), now + TimeDelta::days(7));
        assert_eq!(
            expiry(now, std::time::Duration::from_secs(u64::MAX)),
            DateTime::<Utc>::MAX_UTC
        );
    }
}
