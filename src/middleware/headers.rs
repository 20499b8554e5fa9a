//! The security headers a JSON API sends: `nosniff`, `DENY` framing, no
//! referrer, and a Content-Security-Policy that lets a JSON answer do
//! nothing at all. Only the Swagger UI under `/docs/` gets a policy that
//! lets it load its own scripts and styles, and the profile pages under
//! `/@` one that allows their one hashed inline stylesheet (no script).
//!
//! Errors that reach these layers as `Err` (a panic caught in a handler)
//! become responses only in actix's dispatcher, after every middleware; they
//! are wrapped in [`WithHeaders`] so those responses carry the headers too.

use std::fmt;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError};

/// `Content-Security-Policy` of every JSON answer: it may load, run and frame nothing.
pub(super) const CSP_API: &str =
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// `Content-Security-Policy` of the Swagger UI: its own scripts, styles
/// (it sets inline styles), inline SVG images, and calls to this API only.
pub(super) const CSP_DOCS: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";

/// Sets the security headers on every response and removes any `Server` banner.
pub async fn security_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let csp = if req.path().starts_with("/docs") {
        CSP_DOCS
    } else if req.path().starts_with("/@") {
        crate::pages::CONTENT_SECURITY_POLICY
    } else {
        CSP_API
    };
    let headers = [
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(csp),
        ),
    ];
    add_headers(next.call(req).await, headers)
}

/// Sets `headers` on the response, or on the response an error will become.
/// Static values (`HeaderValue::from_static`) cost no allocation here; only
/// an error's copy goes to the heap.
pub(super) fn add_headers<B, const N: usize>(
    result: Result<ServiceResponse<B>, actix_web::Error>,
    headers: [(HeaderName, HeaderValue); N],
) -> Result<ServiceResponse<B>, actix_web::Error> {
    match result {
        Ok(mut res) => {
            set_all(res.headers_mut(), headers);
            Ok(res)
        }
        Err(err) => Err(WithHeaders {
            inner: err,
            headers: headers.to_vec(),
        }
        .into()),
    }
}

fn set_all(map: &mut HeaderMap, headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>) {
    map.remove(header::SERVER);
    for (name, value) in headers {
        map.insert(name, value);
    }
}

/// An error on its way to the dispatcher, with the headers its response must carry.
pub struct WithHeaders {
    inner: actix_web::Error,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl fmt::Debug for WithHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl fmt::Display for WithHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl ResponseError for WithHeaders {
    fn status_code(&self) -> StatusCode {
        self.inner.as_response_error().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = self.inner.error_response();
        set_all(res.headers_mut(), self.headers.clone());
        res
    }
}
