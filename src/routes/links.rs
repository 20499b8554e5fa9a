//! `/api/v1/users/{id}/links` and `/api/v1/links/{id}`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{JsonBody, PageParams, body, cached_response, message_response, parse_id};
use crate::auth::Caller;
use crate::domain::input::{LinkPatchInput, NewLinkInput};
use crate::domain::resources::{DataBody, Link, MessageBody, Page};
use crate::error::{ApiError, ErrorBody};
use crate::service::{self, reads};
use crate::state::AppState;

/// A user's links, ordered by position then id.
#[utoipa::path(get, path = "/api/v1/users/{id}/links", tag = "links",
    params(("id" = i64, Path, minimum = 1), PageParams),
    responses(
        (status = 200, description = "A page of links", body = Page<Link>,
         headers(("X-Cache" = String), ("ETag" = String))),
        (status = 304, description = "Not modified"),
        (status = 400, description = "Bad query parameter", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    ))]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    params: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let page = params.parse()?;
    Ok(cached_response(
        &req,
        reads::links_of_user(&state, id, page).await?,
    ))
}

/// One link by id.
#[utoipa::path(get, path = "/api/v1/links/{id}", tag = "links", params(("id" = i64, Path, minimum = 1)),
    responses(
        (status = 200, description = "The link", body = DataBody<Link>,
         headers(("X-Cache" = String), ("ETag" = String))),
        (status = 304, description = "Not modified"),
        (status = 404, description = "No such link", body = ErrorBody),
    ))]
pub async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    Ok(cached_response(&req, reads::link(&state, id).await?))
}

/// Adds a link; without `position` it goes after the user's last link.
#[utoipa::path(post, path = "/api/v1/users/{id}/links", tag = "links", params(("id" = i64, Path, minimum = 1)),
    request_body = NewLinkInput, security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = MessageBody<Link>),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not the owner", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 422, description = "Field rules broken", body = ErrorBody),
    ))]
pub async fn create(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<String>,
    input: JsonBody<NewLinkInput>,
) -> Result<HttpResponse, ApiError> {
    let user_id = parse_id(&id)?;
    let link = service::links::create(&state, &caller, user_id, body(input)).await?;
    Ok(message_response(
        StatusCode::CREATED,
        "Link created successfully",
        link,
    ))
}

/// Changes a link's title, URL or position (its owner or an admin).
#[utoipa::path(patch, path = "/api/v1/links/{id}", tag = "links", params(("id" = i64, Path, minimum = 1)),
    request_body = LinkPatchInput, security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated", body = MessageBody<Link>),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not the owner", body = ErrorBody),
        (status = 404, description = "No such link", body = ErrorBody),
        (status = 422, description = "Field rules broken", body = ErrorBody),
    ))]
pub async fn update(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<String>,
    input: JsonBody<LinkPatchInput>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let link = service::links::update(&state, &caller, id, body(input)).await?;
    Ok(message_response(
        StatusCode::OK,
        "Link updated successfully",
        link,
    ))
}

/// Deletes a link (its owner or an admin).
#[utoipa::path(delete, path = "/api/v1/links/{id}", tag = "links", params(("id" = i64, Path, minimum = 1)),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not the owner", body = ErrorBody),
        (status = 404, description = "No such link", body = ErrorBody),
    ))]
pub async fn delete(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    service::links::delete(&state, &caller, id).await?;
    Ok(HttpResponse::NoContent().finish())
}
