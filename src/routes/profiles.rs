//! `/api/v1/profiles/{username}`: the hot read path.

use actix_web::{HttpRequest, HttpResponse, web};

use super::cached_response;
use super::responses::{CachedRead, ProfileData, ServerErrors};
use crate::domain::input::Username;
use crate::error::{ApiError, ErrorBody};
use crate::service::reads;
use crate::state::AppState;

/// A user's public profile with its ordered links and socials.
#[utoipa::path(get, path = "/api/v1/profiles/{username}", tag = "profiles", params(("username" = String, Path)),
    responses(
        (status = 200, description = "The profile", body = ProfileData,
         headers(("X-Cache" = String), ("ETag" = String))),
        (status = 404, description = "No such user", body = ErrorBody),
        CachedRead, ServerErrors,
    ))]
pub async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    username: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    // A name that breaks the username rule cannot exist; it never reaches a key.
    let username = Username::parse(username.into_inner()).ok_or(ApiError::not_found("profile"))?;
    Ok(cached_response(
        &req,
        reads::profile(&state, username).await?,
    ))
}
