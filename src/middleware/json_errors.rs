//! The JSON safety net: an error response that is not JSON (one actix
//! produced itself, before or around a handler) is replaced by the JSON
//! error of its status, so a client only ever sees the shape of API.md.

use actix_web::ResponseError;
use actix_web::body::MessageBody;
use actix_web::dev::ServiceResponse;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers};

use crate::error::ApiError;

/// Safety net: an error response that is not JSON (one actix produced itself)
/// is replaced by the JSON error of its status.
pub fn json_errors<B: MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(|res: ServiceResponse<B>| {
        let is_json = res
            .response()
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| {
                // JSON errors, and the HTML 404 page of `pages`: both on purpose.
                v.as_bytes().starts_with(b"application/json")
                    || v.as_bytes().starts_with(b"text/html")
            });
        if is_json {
            return Ok(ErrorHandlerResponse::Response(res.map_into_left_body()));
        }
        let error = match res.status() {
            StatusCode::NOT_FOUND => ApiError::not_found("route"),
            StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
            StatusCode::UNAUTHORIZED => ApiError::Unauthorized,
            status if status.is_client_error() => {
                ApiError::bad_request(status.canonical_reason().unwrap_or("bad request"))
            }
            status => ApiError::internal(format!("non-JSON {status} response replaced")),
        };
        let (req, _) = res.into_parts();
        let res = ServiceResponse::new(req, error.error_response()).map_into_right_body();
        Ok(ErrorHandlerResponse::Response(res))
    })
}
