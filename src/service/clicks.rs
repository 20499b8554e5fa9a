//! Link clicks: the redirect that counts one (`GET /l/{link_id}`) and a
//! user's analytics (`GET /api/v1/users/{id}/clicks`). The counting itself
//! is `crate::clicks`; the redirect's URL is the cached read of the link,
//! with its read-your-writes, so an edit redirects to the new URL at once.

use std::sync::{Arc, LazyLock};

use chrono::Utc;
use serde::Deserialize;

use super::{authorize, reads};
use crate::auth::Caller;
use crate::cache::Entry;
use crate::clicks::{ClickError, Visitor};
use crate::db;
use crate::domain::clicks::{ClickDay, DayRange, redirect_target};
use crate::error::ApiError;
use crate::state::AppState;

/// Where a redirect goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Redirect {
    /// The link's URL (its click journaled).
    To(Arc<str>),
    /// No such link, or one whose URL the redirect does not follow; nothing
    /// is counted.
    Missing,
}

/// The part of a cached link the redirect reads.
#[derive(Deserialize)]
struct CachedLink {
    data: LinkUrl,
}

#[derive(Deserialize)]
struct LinkUrl {
    url: String,
}

/// Redirect targets by the ETag of the link entry they were read from, at
/// most this many (a few hundred bytes each).
const TARGETS_MAX: usize = 10_000;

/// Where a link entry redirects to, remembered by the entry's ETag. The
/// target is a function of the entry's body alone (its URL, checked against
/// today's rules), and the ETag is a digest of that body: an edited link is
/// a new body, so a new key, and is never answered from an older one. The
/// freshness of the entry itself is the cache read's (read-your-writes).
/// One map per process, whatever the app: the same body has the same target
/// everywhere. It spares each redirect parsing the body and the URL twice.
static TARGETS: LazyLock<quick_cache::sync::Cache<String, Option<Arc<str>>>> =
    LazyLock::new(|| quick_cache::sync::Cache::new(TARGETS_MAX));

/// The target of a `200` link entry; `None` for a URL the redirect does
/// not follow.
fn target_of(entry: &Entry) -> Result<Option<Arc<str>>, ApiError> {
    if let Some(target) = TARGETS.get(&entry.etag) {
        return Ok(target);
    }
    let cached: CachedLink = serde_json::from_slice(&entry.body)
        .map_err(|e| ApiError::internal(format!("a cached link does not parse: {e}")))?;
    let target: Option<Arc<str>> = redirect_target(&cached.data.url).map(Arc::from);
    TARGETS.insert(entry.etag.clone(), target.clone());
    Ok(target)
}

/// Resolves link `link_id` through the cache and counts the click before
/// answering where to go.
pub async fn redirect(
    state: &AppState,
    link_id: i64,
    visitor: Visitor<'_>,
) -> Result<Redirect, ApiError> {
    let served = reads::link(state, link_id).await?;
    if served.entry.status != 200 {
        return Ok(Redirect::Missing);
    }
    let Some(target) = target_of(&served.entry)? else {
        return Ok(Redirect::Missing);
    };
    state.clicks.record(link_id, visitor).await.map_err(|e| {
        if let ClickError::NotJournaled(cause) = &e {
            // The operator's to fix (a full disk, say); the client may retry.
            tracing::error!("a click could not be journaled: {cause}");
        }
        ApiError::busy(1)
    })?;
    Ok(Redirect::To(target))
}

/// The clicks of every link of `user_id` per day of `?from=&to=`, for its
/// owner or an admin: `404` for a missing user, `403`, then `400` for the
/// range.
pub async fn of_user(
    state: &AppState,
    caller: &Caller,
    user_id: i64,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<Vec<ClickDay>, ApiError> {
    let mut conn = state.db.get().await?;
    let exists = db::users::exists(&mut conn, user_id).await?;
    authorize(caller, exists.then_some(user_id), "user")?;
    let range = DayRange::parse(from, to, Utc::now().date_naive())?;
    Ok(db::clicks::of_user(&mut conn, user_id, range).await?)
}
