//! The sets of answers many operations share (`500`/`503`, a JSON body's
//! own errors, an owner-only write's `401`/`403`, a cached read's `304`),
//! listed by name in the handlers' OpenAPI annotations. They sit below every
//! handler and name none, so the handlers and `openapi.rs`, which names every
//! handler, both point down here.

use crate::error::ErrorBody;

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
