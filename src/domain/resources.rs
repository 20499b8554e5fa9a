//! The resources of API.md, as they are stored in the cache and sent to clients.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::InputError;
use crate::schema::{links, socials, users};

/// What anyone may see of a user.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize, Deserialize, ToSchema)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct PublicUser {
    pub id: i64,
    pub username: String,
    pub name: String,
    pub bio: String,
    pub avatar_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a user and admins see: the public fields plus email and role.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize, Deserialize, ToSchema)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct PrivateUser {
    pub id: i64,
    pub username: String,
    pub name: String,
    pub bio: String,
    pub avatar_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub email: String,
    /// `user` or `admin`.
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize, Deserialize, ToSchema)]
#[diesel(table_name = links, check_for_backend(diesel::pg::Pg))]
pub struct Link {
    pub id: i64,
    pub user_id: i64,
    pub title: String,
    pub url: String,
    pub position: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize, Deserialize, ToSchema)]
#[diesel(table_name = socials, check_for_backend(diesel::pg::Pg))]
pub struct Social {
    pub id: i64,
    pub user_id: i64,
    pub platform: String,
    pub url: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// `GET /profiles/{username}`: the hot read path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Profile {
    pub user: PublicUser,
    /// Ordered by position, then id.
    pub links: Vec<Link>,
    /// Ordered by platform.
    pub socials: Vec<Social>,
}

/// Paging metadata of a list (API.md, Conventions). A page-numbered list
/// has `page` and `total_pages`; one walked with `after` has `after` in their
/// place. Every list says whether `total` is exact and where to walk on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PageMeta {
    /// The page number asked for (page-numbered lists only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u64>,
    /// The id the page starts after (lists walked with `after` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
    pub limit: u64,
    /// Exact up to 10,000 matches; above, it may be an estimate.
    pub total: u64,
    /// Page-numbered lists only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_pages: Option<u64>,
    /// `false` when `total` is an estimate.
    pub total_exact: bool,
    /// The id of the page's last item when more may follow (pass it as
    /// `after`), else `null`.
    #[schema(required = true)]
    pub next_after: Option<i64>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub meta: PageMeta,
}

/// How many matches a list counts exactly; above this its `total` may be
/// an estimate (API.md). Counting stops one past it, so a count costs at
/// most this many index entries whatever the table holds.
pub const EXACT_TOTAL_UP_TO: u64 = 10_000;

/// The deepest a page-numbered list goes: `page × limit` at most this many
/// rows (API.md); deeper, a client walks on with `after`, whose cost does not
/// grow with depth.
pub const MAX_PAGE_DEPTH: u64 = 10_000;

/// The `total` of a list and whether it is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Total {
    pub value: u64,
    pub exact: bool,
}

impl Total {
    /// A count that never stops early (a user's links: at most 100).
    pub fn exact(value: u64) -> Self {
        Self { value, exact: true }
    }
}

/// A validated page request: `page` ≥ 1, `limit` 1–100.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PageRequest {
    pub page: u64,
    pub limit: u64,
}

impl PageRequest {
    /// `?page=&limit=` as a client sent them: page defaults to 1, limit to 10.
    pub fn parse(page: Option<u64>, limit: Option<u64>) -> Result<Self, InputError> {
        let page = page.unwrap_or(1);
        let limit = limit.unwrap_or(10);
        if page == 0 {
            return Err(InputError::parameter("page must be 1 or more"));
        }
        if !(1..=100).contains(&limit) {
            return Err(InputError::parameter("limit must be from 1 to 100"));
        }
        Ok(Self { page, limit })
    }

    /// Rows to skip; `None` when the page lies beyond anything a table can hold.
    pub fn offset(&self) -> Option<i64> {
        (self.page - 1)
            .checked_mul(self.limit)
            .and_then(|o| i64::try_from(o).ok())
    }

    /// The meta of a page of `items` items whose last item has id `last_id`,
    /// of a list of `total` items.
    pub fn meta(&self, total: Total, items: usize, last_id: Option<i64>) -> PageMeta {
        let shown = self
            .offset()
            .and_then(|o| u64::try_from(o).ok())
            .map(|o| o.saturating_add(items as u64));
        // More may follow a full page unless the exact total says it was the last.
        let more = items as u64 == self.limit
            && (!total.exact || shown.is_some_and(|shown| shown < total.value));
        PageMeta {
            page: Some(self.page),
            after: None,
            limit: self.limit,
            total: total.value,
            total_pages: Some(total.value.div_ceil(self.limit)),
            total_exact: total.exact,
            next_after: last_id.filter(|_| more),
        }
    }
}

/// Where a page of the users list starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListStart {
    /// `?page=`: skip `(page - 1) × limit` matches; `page × limit` is at
    /// most [`MAX_PAGE_DEPTH`].
    Page(u64),
    /// `?after=`: the matches whose id is greater (keyset: the same cost at
    /// any depth).
    After(i64),
}

/// A validated users-list request: where it starts and how many it shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListRequest {
    pub start: ListStart,
    pub limit: u64,
}

impl ListRequest {
    /// `?page=&after=&limit=` as a client sent them: `page` and `after`
    /// exclude each other; `after` is 0 or more; a page lies within
    /// [`MAX_PAGE_DEPTH`] rows.
    pub fn parse(
        page: Option<u64>,
        after: Option<i64>,
        limit: Option<u64>,
    ) -> Result<Self, InputError> {
        let start = match (page, after) {
            (Some(_), Some(_)) => {
                return Err(InputError::parameter(
                    "page and after exclude each other: walk on with after alone",
                ));
            }
            (_, Some(after)) if after < 0 => {
                return Err(InputError::parameter("after must be 0 or more"));
            }
            (_, Some(after)) => ListStart::After(after),
            (page, None) => ListStart::Page(page.unwrap_or(1)),
        };
        let paging = PageRequest::parse(
            match start {
                ListStart::Page(page) => Some(page),
                ListStart::After(_) => None,
            },
            limit,
        )?;
        if let ListStart::Page(page) = start
            && page.saturating_mul(paging.limit) > MAX_PAGE_DEPTH
        {
            return Err(InputError::parameter(format!(
                "page × limit must be at most {MAX_PAGE_DEPTH}: walk on with after"
            )));
        }
        Ok(Self {
            start,
            limit: paging.limit,
        })
    }

    /// Rows to skip (page-numbered requests; within [`MAX_PAGE_DEPTH`]).
    pub fn offset(&self) -> i64 {
        match self.start {
            ListStart::Page(page) => ((page - 1) * self.limit) as i64,
            ListStart::After(_) => 0,
        }
    }

    /// The meta of a page of `items` items whose last item has id `last_id`,
    /// of a list of `total` matches.
    pub fn meta(&self, total: Total, items: usize, last_id: Option<i64>) -> PageMeta {
        match self.start {
            ListStart::Page(page) => PageRequest {
                page,
                limit: self.limit,
            }
            .meta(total, items, last_id),
            // Where an `after` page stands among the matches is unknown, so
            // a full page may always be followed.
            ListStart::After(after) => PageMeta {
                page: None,
                after: Some(after),
                limit: self.limit,
                total: total.value,
                total_pages: None,
                total_exact: total.exact,
                next_after: last_id.filter(|_| items as u64 == self.limit),
            },
        }
    }
}

/// A single resource: `{"data": ...}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DataBody<T> {
    pub data: T,
}

/// The answer to a create or an update: `{"message": ..., "data": ...}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageBody<T> {
    pub message: &'static str,
    pub data: T,
}

/// `POST /auth/login`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginView {
    pub token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    pub expires_at: DateTime<Utc>,
    pub user: PrivateUser,
}
