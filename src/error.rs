//! The one API error type. Every failure a client can see — from a handler, an
//! extractor, the router or a panic — becomes an [`ApiError`], and only this
//! module knows the JSON shape of API.md:
//! `{"error": {"code": "...", "message": "...", "details": {...}}}`.
//!
//! 5xx causes are logged here with their context and never sent to the client.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::cache::ReadError;
pub use crate::domain::error::FieldErrors;
use crate::domain::error::InputError;

/// Everything a client can be answered besides success. Each variant is one
/// status and one `code` of API.md; its `Display` is the `message` sent,
/// while the causes a variant carries for 5xx (`Internal`,
/// `ServiceUnavailable`) are only logged. `Clone`, because a failed cache
/// load answers every reader that shared it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("authentication required: missing, invalid or expired token")]
    Unauthorized,
    #[error("invalid login or password")]
    InvalidCredentials,
    #[error("you may not change this resource")]
    Forbidden,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than 64 KiB")]
    PayloadTooLarge,
    #[error("request body must be application/json")]
    UnsupportedMediaType,
    /// The body did not arrive within `HTTP_CLIENT_BODY_TIMEOUT_MS` (a slow
    /// or stalled client); the connection is closed after this answer.
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    #[error("validation failed")]
    Validation(FieldErrors),
    #[error("too many attempts, retry later")]
    RateLimited { retry_after_secs: u64 },
    #[error("the database is unavailable, retry later")]
    ServiceUnavailable(String),
    /// A bounded resource (password hashing) is at its limit: the client is
    /// told when to come back instead of waiting ever longer.
    #[error("the server is busy, retry later")]
    Busy { retry_after_secs: u64 },
    #[error("internal server error")]
    Internal(String),
}

/// The wire shape of an error.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

// What went wrong: the inside of `ErrorBody`. A `//` comment, not `///`:
// utoipa would publish a doc comment as the schema's description, and the
// OpenAPI document is part of the contract.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `validation_failed`.
    pub code: &'static str,
    /// Human-readable explanation.
    pub message: String,
    /// For `validation_failed`: field → list of messages.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<FieldErrors>,
}

impl ApiError {
    /// `404`: `what` (a resource name) does not exist.
    pub fn not_found(what: &'static str) -> Self {
        Self::NotFound(what)
    }

    /// `400` with `message`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    /// `409` with `message`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(message.into())
    }

    /// `500`; `context` is logged, never sent.
    pub fn internal(context: impl Into<String>) -> Self {
        Self::Internal(context.into())
    }

    /// `503` with `Retry-After`: a bounded resource is full right now.
    pub fn busy(retry_after_secs: u64) -> Self {
        Self::Busy { retry_after_secs }
    }

    /// A single-field validation failure.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        let mut details = FieldErrors::new();
        details.insert(field.to_owned(), vec![message.into()]);
        Self::Validation(details)
    }

    /// The stable `code` of the body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Unauthorized | Self::InvalidCredentials => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RequestTimeout => "request_timeout",
            Self::Validation(_) => "validation_failed",
            Self::RateLimited { .. } => "rate_limited",
            Self::ServiceUnavailable(_) | Self::Busy { .. } => "service_unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// The body as it is serialized to JSON; a cached `404` is this body
    /// too (`service::reads`), so it reads the same from the cache as from
    /// a handler.
    pub fn body(&self) -> ErrorBody {
        let details = match self {
            Self::Validation(fields) => Some(fields.clone()),
            _ => None,
        };
        ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
                details,
            },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::ServiceUnavailable(_) | Self::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Internal(cause) => tracing::error!("internal error: {cause}"),
            Self::ServiceUnavailable(cause) => tracing::warn!("database unavailable: {cause}"),
            _ => {}
        }
        let mut response = HttpResponse::build(self.status_code());
        if let Self::RateLimited { retry_after_secs } | Self::Busy { retry_after_secs } = self {
            response.insert_header((header::RETRY_AFTER, retry_after_secs.max(&1).to_string()));
        }
        if matches!(self, Self::Unauthorized | Self::InvalidCredentials) {
            response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
        }
        response.json(self.body())
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(err: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match err {
            Error::NotFound => Self::NotFound("resource"),
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, info) => {
                Self::Conflict(conflict_message(info.constraint_name()))
            }
            Error::DatabaseError(DatabaseErrorKind::ClosedConnection, info) => {
                Self::ServiceUnavailable(info.message().to_owned())
            }
            Error::DatabaseError(_, info) if is_connection_failure(info.message()) => {
                Self::ServiceUnavailable(info.message().to_owned())
            }
            // `statement_timeout` (SQLSTATE 57014): the database is too slow
            // to answer now, which a client sees like an outage.
            Error::DatabaseError(_, info) if info.message().contains("statement timeout") => {
                Self::ServiceUnavailable(info.message().to_owned())
            }
            other => Self::Internal(format!("database error: {other}")),
        }
    }
}

/// tokio-postgres reports a dropped socket as an "unknown" database error;
/// those are outages (`503`), not bugs (`500`).
fn is_connection_failure(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "connection closed",
        "connection reset",
        "broken pipe",
        "timed out",
        "error communicating",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

fn conflict_message(constraint: Option<&str>) -> String {
    match constraint {
        Some("users_username_key") => "username is already taken".to_owned(),
        Some("users_email_lower_key") => "email is already registered".to_owned(),
        Some("socials_user_platform_key") => {
            "this user already has an account on that platform".to_owned()
        }
        _ => "resource already exists".to_owned(),
    }
}

/// Input the domain refused: a parameter is a `400`, field rules a `422`
/// with their details.
impl From<InputError> for ApiError {
    fn from(err: InputError) -> Self {
        match err {
            InputError::Parameter(message) => Self::BadRequest(message),
            InputError::Fields(fields) => Self::Validation(fields),
        }
    }
}

/// A cached read that has no entry: the loader's own error comes back as it
/// raised it (the loaders of `service::reads` raise [`ApiError`]s).
impl From<ReadError> for ApiError {
    fn from(err: ReadError) -> Self {
        match err {
            ReadError::Load(cause) => cause
                .downcast_ref::<ApiError>()
                .cloned()
                .unwrap_or_else(|| Self::Internal(format!("a cache load failed: {cause}"))),
            ReadError::Panicked(_) => Self::Internal(err.to_string()),
        }
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for ApiError {
    fn from(err: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        Self::ServiceUnavailable(format!("no database connection: {err}"))
    }
}

impl From<actix_web::error::JsonPayloadError> for ApiError {
    fn from(err: actix_web::error::JsonPayloadError) -> Self {
        use actix_web::error::JsonPayloadError as E;
        match err {
            E::ContentType => Self::UnsupportedMediaType,
            E::Overflow { .. } | E::OverflowKnownLength { .. } => Self::PayloadTooLarge,
            E::Deserialize(e) => Self::BadRequest(format!("invalid JSON body: {e}")),
            E::Payload(actix_web::error::PayloadError::Overflow) => Self::PayloadTooLarge,
            // The body's deadline (`middleware::body_deadline`).
            E::Payload(actix_web::error::PayloadError::Io(e))
                if e.kind() == std::io::ErrorKind::TimedOut =>
            {
                Self::RequestTimeout
            }
            other => Self::BadRequest(format!("invalid request body: {other}")),
        }
    }
}
