//! The OpenAPI 3 document, generated from the handlers' annotations and the
//! resource types, served at `/api/v1/openapi.json`; and the sets of answers
//! many operations share, which their annotations list by name.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{auth, links, ops, profiles, socials, users};
use crate::error::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(title = "linkhub", description = "Link-in-bio profiles, served cache-aside from Redis."),
    paths(
        users::list, users::register, users::get, users::update, users::delete,
        links::list, links::get, links::create, links::update, links::delete,
        socials::list, socials::get, socials::create, socials::update, socials::delete,
        profiles::get,
        auth::login, auth::logout, auth::me,
        ops::healthz, ops::readyz, ops::metrics, ops::openapi,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "users"), (name = "links"), (name = "socials"), (name = "profiles"),
        (name = "auth"), (name = "operations"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// `500` and `503`: what every operation that uses PostgreSQL may answer
/// besides its own statuses (a cached read too, on a miss).
#[derive(utoipa::IntoResponses)]
pub enum ServerErrors {
    #[response(
        status = 500,
        description = "Anything else; the message leaks no internals"
    )]
    Internal(ErrorBody),
    #[response(status = 503, description = "PostgreSQL unreachable")]
    Unavailable(ErrorBody),
}

/// Listed after [`ServerErrors`] by an operation that hashes a password: its
/// `503` then also says that the hashing queue is full, with `Retry-After`.
#[derive(utoipa::IntoResponses)]
pub enum HashingBusy {
    #[response(
        status = 503,
        description = "PostgreSQL unreachable, or password hashing busy",
        headers(("Retry-After" = u64, description = "Seconds to wait, when hashing is busy"))
    )]
    Unavailable(ErrorBody),
}

/// What an operation with a JSON body answers for the body itself, before
/// its field rules: it does not parse or fit (`400`), is over
/// [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES) (`413`), or is not JSON (`415`).
#[derive(utoipa::IntoResponses)]
pub enum BodyErrors {
    #[response(status = 400, description = "Malformed body")]
    Malformed(ErrorBody),
    #[response(status = 413, description = "Body over 64 KiB")]
    TooLarge(ErrorBody),
    #[response(status = 415, description = "Body is not JSON")]
    NotJson(ErrorBody),
    #[response(
        status = 408,
        description = "Body not received within HTTP_CLIENT_BODY_TIMEOUT_MS"
    )]
    TooSlow(ErrorBody),
}

/// The authorization of a write to a user or what it owns: no or an invalid
/// token (`401`, checked first), someone else's and not an admin (`403`).
#[derive(utoipa::IntoResponses)]
pub enum OwnerOnly {
    #[response(status = 401, description = "No or invalid token")]
    Unauthorized(ErrorBody),
    #[response(status = 403, description = "Not the owner")]
    Forbidden(ErrorBody),
}

/// `304` of a cached read whose `ETag` matches `If-None-Match`.
#[derive(utoipa::IntoResponses)]
pub enum CachedRead {
    #[response(status = 304, description = "Not modified")]
    NotModified,
}
