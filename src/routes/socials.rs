//! `/api/v1/users/{id}/socials` and `/api/v1/socials/{id}`.

use actix_web::{HttpRequest, HttpResponse};

use super::responses::{
    BodyErrors, CachedRead, OwnerOnly, ServerErrors, SocialData, SocialMessage, SocialsData,
};
use super::{ById, JsonBody, Write, body, cached_response, created, updated};
use crate::domain::input::{NewSocialInput, SocialPatchInput};
use crate::error::{ApiError, ErrorBody};
use crate::service::{self, reads};

/// All of a user's social accounts, ordered by platform (no paging).
#[utoipa::path(get, path = "/api/v1/users/{id}/socials", tag = "socials", params(("id" = i64, Path, minimum = 1)),
    responses(
        (status = 200, description = "The user's social accounts", body = SocialsData,
         headers(("X-Cache" = String), ("ETag" = String))),
        (status = 404, description = "No such user", body = ErrorBody),
        CachedRead, ServerErrors,
    ))]
pub async fn list(req: HttpRequest, user: ById) -> Result<HttpResponse, ApiError> {
    let served = reads::socials_of_user(&user.state, user.id).await?;
    Ok(cached_response(&req, served))
}

/// One social account by id.
#[utoipa::path(get, path = "/api/v1/socials/{id}", tag = "socials", params(("id" = i64, Path, minimum = 1)),
    responses(
        (status = 200, description = "The social account", body = SocialData,
         headers(("X-Cache" = String), ("ETag" = String))),
        (status = 404, description = "No such social account", body = ErrorBody),
        CachedRead, ServerErrors,
    ))]
pub async fn get(req: HttpRequest, one: ById) -> Result<HttpResponse, ApiError> {
    let served = reads::social(&one.state, one.id).await?;
    Ok(cached_response(&req, served))
}

/// Adds a social account; one per platform and user.
#[utoipa::path(post, path = "/api/v1/users/{id}/socials", tag = "socials", params(("id" = i64, Path, minimum = 1)),
    request_body = NewSocialInput, security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = SocialMessage),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "The user already has this platform", body = ErrorBody),
        (status = 422, description = "Field rules broken", body = ErrorBody),
        BodyErrors, OwnerOnly, ServerErrors,
    ))]
pub async fn create(
    write: Write,
    input: JsonBody<NewSocialInput>,
) -> Result<HttpResponse, ApiError> {
    let Write { caller, state, id } = write;
    let social = service::socials::create(&state, &caller, id, body(input)).await?;
    Ok(created("Social created successfully", social))
}

/// Changes a social account's platform or URL (its owner or an admin).
#[utoipa::path(patch, path = "/api/v1/socials/{id}", tag = "socials", params(("id" = i64, Path, minimum = 1)),
    request_body = SocialPatchInput, security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated", body = SocialMessage),
        (status = 404, description = "No such social account", body = ErrorBody),
        (status = 409, description = "The user already has this platform", body = ErrorBody),
        (status = 422, description = "Field rules broken", body = ErrorBody),
        BodyErrors, OwnerOnly, ServerErrors,
    ))]
pub async fn update(
    write: Write,
    input: JsonBody<SocialPatchInput>,
) -> Result<HttpResponse, ApiError> {
    let Write { caller, state, id } = write;
    let social = service::socials::update(&state, &caller, id, body(input)).await?;
    Ok(updated("Social updated successfully", social))
}

/// Deletes a social account (its owner or an admin).
#[utoipa::path(delete, path = "/api/v1/socials/{id}", tag = "socials", params(("id" = i64, Path, minimum = 1)),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such social account", body = ErrorBody),
        OwnerOnly, ServerErrors,
    ))]
pub async fn delete(write: Write) -> Result<HttpResponse, ApiError> {
    service::socials::delete(&write.state, &write.caller, write.id).await?;
    Ok(HttpResponse::NoContent().finish())
}
