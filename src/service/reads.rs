//! The cached reads of the API. Each one names its namespace (what writes
//! invalidate it), its query key (every parameter of the query) and its
//! loader (the SQL layer call that runs on a miss). Handlers call these and
//! never build keys themselves.

use crate::cache::{Served, keys};
use crate::db;
use crate::domain::input::{SearchTerm, Username};
use crate::domain::resources::{DataBody, Page, PageRequest, Profile};
use crate::error::ApiError;
use crate::namespace::Namespace;
use crate::pages;
use crate::state::AppState;

pub async fn user(state: &AppState, id: i64) -> Result<Served, ApiError> {
    let pool = state.db.clone();
    state
        .cache
        .read(Namespace::User(id), "user", move || async move {
            let mut conn = pool.get().await?;
            let user = db::users::find_public(&mut conn, id)
                .await?
                .ok_or(ApiError::not_found("user"))?;
            data_json(user)
        })
        .await
}

pub async fn users_list(
    state: &AppState,
    search: Option<SearchTerm>,
    page: PageRequest,
) -> Result<Served, ApiError> {
    let pool = state.db.clone();
    let search = search.as_ref().map(SearchTerm::as_str).map(str::to_owned);
    let query = keys::users_list_query(search.as_deref(), page.page, page.limit);
    state
        .cache
        .read(Namespace::Users, &query, move || async move {
            let mut conn = pool.get().await?;
            let (data, total) = db::users::list(&mut conn, search.as_deref(), page).await?;
            page_json(data, page, total)
        })
        .await
}

/// Only a name that passed the username rule becomes part of a key.
pub async fn profile(state: &AppState, username: Username) -> Result<Served, ApiError> {
    let pool = state.db.clone();
    let username = username.as_str().to_owned();
    state
        .cache
        .read(
            Namespace::Profile(username.clone()),
            "profile",
            move || async move { data_json(load_profile(&pool, &username).await?) },
        )
        .await
}

/// The HTML page of a profile: an entry of its own under the same namespace
/// as the JSON, so the writes that invalidate one invalidate both, and the
/// page is rendered once per version.
pub async fn profile_page(state: &AppState, username: Username) -> Result<Served, ApiError> {
    let pool = state.db.clone();
    let username = username.as_str().to_owned();
    state
        .cache
        .read(
            Namespace::Profile(username.clone()),
            "page",
            move || async move { Ok(pages::profile_page(&load_profile(&pool, &username).await?)) },
        )
        .await
}

async fn load_profile(pool: &db::DbPool, username: &str) -> Result<Profile, ApiError> {
    let mut conn = pool.get().await?;
    let user = db::users::find_public_by_username(&mut conn, username)
        .await?
        .ok_or(ApiError::not_found("profile"))?;
    let links = db::links::all_of_user(&mut conn, user.id).await?;
    let socials = db::socials::all_of_user(&mut conn, user.id).await?;
    Ok(Profile {
        user,
        links,
        socials,
    })
}

pub async fn links_of_user(
    state: &AppState,
    user_id: i64,
    page: PageRequest,
) -> Result<Served, ApiError> {
    let pool = state.db.clone();
    let query = format!("links:p{}:l{}", page.page, page.limit);
    state
        .cache
        .read(Namespace::User(user_id), &query, move || async move {
            let mut conn = pool.get().await?;
            if !db::users::exists(&mut conn, user_id).await? {
                return Err(ApiError::not_found("user"));
            }
            let (data, total) = db::links::page_of_user(&mut conn, user_id, page).await?;
            page_json(data, page, total)
        })
        .await
}

pub async fn link(state: &AppState, id: i64) -> Result<Served, ApiError> {
    let pool = state.db.clone();
    state
        .cache
        .read(Namespace::Link(id), "link", move || async move {
            let mut conn = pool.get().await?;
            let link = db::links::find(&mut conn, id)
                .await?
                .ok_or(ApiError::not_found("link"))?;
            data_json(link)
        })
        .await
}

pub async fn socials_of_user(state: &AppState, user_id: i64) -> Result<Served, ApiError> {
    let pool = state.db.clone();
    state
        .cache
        .read(Namespace::User(user_id), "socials", move || async move {
            let mut conn = pool.get().await?;
            if !db::users::exists(&mut conn, user_id).await? {
                return Err(ApiError::not_found("user"));
            }
            data_json(db::socials::all_of_user(&mut conn, user_id).await?)
        })
        .await
}

pub async fn social(state: &AppState, id: i64) -> Result<Served, ApiError> {
    let pool = state.db.clone();
    state
        .cache
        .read(Namespace::Social(id), "social", move || async move {
            let mut conn = pool.get().await?;
            let social = db::socials::find(&mut conn, id)
                .await?
                .ok_or(ApiError::not_found("social account"))?;
            data_json(social)
        })
        .await
}

/// Serializes a `{"data": ...}` body for the cache.
fn data_json<T: serde::Serialize>(data: T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(&DataBody { data })
        .map_err(|e| ApiError::internal(format!("serializing a response: {e}")))
}

fn page_json<T: serde::Serialize>(
    data: Vec<T>,
    page: PageRequest,
    total: u64,
) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(&Page {
        data,
        meta: page.meta(total),
    })
    .map_err(|e| ApiError::internal(format!("serializing a page: {e}")))
}
