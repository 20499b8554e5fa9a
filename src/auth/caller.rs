//! The [`Caller`] extractor: who sent an authenticated request. It asks the
//! application for the PostgreSQL pool only (registered on its own by
//! startup), not for the whole state.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, web};

use super::token;
use crate::db::{self, DbPool};
use crate::domain::resources::PrivateUser;
use crate::error::ApiError;

/// The caller of an authenticated endpoint. Extracting it answers `401` when
/// the token is missing, malformed, expired or revoked.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: PrivateUser,
    /// The SHA-256 of the presented token (for logout).
    pub token_hash: Vec<u8>,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.user.role == "admin"
    }

    /// Writes to a user's data need that user's token or an admin's.
    pub fn may_write_as(&self, owner_id: i64) -> Result<(), ApiError> {
        if self.user.id == owner_id || self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let token = bearer_token(req);
        let pool = req.app_data::<web::Data<DbPool>>().cloned();
        Box::pin(async move {
            let token = token.ok_or(ApiError::Unauthorized)?;
            let pool =
                pool.ok_or_else(|| ApiError::internal("the database pool is not registered"))?;
            let token_hash = token::digest(&token);
            let mut conn = pool.get().await?;
            let user = db::tokens::user_of(&mut conn, &token_hash)
                .await?
                .ok_or(ApiError::Unauthorized)?;
            Ok(Caller { user, token_hash })
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header, when the request
/// has one that is not empty.
pub fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}
