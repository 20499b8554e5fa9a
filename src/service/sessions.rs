//! Login and logout.

use chrono::{DateTime, TimeDelta, Utc};

use crate::auth::{Caller, password, token};
use crate::db;
use crate::domain::input::{LoginInput, validate};
use crate::domain::resources::LoginView;
use crate::error::ApiError;
use crate::state::AppState;

/// Exchanges a login and a password for a new token. The throttle is
/// checked first; an unknown login costs a hash verification too, so it
/// takes as long as a wrong password. No connection is held while verifying.
pub async fn login(state: &AppState, input: LoginInput) -> Result<LoginView, ApiError> {
    validate(&input)?;
    state
        .login_throttle
        .check(&input.login)
        .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })?;
    let mut conn = state.db.get().await?;
    let credentials = db::users::credentials(&mut conn, &input.login).await?;
    drop(conn);
    let user_id = match credentials {
        Some(c) => {
            if !password::verify(input.password, c.password_hash).await? {
                return Err(failed(state, &input.login));
            }
            c.id
        }
        None => {
            password::dummy_verify(input.password).await?;
            return Err(failed(state, &input.login));
        }
    };
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

/// Kills the presented token; the user's other tokens live on.
pub async fn logout(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    let mut conn = state.db.get().await?;
    db::tokens::delete(&mut conn, &caller.token_hash).await?;
    Ok(())
}

fn failed(state: &AppState, login: &str) -> ApiError {
    state.login_throttle.record_failure(login);
    ApiError::InvalidCredentials
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
