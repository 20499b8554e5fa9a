//! The cached reads of the API. Each one names its namespace (what writes
//! invalidate it), its query key (a [`QueryKey`] of `cache::keys`, holding
//! every parameter of the query) and its loader (the SQL layer call that
//! runs on a miss). Handlers call these and never build keys themselves.
//! This is where the API's errors meet the cache: a loader's `404` becomes a
//! cacheable answer here, and the cache's [`crate::cache::ReadError`] comes
//! back as the loader's own error.

use std::sync::Arc;

use bytes::Bytes;

use crate::bulkhead::Bulkhead;
use crate::cache::keys::QueryKey;
use crate::cache::{Entry, Loaded, Served};
use crate::db::{self, DbConn};
use crate::domain::input::{SearchTerm, Username};
use crate::domain::resources::{
    DataBody, ListRequest, Page, PageRequest, Profile, PublicUser, Total,
};
use crate::error::ApiError;
use crate::metrics::CacheResult;
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

/// `GET /users`: a page of the users list, optionally searched, composed of
/// two cached parts so that registrations leave the pages cached:
///
/// * the page's items, in the `users` namespace (bumped by updates and
///   deletes only) when the page was full: a registration appends after the
///   last id of every full page, so it cannot change one; when it was not
///   full, a mark there sends the read to the same page in `users_added`;
/// * the total, in `users_added` (bumped by every change to `users`), one
///   entry per search shared by all its pages.
///
/// The answer is a `HIT` when every part was one. Each part keeps the cache
/// protocol on its own (version before the load, bump after commit), so
/// the composed answer shows every write acknowledged before the request.
pub async fn users_list(
    state: &AppState,
    search: Option<SearchTerm>,
    request: ListRequest,
) -> Result<Served, ApiError> {
    let search = search.map(|term| term.as_str().to_owned());
    // One after the other, not joined: each load enters the list bulkhead,
    // and a read holding a place for its page while it waits for another
    // for its total could, with others doing the same, leave every place
    // held and every read refused. (Both hit: two round trips to Redis.)
    let mut page = users_page(state, search.clone(), request, Namespace::Users).await?;
    let total = users_total(state, search.clone()).await?;
    let mut results = vec![page.0, total.0];
    if matches!(page.1, StoredPage::Tail) {
        page = users_page(state, search, request, Namespace::UsersAdded).await?;
        results.push(page.0);
    }
    let StoredPage::Items {
        count,
        last_id,
        json,
    } = page.1
    else {
        return Err(ApiError::internal("a users-list tail entry holds a mark"));
    };
    let meta = serde_json::to_vec(&request.meta(total.1, count, last_id))
        .map_err(|e| ApiError::internal(format!("serializing a page's meta: {e}")))?;
    let mut body = Vec::with_capacity(json.len() + meta.len() + 20);
    body.extend_from_slice(b"{\"data\":");
    body.extend_from_slice(&json);
    body.extend_from_slice(b",\"meta\":");
    body.extend_from_slice(&meta);
    body.push(b'}');
    Ok(Served {
        entry: Arc::new(Entry::render(Loaded::Found(body))),
        result: composed_result(&results),
    })
}

/// One page of the users list as the cache holds it, from `ns`: `users`
/// (full pages, a mark for the others) or `users_added` (any page).
async fn users_page(
    state: &AppState,
    search: Option<String>,
    request: ListRequest,
    ns: Namespace,
) -> Result<(CacheResult, StoredPage), ApiError> {
    let full_only = ns == Namespace::Users;
    let query = if full_only {
        QueryKey::users_page(search.as_deref(), request.start, request.limit)
    } else {
        QueryKey::users_tail(search.as_deref(), request.start, request.limit)
    };
    let list_loads = Some(&state.list_loads);
    let served = cached_behind(state, list_loads, ns, query, move |mut conn| async move {
        let rows = db::users::list(&mut conn, search.as_deref(), request).await?;
        if full_only && (rows.len() as u64) < request.limit {
            Ok(StoredPage::TAIL_MARK.to_vec())
        } else {
            StoredPage::encode(&rows)
        }
    })
    .await?;
    let page = StoredPage::decode(&served.entry.body)
        .ok_or_else(|| ApiError::internal("a users-list entry does not parse"))?;
    Ok((served.result, page))
}

/// The total of the users list or of one search, in `users_added`.
async fn users_total(
    state: &AppState,
    search: Option<String>,
) -> Result<(CacheResult, Total), ApiError> {
    let query = QueryKey::users_total(search.as_deref());
    let served = cached_behind(
        state,
        Some(&state.list_loads),
        Namespace::UsersAdded,
        query,
        move |mut conn| async move {
            let total = db::users::count_matching(&mut conn, search.as_deref()).await?;
            Ok(format!("{} {}", total.value, u8::from(total.exact)).into_bytes())
        },
    )
    .await?;
    let total = std::str::from_utf8(&served.entry.body)
        .ok()
        .and_then(|text| text.split_once(' '))
        .and_then(|(value, exact)| {
            Some(Total {
                value: value.parse().ok()?,
                exact: exact == "1",
            })
        })
        .ok_or_else(|| ApiError::internal("a users-list total does not parse"))?;
    Ok((served.result, total))
}

/// How an answer composed of parts was served: `BYPASS` if any part
/// bypassed the cache, else `MISS` if any part was loaded, else `HIT`.
fn composed_result(parts: &[CacheResult]) -> CacheResult {
    if parts.contains(&CacheResult::Bypass) {
        CacheResult::Bypass
    } else if parts.contains(&CacheResult::Miss) {
        CacheResult::Miss
    } else {
        CacheResult::Hit
    }
}

/// A page of the users list as an entry holds it: `<items> <last id|->`, a
/// line break and the items' JSON array, spliced into the answer as it is
/// (a `HIT` parses no JSON); or the mark of a page that was not full.
#[derive(Debug, PartialEq)]
enum StoredPage {
    Items {
        count: usize,
        last_id: Option<i64>,
        json: Bytes,
    },
    Tail,
}

impl StoredPage {
    const TAIL_MARK: &'static [u8] = b"tail";

    fn encode(rows: &[PublicUser]) -> Result<Vec<u8>, ApiError> {
        let last = rows
            .last()
            .map_or_else(|| "-".to_owned(), |user| user.id.to_string());
        let mut out = format!("{} {last}\n", rows.len()).into_bytes();
        serde_json::to_writer(&mut out, rows)
            .map_err(|e| ApiError::internal(format!("serializing a page: {e}")))?;
        Ok(out)
    }

    fn decode(body: &Bytes) -> Option<Self> {
        if body.as_ref() == Self::TAIL_MARK {
            return Some(Self::Tail);
        }
        let newline = body.iter().position(|&b| b == b'\n')?;
        let (count, last) = std::str::from_utf8(&body[..newline])
            .ok()?
            .split_once(' ')?;
        Some(Self::Items {
            count: count.parse().ok()?,
            last_id: match last {
                "-" => None,
                id => Some(id.parse().ok()?),
            },
            json: body.slice(newline + 1..),
        })
    }
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
        let last_id = data.last().map(|link| link.id);
        let meta = page.meta(Total::exact(total), data.len(), last_id);
        serde_json::to_vec(&Page { data, meta })
            .map_err(|e| ApiError::internal(format!("serializing a page: {e}")))
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

    #[test]
    fn stored_pages_decode_as_they_were_encoded() {
        let body = Bytes::from(StoredPage::encode(&[]).expect("encodes"));
        assert_eq!(
            StoredPage::decode(&body),
            Some(StoredPage::Items {
                count: 0,
                last_id: None,
                json: Bytes::from_static(b"[]"),
            })
        );
        assert_eq!(
            StoredPage::decode(&Bytes::from_static(StoredPage::TAIL_MARK)),
            Some(StoredPage::Tail)
        );
        let two = Bytes::from_static(b"2 57\n[{},{}]");
        assert_eq!(
            StoredPage::decode(&two),
            Some(StoredPage::Items {
                count: 2,
                last_id: Some(57),
                json: Bytes::from_static(b"[{},{}]"),
            })
        );
        assert_eq!(StoredPage::decode(&Bytes::from_static(b"garbage")), None);
    }

    #[test]
    fn a_composed_answer_is_a_hit_only_when_every_part_was() {
        use CacheResult::{Bypass, Hit, Miss};
        assert_eq!(composed_result(&[Hit, Hit, Hit]), Hit);
        assert_eq!(composed_result(&[Hit, Miss]), Miss);
        assert_eq!(composed_result(&[Miss, Bypass, Hit]), Bypass);
    }
}
