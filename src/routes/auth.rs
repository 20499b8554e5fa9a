//! `/api/v1/auth/login`, `/api/v1/auth/logout` and `/api/v1/me`.

use actix_web::{HttpResponse, web};
use chrono::Utc;

use super::{JsonBody, body};
use crate::auth::{Caller, password, token};
use crate::db;
use crate::domain::input::{LoginInput, validate};
use crate::domain::resources::{DataBody, LoginView, PrivateUser};
use crate::error::{ApiError, ErrorBody};
use crate::startup::AppState;

/// Exchanges a username or email and a password for a bearer token.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginInput,
    responses(
        (status = 200, description = "Logged in", body = DataBody<LoginView>),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "Wrong login or password", body = ErrorBody),
        (status = 422, description = "A NUL character in login or password", body = ErrorBody),
        (status = 429, description = "Too many failed attempts for this login",
         headers(("Retry-After" = u64, description = "Seconds to wait")), body = ErrorBody),
    ))]
pub async fn login(
    state: web::Data<AppState>,
    input: JsonBody<LoginInput>,
) -> Result<HttpResponse, ApiError> {
    let input = body(input)?;
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
                return Err(failed(&state, &input.login));
            }
            c.id
        }
        None => {
            password::dummy_verify(input.password).await?;
            return Err(failed(&state, &input.login));
        }
    };
    let (token, digest) = token::generate();
    let expires_at = Utc::now()
        + chrono::Duration::seconds(
            i64::try_from(state.settings.token_ttl_secs).unwrap_or(i64::MAX / 2),
        );
    let mut conn = state.db.get().await?;
    db::tokens::insert(&mut conn, user_id, &digest, expires_at).await?;
    let user = db::users::find_private(&mut conn, user_id)
        .await?
        .ok_or(ApiError::InvalidCredentials)?;
    Ok(HttpResponse::Ok().json(DataBody {
        data: LoginView {
            token,
            token_type: "Bearer",
            expires_at,
            user,
        },
    }))
}

fn failed(state: &AppState, login: &str) -> ApiError {
    state.login_throttle.record_failure(login);
    ApiError::InvalidCredentials
}

/// Kills the presented token; the user's other tokens live on.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "Logged out"),
        (status = 401, description = "No or invalid token", body = ErrorBody),
    ))]
pub async fn logout(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut conn = state.db.get().await?;
    db::tokens::delete(&mut conn, &caller.token_hash).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The caller's private user; never cached.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = DataBody<PrivateUser>),
        (status = 401, description = "No or invalid token", body = ErrorBody),
    ))]
pub async fn me(caller: Caller) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "private, no-store"))
        .json(DataBody { data: caller.user })
}
