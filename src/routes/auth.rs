//! `/api/v1/auth/login`, `/api/v1/auth/logout` and `/api/v1/me`.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use super::responses::{BodyErrors, HashingBusy, LoginData, PrivateUserData, ServerErrors};
use super::{JsonBody, body};
use crate::auth::Caller;
use crate::auth::client_addr::client_address;
use crate::domain::input::LoginInput;
use crate::domain::resources::DataBody;
use crate::error::{ApiError, ErrorBody};
use crate::service::sessions;
use crate::state::AppState;

/// Exchanges a username or email and a password for a bearer token.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginInput,
    responses(
        (status = 200, description = "Logged in", body = LoginData),
        (status = 401, description = "Wrong login or password", body = ErrorBody),
        (status = 422, description = "A NUL character in login or password", body = ErrorBody),
        (status = 429, description = "Too many failed attempts for this login or from this address",
         headers(("Retry-After" = u64, description = "Seconds to wait")), body = ErrorBody),
        BodyErrors, ServerErrors, HashingBusy,
    ))]
pub async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    input: JsonBody<LoginInput>,
) -> Result<HttpResponse, ApiError> {
    let client = client_address(&req, &state.settings.trusted_proxies);
    let login = sessions::login(&state, body(input)?, client).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(DataBody { data: login }))
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
        (status = 200, description = "The caller", body = PrivateUserData),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        ServerErrors,
    ))]
pub async fn me(caller: Caller) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "private, no-store"))
        .json(DataBody { data: caller.user })
}
