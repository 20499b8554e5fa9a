//! `/api/v1/users`: registration, the public list and search, one user,
//! updates and deletion.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::{
    JsonBody, PageParams, authorize, body, cached_response, commit, message_response, parse_id,
};
use crate::auth::{Caller, password};
use crate::db;
use crate::domain::input::{NewUserInput, UserPatchInput, validate};
use crate::domain::resources::{DataBody, MessageBody, Page, PrivateUser, PublicUser};
use crate::error::{ApiError, ErrorBody};
use crate::reads;
use crate::startup::AppState;

/// Longest accepted search term.
const MAX_SEARCH_CHARS: usize = 100;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListParams {
    /// Case-insensitive substring of username or name; every character is literal.
    #[param(max_length = 100)]
    pub search: Option<String>,
    /// Page number, from 1 (default 1).
    #[param(minimum = 1)]
    pub page: Option<u64>,
    /// Items per page, 1–100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
}

/// Public users ordered by id, optionally filtered by `search`.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(ListParams),
    responses(
        (status = 200, description = "A page of public users", body = Page<PublicUser>,
         headers(("X-Cache" = String, description = "HIT, MISS or BYPASS"), ("ETag" = String))),
        (status = 304, description = "Not modified"),
        (status = 400, description = "Bad query parameter", body = ErrorBody),
    ))]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let page = PageParams {
        page: params.page,
        limit: params.limit,
    }
    .parse()?;
    if let Some(search) = &params.search {
        if search.chars().count() > MAX_SEARCH_CHARS {
            return Err(ApiError::bad_request(
                "search must be at most 100 characters",
            ));
        }
        if search.contains('\0') {
            return Err(ApiError::bad_request(
                "search must not contain a NUL character",
            ));
        }
    }
    let served = reads::users_list(&state, params.search, page).await?;
    Ok(cached_response(&req, served))
}

/// Registers a user.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUserInput,
    responses(
        (status = 201, description = "Registered", body = MessageBody<PrivateUser>),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 409, description = "Username or email taken", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 422, description = "Field rules broken", body = ErrorBody),
    ))]
pub async fn register(
    state: web::Data<AppState>,
    input: JsonBody<NewUserInput>,
) -> Result<HttpResponse, ApiError> {
    let input = body(input)?;
    validate(&input)?;
    let password_hash = password::hash(input.password).await?;
    let new = db::users::NewUser {
        username: input.username,
        email: input.email,
        password_hash,
        name: input.name.unwrap_or_default(),
        bio: input.bio.unwrap_or_default(),
        avatar_url: input.avatar_url,
    };
    let mut conn = state.db.get().await?;
    let written = db::users::insert(&mut conn, new).await?;
    drop(conn);
    let value = commit(&state, Some(written), "user").await?;
    Ok(message_response(
        StatusCode::CREATED,
        "User created successfully",
        value,
    ))
}

/// One public user, whoever asks.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", params(("id" = i64, Path, minimum = 1)),
    responses(
        (status = 200, description = "The public user", body = DataBody<PublicUser>,
         headers(("X-Cache" = String), ("ETag" = String))),
        (status = 304, description = "Not modified"),
        (status = 404, description = "No such user", body = ErrorBody),
    ))]
pub async fn get(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    Ok(cached_response(&req, reads::user(&state, id).await?))
}

/// Changes any of a user's fields; a new password kills every token of the user.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", params(("id" = i64, Path, minimum = 1)),
    request_body = UserPatchInput, security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated", body = MessageBody<PrivateUser>),
        (status = 400, description = "Malformed body", body = ErrorBody),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not the owner", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "Username or email taken", body = ErrorBody),
        (status = 422, description = "Field rules broken", body = ErrorBody),
    ))]
pub async fn update(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<String>,
    input: JsonBody<UserPatchInput>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let mut conn = state.db.get().await?;
    let exists = db::users::exists(&mut conn, id).await?;
    authorize(&caller, exists.then_some(id), "user")?;
    let input = body(input)?;
    input.validate_all()?;
    let password_hash = match input.password {
        Some(p) => Some(password::hash(p).await?),
        None => None,
    };
    let changes = db::users::UserChanges {
        username: input.username,
        email: input.email,
        password_hash,
        name: input.name,
        bio: input.bio,
        avatar_url: input.avatar_url,
        role: None,
    };
    let written = db::users::update(&mut conn, id, changes).await?;
    drop(conn);
    let value = commit(&state, written, "user").await?;
    Ok(message_response(
        StatusCode::OK,
        "User updated successfully",
        value,
    ))
}

/// Deletes a user with its links, socials and tokens.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", params(("id" = i64, Path, minimum = 1)),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or invalid token", body = ErrorBody),
        (status = 403, description = "Not the owner", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    ))]
pub async fn delete(
    caller: Caller,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let mut conn = state.db.get().await?;
    let exists = db::users::exists(&mut conn, id).await?;
    authorize(&caller, exists.then_some(id), "user")?;
    let written = db::users::delete(&mut conn, id).await?;
    drop(conn);
    commit(&state, written, "user").await?;
    Ok(HttpResponse::NoContent().finish())
}
