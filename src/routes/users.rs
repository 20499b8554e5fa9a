//! `/api/v1/users`: registration, the public list and search, one user,
//! updates and deletion.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;

use super::responses::{
    BodyErrors, CachedRead, HashingBusy, OwnerOnly, PrivateUserMessage, PublicUserData,
    PublicUserPage, ServerErrors,
};
use super::{ById, JsonBody, Write, body, cached_response, created, updated};
use crate::domain::input::{NewUserInput, SearchTerm, UserPatchInput};
use crate::domain::resources::ListRequest;
use crate::error::{ApiError, ErrorBody};
use crate::service::{self, reads};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListParams {
    /// Case-insensitive substring of username or name; every character is
    /// literal. A non-empty one holds at least 3 letters or digits in a row.
    #[param(max_length = 100)]
    pub search: Option<String>,
    /// Page number, from 1 (default 1); `page × limit` at most 10,000.
    /// Not with `after`.
    #[param(minimum = 1)]
    pub page: Option<u64>,
    /// Walk on from here: the users whose id is greater (start at 0, then
    /// pass the last page's `meta.next_after`). Not with `page`.
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// Items per page, 1–100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
}

/// Public users ordered by id, optionally filtered by `search`, by page
/// number or walked with `after`.
#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(ListParams),
    responses(
        (status = 200, description = "A page of public users", body = PublicUserPage,
         headers(("X-Cache" = String, description = "HIT, MISS or BYPASS"), ("ETag" = String))),
        (status = 400, description = "Bad query parameter", body = ErrorBody),
        CachedRead, ServerErrors,
    ))]
pub async fn list(
    req: HttpRequest,
    state: web::Data<AppState>,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, ApiError> {
    let params = params.into_inner();
    let request = ListRequest::parse(params.page, params.after, params.limit)?;
    let search = params.search.map(SearchTerm::parse).transpose()?.flatten();
    let served = reads::users_list(&state, search, request).await?;
    Ok(cached_response(&req, served))
}

/// Registers a user.
#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = NewUserInput,
    responses(
        (status = 201, description = "Registered", body = PrivateUserMessage),
        (status = 409, description = "Username or email taken", body = ErrorBody),
        (status = 422, description = "Field rules broken", body = ErrorBody),
        BodyErrors, ServerErrors, HashingBusy,
    ))]
pub async fn register(
    state: web::Data<AppState>,
    input: JsonBody<NewUserInput>,
) -> Result<HttpResponse, ApiError> {
    let user = service::users::register(&state, body(input)?).await?;
    Ok(created("User created successfully", user))
}

/// One public user, whoever asks.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", params(("id" = i64, Path, minimum = 1)),
    responses(
        (status = 200, description = "The public user", body = PublicUserData,
         headers(("X-Cache" = String), ("ETag" = String))),
        (status = 404, description = "No such user", body = ErrorBody),
        CachedRead, ServerErrors,
    ))]
pub async fn get(req: HttpRequest, one: ById) -> Result<HttpResponse, ApiError> {
    let served = reads::user(&one.state, one.id).await?;
    Ok(cached_response(&req, served))
}

/// Changes any of a user's fields; a new password kills every token of the user.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", params(("id" = i64, Path, minimum = 1)),
    request_body = UserPatchInput, security(("bearer" = [])),
    responses(
        (status = 200, description = "Updated", body = PrivateUserMessage),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "Username or email taken", body = ErrorBody),
        (status = 422, description = "Field rules broken, or `current_password` missing or wrong", body = ErrorBody),
        (status = 429, description = "Too many failed attempts at the current password",
         headers(("Retry-After" = u64, description = "Seconds to wait")), body = ErrorBody),
        BodyErrors, OwnerOnly, ServerErrors, HashingBusy,
    ))]
pub async fn update(
    write: Write,
    input: JsonBody<UserPatchInput>,
) -> Result<HttpResponse, ApiError> {
    let Write { caller, state, id } = write;
    let user = service::users::update(&state, &caller, id, body(input)).await?;
    Ok(updated("User updated successfully", user))
}

/// Deletes a user with its links, socials and tokens.
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", params(("id" = i64, Path, minimum = 1)),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such user", body = ErrorBody),
        OwnerOnly, ServerErrors,
    ))]
pub async fn delete(write: Write) -> Result<HttpResponse, ApiError> {
    service::users::delete(&write.state, &write.caller, write.id).await?;
    Ok(HttpResponse::NoContent().finish())
}
