//! Request ids and the span every log line of a request is written in.
//!
//! [`request_id`] (outermost) takes `X-Request-Id` from the request when it
//! is a sane token, or makes one, puts it back on the request and echoes it
//! on the response, and runs the rest of the request in its span,
//! `request{request_id=<id>}`: every event of the request — in the handler,
//! and in the tasks it spawns, which are instrumented with the span current
//! when they start — carries it, and the access log line prints it too.
//!
//! The span is tracing's own, not `tracing-actix-web`'s: that one also made
//! a UUID per request (a `getrandom` system call each) and stored it in the
//! request's extensions, for nothing linkhub reads.
//!
//! The access log line is written here too, at the end of the request, in
//! its span (target `linkhub::access`, level info): actix's `Logger` renders
//! its line at the start of every request whether or not its level is on,
//! and was one more layer; here nothing is rendered unless the line will be
//! written.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use std::time::Instant;

use actix_web::body::BodySize;
use actix_web::http::header;
use rand::RngExt;
use tracing::Instrument;

use super::headers::add_headers;
use crate::current_request;

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
    hex::encode(rand::rng().random::<[u8; 16]>())
}

/// What the access line says of the request, taken before it is handled
/// (only when the line will be written).
struct AccessLine {
    peer: String,
    request_line: String,
    user_agent: String,
    started: Instant,
}

impl AccessLine {
    fn of(req: &ServiceRequest) -> Self {
        let header = |name| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned()
        };
        Self {
            peer: req
                .peer_addr()
                .map_or_else(|| "-".to_owned(), |addr| addr.ip().to_string()),
            request_line: format!("{} {} {:?}", req.method(), req.uri(), req.version()),
            user_agent: header(header::USER_AGENT),
            started: Instant::now(),
        }
    }

    /// `<peer> "<request line>" <status> <body bytes> <ms>ms "<user agent>" request_id=<id>`
    fn write<B: MessageBody>(
        self,
        result: &Result<ServiceResponse<B>, actix_web::Error>,
        id: &HeaderValue,
    ) {
        let (status, size) = match result {
            Ok(res) => (
                res.status().as_u16(),
                match res.response().body().size() {
                    BodySize::Sized(n) => n.to_string(),
                    BodySize::None => "0".to_owned(),
                    BodySize::Stream => "-".to_owned(),
                },
            ),
            Err(e) => (e.as_response_error().status_code().as_u16(), "-".to_owned()),
        };
        tracing::info!(
            target: ACCESS_LOG,
            "{} \"{}\" {status} {size} {:.3}ms \"{}\" request_id={}",
            self.peer,
            self.request_line,
            self.started.elapsed().as_secs_f64() * 1000.0,
            self.user_agent,
            id.to_str().unwrap_or("-"),
        );
    }
}

/// The access log's target: `RUST_LOG=linkhub::access=off` silences it alone.
const ACCESS_LOG: &str = "linkhub::access";

/// Gives the request an id (the client's, when acceptable), puts it back on
/// the request, sets it on the response, runs the request in its span and
/// writes its access line.
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
    // The span's field is formatted only when the span is enabled.
    let span = tracing::info_span!(
        "request",
        request_id = %value.to_str().unwrap_or("-")
    );
    req.headers_mut().insert(REQUEST_ID, value.clone());
    let access =
        tracing::enabled!(target: ACCESS_LOG, tracing::Level::INFO).then(|| AccessLine::of(&req));
    // The id is known to the code below for as long as the request runs
    // (`current_request`): the span carries it only on lines written inside.
    let result =
        current_request::serve(value.clone(), next.call(req).instrument(span.clone())).await;
    if let Some(access) = access {
        span.in_scope(|| access.write(&result, &value));
    }
    add_headers(result, [(REQUEST_ID, value)])
}
