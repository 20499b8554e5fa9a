//! `/api/v1/users/{id}/links` and `/api/v1/links/{id}`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{
    JsonBody, PageParams, authorize, body, cached_response, commit, message_response, parse_id,
};
use crate::auth::Caller;
use crate::db;
use crate::domain::input::{LinkPatchInput, NewLinkInput, validate};
use crate::domain::resources::{DataBody, Link, MessageBody, Page};
use crate::error::{ApiError, ErrorBody};
use crate::reads;
use crate::startup::AppState;

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
    let mut conn = state.db.get().await?;
    let exists = db::users::exists(&mut conn, user_id).await?;
    authorize(&caller, exists.then_some(user_id), "user")?;
    let input = body(input)?;
    validate(&input)?;
    let written = db::links::insert(
        &mut conn,
        user_id,
        input.title,
        input.url,
        position(input.position)?,
    )
    .await?;
    drop(conn);
    let value = commit(&state, written, "user").await?;
    Ok(message_response(
        StatusCode::CREATED,
        "Link created successfully",
        value,
    ))
}

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
    let mut conn = state.db.get().await?;
    authorize(&caller, db::links::owner_of(&mut conn, id).await?, "link")?;
    let input = body(input)?;
    validate(&input)?;
    let changes = db::links::LinkChanges {
        title: input.title,
        url: input.url,
        position: position(input.position)?,
    };
    let written = db::links::update(&mut conn, id, changes).await?;
    drop(conn);
    let value = commit(&state, written, "link").await?;
    Ok(message_response(
        StatusCode::OK,
        "Link updated successfully",
        value,
    ))
}

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
    let mut conn = state.db.get().await?;
    authorize(&caller, db::links::owner_of(&mut conn, id).await?, "link")?;
    let written = db::links::delete(&mut conn, id).await?;
    drop(conn);
    commit(&state, written, "link").await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The validated position as the column's type (the field rule bounds it).
fn position(value: Option<i64>) -> Result<Option<i32>, ApiError> {
    value
        .map(|p| {
            i32::try_from(p).map_err(|_| {
                ApiError::invalid_field("position", "must be an integer from 0 to 2147483647")
            })
        })
        .transpose()
}
