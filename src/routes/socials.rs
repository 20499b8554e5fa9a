//! `/api/v1/users/{id}/socials` and `/api/v1/socials/{id}`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{JsonBody, body, cached_response, message_response, parse_id};
use crate::auth::Caller;
use crate::domain::input::{NewSocialInput, SocialPatchInput};
use crate::domain::resources::{DataBody, MessageBody, Social};
use crate::error::{ApiError, ErrorBody};
use crate::service::{self, reads};
use crate::state::AppState;

/// All of a user's social accounts, ordered by platform (no paging).
#[utoipa::path(get, path = "/api/v1/users/{id}/socials", tag = "socials", params(("id" = i64, Path, minimum = 1)),
    responses(
        (status = 200, description = "The user's social accounts", body = DataBody<Vec<Social>>,
         headers(("X-Cache" = String), ("ETag" = String))),
        (status = 304, description = "Not modified"),
        (status = 404, description = "No such user", body = ErrorBody),
    ))]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    Ok(cached_response(
        &req,
        reads::socials_of_user(&state, id).await?,
    ))
}

/// One social account by id.
#[utoipa::path(get, path = "/api/v1/socials/{id}", tag = "socials", params(("id" = i64, Path, minimum = 1)),
    responses(
        (status = 200, description = "The social account", body = DataBody<Social>,
         headers(("X-Cache" = String), ("ETag" = String))),
        (status = 304, description = "Not modified"),
        (status = 404, description = "No such social account", body = ErrorBody),
    ))]
pub async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    Ok(cached_response(&req, reads::social(&state, id).await?))
}

/// Adds a social account; one per platform and user.
#[utoipa::path(post, path = "/api/v1/users/{id}/socials", tag = "socials", params(("id" = i64, Path, minimum = 1)),
    request_body = NewSocialInput, security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = MessageBody<Social>),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not the owner", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "The user already has this platform", body = ErrorBody),
        (status = 422, description = "Field rules broken", body = ErrorBody),
    ))]
pub async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<String>,
    input: JsonBody<NewSocialInput>,
) -> Result<HttpResponse, ApiError> {
    let user_id = parse_id(&id)?;
    let social = service::socials::create(&state, &caller, user_id, body(input)).await?;
    Ok(message_response(
        StatusCode::CREATED,
        "Social created successfully",
        social,
    ))
}

/// Changes a social account's platform or URL (its owner or an admin).
#[utoipa::path(patch, path = "/api/v1/socials/{id}", tag = "socials", params(("id" = i64, Path, minimum = 1)),
    request_body = SocialPatchInput, security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated", body = MessageBody<Social>),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not the owner", body = ErrorBody),
        (status = 404, description = "No such social account", body = ErrorBody),
        (status = 409, description = "The user already has this platform", body = ErrorBody),
        (status = 422, description = "Field rules broken", body = ErrorBody),
    ))]
pub async fn update(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<String>,
    input: JsonBody<SocialPatchInput>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let social = service::socials::update(&state, &caller, id, body(input)).await?;
    Ok(message_response(
        StatusCode::OK,
        "Social updated successfully",
        social,
    ))
}

/// Deletes a social account (its owner or an admin).
#[utoipa::path(delete, path = "/api/v1/socials/{id}", tag = "socials", params(("id" = i64, Path, minimum = 1)),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not the owner", body = ErrorBody),
        (status = 404, description = "No such social account", body = ErrorBody),
    ))]
pub async fn delete(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    service::socials::delete(&state, &caller, id).await?;
    Ok(HttpResponse::NoContent().finish())
}
