//! Request ids and the span every log line of a request is written in.
//!
//! [`request_id`] (outermost) takes `X-Request-Id` from the request when it
//! is a sane token, or makes one, puts it back on the request and echoes it
//! on the response. [`RequestSpan`] (just inside it, through
//! `tracing-actix-web`) opens the request's span with `request_id=<id>`:
//! every event of the request — in the handler, and in the tasks it spawns,
//! which are instrumented with the span current when they start — carries
//! it, and the access log line prints it too.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use rand::RngExt;
use tracing::Span;
use tracing_actix_web::RootSpanBuilder;

use super::headers::add_headers;

/// The request id header, read from the request and set on every response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest request id taken from a client; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// A client's id is kept when it is 1–128 characters that cannot break a log
/// line or a header: letters, digits and `-_.:+/=@`.
pub(super) fn is_acceptable_request_id(value: &str) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=@".contains(&b))
}

/// 128 random bits as 32 hex digits.
pub(super) fn generate_request_id() -> String {
    format!("{:032x}", rand::rng().random::<u128>())
}

/// Gives the request an id (the client's, when acceptable), puts it back on
/// the request for the span and the access log, and sets it on the response.
pub async fn request_id(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // A client's value is kept as it is (no copy); a made one is moved into
    // the header, not copied.
    let value = req
        .headers()
        .get(&REQUEST_ID)
        .filter(|v| v.to_str().is_ok_and(is_acceptable_request_id))
        .cloned()
        .unwrap_or_else(|| {
            HeaderValue::from_maybe_shared(bytes::Bytes::from(generate_request_id()))
                .unwrap_or_else(|_| HeaderValue::from_static("invalid-request-id"))
        });
    // The request's span and the access log read the id from the request header.
    req.headers_mut().insert(REQUEST_ID, value.clone());
    let result = next.call(req).await;
    add_headers(result, [(REQUEST_ID, value)])
}

/// The root span of a request: `request{request_id=<id>}`. The id is read
/// from the header [`request_id`] has just set.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let id = request
            .headers()
            .get(&REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        tracing::info_span!("request", request_id = %id)
    }

    fn on_request_end<B: MessageBody>(
        _span: Span,
        _outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        // The status is in the access log line; the span records nothing more.
    }
}
