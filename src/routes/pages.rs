//! `/@{username}`: the public profile page, for people rather than apps. It
//! is a cached read like `GET /api/v1/profiles/{username}` — its own entry
//! under the profile's namespace, so every write that changes the profile
//! invalidates the page too — answered with `X-Cache`, a strong `ETag` and
//! `304`. The HTML is rendered on a miss and stored; a hit sends stored bytes.

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::cached_response_as;
use crate::domain::input::Username;
use crate::error::ApiError;
use crate::metrics::CacheResult;
use crate::pages;
use crate::service::reads;
use crate::state::AppState;

const HTML: &str = "text/html; charset=utf-8";

/// The same for every unknown name, so rendered once per process.
static NOT_FOUND_PAGE: LazyLock<Vec<u8>> = LazyLock::new(pages::not_found_page);

pub async fn profile(
    req: HttpRequest,
    state: web::Data<AppState>,
    username: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    // A name that breaks the username rule cannot exist; it never reaches a key.
    let Some(username) = Username::parse(username.into_inner()) else {
        return Ok(not_found(None));
    };
    let served = reads::profile_page(&state, username).await?;
    // The cache keeps an unknown name's 404 (a create bumps the namespace);
    // its stored body is the API's JSON error, so the page is put in its place.
    if served.entry.status == 404 {
        return Ok(not_found(Some(served.result)));
    }
    Ok(cached_response_as(&req, served, HTML))
}

fn not_found(result: Option<CacheResult>) -> HttpResponse {
    let mut response = HttpResponse::NotFound();
    response.insert_header((header::CACHE_CONTROL, "no-cache"));
    if let Some(result) = result {
        response.insert_header(("X-Cache", result.as_str()));
    }
    response.content_type(HTML).body(NOT_FOUND_PAGE.clone())
}
