//! A deadline on request bodies. actix bounds the time a client has for a
//! request's head (`HTTP_CLIENT_REQUEST_TIMEOUT_MS`), not for its body: a
//! client could announce 64 KiB and send a byte a minute, holding a
//! connection and a request for as long as it likes. Here the whole body
//! must arrive within `HTTP_CLIENT_BODY_TIMEOUT_MS` of the head; past that
//! the body's stream fails with `TimedOut`, which the error edge answers as a
//! JSON `408`, and actix closes the connection (the rest of the body is
//! never read).
//!
//! Requests without a body (every read) pass untouched: nothing is
//! allocated on the hot path.

use std::io;
use std::pin::Pin;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, web};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

/// `HTTP_CLIENT_BODY_TIMEOUT_MS`, as app data for [`body_deadline`].
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// Whether the request announces a body: a non-zero `Content-Length`, or a
/// `Transfer-Encoding` (chunked).
fn has_body(req: &ServiceRequest) -> bool {
    let headers = req.headers();
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|len| len.as_bytes() != b"0")
}

pub async fn body_deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let timeout = req.app_data::<web::Data<BodyTimeout>>().map(|t| t.0);
    if let Some(timeout) = timeout.filter(|_| has_body(&req)) {
        let deadline = tokio::time::Instant::now() + timeout;
        let payload = req.take_payload();
        // Chunks pass as they come until the deadline; then one `TimedOut`
        // error ends the stream.
        let bounded = futures_util::stream::unfold(Some(payload), move |payload| async move {
            let mut payload = payload?;
            match tokio::time::timeout_at(deadline, payload.next()).await {
                Ok(Some(chunk)) => Some((chunk, Some(payload))),
                Ok(None) => None,
                Err(_) => Some((
                    Err(PayloadError::Io(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the request body did not arrive within {timeout:?}"),
                    ))),
                    None,
                )),
            }
        });
        let bounded: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(bounded);
        req.set_payload(Payload::from(bounded));
    }
    next.call(req).await
}
