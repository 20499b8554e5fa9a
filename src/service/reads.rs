//! The cached reads of the API. Each one names its namespace (what writes
//! invalidate it), its query key (a [`QueryKey`] of `cache::keys`, holding
//! every parameter of the query) and its loader (the SQL layer call that
//! runs on a miss). Handlers call these and never build keys themselves.
//! This is where the API's errors meet the cache: a loader's `404` becomes a
//! cacheable answer here, and the cache's [`crate::cache::ReadError`] comes
//! back as the loader's own error.

use crate::bulkhead::Bulkhead;
use crate::cache::keys::QueryKey;
use crate::cache::{Loaded, Served};
use crate::db::{self, DbConn};
use crate::domain::input::{SearchTerm, Username};
use crate::domain::resources::{DataBody, Page, PageRequest, Profile};
use crate::error::ApiError;
use crate::namespace::Namespace;
use crate::pages;
use crate::state::AppState;

/// `GET /users/{id}`: the public user, in the user's namespace.
pub async fn user(state: &AppState, id: i64) -> Result<Served, ApiError> {
    let ns = Namespace::User(id);
    cached(state, ns, QueryKey::user(), move |mut conn| async move {
        found(db::users::find_public(&mut conn, id).await?, "user")
    })
    .await
}

/// `GET /users`: a page of the users list, optionally searched, in the
/// `users` namespace that every user write bumps.
pub async fn users_list(
    state: &AppState,
    search: Option<SearchTerm>,
    page: PageRequest,
) -> Result<Served, ApiError> {
    let search = search.as_ref().map(SearchTerm::as_str).map(str::to_owned);
    let query = QueryKey::users_list(search.as_deref(), page.page, page.limit);
    let load = move |mut conn: DbConn| async move {
        let (data, total) = db::users::list(&mut conn, search.as_deref(), page).await?;
        page_json(data, page, total)
    };
    cached_behind(
        state,
        Some(&state.list_loads),
        Namespace::Users,
        query,
        load,
    )
    .await
}

/// `GET /profiles/{username}`: a user with links and socials, in the
/// profile's namespace. Only a name that passed the username rule becomes
/// part of a key.
pub async fn profile(state: &AppState, username: Username) -> Result<Served, ApiError> {
    let username = username.as_str().to_owned();
    let ns = Namespace::Profile(username.clone());
    cached(state, ns, QueryKey::profile(), move |mut conn| async move {
        data_json(load_profile(&mut conn, &username).await?)
    })
    .await
}

/// The HTML page of a profile: an entry of its own under the same namespace
/// as the JSON, so the writes that invalidate one invalidate both, and the
/// page is rendered once per version.
pub async fn profile_page(state: &AppState, username: Username) -> Result<Served, ApiError> {
    let username = username.as_str().to_owned();
    let ns = Namespace::Profile(username.clone());
    cached(
        state,
        ns,
        QueryKey::profile_page(),
        move |mut conn| async move {
            Ok(pages::profile_page(
                &load_profile(&mut conn, &username).await?,
            ))
        },
    )
    .await
}

async fn load_profile(conn: &mut DbConn, username: &str) -> Result<Profile, ApiError> {
    let user = db::users::find_public_by_username(conn, username)
        .await?
        .ok_or(ApiError::not_found("profile"))?;
    let links = db::links::all_of_user(conn, user.id).await?;
    let socials = db::socials::all_of_user(conn, user.id).await?;
    Ok(Profile {
        user,
        links,
        socials,
    })
}

/// `GET /users/{id}/links`: a page of a user's links, in the user's
/// namespace; a `404` for a missing user.
pub async fn links_of_user(
    state: &AppState,
    user_id: i64,
    page: PageRequest,
) -> Result<Served, ApiError> {
    let query = QueryKey::links_page(page.page, page.limit);
    let ns = Namespace::User(user_id);
    cached(state, ns, query, move |mut conn| async move {
        user_must_exist(&mut conn, user_id).await?;
        let (data, total) = db::links::page_of_user(&mut conn, user_id, page).await?;
        page_json(data, page, total)
    })
    .await
}

/// `GET /links/{id}`, in the link's namespace.
pub async fn link(state: &AppState, id: i64) -> Result<Served, ApiError> {
    let ns = Namespace::Link(id);
    cached(state, ns, QueryKey::link(), move |mut conn| async move {
        found(db::links::find(&mut conn, id).await?, "link")
    })
    .await
}

/// `GET /users/{id}/socials`: every social account of a user, in the
/// user's namespace; a `404` for a missing user.
pub async fn socials_of_user(state: &AppState, user_id: i64) -> Result<Served, ApiError> {
    let ns = Namespace::User(user_id);
    cached(
        state,
        ns,
        QueryKey::socials_of_user(),
        move |mut conn| async move {
            user_must_exist(&mut conn, user_id).await?;
            data_json(db::socials::all_of_user(&mut conn, user_id).await?)
        },
    )
    .await
}

/// `GET /socials/{id}`, in the social account's namespace.
pub async fn social(state: &AppState, id: i64) -> Result<Served, ApiError> {
    let ns = Namespace::Social(id);
    cached(state, ns, QueryKey::social(), move |mut conn| async move {
        found(db::socials::find(&mut conn, id).await?, "social account")
    })
    .await
}

/// The one shape of every read above: served by the cache, and on a miss
/// `load` runs with a PostgreSQL connection taken only then (a hit takes none).
/// A `404` the loader raises is cached like a body ([`cacheable`]).
async fn cached<F, Fut>(
    state: &AppState,
    ns: Namespace,
    query: QueryKey,
    load: F,
) -> Result<Served, ApiError>
where
    F: FnOnce(DbConn) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Vec<u8>, ApiError>> + Send + 'static,
{
    cached_behind(state, None, ns, query, load).await
}

/// [`cached`], with a load that first enters `bulkhead` (when given), before
/// it takes a connection: the list loads a client can vary without end take
/// a bounded share of the pool, and a hit enters nothing.
async fn cached_behind<F, Fut>(
    state: &AppState,
    bulkhead: Option<&Bulkhead>,
    ns: Namespace,
    query: QueryKey,
    load: F,
) -> Result<Served, ApiError>
where
    F: FnOnce(DbConn) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Vec<u8>, ApiError>> + Send + 'static,
{
    let pool = state.db.clone();
    let bulkhead = bulkhead.cloned();
    let load = move || async move {
        let _place = match bulkhead {
            Some(bulkhead) => Some(bulkhead.enter().await?),
            None => None,
        };
        let loaded = match pool.get().await {
            Ok(conn) => load(conn).await,
            Err(e) => Err(e.into()),
        };
        cacheable(loaded)
    };
    Ok(state.cache.read(ns, &query, load).await?)
}

/// A load's outcome as the cache keeps it: a `404` is an answer to cache,
/// with the JSON body the error has everywhere else; any other error is not
/// cached and reaches the client as it is.
fn cacheable(loaded: Result<Vec<u8>, ApiError>) -> Result<Loaded, ApiError> {
    match loaded {
        Ok(body) => Ok(Loaded::Found(body)),
        Err(err @ ApiError::NotFound(_)) => serde_json::to_vec(&err.body())
            .map(Loaded::NotFound)
            .map_err(|e| ApiError::internal(e.to_string())),
        Err(other) => Err(other),
    }
}

/// The lists of a user's links and socials are a `404` for a missing user,
/// not an empty list.
async fn user_must_exist(conn: &mut DbConn, user_id: i64) -> Result<(), ApiError> {
    if db::users::exists(conn, user_id).await? {
        Ok(())
    } else {
        Err(ApiError::not_found("user"))
    }
}

/// `{"data": ...}` of a row found by id, or a `404` naming `what`.
fn found<T: serde::Serialize>(row: Option<T>, what: &'static str) -> Result<Vec<u8>, ApiError> {
    data_json(row.ok_or(ApiError::not_found(what))?)
}

/// Serializes a `{"data": ...}` body for the cache.
fn data_json<T: serde::Serialize>(data: T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(&DataBody { data })
        .map_err(|e| ApiError::internal(format!("serializing a response: {e}")))
}

/// Serializes a page and its paging metadata for the cache.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_is_cached_as_its_json_404_and_nothing_else_is() {
        let err = ApiError::not_found("user");
        let Ok(Loaded::NotFound(body)) = cacheable(Err(err.clone())) else {
            panic!("a 404 is cached");
        };
        assert_eq!(body, serde_json::to_vec(&err.body()).expect("serializes"));
        assert!(
            std::str::from_utf8(&body)
                .expect("utf-8")
                .contains("not_found")
        );
        assert!(cacheable(Err(ApiError::internal("x"))).is_err());
        assert_eq!(
            cacheable(Ok(b"{}".to_vec())).expect("a body"),
            Loaded::Found(b"{}".to_vec())
        );
    }
}
