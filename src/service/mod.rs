//! The use cases: one function per thing a client can ask for, owning the
//! whole sequence so that handlers only extract and respond.
//!
//! - [`reads`]: every cached read (namespace, query key, loader).
//! - [`users`], [`links`], [`socials`]: every write, always in the order
//!   authorize (`404`, then `403`) → parse the body into a
//!   [`crate::domain::input::Valid`] (`400`, `422`; the database writes take
//!   nothing else) → write in one transaction with its outbox rows → invalidate the
//!   namespaces it changed before answering (read-your-writes).
//! - [`sessions`]: login and logout.
//! - [`clicks`]: the redirect that counts a link's click, and the analytics.
//! - [`ops`]: readiness and metrics.
//!
//! Password hashing (tens of milliseconds of a core) never holds a
//! PostgreSQL connection: it runs before one is taken.

pub mod clicks;
pub mod links;
pub mod ops;
pub mod reads;
pub mod sessions;
pub mod socials;
pub mod users;

use crate::auth::Caller;
use crate::db::Written;
use crate::error::ApiError;
use crate::state::AppState;

/// A request body as its handler extracted it. Its error is kept until the
/// caller was authorized: `401`, `404` and `403` come before anything about
/// the body.
pub type Body<T> = Result<T, ApiError>;

/// The order of checks of every write to a user's data: the caller is
/// authenticated (the [`Caller`] extractor ran first), then the target exists
/// (`404`; `owner` is its owner's id), then the caller may write as that
/// owner (`403`).
fn authorize(caller: &Caller, owner: Option<i64>, what: &'static str) -> Result<(), ApiError> {
    caller.may_write_as(owner.ok_or(ApiError::not_found(what))?)
}

/// After a write committed: invalidates the namespaces it changed before it
/// answers (read-your-writes), and hands back its value. `None`: the target
/// vanished between the authorization and the write (`404`).
async fn invalidate_committed<T>(
    state: &AppState,
    written: Option<Written<T>>,
    what: &'static str,
) -> Result<T, ApiError> {
    let written = written.ok_or(ApiError::not_found(what))?;
    state.cache.invalidate(written.changes).await;
    Ok(written.value)
}
