//! `/api/v1/auth/login`, `/api/v1/auth/logout` and `/api/v1/me`.

use actix_web::{HttpResponse, web};

use super::openapi::{BodyErrors, ServerErrors};
use super::{JsonBody, body};
use crate::auth::Caller;
use crate::domain::input::LoginInput;
use crate::domain::resources::{DataBody, LoginView, PrivateUser};
use crate::error::{ApiError, ErrorBody};
use crate::service::sessions;
use crate::state::AppState;

/// Exchanges a username or email and a password for a bearer token.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginInput,
    responses(
        (status = 200, description = "Logged in", body = DataBody<LoginView>),
        (status = 401, description = "Wrong login or password", body = ErrorBody),
        (status = 422, description = "A NUL character in login or password", body = ErrorBody),
        (status = 429, description = "Too many failed attempts for this login",
         headers(("Retry-After" = u64, description = "Seconds to wait")), body = ErrorBody),
        BodyErrors, ServerErrors,
    ))]
pub async fn login(
    state: web::Data<AppState>,
    input: JsonBody<LoginInput>,
) -> Result<HttpResponse, ApiError> {
    let login = sessions::login(&state, body(input)?).await?;
    Ok(HttpResponse::Ok().json(DataBody { data: login }))
}

/// Kills the presented token; the user's other tokens live on.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "Logged out"),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        ServerErrors,
    ))]
pub async fn logout(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    sessions::logout(&state, &caller).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The caller's private user; never cached.
#[utoipa::path(get, path = "/api/v1/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = DataBody<PrivateUser>),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        ServerErrors,
    ))]
pub async fn me(caller: Caller) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "private, no-store"))
        .json(DataBody { data: caller.user })
}
