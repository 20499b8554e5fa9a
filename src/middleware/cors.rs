//! CORS: origins from `CORS_ALLOWED_ORIGINS` only (none by default),
//! preflights answered, `ETag` and `X-Cache` readable by scripts. A request
//! from another origin is still served (same-origin tools such as the
//! Swagger UI send `Origin` too); the browser withholds the answer from a
//! page whose origin is not allowed.

use actix_cors::Cors;
use actix_web::http::Method;
use actix_web::http::header::{self, HeaderName};

use super::request_id::REQUEST_ID;

/// CORS for `allowed_origins` (already checked by the configuration: each
/// one is a bare `scheme://host[:port]` origin). With none, no origin is
/// allowed and preflights are refused.
pub fn cors(allowed_origins: &[String]) -> Cors {
    let cors = allowed_origins
        .iter()
        .fold(Cors::default(), |cors, origin| cors.allowed_origin(origin));
    cors.allowed_methods([
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PATCH,
        Method::DELETE,
    ])
    .allowed_headers([
        header::AUTHORIZATION,
        header::CONTENT_TYPE,
        header::IF_NONE_MATCH,
        REQUEST_ID,
    ])
    .expose_headers([
        header::ETAG,
        HeaderName::from_static("x-cache"),
        REQUEST_ID,
        header::RETRY_AFTER,
    ])
    .max_age(3600)
    .block_on_origin_mismatch(false)
}
