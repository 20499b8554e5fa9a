//! `/api/v1/users/{id}/links` and `/api/v1/links/{id}`.

use actix_web::{HttpRequest, HttpResponse, web};

use super::responses::{
    BodyErrors, CachedRead, LinkData, LinkMessage, LinkPage, OwnerOnly, ServerErrors,
};
use super::{ById, JsonBody, PageParams, Write, body, cached_response, created, updated};
use crate::domain::input::{LinkPatchInput, NewLinkInput};
use crate::error::{ApiError, ErrorBody};
use crate::service::{self, reads};

/// A user's links, ordered by position then id.
#[utoipa::path(get, path = "/api/v1/users/{id}/links", tag = "links",
    params(("id" = i64, Path, minimum = 1), PageParams),
    responses(
        (status = 200, description = "A page of links", body = LinkPage,
         headers(("X-Cache" = String), ("ETag" = String))),
        (status = 400, description = "Bad query parameter", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        CachedRead, ServerErrors,
    ))]
pub async fn list(
    req: HttpRequest,
    user: ById,
    params: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let served = reads::links_of_user(&user.state, user.id, params.parse()?).await?;
    Ok(cached_response(&req, served))
}

/// One link by id.
#[utoipa::path(get, path = "/api/v1/links/{id}", tag = "links", params(("id" = i64, Path, minimum = 1)),
    responses(
        (status = 200, description = "The link", body = LinkData,
         headers(("X-Cache" = String), ("ETag" = String))),
        (status = 404, description = "No such link", body = ErrorBody),
        CachedRead, ServerErrors,
    ))]
pub async fn get(req: HttpRequest, one: ById) -> Result<HttpResponse, ApiError> {
    let served = reads::link(&one.state, one.id).await?;
    Ok(cached_response(&req, served))
}

/// Adds a link; without `position` it goes after the user's last link.
#[utoipa::path(post, path = "/api/v1/users/{id}/links", tag = "links", params(("id" = i64, Path, minimum = 1)),
    request_body = NewLinkInput, security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = LinkMessage),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 422, description = "Field rules broken", body = ErrorBody),
        BodyErrors, OwnerOnly, ServerErrors,
    ))]
pub async fn create(write: Write, input: JsonBody<NewLinkInput>) -> Result<HttpResponse, ApiError> {
    let Write { caller, state, id } = write;
    let link = service::links::create(&state, &caller, id, body(input)).await?;
    Ok(created("Link created successfully", link))
}

/// Changes a link's title, URL or position (its owner or an admin).
#[utoipa::path(patch, path = "/api/v1/links/{id}", tag = "links", params(("id" = i64, Path, minimum = 1)),
    request_body = LinkPatchInput, security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated", body = LinkMessage),
        (status = 404, description = "No such link", body = ErrorBody),
        (status = 422, description = "Field rules broken", body = ErrorBody),
        BodyErrors, OwnerOnly, ServerErrors,
    ))]
pub async fn update(
    write: Write,
    input: JsonBody<LinkPatchInput>,
) -> Result<HttpResponse, ApiError> {
    let Write { caller, state, id } = write;
    let link = service::links::update(&state, &caller, id, body(input)).await?;
    Ok(updated("Link updated successfully", link))
}

/// Deletes a link (its owner or an admin).
#[utoipa::path(delete, path = "/api/v1/links/{id}", tag = "links", params(("id" = i64, Path, minimum = 1)),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such link", body = ErrorBody),
        OwnerOnly, ServerErrors,
    ))]
pub async fn delete(write: Write) -> Result<HttpResponse, ApiError> {
    service::links::delete(&write.state, &write.caller, write.id).await?;
    Ok(HttpResponse::NoContent().finish())
}
