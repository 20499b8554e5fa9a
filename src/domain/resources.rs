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

/// Paging metadata of a list.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PageMeta {
    pub page: u64,
    pub limit: u64,
    pub total: u64,
    pub total_pages: u64,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub meta: PageMeta,
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

    pub fn meta(&self, total: u64) -> PageMeta {
        PageMeta {
            page: self.page,
            limit: self.limit,
            total,
            total_pages: total.div_ceil(self.limit),
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
